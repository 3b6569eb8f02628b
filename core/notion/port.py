"""The port the sync, the schema check and the import need from Notion; adapters and fakes implement it."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class NotionPage:
    """One row of the Email Sequence database, with its property values as Notion returns them."""

    id: str
    url: str = ""
    created_time: datetime | None = None
    properties: dict = field(default_factory=dict)


@runtime_checkable
class NotionMirror(Protocol):
    """What Nurture needs from the Email Sequence database (and the optional BusinessX database).

    Every method raises NotionUnavailable, NotionAccessError or NotionRequestError.
    """

    def schema(self, refresh: bool = False) -> dict[str, str]:
        """Property name → Notion type of the Email Sequence data source (cached until `refresh`)."""
        ...

    def add_properties(self, definitions: dict[str, dict]) -> None:
        """Add properties to the Email Sequence data source (`{"Stop": {"checkbox": {}}}`)."""
        ...

    def business_source_id(self) -> str | None:
        """The BusinessX data source a "Business" relation points at, or None when not configured."""
        ...

    def find_pages(self, emails: list[str]) -> dict[str, list[NotionPage]]:
        """Existing pages whose Email is one of `emails`, oldest first, keyed by the lower-cased email."""
        ...

    def create_page(self, properties: dict) -> NotionPage:
        ...

    def update_page(self, page_id: str, properties: dict) -> NotionPage:
        ...

    def stopped_pages(self) -> list[NotionPage]:
        """Pages whose "Stop" box a marketer ticked while their Status still reads active."""
        ...

    def iter_pages(self) -> Iterator[NotionPage]:
        """Every page of the Email Sequence database, oldest first (the import)."""
        ...

    def find_business(self, email: str) -> str | None:
        """The id of the BusinessX record with this email, or None (also when BusinessX is off)."""
        ...
