"""Batch jobs: one module per kind of run over a ledger.

- ``load.py``        bulk loads of receipt files, exactly once, in bounded memory
- ``rejects.py``     the rejects file of a load: every refused row and why
- ``admission.py``   what the ledger may take: duplicates, conflicts, late receipts, bounds
- ``commit.py``      one scored chunk written: receipts, journal, lots, state
- ``accrual.py``     real-time accrual for tills (one receipt, or a group commit)
- ``month_end.py``   the close of a month: expiry, statuses, tier movements
- ``check.py``       every invariant of a ledger, and a replay of its receipts
- ``export.py``      balances to a file
- ``score.py``       files scored without a ledger (``fidelis score``)

Jobs share through lower layers (``admission``, ``commit``, ``points/``), never by importing
each other's runs; nothing here imports ``cli/``, ``analytics/`` or the server.
"""
from .check import CHECK_BLOCK_CUSTOMERS, check_ledger
from .export import export_balances
from .load import CHUNK_RECEIPTS, LoadSummary, load_files

__all__ = ["CHECK_BLOCK_CUSTOMERS", "CHUNK_RECEIPTS", "LoadSummary", "check_ledger", "export_balances", "load_files"]
