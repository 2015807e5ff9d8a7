"""The HTTP API under load: balance lookups, lookups during a bulk load, real-time accrual.

Each test serves a ledger with ``fidelis serve``'s defaults (gunicorn, 2 gthread workers × 16
threads) on loopback and aims :mod:`.loadgen` at it for ``FIDELIS_BENCH_SERVER_SECONDS``
(default 10) after a second of warm-up (each worker thread opens its ledger handle): lookups
from 12 keep-alive connections, accruals from 32 (concurrent accruals are what group commit
batches). The generator shares this machine's 2 cores with the server. Targets: ≥ 3,000 balance lookups/s with p99 ≤ 20 ms; ≥ 1,500/s with no errors while a
bulk load writes to the same ledger; ≥ 1,000 accruals/s. Figures go to ``extra_info``.
"""
from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
import sys

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from fidelis.core.jobs.load import load_files
from fidelis.core.ledger.handle import Ledger
from fidelis.core.program.model import load_program
from fidelis.core.synthetic import generate_chain, write_chain

from .loadgen import json_request, run_load, served
from fidelis.core.ledger.api_keys import create_api_key

SECONDS = float(os.environ.get("FIDELIS_BENCH_SERVER_SECONDS", 10))
RECEIPTS = int(os.environ.get("FIDELIS_BENCH_SERVER_RECEIPTS", 100_000))


@pytest.fixture(scope="module")
def live_ledger(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("server")
    chain = write_chain(generate_chain(RECEIPTS, seed=21), folder / "chain", receipts_format="parquet")
    ledger_path = folder / "chain.db"
    with Ledger.create(ledger_path, load_program(chain["program"])) as ledger:
        load_files(ledger, [chain["receipts"]], customers_file=chain["customers"])
        customers = [row[0] for row in ledger.db.execute("SELECT customer_id FROM customers")]
        keys = {role: create_api_key(ledger, role) for role in ("read", "write")}
    # a second history for the concurrent bulk load: other receipt ids, the same customers, later
    later = write_chain(generate_chain(4 * RECEIPTS, seed=22, start=dt.date(2027, 1, 1)), folder / "later",
                        receipts_format="parquet")
    table = pq.read_table(later["receipts"])
    table = table.set_column(0, "receipt_id", pc.binary_join_element_wise("L-", table.column("receipt_id"), ""))
    pq.write_table(table, later["receipts"])
    return {"path": ledger_path, "customers": customers, "keys": keys, "later": later}


def _balance_requests(live: dict):
    customers, key = live["customers"], live["keys"]["read"]
    picks = random.Random(5)
    return lambda process, thread, number: json_request(
        "GET", f"/v1/customers/{customers[picks.randrange(len(customers))]}/balance", key)


def _measure(port: int, make, *, processes: int, threads: int):
    run_load(port, make, seconds=1, processes=processes, threads=threads)  # warm-up
    return run_load(port, make, seconds=SECONDS, processes=processes, threads=threads)


def _record(benchmark, result, **extra) -> None:
    benchmark.extra_info.update(requests_per_s=result.per_second, p50_ms=result.percentile_ms(50),
                                p99_ms=result.percentile_ms(99), errors=result.errors,
                                statuses={str(k): v for k, v in result.statuses.items()}, **extra)
    print(result.summary())


@pytest.mark.benchmark(group="server")
def test_balance_lookups(benchmark, live_ledger):
    with served(live_ledger["path"]) as port:
        result = benchmark.pedantic(lambda: _measure(port, _balance_requests(live_ledger), processes=1, threads=12),
                                    rounds=1, iterations=1)
    _record(benchmark, result)
    assert result.errors == 0, result.summary()


@pytest.mark.benchmark(group="server")
def test_balance_lookups_during_a_bulk_load(benchmark, live_ledger, tmp_path):
    later = live_ledger["later"]
    with served(live_ledger["path"]) as port:
        loading = subprocess.Popen([sys.executable, "-m", "fidelis.core.cli", "load", str(live_ledger["path"]),
                                    str(later["receipts"]), "-q",
                                    "--allow-future"],  # the later history is synthetic, dated ahead
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            result = benchmark.pedantic(
                lambda: _measure(port, _balance_requests(live_ledger), processes=1, threads=12), rounds=1, iterations=1)
            still_loading = loading.poll() is None
        finally:
            out, err = loading.communicate(timeout=600)
    assert loading.returncode == 0, err.decode()[-2000:]
    _record(benchmark, result, load_still_running_at_end=still_loading)
    assert still_loading, "the bulk load ended before the measurement did: raise FIDELIS_BENCH_SERVER_RECEIPTS"
    assert result.errors == 0, result.summary()


@pytest.mark.benchmark(group="server")
def test_real_time_accrual(benchmark, live_ledger):
    key = live_ledger["keys"]["write"]
    base = dt.datetime.now() - dt.timedelta(days=10)  # recent: the API refuses receipts from the future

    def accruals(phase: int):
        """Each connection its own customers and its own clock, so no receipt is late; each
        phase (warm-up, measurement) on later days than the one before."""
        def accrual(process: int, thread: int, number: int):
            moment = (base + dt.timedelta(days=phase, seconds=number)).isoformat()
            body = {"receipt_id": f"RT-{phase}-{process}-{thread}-{number}",
                    "customer_id": f"RT{process}{thread:02d}{number % 50:03d}", "store_id": "S001", "ts": moment,
                    "lines": [{"category": "grocery", "qty": 2, "amount": "12.40"},
                              {"category": "dairy", "qty": 1, "amount": "3.99"}]}
            return json_request("POST", "/v1/receipts", key, body)
        return accrual

    with served(live_ledger["path"]) as port:
        run_load(port, accruals(0), seconds=1, processes=2, threads=16)  # warm-up
        result = benchmark.pedantic(lambda: run_load(port, accruals(1), seconds=SECONDS, processes=2, threads=16),
                                    rounds=1, iterations=1)
    _record(benchmark, result)
    assert result.errors == 0, result.summary()
