"""The ledger's clock: when something is recorded, as stored."""
from __future__ import annotations

import datetime as dt
import time


def now_us() -> int:
    """Now, as an instant in microseconds (what a redemption or adjustment is dated at)."""
    return time.time_ns() // 1000


def now_text() -> str:
    """Now in UTC as ISO text, to the second (when a program, key or close was recorded)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
