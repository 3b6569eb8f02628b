"""Identifiers made in Python, so whole batches can be inserted with executemany.

They are time-ordered (48 bits of milliseconds, then 80 random bits, like a UUIDv7 in hex):
new rows land at the right-hand edge of every index on an id, instead of dirtying a
random page per row, which keeps each commit's write small as the tables grow.
"""

import os
import time


def new_id() -> str:
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"
