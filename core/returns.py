"""Returns: goods brought back, and the points they take back.

A return names its original receipt and the quantities returned of its lines. The points
it takes back are the original's points minus the points the original earns re-scored
without the returned goods, in the context it was first scored in (status, promotions,
visit rank, the day's cap usage, birthday): a return that drops a receipt below a basket
bonus's threshold takes the bonus back too, and one that does not reach the bonus leaves it.
Welcome and visit bonuses stay: the visit happened. The returned measure (spend, or earned
points) leaves the qualifying total the original counted in.

**Pro-rata amounts** (the rounding rule of a partial return): a line of ``qty`` units for
``amount`` keeps ``floor(amount × left / qty)`` when ``left`` units are kept, so returning
units one at a time takes back exactly what returning them at once does, a full return
takes back the whole amount, and the refunded amount is never less than its share.

This module holds the rule, the stored originals a return is re-scored from, and the arrays

This module holds the rule and the stored originals a return is re-scored from; the arrays the
compiled kernel takes are :mod:`fidelis.core.engine.return_arrays`, the return rows of an input
:mod:`fidelis.core.ingest.return_rows`, and :mod:`fidelis.core.engine.reference` implements
the same rule on its own.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .batch import ReceiptBatch


def remaining_amount(amount_minor: np.ndarray, qty: np.ndarray, left: np.ndarray) -> np.ndarray:
    """What lines keep of their amount with ``left`` of ``qty`` units kept: floor(amount × left / qty).

    Computed without overflow for any amount within the engine's bound and any int32 qty.
    """
    amount_minor = np.asarray(amount_minor, dtype=np.int64)
    qty = np.maximum(np.asarray(qty, dtype=np.int64), 1)
    left = np.asarray(left, dtype=np.int64)
    whole, part = np.divmod(amount_minor, qty)
    return whole * left + part * left // qty


@dataclass(frozen=True)
class OriginalReceipt:
    """A scored sale receipt a return may refer to, as stored: what re-scoring it needs.

    ``returned_qty`` is what earlier returns already took of each line.
    """

    receipt_id: str
    customer_id: str | None
    store_id: str
    instant_us: int
    local_day: int
    local_minute: int
    local_month: int
    line_category: list[str]
    line_sku: list[str | None]
    line_qty: np.ndarray
    line_amount_minor: np.ndarray
    tier: int
    visit_rank: int
    earned_before_today: int
    birthday: bool
    returned_qty: np.ndarray
    #: each stored return of it: (instant, return id, units of each line)
    stored_returns: tuple[tuple[int, str, np.ndarray], ...] = ()

    def returned_before(self, point: tuple[int, str] | None, excluding: frozenset[str] | set[str] = frozenset(),
                        ) -> np.ndarray:
        """Units of each line its stored returns took before ``point`` in processing order
        (all of them with None), leaving out the returns ``excluding`` names."""
        total = np.zeros(len(self.line_qty), dtype=np.int64)
        for instant_us, return_id, units in self.stored_returns:
            if return_id not in excluding and (point is None or (instant_us, return_id) < point):
                total += units
        return total


def original_positions(batch: ReceiptBatch) -> np.ndarray:
    """For each receipt, the batch position of the original it returns (-1: sales, and
    returns whose original is not in the batch)."""
    positions = np.full(len(batch), -1, dtype=np.int64)
    if batch.original_receipt_id is None:
        return positions
    is_return = batch.is_return
    sale_ids = batch.receipt_id.filter(pa.array(~is_return))
    sale_positions = np.flatnonzero(~is_return)
    found = pc.index_in(batch.original_receipt_id, value_set=sale_ids)
    hit = found.is_valid().to_numpy(zero_copy_only=False) & is_return
    positions[hit] = sale_positions[found.fill_null(0).to_numpy(zero_copy_only=False)[hit]]
    return positions


