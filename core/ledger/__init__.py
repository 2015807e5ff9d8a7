"""The ledger: SQLite storage of customers, receipts, journal, lots and closes — tables, not rules.

- ``handle.py``     :class:`Ledger`: connect, the write lock, a reading snapshot, the program cache
- ``schema.py``     the numbered migrations every ledger file is brought up to
- ``customers.py``  the id directory and each customer's stored scoring state
- ``receipts.py``   scored receipts, and every encode and decode of their stored lines
- ``journal.py``    journal entries, lots, debts and runs; balances and history
- ``closes.py``     month closes: what each expired, tier movements, the lots due
- ``figures.py``    sums and counts for checks and reports
- ``api_keys.py``   the server's API keys (hashed secrets, roles)
- ``clock.py``      when something is recorded

Queries are functions of the handle (reads) or of its write connection (writes inside the
caller's transaction). Storage only: imports no engine, ingest, points or jobs, and decides
no rule (which lot pays, when points expire: :mod:`fidelis.core.points`). All SQL text lives
here.
"""
from ..errors import (
    IdempotencyConflict,
    InsufficientPoints,
    LedgerBusy,
    LedgerError,
    RedemptionError,
    UnknownCustomer,
)
from .api_keys import API_ROLES
from .handle import Ledger, ProgramVersion
from .receipts import LINE_DTYPE

__all__ = [
    "API_ROLES",
    "IdempotencyConflict",
    "InsufficientPoints",
    "LINE_DTYPE",
    "Ledger",
    "LedgerBusy",
    "LedgerError",
    "ProgramVersion",
    "RedemptionError",
    "UnknownCustomer",
]
