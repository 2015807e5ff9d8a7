"""Fidelis core: program files, exact scoring engines, the ledger, and the jobs over it.

The tree follows the data flow, one sub-package per stage (each ``__init__`` is its map):

- ``program/``    TOML → Program → the flat tables the kernel indexes
- ``ingest/``     receipt and customer files, request bodies → ReceiptBatch + problems
- ``engine/``     the compiled kernel and the reference engine: batch + tables + state → Scores
- ``ledger/``     SQLite storage: customers, receipts, journal, lots, closes, API keys
- ``points/``     what happens to points after scoring: lots, take-back, redemption, expiry,
                  standing, whole-history replay
- ``jobs/``       one module per kind of run: load, accrual, month-end, check, export, score
- ``analytics/``  reports over the ledger (read only)
- ``cli/``        the ``fidelis`` command

The vocabulary every stage shares sits here: ``errors``, ``localtime``, ``batch``, ``scores``,
``state``, ``returns`` (the pro-rata rule) and ``synthetic`` (generated chains).

The names below are the public API the CLI, the batch scripts and the server build on.
Importing this package does not load the compiled kernel: the names that need it
(scoring, accrual, standing, month-end) are imported on first use.
"""
from __future__ import annotations

import importlib

from .batch import CustomerTable, ReceiptBatch
from .errors import (
    ExtensionNotBuiltError,
    FidelisError,
    IdempotencyConflict,
    IncompatibleStateError,
    InputError,
    InputProblem,
    InsufficientPoints,
    LateReceipt,
    LedgerBusy,
    LedgerError,
    MonthError,
    OutputError,
    ProgramError,
    ProgramIssue,
    ReceiptConflict,
    RedemptionError,
    ScoringError,
    UnknownCustomer,
    UnknownReceipt,
    UnsupportedFileError,
)
from .ingest.columns import MAX_QTY, RETURN, SALE
from .ingest.msgpack_batch import decode as decode_msgpack_batch
from .ingest.msgpack_batch import encode as encode_msgpack_batch
from .ingest.receipts import (
    CheckedReceipts,
    check_receipt_table,
    check_receipts,
    read_receipts,
)
from .ledger.api_keys import (
    API_ROLES,
    api_key_role,
    api_keys,
    create_api_key,
    revoke_api_key,
)
from .ledger.handle import Ledger
from .ledger.journal import balance, balances, history
from .points.adjustment import adjust
from .points.redemption import Redeemed, redeem
from .program.model import Program, load_program, parse_program
from .program.tables import CompiledProgram, ProgramTables, compile_program
from .scores import Scores
from .state import CustomerState

#: The recorded result of a redemption, by its earlier name (the program's section of terms
#: is :class:`fidelis.core.program.model.Redemption`).
Redemption = Redeemed

# Names whose modules load the compiled kernel: imported when first asked for.
_LAZY = {
    "ENGINES": "engine.engines",
    "ScoreResult": "jobs.score",
    "score_batch": "engine.engines",
    "score_files": "jobs.score",
    "standing": "points.standing",
    "Standing": "points.standing",
    "Accrued": "jobs.accrual",
    "GroupCommit": "jobs.accrual",
    "accrue": "jobs.accrual",
    "expiring_at_next_close": "points.expiry",
    "upcoming_expiry": "points.expiry",
    "month_end": "jobs.month_end",
    "load_files": "jobs.load",
    "check_ledger": "jobs.check",
    "export_balances": "jobs.export",
    "void_receipt": "points.void",
    "Voided": "points.void",
    "cli": "cli",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "API_ROLES",
    "Accrued",
    "CheckedReceipts",
    "CompiledProgram",
    "CustomerState",
    "CustomerTable",
    "ENGINES",
    "ExtensionNotBuiltError",
    "FidelisError",
    "GroupCommit",
    "IdempotencyConflict",
    "IncompatibleStateError",
    "InputError",
    "InputProblem",
    "InsufficientPoints",
    "LateReceipt",
    "Ledger",
    "LedgerBusy",
    "LedgerError",
    "MAX_QTY",
    "MonthError",
    "OutputError",
    "Program",
    "ProgramError",
    "ProgramIssue",
    "ProgramTables",
    "RETURN",
    "ReceiptBatch",
    "ReceiptConflict",
    "Redeemed",
    "Redemption",
    "RedemptionError",
    "SALE",
    "ScoreResult",
    "Scores",
    "ScoringError",
    "Standing",
    "UnknownCustomer",
    "UnknownReceipt",
    "UnsupportedFileError",
    "Voided",
    "accrue",
    "adjust",
    "api_key_role",
    "api_keys",
    "balance",
    "balances",
    "check_ledger",
    "check_receipt_table",
    "check_receipts",
    "cli",
    "compile_program",
    "create_api_key",
    "decode_msgpack_batch",
    "encode_msgpack_batch",
    "expiring_at_next_close",
    "export_balances",
    "history",
    "load_files",
    "load_program",
    "month_end",
    "parse_program",
    "read_receipts",
    "redeem",
    "revoke_api_key",
    "score_batch",
    "score_files",
    "standing",
    "upcoming_expiry",
    "void_receipt",
]
