"""Identifiers made in Python, so whole batches can be inserted with executemany."""

import uuid


def new_id() -> str:
    return uuid.uuid4().hex
