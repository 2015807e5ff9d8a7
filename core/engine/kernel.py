"""The compiled engine's public face: score batches with the Cython kernel.

:func:`score` scores one batch against a customer state and updates the state in place,
so a history can be scored batch by batch (a bulk load, a day of real-time receipts) with
exactly the results of scoring it at once. With ``threads > 1`` customers are split by
partition (partition.py) across threads that run the kernel concurrently without the GIL.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from ..batch import CustomerTable, ReceiptBatch
from ..errors import ExtensionNotBuiltError, IncompatibleStateError, ScoringError
from ..program.model import MAX_POINTS_PER_RECEIPT, MAX_RECEIPT_AMOUNT_MINOR
from ..program.tables import ProgramTables, padded_table
from ..returns import OriginalReceipt
from ..scores import Scores
from ..state import CustomerState
from .return_arrays import kernel_returns

try:
    from . import _kernel
except ImportError as error:  # pragma: no cover - exercised only on a broken install
    raise ExtensionNotBuiltError(
        "the compiled kernel fidelis.core.engine._kernel is not built; install the package with "
        "`pip install -e .` (needs a C compiler) or use --engine reference"
    ) from error

_STATUS_REASONS = {
    _kernel.KernelStatus.AMOUNT_OUT_OF_RANGE: (
        f"the eligible amount exceeds the engine's exact-arithmetic bound of "
        f"{MAX_RECEIPT_AMOUNT_MINOR} minor units per receipt"
    ),
    _kernel.KernelStatus.POINTS_OUT_OF_RANGE: (
        f"the receipt would earn more than {MAX_POINTS_PER_RECEIPT} points, "
        "the engine's bound per receipt"
    ),
    _kernel.KernelStatus.TOTAL_OUT_OF_RANGE: "a customer's running total would overflow 64-bit integers",
    _kernel.KernelStatus.OUT_OF_ORDER: (
        "the receipt is older than the customer's last scored receipt; history is never "
        "rescored out of order"
    ),
}


@dataclass
class PreparedBatch:
    """A batch with customer ids resolved to indices and vocabularies mapped to classes.

    Preparing is separate from scoring so that a batch can be scored repeatedly (benchmarks,
    what-if replays) without redoing the id lookups.
    """

    batch: ReceiptBatch
    compiled: ProgramTables
    customer_index: np.ndarray
    store_class_of_code: np.ndarray
    category_class_of_code: np.ndarray


def prepare(batch: ReceiptBatch, compiled: ProgramTables, state: CustomerState,
            customer_index: np.ndarray | None = None) -> PreparedBatch:
    """Resolve customer ids (registering new customers in ``state``) and map vocabularies.

    ``customer_index``: each receipt's index in ``state`` (-1: anonymous), already known
    (a replay of stored receipts), so the ids are not looked up again.
    """
    if len(batch) and int(batch.local_day.min()) < 0:
        raise ValueError("the batch has local dates before 1970, which the readers never produce")
    if customer_index is not None and len(customer_index) and int(customer_index.max()) >= len(state):
        raise IncompatibleStateError("the batch's customer indices are beyond the state's customers")
    return PreparedBatch(
        batch=batch,
        compiled=compiled,
        customer_index=state.index_of(batch.customer_id) if customer_index is None
        else np.ascontiguousarray(customer_index, dtype=np.int32),
        store_class_of_code=padded_table(compiled.store_classes(batch.store_names), np.int32),
        category_class_of_code=padded_table(compiled.category_classes(batch.category_names), np.int32),
    )


def score_partitions(
    parts: list[PreparedBatch],
    compiled: ProgramTables,
    state: CustomerState,
    *,
    out: list[Scores] | None = None,
) -> list[Scores]:
    """Score customer-disjoint parts (from :func:`.partition.partition`) concurrently, one thread each."""
    out = out or [None] * len(parts)
    with ThreadPoolExecutor(max_workers=len(parts)) as pool:
        return list(pool.map(lambda k: score(parts[k], compiled, state, out=out[k]), range(len(parts))))


def check_compatible(prepared: PreparedBatch, compiled: ProgramTables, state: CustomerState) -> None:
    """Refuse combinations the kernel would read out of bounds with, before it runs."""
    if prepared.compiled is not compiled:
        raise IncompatibleStateError("the batch was prepared for another compiled program")
    if (state.tier_count, state.rolling_months, state.reached_tiers) != (
        compiled.tier_count, compiled.tracks_rolling_months, compiled.tracks_reached_tiers
    ):
        raise IncompatibleStateError(
            "the customer state was kept for a program with other tiers, period or hold; "
            "it cannot be continued under this one"
        )
    if len(prepared.customer_index) and int(prepared.customer_index.max()) >= len(state):
        raise IncompatibleStateError("the batch was prepared against a state with more customers than this one")


def score(
    batch: ReceiptBatch | PreparedBatch,
    compiled: ProgramTables,
    state: CustomerState,
    *,
    out: Scores | None = None,
    threads: int = 1,
    chunk_receipts: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    originals: Mapping[str, OriginalReceipt] | None = None,
) -> Scores:
    """Score ``batch`` (in processing order) and fold it into ``state``.

    ``out`` may be a preallocated :class:`Scores` of at least the batch's length, reused
    across calls. ``on_progress(n)`` is called after every ``chunk_receipts`` receipts (for
    a progress bar; chunking does not change any result). A return whose original is not in
    the batch is re-scored from ``originals`` (receipt id -> the stored original). Raises :class:`ScoringError` naming the receipt if a receipt is beyond the
    engine's exact bounds or older than its customer's history; the state then holds the
    receipts before it (single thread) and should be discarded or restored.
    """
    prepared = batch if isinstance(batch, PreparedBatch) else prepare(batch, compiled, state)
    check_compatible(prepared, compiled, state)
    receipts = prepared.batch
    count = len(receipts)
    if out is None:
        out = Scores.empty(count)
    elif len(out) < count:
        raise ValueError(f"the output buffers hold {len(out)} receipts, the batch has {count}")
    if count == 0:
        return out[:0]
    arguments = kernel_arguments(prepared, compiled, state, out, originals)
    chunk = chunk_receipts or count
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        for start in range(0, count, chunk):
            stop = min(start + chunk, count)
            if pool is None:
                results = [_kernel.score_receipts(*arguments, 0, 1, start, stop)]
            else:
                results = list(pool.map(
                    lambda part: _kernel.score_receipts(*arguments, part, threads, start, stop),
                    range(threads),
                ))
            failures = [(at, status) for status, at in results if status != _kernel.KernelStatus.OK]
            if failures:
                stopped_at, status = min(failures)
                raise _scoring_error(status, stopped_at, prepared, state)
            if on_progress is not None:
                on_progress(stop - start)
    finally:
        if pool is not None:
            pool.shutdown()
    return out if len(out) == count else out[:count]


def kernel_arguments(
    prepared: PreparedBatch,
    compiled: ProgramTables,
    state: CustomerState,
    out: Scores,
    originals: Mapping[str, OriginalReceipt] | None = None,
) -> tuple:
    """The arrays ``_kernel.score_receipts`` reads and writes, contiguous and of its C types.

    Followed by ``part, part_count, start, stop`` they make one kernel call.
    """
    receipts = prepared.batch
    returns = kernel_returns(receipts, originals, compiled.store_classes, prepared.store_class_of_code)
    return (
        compiled,
        prepared.customer_index,
        _int32(receipts.store_code),
        prepared.store_class_of_code,
        np.ascontiguousarray(receipts.instant_us, dtype=np.int64),
        _int32(receipts.local_day),
        np.ascontiguousarray(receipts.local_minute, dtype=np.int16),
        _int32(receipts.local_month),
        np.ascontiguousarray(receipts.line_offsets, dtype=np.int64),
        padded_table(_int32(receipts.line_category_code), np.int32),
        prepared.category_class_of_code,
        padded_table(_int32(receipts.line_qty), np.int32),
        np.ascontiguousarray(receipts.line_amount_minor, dtype=np.int64)
        if receipts.line_count else np.zeros(1, dtype=np.int64),
        returns.return_index,
        returns.rows,
        returns.line_category_code,
        returns.line_qty,
        returns.line_amount_minor,
        state.records,
        state.rolling_totals,
        state.tier_reached_month,
        out.tier,
        out.rate_points,
        out.basket_points,
        out.visit_points,
        out.welcome_points,
        out.cap_points,
        out.points,
        out.visit_rank,
        out.earned_before_today,
        out.birthday,
    )


def _int32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.int32)


def _scoring_error(status: int, receipt: int, prepared: PreparedBatch, state: CustomerState) -> ScoringError:
    batch = prepared.batch
    reason = _STATUS_REASONS[status]
    if status == _kernel.KernelStatus.OUT_OF_ORDER:
        customer = int(prepared.customer_index[receipt])
        last = int(state.records["last_instant_us"][customer])
        reason += (
            f" (customer {state.customer_ids[customer]!r}: receipt at {_utc(batch.instant_us[receipt])}, "
            f"last scored receipt at {_utc(last)})"
        )
    return ScoringError(reason, batch.receipt_id[receipt].as_py())


def _utc(instant_us: int) -> str:
    return str(np.datetime64(int(instant_us), "us")) + "Z"


def new_state(compiled: ProgramTables, customers: CustomerTable | None = None) -> CustomerState:
    """An empty state for ``compiled``'s rules, with the customers file's birth months."""
    state = CustomerState.for_program(compiled, capacity=max(1024, len(customers) if customers else 0))
    if customers is not None:
        state.register_customers(customers)
    return state


def standing_of(compiled: ProgramTables, records: np.ndarray, rolling_totals: np.ndarray,
                tier_reached_month: np.ndarray, local_month: int) -> tuple[np.ndarray, np.ndarray]:
    """Status tiers (int8) and qualifying totals (int64, measure units) for a receipt in
    ``local_month``, from rows of the state arrays (:meth:`CustomerState.arrays`, or stored
    state read without its directory).

    This is the kernel's own status function (PROGRAM.md §4), so month-end tier reports and
    balance lookups agree with the tier the next receipt is scored at. The rows must hold no
    receipt after ``local_month``: status in the past is not recoverable from them.
    """
    if len(records) and int(records["last_visit_month"].max()) > local_month:
        raise ValueError(
            f"the customer state already holds receipts after local month {local_month}; "
            "status as of an earlier month cannot be computed from it"
        )
    tiers = np.empty(len(records), dtype=np.int8)
    totals = np.empty(len(records), dtype=np.int64)
    if len(records):
        _kernel.standing_as_of(compiled, np.ascontiguousarray(records), np.ascontiguousarray(rolling_totals),
                               np.ascontiguousarray(tier_reached_month), local_month, tiers, totals)
    return tiers, totals
