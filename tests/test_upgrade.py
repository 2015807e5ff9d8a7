"""A ledger written by the previous release (0.1.0, before the sub-packages) still works.

``tests/data/ledger-0.1.0.db`` holds 3,000 receipts of a synthetic chain (2024–2025, no month
closed) as that release wrote them. Opening it, loading more, closing months and checking it
must all work unchanged: the schema and its migrations are the contract with every ledger
already in use.
"""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from fidelis.core import Ledger, balance, check_ledger, load_files, month_end
from fidelis.core.localtime import parse_month

PREVIOUS = Path(__file__).parent / "data" / "ledger-0.1.0.db"


def test_a_ledger_of_the_previous_release_opens_loads_closes_and_checks(tmp_path):
    path = tmp_path / "ledger.db"
    shutil.copy(PREVIOUS, path)
    receipts = tmp_path / "january.csv"
    receipts.write_text("receipt_id,customer_id,store_id,ts,category,qty,amount\n"
                        "UPGRADE-1,0000010001,S1,2026-01-15T10:00:00,grocery,2,25.00\n")
    with Ledger(path) as ledger:
        before = balance(ledger, "0000010001")
        summary = load_files(ledger, [receipts])
        assert summary.receipts_loaded == 1
        assert balance(ledger, "0000010001") > before
        closes = month_end(ledger, parse_month("2025-12"), today=dt.date(2026, 2, 1))
        assert [close.label for close in closes][-1] == "2025-12" and len(closes) == 24
        assert check_ledger(ledger) == []
