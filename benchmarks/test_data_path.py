"""The data path around the kernel: a CSV scored whole-process, a history loaded tenth by tenth,
and the ledger replayed and checked.

- ``score a CSV file``: ``fidelis score receipts.csv -o scores.parquet`` as a whole process
  (interpreter start and imports included) against polars' bare ``read_csv`` of the same
  file in this process: the ratio says how close scoring gets to merely reading the file.
- ``load tenth by tenth``: a chain split by date into ten files, loaded one after another
  into one ledger, Parquet and CSV; ``extra_info["per_tenth"]`` holds each tenth's receipts/s,
  so a rate that falls as the ledger grows shows (the raw SQLite insert floor of the same
  rows is ``benchmarks/test_load.py``; the store designs at 10 M are
  ``benchmarks/store_designs.py``).
- ``replay and check``: :func:`~fidelis.core.points.replay.replay` of the loaded ledger and
  ``check_ledger``.

Size: ``FIDELIS_BENCH_PATH_RECEIPTS`` (default 200 000, a few seconds each; the issue's
figures are at 10 000 000).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from fidelis.core.jobs.check import check_ledger
from fidelis.core.jobs.load import load_files
from fidelis.core.ledger.handle import Ledger
from fidelis.core.points.replay import replay
from fidelis.core.program.model import load_program
from fidelis.core.synthetic import generate_chain, write_chain

RECEIPTS = int(os.environ.get("FIDELIS_BENCH_PATH_RECEIPTS", 200_000))
TENTHS = 10


@pytest.fixture(scope="session")
def csv_chain(tmp_path_factory) -> dict[str, Path]:
    return write_chain(generate_chain(RECEIPTS, seed=5), tmp_path_factory.mktemp("path-csv"))


@pytest.fixture(scope="session")
def tenths(csv_chain, tmp_path_factory) -> dict[str, list[Path]]:
    """The chain's receipts cut by date into ten files of whole receipts, as Parquet and CSV."""
    table = pacsv.read_csv(csv_chain["receipts"], convert_options=pacsv.ConvertOptions(
        column_types={name: pa.string() for name in ("receipt_id", "customer_id", "store_id", "ts", "amount")}))
    instants = pc.cast(pc.utf8_slice_codeunits(table.column("ts"), 0, 19), pa.timestamp("s"))
    order = pc.sort_indices(instants)
    table, instants = table.take(order), instants.take(order)
    ticks = instants.cast(pa.int64()).to_numpy()
    cuts = [0] + [int(np.searchsorted(ticks, ticks[len(ticks) * k // TENTHS], side="left"))
                  for k in range(1, TENTHS)] + [len(ticks)]
    folder = tmp_path_factory.mktemp("path-tenths")
    files: dict[str, list[Path]] = {"parquet": [], "csv": []}
    for k, (start, stop) in enumerate(zip(cuts, cuts[1:])):
        piece = table.slice(start, stop - start)
        files["parquet"].append(folder / f"tenth-{k}.parquet")
        pq.write_table(piece, files["parquet"][-1])
        files["csv"].append(folder / f"tenth-{k}.csv")
        pacsv.write_csv(piece, files["csv"][-1])
    return files


def _load_in_tenths(paths: list[Path], program: Path, customers: Path, folder: Path) -> tuple[Path, list[float]]:
    ledger_path = folder / f"ledger-{time.perf_counter_ns()}.db"
    rates = []
    with Ledger.create(ledger_path, load_program(program)) as ledger:
        for number, path in enumerate(paths):
            summary = load_files(ledger, [path], customers_file=customers if number == 0 else None,
                                 allow_future=True)
            rates.append(summary.receipts_loaded / summary.seconds)
    return ledger_path, rates


@pytest.fixture(scope="session")
def loaded(tenths, csv_chain, tmp_path_factory) -> Path:
    path, _ = _load_in_tenths(tenths["parquet"], csv_chain["program"], csv_chain["customers"],
                              tmp_path_factory.mktemp("path-ledger"))
    return path


@pytest.mark.benchmark(group="score a CSV file")
def test_fidelis_score_whole_process(benchmark, csv_chain, tmp_path, record_throughput):
    out = tmp_path / "scores.parquet"
    command = [sys.executable, "-m", "fidelis.core.cli", "score", str(csv_chain["program"]),
               str(csv_chain["receipts"]), "-o", str(out), "-q"]
    benchmark.pedantic(lambda: subprocess.run(command, check=True), rounds=3, iterations=1)
    assert pq.read_metadata(out).num_rows == RECEIPTS
    record_throughput("fidelis score", RECEIPTS)


@pytest.mark.benchmark(group="score a CSV file")
def test_polars_read_csv_of_the_same_file(benchmark, csv_chain, record_throughput):
    polars = pytest.importorskip("polars")
    frame = benchmark.pedantic(lambda: polars.read_csv(csv_chain["receipts"]), rounds=3, iterations=1)
    assert frame.height > RECEIPTS
    record_throughput("polars read_csv", RECEIPTS, speedup_over={"fidelis_score_over_read_csv": "fidelis score"})


@pytest.mark.parametrize("kind", ["parquet", "csv"])
@pytest.mark.benchmark(group="load tenth by tenth")
def test_load_tenth_by_tenth(benchmark, kind, tenths, csv_chain, tmp_path, record_throughput):
    runs = []
    benchmark.pedantic(lambda: runs.append(_load_in_tenths(tenths[kind], csv_chain["program"], csv_chain["customers"],
                                                           tmp_path)), rounds=1, iterations=1)
    path, rates = runs[-1]
    with Ledger(path) as ledger:
        assert ledger.db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0] == RECEIPTS
    record_throughput(f"load {kind}", RECEIPTS)
    if benchmark.stats is not None:
        benchmark.extra_info["per_tenth"] = [round(rate) for rate in rates]
        benchmark.extra_info["last_over_first"] = rates[-1] / rates[0]


@pytest.mark.benchmark(group="replay and check")
def test_replay(benchmark, loaded, record_throughput):
    def run():
        with Ledger(loaded) as ledger:
            return sum(len(block.batch) for block in replay(ledger))

    assert benchmark.pedantic(run, rounds=3, iterations=1) == RECEIPTS
    record_throughput("replay", RECEIPTS)


@pytest.mark.benchmark(group="replay and check")
def test_check(benchmark, loaded, record_throughput):
    def run():
        with Ledger(loaded) as ledger:
            return check_ledger(ledger, allow_future=True)

    assert benchmark.pedantic(run, rounds=3, iterations=1) == []
    record_throughput("check", RECEIPTS)
