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


BEFORE_ARRIVAL_ORDER = Path(__file__).parent / "data" / "ledger-0.2.db"


def _dump(path: Path) -> dict[str, list]:
    """What a user sees, read with plain SQLite (no migration): every receipt by id with all
    its columns, balances and histories (the journal), lots, states and closes."""
    import sqlite3

    db = sqlite3.connect(path)
    try:
        def columns(table):  # receipt_row is new in m012
            return ", ".join(row[1] for row in db.execute(f"PRAGMA table_info({table})") if row[1] != "receipt_row")

        return {
            "receipts": db.execute(f"SELECT {columns('receipts')} FROM receipts ORDER BY receipt_id").fetchall(),
            "balances": db.execute("SELECT c.customer_id, SUM(j.points) FROM journal j JOIN customers c "
                                   "USING (customer_index) GROUP BY c.customer_id ORDER BY 1").fetchall(),
            **{table: db.execute(f"SELECT {columns(table)} FROM {table} ORDER BY 1, 2").fetchall()
               for table in ("journal", "lots", "customer_state", "month_closes", "customer_status", "voided_receipts")},
        }
    finally:
        db.close()


def test_receipts_move_to_arrival_order_with_everything_a_user_sees_unchanged(tmp_path):
    """m012: a ledger of the release before (loads, returns, accruals, a redemption, an
    adjustment, closes through June 2025, a void) keeps every receipt, balance, history
    entry, lot and state; ``check`` and every month's replay pass; loading goes on."""
    from fidelis.core.jobs.month_end import replay_close
    from fidelis.core.ledger.journal import history

    path = tmp_path / "ledger.db"
    shutil.copy(BEFORE_ARRIVAL_ORDER, path)
    before = _dump(path)
    with Ledger(path) as ledger:
        assert check_ledger(ledger) == []
        closed = [month for (month,) in ledger.db.execute("SELECT month FROM month_closes ORDER BY month")]
        assert len(closed) == 18 and all(replay_close(ledger, month) == [] for month in closed)
        customer, points = before["balances"][-1]
        assert balance(ledger, customer) == points
        entries = [row for row in before["journal"] if row[1] == ledger.db.execute(
            "SELECT customer_index FROM customers WHERE customer_id = ?", (customer,)).fetchone()[0]]
        assert [entry["points"] for entry in history(ledger, customer, limit=1000)] == [
            row[3] for row in sorted(entries, key=lambda row: row[0], reverse=True)]
        # arrival order: processing order (each customer's write order)
        order = ledger.db.execute("SELECT instant_us, receipt_id FROM receipts ORDER BY receipt_row").fetchall()
        assert order == sorted(order)
    assert _dump(path) == before
