"""Bulk load: Parquet → validated, scored, committed ledger, against raw SQLite inserts.

The peer is the floor any loader pays: ``executemany`` of exactly the rows a load writes
(customers, receipts, journal, lots, customer state) into the same schema, in one
transaction per table, measured in the same run. The ratio says how much of a load's time
is the ledger's own writing and how much is reading, validating and scoring around it.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest

from fidelis.core.jobs.load import load_files
from fidelis.core.ledger.handle import Ledger
from fidelis.core.program.model import load_program
from fidelis.core.synthetic import generate_chain, write_chain

LOAD_RECEIPTS = int(os.environ.get("FIDELIS_BENCH_LOAD_RECEIPTS", 500_000))
GROUP = "load into the ledger"
TABLES = ("runs", "categories", "skus", "customers", "customer_state", "receipts", "journal", "lots")


@pytest.fixture(scope="session")
def parquet_chain(tmp_path_factory) -> dict[str, Path]:
    return write_chain(generate_chain(LOAD_RECEIPTS, seed=3), tmp_path_factory.mktemp("load"),
                       receipts_format="parquet")


@pytest.fixture(scope="session")
def loaded_rows(parquet_chain, tmp_path_factory) -> dict[str, tuple[list[str], list[tuple]]]:
    """Every row one load writes, table by table, to replay with raw inserts."""
    path = tmp_path_factory.mktemp("reference") / "chain.db"
    with Ledger.create(path, load_program(parquet_chain["program"])) as ledger:
        load_files(ledger, [parquet_chain["receipts"]], customers_file=parquet_chain["customers"])
        rows = {}
        for table in TABLES:
            # in the order a load wrote them (receipts: arrival order, customer by customer)
            order = " ORDER BY receipt_row" if table == "receipts" else ""
            cursor = ledger.db.execute(f"SELECT * FROM {table}{order}")
            rows[table] = ([column[0] for column in cursor.description], cursor.fetchall())
    return rows


def _row_count(rows) -> int:
    return sum(len(table_rows) for _, table_rows in rows.values())


@pytest.fixture
def new_ledger(parquet_chain, tmp_path):
    """A pedantic ``setup``: an empty ledger per round, created outside the timed region."""
    ledgers = []

    def setup():
        path = tmp_path / f"bench-{time.perf_counter_ns()}.db"
        ledgers.append(Ledger.create(path, load_program(parquet_chain["program"])))
        return (ledgers[-1],), {}

    yield setup
    for ledger in ledgers:
        ledger.close()


def record_rows(benchmark, loaded_rows) -> None:
    if benchmark.stats is None:  # --benchmark-disable: results checked, nothing timed
        return
    rows = _row_count(loaded_rows)
    benchmark.extra_info["rows_written"] = rows
    benchmark.extra_info["rows_per_s"] = rows / benchmark.stats.stats.median
    benchmark.extra_info["receipts_per_s"] = LOAD_RECEIPTS / benchmark.stats.stats.median


@pytest.mark.benchmark(group=GROUP)
def test_fidelis_load(benchmark, parquet_chain, loaded_rows, new_ledger):
    def load(ledger):
        return load_files(ledger, [parquet_chain["receipts"]], customers_file=parquet_chain["customers"])

    summaries = []
    summary = benchmark.pedantic(lambda ledger: summaries.append(load(ledger)) or summaries[-1],
                                 setup=new_ledger, rounds=3, iterations=1)
    assert summary.receipts_loaded == LOAD_RECEIPTS
    record_rows(benchmark, loaded_rows)
    # where the time goes, medians over the rounds: reading, validating, scoring, writing
    for stage in summary.stage_seconds:
        benchmark.extra_info[f"{stage}_s"] = statistics.median(s.stage_seconds[stage] for s in summaries)


@pytest.mark.benchmark(group=GROUP)
def test_raw_executemany_of_the_same_rows(benchmark, loaded_rows, new_ledger):
    def insert(ledger):
        with ledger.write() as connection:
            for table in TABLES:
                columns, rows = loaded_rows[table]
                placeholders = ", ".join("?" * len(columns))
                connection.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", rows)

    benchmark.pedantic(insert, setup=new_ledger, rounds=3, iterations=1)
    record_rows(benchmark, loaded_rows)
