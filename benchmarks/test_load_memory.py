"""A large load's peak memory: a whole history through `fidelis load`, measured in its own process.

The load runs as a child process (a fresh interpreter, as cron would start it) and reports
its own peak resident set, so nothing the benchmark session holds (the generated chain) is
counted. The target: 10 M receipts under 2 GB. ``FIDELIS_BENCH_MEMORY_RECEIPTS`` sets the
size (default 10 000 000; generating that chain takes a few minutes and about 10 GB).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fidelis.core.ledger.handle import Ledger
from fidelis.core.program.model import load_program
from fidelis.core.synthetic import generate_chain, write_chain

MEMORY_RECEIPTS = int(os.environ.get("FIDELIS_BENCH_MEMORY_RECEIPTS", 10_000_000))
PEAK_TARGET_BYTES = 2 * 1024**3

#: Run in the child: the load through the CLI's own code, then its peak RSS (ru_maxrss is KiB on Linux).
_CHILD = """
import json, resource, sys, time
from fidelis.core.jobs import load_files
from fidelis.core.ledger import Ledger
ledger_path, receipts, customers = sys.argv[1:4]
with Ledger(ledger_path) as ledger:
    summary = load_files(ledger, [receipts], customers_file=customers)
print(json.dumps({"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "receipts": summary.receipts_loaded, "seconds": summary.seconds,
                  "stage_seconds": summary.stage_seconds}))
"""


@pytest.fixture(scope="session")
def large_chain(tmp_path_factory) -> dict[str, Path]:
    return write_chain(generate_chain(MEMORY_RECEIPTS, seed=10), tmp_path_factory.mktemp("large"),
                       receipts_format="parquet")


@pytest.mark.benchmark(group="load peak memory")
def test_large_load_peak_memory(benchmark, large_chain, tmp_path):
    ledger_path = tmp_path / "large.db"
    Ledger.create(ledger_path, load_program(large_chain["program"])).close()

    def load():
        out = subprocess.run([sys.executable, "-c", _CHILD, str(ledger_path), str(large_chain["receipts"]),
                              str(large_chain["customers"])], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    result = benchmark.pedantic(load, rounds=1, iterations=1)
    assert result["receipts"] == MEMORY_RECEIPTS
    benchmark.extra_info.update(peak_bytes=result["peak_bytes"], receipts_per_s=result["receipts"] / result["seconds"],
                                **{f"{stage}_s": seconds for stage, seconds in result["stage_seconds"].items()})
    assert result["peak_bytes"] < PEAK_TARGET_BYTES, f"peak {result['peak_bytes'] / 2**30:.2f} GiB"
