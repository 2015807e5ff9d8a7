"""From a receipts CSV to points per receipt: ``score_files`` against a polars pipeline.

Our path does everything ``fidelis score`` does before writing: read the CSV as text,
validate every value, order receipts, convert to local time, build the batch, score and
build the output table. The polars pipeline does the subset needed for the same points (no
validation): read, parse amounts and timestamps (offsets, ``Z``, DST gaps and overlaps),
local date, tier, points. The file is written once per session and is in the page cache for
both.
"""
from __future__ import annotations

import numpy as np
import pytest

from fidelis.core.program.model import load_program
from fidelis.core.jobs.score import score_files
from fidelis.core.synthetic import benchmark_program_text, generate_chain, write_chain

from .conftest import CSV_RECEIPT_COUNT
from .peers import peer_rules, score_csv_with_polars

GROUP = "csv to scores"
ROUNDS = 5


@pytest.fixture(scope="session")
def receipts_csv(tmp_path_factory):
    """A synthetic chain's receipts CSV and the benchmark program for it."""
    chain = generate_chain(CSV_RECEIPT_COUNT)
    directory = tmp_path_factory.mktemp("csv_to_scores")
    paths = write_chain(chain, directory)
    program_path = directory / "benchmark_program.toml"
    program_path.write_text(
        benchmark_program_text(timezone=chain.columns.timezone, store_count=chain.columns.store_count),
        encoding="utf-8",
    )
    explicit_offsets = int((chain.columns.ts_style > 0).sum())
    assert explicit_offsets, "the CSV should exercise timestamps with offsets"
    return {
        "receipts": paths["receipts"],
        "program": program_path,
        "receipt_count": chain.columns.receipt_count,
        "category_names": list(chain.columns.category_names),
        "store_names": chain.columns.store_names,
    }


@pytest.fixture(scope="session")
def fidelis_table(receipts_csv):
    """Our output once, outside timing: what the polars pipeline must reproduce."""
    return score_files(receipts_csv["program"], [receipts_csv["receipts"]]).table


@pytest.mark.benchmark(group=GROUP)
def test_fidelis_score_files(benchmark, receipts_csv, fidelis_table, record_throughput):
    result = benchmark.pedantic(
        score_files, args=(receipts_csv["program"], [receipts_csv["receipts"]]), rounds=ROUNDS, iterations=1
    )
    assert result.table.equals(fidelis_table)
    record_throughput("score_files", receipts_csv["receipt_count"])


@pytest.mark.benchmark(group=GROUP)
def test_polars_pipeline(benchmark, receipts_csv, fidelis_table, record_throughput):
    program = load_program(receipts_csv["program"])
    rules = peer_rules(program, receipts_csv["category_names"], receipts_csv["store_names"])
    result = benchmark.pedantic(
        score_csv_with_polars,
        args=(receipts_csv["receipts"], rules),
        kwargs={"timezone": program.info.timezone, "minor_units": program.info.minor_units},
        rounds=ROUNDS,
        iterations=1,
    )
    assert result["receipt_id"].to_list() == fidelis_table["receipt_id"].to_pylist()
    assert result["tier"].to_list() == fidelis_table["tier"].to_pylist()
    assert np.array_equal(result["points"].to_numpy(), fidelis_table["points"].to_numpy())
    record_throughput("polars csv", receipts_csv["receipt_count"], speedup_of={"fidelis_speedup": "score_files"})
