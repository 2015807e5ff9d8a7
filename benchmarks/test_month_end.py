"""Month-end on a large ledger: one monthly close (expiry, status, movements), ledger writes included.

The target: 1 M customers with a year of lots closed in ≤ 5 s. The ledger is built once per
session (a year of receipts, five per customer, loaded with ``[expiry] after_months = 12``
added to the synthetic program) and every month but the last is closed outside the timed
region; each round closes the last month on a fresh copy. ``FIDELIS_BENCH_MONTH_END_CUSTOMERS``
sets the size (default 1 000 000: building it takes several minutes).
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import time

import pytest

from fidelis.core.jobs.load import load_files
from fidelis.core.ledger.handle import Ledger
from fidelis.core.jobs.month_end import month_end
from fidelis.core.program.model import parse_program
from fidelis.core.synthetic import generate_chain, write_chain

CUSTOMERS = int(os.environ.get("FIDELIS_BENCH_MONTH_END_CUSTOMERS", 1_000_000))
FIRST_DAY = dt.date(2025, 1, 1)
LAST_MONTH = (2025 - 1970) * 12 + 11  # December 2025
TODAY = dt.date(2026, 1, 2)


@pytest.fixture(scope="session")
def closed_but_the_last_month(tmp_path_factory):
    folder = tmp_path_factory.mktemp("month-end")
    files = write_chain(generate_chain(CUSTOMERS * 5, customer_count=CUSTOMERS, start=FIRST_DAY, years=1, seed=12),
                        folder / "chain", receipts_format="parquet")
    text = files["program"].read_text() + "\n[expiry]\nafter_months = 12\n"
    with Ledger.create(folder / "ledger.db", parse_program(text, source=str(files["program"]))) as ledger:
        load_files(ledger, [files["receipts"]], customers_file=files["customers"])
        month_end(ledger, LAST_MONTH - 1, today=TODAY)
    return folder / "ledger.db"


@pytest.mark.benchmark(group="month-end")
def test_monthly_close(benchmark, closed_but_the_last_month, tmp_path):
    ledgers = []

    def fresh_copy():
        path = tmp_path / f"round-{time.perf_counter_ns()}.db"
        shutil.copyfile(closed_but_the_last_month, path)
        ledgers.append(Ledger(path))
        return (ledgers[-1],), {}

    closes = benchmark.pedantic(lambda ledger: month_end(ledger, LAST_MONTH, today=TODAY),
                                setup=fresh_copy, rounds=3, iterations=1)
    assert [close.month for close in closes] == [LAST_MONTH]
    for ledger in ledgers:
        ledger.close()
    if benchmark.stats is not None:
        benchmark.extra_info["customers"] = CUSTOMERS
        benchmark.extra_info["customers_per_s"] = CUSTOMERS / benchmark.stats.stats.median
