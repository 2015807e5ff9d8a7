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
the compiled kernel takes; :mod:`fidelis.core.reference` implements the same rule on its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .batch import ReceiptBatch, processing_order
from .errors import InputProblem, ScoringError
from .localtime import local_calendar

if TYPE_CHECKING:
    from .io import ReturnLine

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


def originals_outside(batch: ReceiptBatch) -> list[str]:
    """Ids of the originals of the batch's returns that are not in the batch (to look up
    where they are stored), each once."""
    missing = batch.is_return & (original_positions(batch) < 0)
    if not missing.any():
        return []
    return list(dict.fromkeys(batch.original_receipt_id.filter(pa.array(missing)).to_pylist()))


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


def with_returns(sales: ReceiptBatch, returned: ReceiptBatch | None) -> ReceiptBatch:
    """Sales and their resolved returns as one batch in processing order, with the sales'
    metadata (and every receipt's first input row)."""
    if returned is None:
        return sales
    joined = ReceiptBatch.concat([sales, returned])
    joined.metadata = {**sales.metadata, "first_input_row": joined.metadata["first_input_row"]}
    return joined


def resolve_returns(
    lines: list["ReturnLine"],
    sales: ReceiptBatch,
    stored: Callable[[list[str]], Mapping[str, OriginalReceipt]],
    timezone: str,
) -> tuple[ReceiptBatch | None, list[InputProblem]]:
    """Turn valid return rows into return receipts against their originals.

    An original is looked up among ``stored`` receipts first (the ledger), then among
    ``sales`` (this input). Refused with a reason, every row of the return: an unknown
    original, a line it does not have, more units than were bought (counting earlier
    returns), a customer that is not the original's, a return before its original.
    Returns the return receipts as a batch (None if there are none) and the problems.
    """
    by_return: dict[str, list] = {}
    for line in lines:
        by_return.setdefault(line.return_id, []).append(line)
    if not by_return:
        return None, []
    wanted = list(dict.fromkeys(line.original_receipt_id for line in lines))
    originals = dict(stored(wanted))
    originals.update(_batch_originals(sales, [i for i in wanted if i not in originals]))
    # Returns of one original are taken in processing order: each is resolved against the
    # stored returns before it and this input's earlier ones (so a return sent again resolves
    # as it was stored: a duplicate), and all together may not take more than was bought.
    # Stored returns that this input holds again are repeats, not counted.
    order = sorted(by_return, key=lambda return_id: (by_return[return_id][0].instant_us, return_id))
    repeated = set(by_return)
    taken = {receipt_id: np.zeros(len(original.line_qty), dtype=np.int64) for receipt_id, original in originals.items()}
    problems: list[InputProblem] = []
    accepted: list[tuple[str, OriginalReceipt, np.ndarray, list]] = []
    for return_id in order:
        members = by_return[return_id]
        first = members[0]
        original = originals.get(first.original_receipt_id)
        reason = None
        if original is None:
            reason = ("original_receipt_id", f"return of unknown receipt {first.original_receipt_id!r} (not in the "
                                             "ledger nor in this input)")
        elif first.customer_id is not None and first.customer_id != original.customer_id:
            reason = ("customer_id", f"receipt {original.receipt_id!r} is customer {original.customer_id!r}'s, "
                                     f"not {first.customer_id!r}'s")
        elif (first.instant_us, return_id) <= (original.instant_us, original.receipt_id):
            reason = ("ts", f"the return comes before its original receipt {original.receipt_id!r}")
        units = np.zeros(0 if original is None else len(original.line_qty), dtype=np.int64)
        before = None
        if reason is None:
            before = original.returned_before((first.instant_us, return_id), repeated) + taken[original.receipt_id]
            reason = _take_units(members, original, before, units)
        if reason is None:
            already = original.returned_before(None, repeated) + taken[original.receipt_id]
            left = original.line_qty - already - units
            if (left < 0).any():
                line = int(np.flatnonzero(left < 0)[0])
                reason = ("qty", f"more than was bought: line {line + 1} of receipt {original.receipt_id!r} had "
                                 f"{int(original.line_qty[line])} units, {int(already[line])} returned before, "
                                 f"{int(units[line])} now")
        if reason is not None:
            column, text = reason
            problems += [InputProblem(member.source, member.row, column, None, text) for member in members]
            continue
        taken[original.receipt_id] += units
        accepted.append((return_id, original, before, units, members))
    if not accepted:
        return None, problems
    return _return_batch(accepted, timezone), problems


def _take_units(members: list, original: OriginalReceipt, returned: np.ndarray,
                units: np.ndarray) -> tuple[str, str] | None:
    """Add each row's units to the line it names (a sku fills its lines in order, each up to
    what earlier returns, ``returned``, left of it); a reason if a row names a line the
    original does not have."""
    for member in members:
        if member.line is not None:
            if member.line > len(units):
                return ("line", f"receipt {original.receipt_id!r} has {len(units)} lines; there is no line "
                                f"{member.line}")
            units[member.line - 1] += member.qty
            continue
        matching = [i for i, sku in enumerate(original.line_sku) if sku == member.sku]
        if not matching:
            return ("sku", f"receipt {original.receipt_id!r} has no line with sku {member.sku!r}")
        wanted = member.qty
        for i in matching:  # the sku's lines in order, each up to what it has left
            room = int(original.line_qty[i] - returned[i] - units[i])
            take = min(max(room, 0), wanted) if i != matching[-1] else wanted
            units[i] += take
            wanted -= take
    return None


def _batch_originals(sales: ReceiptBatch, receipt_ids: list[str]) -> dict[str, OriginalReceipt]:
    """Sale receipts of ``sales`` as originals (not yet scored: no context, nothing returned)."""
    if not receipt_ids or not len(sales):
        return {}
    found = pc.index_in(pa.array(receipt_ids, pa.string()), value_set=sales.receipt_id)
    originals = {}
    offsets = sales.line_offsets
    for receipt_id, position in zip(receipt_ids, found.to_pylist()):
        if position is None:
            continue
        lines = slice(offsets[position], offsets[position + 1])
        originals[receipt_id] = OriginalReceipt(
            receipt_id=receipt_id,
            customer_id=sales.customer_id[position].as_py(),
            store_id=sales.store_names[sales.store_code[position]],
            instant_us=int(sales.instant_us[position]),
            local_day=int(sales.local_day[position]),
            local_minute=int(sales.local_minute[position]),
            local_month=int(sales.local_month[position]),
            line_category=[sales.category_names[code] for code in sales.line_category_code[lines]],
            line_sku=[None] * (lines.stop - lines.start) if sales.line_sku is None
            else sales.line_sku[lines.start:lines.stop].to_pylist(),
            line_qty=sales.line_qty[lines].astype(np.int64),
            line_amount_minor=sales.line_amount_minor[lines].astype(np.int64),
            tier=0, visit_rank=0, earned_before_today=0, birthday=False,
            returned_qty=np.zeros(lines.stop - lines.start, dtype=np.int64),
        )
    return originals


def _return_batch(accepted: list, timezone: str) -> ReceiptBatch:
    """Return receipts as a batch: each with its original's lines, the units it brings back,
    and the amount those units take back (pro rata, from what was left ``before`` it)."""
    store_names: dict[str, int] = {}
    category_names: dict[str, int] = {}
    ids, customers, originals, stores, instants, counts = [], [], [], [], [], []
    categories, quantities, amounts, skus = [], [], [], []
    for return_id, original, before, units, members in accepted:
        after = before + units
        qty, amount = original.line_qty, original.line_amount_minor
        ids.append(return_id)
        customers.append(original.customer_id)
        originals.append(original.receipt_id)
        stores.append(store_names.setdefault(members[0].store_id, len(store_names)))
        instants.append(members[0].instant_us)
        counts.append(len(qty))
        categories += [category_names.setdefault(name, len(category_names)) for name in original.line_category]
        quantities.append(units)
        amounts.append(remaining_amount(amount, qty, qty - before) - remaining_amount(amount, qty, qty - after))
        skus += original.line_sku
    instant_us = np.array(instants, dtype=np.int64)
    calendar = local_calendar(instant_us, timezone)
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    batch = ReceiptBatch(
        receipt_id=pa.array(ids, pa.string()),
        customer_id=pa.array(customers, pa.string()),
        store_code=np.array(stores, dtype=np.int32),
        instant_us=instant_us,
        local_day=calendar.local_day,
        local_minute=calendar.local_minute,
        local_month=calendar.local_month,
        line_offsets=offsets,
        line_category_code=np.array(categories, dtype=np.int32),
        line_qty=np.concatenate(quantities).astype(np.int32),
        line_amount_minor=np.concatenate(amounts).astype(np.int64),
        store_names=list(store_names),
        category_names=list(category_names),
        line_sku=pa.array(skus, pa.string()),
        original_receipt_id=pa.array(originals, pa.string()),
        metadata={"first_input_row": np.array([members[0].input_row for *_, members in accepted], dtype=np.int64)},
    )
    order = processing_order(batch.instant_us, batch.receipt_id)
    return batch if order is None else batch.take(order)
