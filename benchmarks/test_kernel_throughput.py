"""Scoring throughput in memory: the compiled kernel against numpy, polars and DuckDB.

Every contender gets the same receipts in its natural form, prepared outside the timed
region, and must give every receipt the kernel's tier and points. Only scoring is timed: the
kernel's id lookups (``prepare``) are done once, as the peers' inputs are built once.
Peers run with their default thread pools (both cores); the kernel's first group uses one.
"""
from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from fidelis.core.engine import kernel
from fidelis.core.engine.partition import partition
from fidelis.core.scores import Scores

from .conftest import RECEIPT_COUNT
from .peers import (
    NumpyReceipts,
    PeerScores,
    duckdb_query,
    score_with_numpy,
    score_with_polars,
)

SCORE_GROUP = f"score {RECEIPT_COUNT / 1e6:g}M receipts"
THREADS_GROUP = "kernel threads"
KERNEL_ROUNDS = 15
PEER_ROUNDS = 5


def assert_same_as_kernel(peer: PeerScores, kernel_scores) -> None:
    assert len(peer.tier) == len(kernel_scores)
    assert np.array_equal(peer.tier, kernel_scores.tier), "tiers differ from the kernel's"
    assert np.array_equal(peer.points, kernel_scores.points), "points differ from the kernel's"


# --- inputs in each peer's natural form -------------------------------------------------------


@pytest.fixture(scope="session")
def numpy_receipts(chain) -> NumpyReceipts:
    return NumpyReceipts(
        customer_index=chain.customer_index,
        store_code=chain.store_index,
        local_day=chain.local_day,
        local_month=chain.local_month,
        line_offsets=chain.line_offsets,
        line_category_code=chain.line_category_code,
        line_qty=chain.line_qty,
        line_amount_minor=chain.line_amount_minor,
    )


def _arrow_receipts(chain) -> pa.Table:
    return pa.table(
        {
            "receipt": pa.array(np.arange(chain.receipt_count, dtype=np.int32)),
            "customer": pa.array(chain.customer_index, mask=chain.customer_index < 0),
            "store": pa.array(chain.store_index),
            "local_date": pa.array(chain.local_day).cast(pa.date32()),
        }
    )


def _arrow_lines(chain) -> pa.Table:
    return pa.table(
        {
            "receipt": pa.array(chain.line_receipt_index()),
            "category_code": pa.array(chain.line_category_code),
            "qty": pa.array(chain.line_qty),
            "amount_minor": pa.array(chain.line_amount_minor),
        }
    )


@pytest.fixture(scope="session")
def polars_frames(chain) -> tuple[pl.DataFrame, pl.DataFrame]:
    receipts = pl.from_arrow(_arrow_receipts(chain)).set_sorted("receipt")
    lines = pl.from_arrow(_arrow_lines(chain)).set_sorted("receipt")
    return receipts, lines


@pytest.fixture(scope="session")
def duckdb_connection(chain, rules):
    """Receipts, lines and the rules' small tables registered from Arrow (no copies)."""
    connection = duckdb.connect()
    tables = {
        "receipts": _arrow_receipts(chain),
        "lines": _arrow_lines(chain),
        "categories": pa.table(
            {
                "category_code": pa.array(np.arange(len(rules.category_names), dtype=np.int32)),
                "rate_class": pa.array(rules.category_rate_class),
            }
        ),
        "promotion_stores": pa.table({"store": pa.array(rules.promotion_store_codes, pa.int32())}),
        "rates": pa.table(rules.rates_table()).cast(
            pa.schema(
                [("tier", pa.int8()), ("promoted", pa.int8())]
                + [(f"numerator_{k}", pa.int64()) for k in range(len(rules.rate_classes))]
            )
        ),
    }
    for name, table in tables.items():
        connection.register(name, table)
    yield connection
    connection.close()


# --- score N receipts -------------------------------------------------------------------------


@pytest.mark.benchmark(group=SCORE_GROUP)
def test_fidelis_kernel_1_thread(benchmark, kernel_workload, compiled, kernel_scores, record_throughput):
    workload = kernel_workload
    result = benchmark.pedantic(
        kernel.score,
        args=(workload.prepared, compiled, workload.state),
        kwargs={"out": workload.out, "threads": 1},
        setup=workload.reset_state,
        rounds=KERNEL_ROUNDS,
        warmup_rounds=1,
        iterations=1,
    )
    assert result.equals(kernel_scores)
    record_throughput("kernel 1 thread", len(workload))


@pytest.mark.benchmark(group=SCORE_GROUP)
def test_numpy(benchmark, numpy_receipts, rules, kernel_scores, record_throughput):
    result = benchmark.pedantic(score_with_numpy, args=(numpy_receipts, rules), rounds=PEER_ROUNDS, iterations=1)
    assert_same_as_kernel(result, kernel_scores)
    record_throughput("numpy", len(kernel_scores), speedup_of={"kernel_speedup": "kernel 1 thread"})


@pytest.mark.benchmark(group=SCORE_GROUP)
def test_polars(benchmark, polars_frames, rules, kernel_scores, record_throughput):
    receipts, lines = polars_frames
    result = benchmark.pedantic(score_with_polars, args=(receipts, lines, rules), rounds=PEER_ROUNDS, iterations=1)
    assert_same_as_kernel(
        PeerScores(tier=result["tier"].to_numpy(), points=result["points"].to_numpy()), kernel_scores
    )
    record_throughput("polars", len(kernel_scores), speedup_of={"kernel_speedup": "kernel 1 thread"})
    benchmark.extra_info["threads"] = pl.thread_pool_size()


@pytest.mark.benchmark(group=SCORE_GROUP)
def test_duckdb(benchmark, duckdb_connection, rules, kernel_scores, record_throughput):
    query = duckdb_query(rules)

    def score_with_duckdb() -> pa.Table:
        return duckdb_connection.sql(query).to_arrow_table()

    result = benchmark.pedantic(score_with_duckdb, rounds=PEER_ROUNDS, iterations=1)
    assert np.array_equal(result["receipt"].to_numpy(), np.arange(len(kernel_scores)))
    assert_same_as_kernel(
        PeerScores(tier=result["tier"].to_numpy(), points=result["points"].to_numpy()), kernel_scores
    )
    record_throughput("duckdb", len(kernel_scores), speedup_of={"kernel_speedup": "kernel 1 thread"})
    benchmark.extra_info["threads"] = duckdb_connection.execute("SELECT current_setting('threads')").fetchone()[0]


# --- kernel threads ---------------------------------------------------------------------------


@pytest.mark.benchmark(group=THREADS_GROUP)
@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_threads(benchmark, threads, kernel_workload, compiled, kernel_scores, record_throughput):
    workload = kernel_workload
    result = benchmark.pedantic(
        kernel.score,
        args=(workload.prepared, compiled, workload.state),
        kwargs={"out": workload.out, "threads": threads},
        setup=workload.reset_state,
        rounds=KERNEL_ROUNDS,
        warmup_rounds=1,
        iterations=1,
    )
    assert result.equals(kernel_scores)
    record_throughput(
        f"kernel threads={threads}", len(workload), speedup_over={"speedup_over_1_thread": "kernel threads=1"}
    )



@pytest.fixture(scope="session")
def customer_partitions(kernel_workload):
    """The batch laid out in two customer partitions, as a partitioned load would store it.

    Built once, outside timing: partitioning is data layout, done when receipts are loaded.
    """
    parts = partition(kernel_workload.prepared, 2)
    return parts, [Scores.empty(len(part.batch)) for part in parts]


@pytest.mark.benchmark(group=THREADS_GROUP)
def test_kernel_2_customer_partitions(benchmark, customer_partitions, kernel_workload, compiled, kernel_scores,
                                      record_throughput):
    parts, outs = customer_partitions
    workload = kernel_workload
    results = benchmark.pedantic(
        kernel.score_partitions,
        args=(parts, compiled, workload.state),
        kwargs={"out": outs},
        setup=workload.reset_state,
        rounds=KERNEL_ROUNDS,
        warmup_rounds=1,
        iterations=1,
    )
    positions = {receipt_id: i for i, receipt_id in enumerate(workload.prepared.batch.receipt_id.to_pylist())}
    for part, scores in zip(parts, results):
        order = np.array([positions[r] for r in part.batch.receipt_id.to_pylist()])
        assert scores.equals(kernel_scores[order])
    record_throughput(
        "kernel 2 customer partitions", len(workload), speedup_over={"speedup_over_1_thread": "kernel threads=1"}
    )
