"""Return rows: validating them, and joining the returns of a batch to their sales.

A return row names a line of an original receipt (by position or sku); the rows of one
return must agree on who, where, when and which receipt. Once the originals are known
(from the same input or from the ledger), :func:`resolve_returns` turns the rows into
return receipts that the pro-rata rule in :mod:`fidelis.core.returns` scores.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..batch import ReceiptBatch, processing_order
from ..errors import InputProblem
from ..returns import OriginalReceipt, original_positions, remaining_amount
from .columns import (
    CONTROL_CHARACTER,
    EMPTY_VALUE,
    MAX_QTY,
    QTY_REASONS,
    TIMESTAMP_REASONS,
    InputSegment,
    holds_control_character,
    identifier_column,
    instant_column,
    majority,
    qty_column,
)


@dataclass(frozen=True)
class ReturnLine:
    """One valid return row: units of one line of the original receipt brought back.

    The line is named by ``line`` (its position on the original, from 1) or by ``sku``.
    """

    return_id: str
    customer_id: str | None
    store_id: str
    instant_us: int
    original_receipt_id: str
    line: int | None
    sku: str | None
    qty: int
    source: str
    row: int
    #: the row's index among all input rows of the check
    input_row: int = 0


def check_return_rows(
    segments: list[InputSegment], timezone: str
) -> tuple[list[ReturnLine], list[InputProblem], np.ndarray]:
    """Validate return rows: (the good ones, every problem, which rows were rejected).

    A return may span rows (one per line brought back); its rows must agree on who, where,
    when and which receipt, and a return with any bad row is rejected whole. Returns are a
    small share of rows, so they are checked row by row.
    """
    rows: list[dict] = []
    for segment in segments:
        table = segment.table
        count = table.num_rows

        def text(name: str) -> list[str | None]:
            if name not in table.column_names:
                return [None] * count
            column, _ = identifier_column(table.column(name), allow_integers=name != "customer_id")
            values = (column if column is not None else table.column(name).cast(pa.string())).to_pylist()
            return [value if value not in (None, "") else None for value in values]

        instant = instant_column(table.column("ts"), timezone)
        quantity = qty_column(table.column("qty"))
        numbers = segment.source_rows(np.arange(count)).tolist()
        columns = {name: text(name) for name in ("receipt_id", "customer_id", "store_id", "original_receipt_id",
                                                 "sku", "line")}
        for i in range(count):
            reasons = [(name, CONTROL_CHARACTER) for name in ("receipt_id", "customer_id", "store_id",
                                                               "original_receipt_id", "sku")
                       if columns[name][i] is not None and holds_control_character(columns[name][i])]
            for name in ("receipt_id", "store_id"):
                if columns[name][i] is None:
                    reasons.append((name, EMPTY_VALUE))
            if columns["original_receipt_id"][i] is None:
                reasons.append(("original_receipt_id", "a return row needs the id of the receipt it returns"))
            if instant is None or instant[1][i]:
                reasons.append(("ts", TIMESTAMP_REASONS[instant[1][i]] if instant else "not a timestamp"))
            if quantity is None or quantity[1][i]:
                reasons.append(("qty", QTY_REASONS[quantity[1][i]] if quantity else "qty must be a whole number"))
            line = columns["line"][i]
            if line is not None and not (line.isdigit() and 1 <= int(line) <= MAX_QTY):
                reasons.append(("line", "the line's position on the original receipt, a whole number from 1"))
            elif line is None and columns["sku"][i] is None:
                reasons.append(("line", "a return row names the line returned by its position (line) or its sku"))
            rows.append({
                "index": len(rows), "input_row": segment.start + i, "source": segment.source, "row": numbers[i], "reasons": reasons,
                "values": {name: values[i] for name, values in columns.items()},
                "instant_us": int(instant[0][i]) if instant is not None else 0,
                "qty": int(quantity[0][i]) if quantity is not None else 0,
            })
    by_return: dict[str, list[dict]] = {}
    for row in rows:
        by_return.setdefault(row["values"]["receipt_id"] or "", []).append(row)
    for return_id, members in by_return.items():
        if not return_id:
            continue
        for name in ("customer_id", "store_id", "ts", "original_receipt_id"):
            voters = [row for row in members if name != "ts" or not any(column == "ts" for column, _ in row["reasons"])]
            keys = [row["instant_us"] if name == "ts" else row["values"][name] for row in voters]
            outvoted, said = majority(keys)
            if len(outvoted):
                shown = (_utc_text(said) if name == "ts" else voters[keys.index(said)]["values"][name]) or ""
                reason = f"the rows of return {return_id!r} disagree on {name}: {keys.count(said)} of {len(keys)} say {shown!r}"
                for position in outvoted:
                    voters[position]["reasons"].append((name, reason))
    good, problems = [], []
    rejected = np.zeros(len(rows), dtype=bool)
    for return_id, members in by_return.items():
        bad = any(row["reasons"] for row in members) or not return_id
        for row in members:
            if bad:
                rejected[row["index"]] = True
                for column, reason in row["reasons"]:
                    shown = row["values"].get(column) if column != "ts" else None
                    problems.append(InputProblem(row["source"], row["row"], column, shown, reason))
                continue
            values = row["values"]
            good.append(ReturnLine(
                return_id=return_id, customer_id=values["customer_id"], store_id=values["store_id"],
                instant_us=row["instant_us"], original_receipt_id=values["original_receipt_id"],
                line=int(values["line"]) if values["line"] is not None else None, sku=values["sku"],
                qty=row["qty"], source=row["source"], row=row["row"], input_row=row["input_row"],
            ))
    problems.sort(key=lambda problem: (problem.file, problem.row or 0))
    return good, problems, rejected


def originals_outside(batch: ReceiptBatch) -> list[str]:
    """Ids of the originals of the batch's returns that are not in the batch (to look up
    where they are stored), each once."""
    missing = batch.is_return & (original_positions(batch) < 0)
    if not missing.any():
        return []
    return list(dict.fromkeys(batch.original_receipt_id.filter(pa.array(missing)).to_pylist()))




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
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    batch = ReceiptBatch.build(
        receipt_id=pa.array(ids, pa.string()),
        customer_id=pa.array(customers, pa.string()),
        store_code=np.array(stores, dtype=np.int32),
        store_names=list(store_names),
        instant_us=np.array(instants, dtype=np.int64),
        timezone=timezone,
        line_offsets=offsets,
        line_category_code=np.array(categories, dtype=np.int32),
        category_names=list(category_names),
        line_qty=np.concatenate(quantities).astype(np.int32),
        line_amount_minor=np.concatenate(amounts).astype(np.int64),
        line_sku=pa.array(skus, pa.string()),
        original_receipt_id=pa.array(originals, pa.string()),
        metadata={"first_input_row": np.array([members[0].input_row for *_, members in accepted], dtype=np.int64)},
    )
    order = processing_order(batch.instant_us, batch.receipt_id)
    return batch if order is None else batch.take(order)


def _utc_text(instant_us: int) -> str:
    """An instant as ISO 8601 UTC text, for messages."""
    return dt.datetime.fromtimestamp(instant_us / 1_000_000, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
