"""A batch's returns as the flat arrays the compiled kernel re-scores them from.

One row per return receipt (its original's context: status, day, visit rank, the day's cap
usage, birthday) and the lines the original keeps, pro-rata by :func:`fidelis.core.returns.remaining_amount`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from ..batch import ReceiptBatch
from ..errors import ScoringError
from ..returns import OriginalReceipt, original_positions, remaining_amount

#: Mirrors ``return_row_t`` in ``_types.pxd`` field for field (tests check the layout).
RETURN_ROW_DTYPE = np.dtype(
    [
        ("original_position", np.int64),
        ("before_start", np.int64),
        ("after_start", np.int64),
        ("after_end", np.int64),
        ("context_earned_before_today", np.int64),
        ("original_store_class", np.int32),
        ("original_day", np.int32),
        ("original_month", np.int32),
        ("context_visit_rank", np.int32),
        ("original_minute", np.int16),
        ("context_tier", np.int8),
        ("context_birthday", np.int8),
        ("reserved", np.int32),
    ],
    align=True,
)



@dataclass
class KernelReturns:
    """A batch's returns as the kernel takes them (see ``score_receipts`` in _kernel.pyx)."""

    return_index: np.ndarray
    rows: np.ndarray
    line_category_code: np.ndarray
    line_qty: np.ndarray
    line_amount_minor: np.ndarray

    @classmethod
    def none(cls) -> "KernelReturns":
        return cls(np.full(1, -1, np.int32), np.zeros(1, RETURN_ROW_DTYPE), np.zeros(1, np.int32),
                   np.zeros(1, np.int32), np.zeros(1, np.int64))



def kernel_returns(
    batch: ReceiptBatch,
    originals: Mapping[str, OriginalReceipt] | None,
    store_classes: Callable[[list[str]], np.ndarray],
    store_class_of_code: np.ndarray,
) -> KernelReturns:
    """The kernel's return arrays for ``batch``: for each return, its original's facts and
    context (from the batch or from ``originals``), and the original's lines left before and
    after it. Raises :class:`ScoringError` for a return the readers should have refused."""
    returns = np.flatnonzero(batch.is_return)
    if not len(returns):
        return KernelReturns.none()
    positions = original_positions(batch)
    original_ids = batch.original_receipt_id.to_pylist()
    receipt_ids = batch.receipt_id
    offsets = batch.line_offsets
    rows = np.zeros(len(returns), dtype=RETURN_ROW_DTYPE)
    categories, quantities, amounts = [], [], []
    returned_so_far: dict[str, np.ndarray] = {}
    written = 0
    for row, receipt in enumerate(returns.tolist()):
        original_id = original_ids[receipt]
        position = int(positions[receipt])
        stored = None
        if position < 0:
            stored = (originals or {}).get(original_id)
            if stored is None:
                raise ScoringError(f"return of unknown receipt {original_id!r}", receipt_ids[receipt].as_py())
            qty, amount = stored.line_qty, stored.line_amount_minor
            rows[row] = (-1, 0, 0, 0, stored.earned_before_today, store_classes([stored.store_id])[0],
                         stored.local_day, stored.local_month, stored.visit_rank, stored.local_minute,
                         stored.tier, stored.birthday, 0)
        else:
            if position > receipt:
                raise ScoringError(f"return of receipt {original_id!r}, which comes after it",
                                   receipt_ids[receipt].as_py())
            lines = slice(offsets[position], offsets[position + 1])
            qty, amount = batch.line_qty[lines], batch.line_amount_minor[lines]
            rows[row] = (position, 0, 0, 0, 0, store_class_of_code[batch.store_code[position]],
                         batch.local_day[position], batch.local_month[position], 0,
                         batch.local_minute[position], 0, 0, 0)
        lines = slice(offsets[receipt], offsets[receipt + 1])
        returned_now = batch.line_qty[lines]
        if len(returned_now) != len(qty):
            raise ScoringError(f"the return has {len(returned_now)} lines, its original {original_id!r} "
                               f"has {len(qty)}", receipt_ids[receipt].as_py())
        so_far = returned_so_far.get(original_id)
        if so_far is None:
            so_far = np.zeros(len(qty), np.int64) if stored is None else stored.returned_qty.astype(np.int64)
        before_left = qty - so_far
        after_left = before_left - returned_now
        if (after_left < 0).any():
            raise ScoringError(f"the return takes back more of receipt {original_id!r} than was bought",
                               receipt_ids[receipt].as_py())
        returned_so_far[original_id] = so_far + returned_now
        code = batch.line_category_code[lines]
        for left in (before_left, after_left):
            categories.append(code)
            quantities.append(left)
            amounts.append(remaining_amount(amount, qty, left))
        count = len(qty)
        rows[row]["before_start"] = written
        rows[row]["after_start"] = written + count
        rows[row]["after_end"] = written + 2 * count
        written += 2 * count
    return_index = np.full(len(batch), -1, dtype=np.int32)
    return_index[returns] = np.arange(len(returns), dtype=np.int32)
    return KernelReturns(
        return_index=return_index,
        rows=rows,
        line_category_code=_at_least_one(np.concatenate(categories).astype(np.int32)),
        line_qty=_at_least_one(np.concatenate(quantities).astype(np.int32)),
        line_amount_minor=_at_least_one(np.concatenate(amounts).astype(np.int64)),
    )


def _at_least_one(array: np.ndarray) -> np.ndarray:
    """The kernel takes the address of element 0: an empty array gets one unused element."""
    return array if len(array) else np.zeros(1, dtype=array.dtype)


