"""Benchmark workloads, built once per session and outside every timed region.

The default workload is the size the project's throughput targets are stated for: 5 million
receipts (about 30 million lines) of 1 million card holders. Smaller runs, for a quick check
that the suite works, are one environment variable away:

- ``FIDELIS_BENCH_RECEIPTS``: receipts scored in memory (default 5 000 000; customers = 1/5);
- ``FIDELIS_BENCH_CSV_RECEIPTS``: receipts in the CSV of the end-to-end benchmark (default
  1 000 000).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fidelis.core.engine import kernel
from fidelis.core.batch import ReceiptBatch
from fidelis.core.program.tables import ProgramTables, compile_program
from fidelis.core.program.model import Program, parse_program
from fidelis.core.scores import Scores
from fidelis.core.state import CustomerState
from fidelis.core.synthetic import ChainColumns, benchmark_program_text, chain_columns

from .peers import PeerRules, peer_rules

RECEIPT_COUNT = int(os.environ.get("FIDELIS_BENCH_RECEIPTS", 5_000_000))
CSV_RECEIPT_COUNT = int(os.environ.get("FIDELIS_BENCH_CSV_RECEIPTS", 1_000_000))
RECEIPTS_PER_CUSTOMER = 5
CARD_NUMBER_DIGITS = 10


@pytest.fixture(scope="session")
def chain() -> ChainColumns:
    columns = chain_columns(RECEIPT_COUNT, customer_count=max(1, RECEIPT_COUNT // RECEIPTS_PER_CUSTOMER))
    # reduceat-based peers need every receipt to have a line; the generator guarantees it.
    assert (np.diff(columns.line_offsets) > 0).all()
    return columns


@pytest.fixture(scope="session")
def program(chain: ChainColumns) -> Program:
    return parse_program(benchmark_program_text(timezone=chain.timezone, store_count=chain.store_count))


@pytest.fixture(scope="session")
def compiled(program: Program) -> ProgramTables:
    return compile_program(program)


@pytest.fixture(scope="session")
def rules(program: Program, chain: ChainColumns) -> PeerRules:
    return peer_rules(program, list(chain.category_names), chain.store_names)


def receipt_batch_from_columns(chain: ChainColumns) -> ReceiptBatch:
    """A batch straight from the numeric columns, as the readers would build it.

    Card numbers become the strings a file carries (with leading zeros); receipt ids are
    placeholders, read by the kernel only to name a receipt in an error.
    """
    anonymous = chain.customer_index < 0
    card_numbers = pc.utf8_lpad(pc.cast(pa.array(chain.customer_number), pa.string()), CARD_NUMBER_DIGITS, "0")
    customer_id = pc.take(card_numbers, pa.array(np.maximum(chain.customer_index, 0), mask=anonymous))
    return ReceiptBatch(
        receipt_id=pc.cast(pa.array(np.arange(chain.receipt_count)), pa.string()),
        customer_id=customer_id,
        store_code=chain.store_index,
        instant_us=chain.instant_us,
        local_day=chain.local_day,
        local_minute=chain.local_minute,
        local_month=chain.local_month,
        line_offsets=chain.line_offsets,
        line_category_code=chain.line_category_code,
        line_qty=chain.line_qty,
        line_amount_minor=chain.line_amount_minor,
        store_names=chain.store_names,
        category_names=list(chain.category_names),
    )


@dataclass
class KernelWorkload:
    """A prepared batch and a customer state that can be reset to its unscored snapshot.

    Scoring updates the state in place, so every timed round starts from ``reset_state()``:
    the snapshot is copied back into the same arrays, outside the timed region.
    """

    prepared: kernel.PreparedBatch
    state: CustomerState
    fresh_records: np.ndarray
    fresh_rolling_totals: np.ndarray
    fresh_tier_reached_month: np.ndarray
    out: Scores

    @classmethod
    def build(cls, batch: ReceiptBatch, compiled: ProgramTables) -> "KernelWorkload":
        state = kernel.new_state(compiled)
        prepared = kernel.prepare(batch, compiled, state)
        return cls(
            prepared=prepared,
            state=state,
            fresh_records=state.records.copy(),
            fresh_rolling_totals=state.rolling_totals.copy(),
            fresh_tier_reached_month=state.tier_reached_month.copy(),
            out=Scores.empty(len(batch)),
        )

    def __len__(self) -> int:
        return len(self.prepared.batch)

    def reset_state(self) -> None:
        np.copyto(self.state.records, self.fresh_records)
        np.copyto(self.state.rolling_totals, self.fresh_rolling_totals)
        np.copyto(self.state.tier_reached_month, self.fresh_tier_reached_month)


@pytest.fixture(scope="session")
def kernel_workload(chain: ChainColumns, compiled: ProgramTables) -> KernelWorkload:
    return KernelWorkload.build(receipt_batch_from_columns(chain), compiled)


@pytest.fixture(scope="session")
def kernel_scores(kernel_workload: KernelWorkload, compiled: ProgramTables) -> Scores:
    """The kernel's scores of the workload: what every peer must reproduce."""
    kernel_workload.reset_state()
    scores = kernel.score(kernel_workload.prepared, compiled, kernel_workload.state, out=Scores.empty(len(kernel_workload)))
    kernel_workload.reset_state()
    return scores


@pytest.fixture(scope="session")
def session_medians() -> dict[str, float]:
    """Median seconds by benchmark name, so a benchmark can state its ratio to a peer run earlier."""
    return {}


@pytest.fixture
def record_throughput(benchmark, session_medians):
    """Put receipts/s (from the median) and speedups against earlier benchmarks into ``extra_info``.

    ``speedup_over`` maps an ``extra_info`` key to a benchmark run earlier in the session and
    stores how many times faster this one is; ``speedup_of`` stores how many times faster that
    one is than this. Does nothing when benchmarks are disabled (``--benchmark-disable``).
    """

    def record(
        name: str,
        receipt_count: int,
        *,
        speedup_over: dict[str, str] | None = None,
        speedup_of: dict[str, str] | None = None,
    ) -> None:
        if benchmark.stats is None:
            return
        median = benchmark.stats.stats.median
        session_medians[name] = median
        benchmark.extra_info["receipts"] = receipt_count
        benchmark.extra_info["receipts_per_s"] = receipt_count / median
        for key, other in (speedup_over or {}).items():
            if other in session_medians:
                benchmark.extra_info[key] = session_medians[other] / median
        for key, other in (speedup_of or {}).items():
            if other in session_medians:
                benchmark.extra_info[key] = median / session_medians[other]

    return record
