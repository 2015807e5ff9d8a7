"""Build ``ledger-0.2.db``: a ledger as the release before receipts in arrival order wrote it.

Run from the repository root at that release (schema up to m011)::

    python tests/data/build_ledger_fixture.py tests/data/ledger-0.2.db

It holds every kind of write: a bulk load of a synthetic chain (2,000 receipts, 2024–2025),
a second load with return rows, receipts accrued one by one, a redemption, an adjustment,
month-end closes through June 2025 and a voided receipt — so a migration test can compare
everything a user sees before and after.
"""
from __future__ import annotations

import csv
import datetime as dt
import sys
import tempfile
from pathlib import Path

import pyarrow as pa

from fidelis.core import Ledger, load_files, month_end
from fidelis.core.ingest.receipts import check_receipt_table
from fidelis.core.jobs.accrual import accrue
from fidelis.core.localtime import parse_month
from fidelis.core.points.adjustment import adjust
from fidelis.core.points.redemption import redeem
from fidelis.core.points.void import void_receipt
from fidelis.core.program.model import load_program
from fidelis.core.synthetic import generate_chain, write_chain


def build(path: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        chain = write_chain(generate_chain(2000, seed=11), Path(folder) / "chain")
        program = load_program(chain["program"])
        with open(chain["receipts"], newline="") as handle:
            rows = list(csv.DictReader(handle))
        with Ledger.create(path, program) as ledger:
            load_files(ledger, [chain["receipts"]], customers_file=chain["customers"])
            # returns of the first line of three identified receipts of December 2025
            december = [row for row in rows if row["ts"].startswith("2025-12-2") and row["customer_id"]]
            originals = list(dict.fromkeys(row["receipt_id"] for row in december))[:3]
            returns = Path(folder) / "returns.csv"
            with returns.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["receipt_id", "customer_id", "store_id", "ts", "category", "qty", "amount", "sku",
                                 "kind", "original_receipt_id", "line"])
                for number, original in enumerate(originals):
                    writer.writerow([f"RET-{number}", "", "S001", "2025-12-31T20:00:00", "", 1, "", "", "return",
                                     original, 1])
            load_files(ledger, [returns])
            customer = next(row["customer_id"] for row in reversed(rows) if row["customer_id"])
            till = pa.table({"receipt_id": ["TILL-1", "TILL-2"], "customer_id": [customer, customer],
                             "store_id": ["S001", "S001"], "ts": ["2026-01-05T10:00:00", "2026-01-06T11:00:00"],
                             "category": ["grocery", "grocery"], "qty": pa.array([2, 1], pa.int64()),
                             "amount": ["31.50", "12.00"]})
            accrue(ledger, check_receipt_table(till, timezone=program.info.timezone,
                                               minor_units=program.info.minor_units, source="till"))
            redeem(ledger, customer, 100, "fixture-redemption")
            adjust(ledger, customer, 25, "fixture adjustment", reference="fixture-adjustment")
            month_end(ledger, parse_month("2025-06"), today=dt.date(2026, 1, 10))
            void_receipt(ledger, "TILL-2", "a test receipt sent to production")


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.unlink(missing_ok=True)
    build(target)
    print(f"wrote {target}")
