"""The Notion mirror: a port, its notion-client adapter, the outbox-draining sync, schema check and import."""
