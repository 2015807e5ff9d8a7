"""The ledger: SQLite storage of customers, receipts, journal, lots and closes — tables, not rules.

- ``handle.py``  :class:`Ledger`: connect, the write lock, a reading snapshot, the program cache

Storage only: imports no engine, ingest, points or jobs. All SQL text lives here.
"""
from ..errors import (
    IdempotencyConflict,
    InsufficientPoints,
    LedgerBusy,
    LedgerError,
    RedemptionError,
    UnknownCustomer,
)
from .handle import API_ROLES, LINE_DTYPE, Ledger, Redemption, Standing

__all__ = [
    "API_ROLES",
    "IdempotencyConflict",
    "InsufficientPoints",
    "LINE_DTYPE",
    "Ledger",
    "LedgerBusy",
    "LedgerError",
    "Redemption",
    "RedemptionError",
    "Standing",
    "UnknownCustomer",
]
