"""ReceiptBatch: receipts as numpy columns, line items in CSR layout, in processing order.

A batch is what the readers in :mod:`fidelis.core.ingest.receipts` produce and what both engines score.
It knows nothing of a program: categories and stores are held as codes into the batch's own
vocabularies, and the scorer maps those small vocabularies onto the program's. Local calendar
fields are precomputed (vectorised) from the chain's time zone, so the kernel does no time
arithmetic.

Receipts are sorted in processing order: by instant, then by ``receipt_id`` compared by code
point (PROGRAM.md §1). Line items of receipt ``r`` are ``line_offsets[r]:line_offsets[r + 1]``
in every ``line_*`` column, in file order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .localtime import local_calendar

#: 1970-01-01 was a Thursday; weekday 0 is Monday.
EPOCH_WEEKDAY = 3


@dataclass
class ReceiptBatch:
    """Columnar receipts.

    Parameters
    ----------
    receipt_id : pa.Array of string, shape (R,)
    customer_id : pa.Array of string, shape (R,); null for an anonymous receipt
    store_code : int32, shape (R,); index into ``store_names``
    instant_us : int64, shape (R,); microseconds since 1970-01-01T00:00Z
    local_day : int32, shape (R,); the local date as days since 1970-01-01
    local_minute : int16, shape (R,); minutes since local midnight, 0..1439
    local_month : int32, shape (R,); the local month as ``(year - 1970) * 12 + month - 1``
    line_offsets : int64, shape (R + 1,); CSR offsets into the line columns
    line_category_code : int32, shape (L,); index into ``category_names``
    line_qty : int32, shape (L,); ≥ 1
    line_amount_minor : int64, shape (L,); line total in minor units, ≥ 0
    store_names, category_names : list[str]; the batch's vocabularies
    line_sku : pa.Array of string, shape (L,), or None
    original_receipt_id : pa.Array of string, shape (R,), or None; on a return, the receipt it
        returns goods of (null on sales). A return's lines are its original's lines, one for
        one and in order, each with the quantity returned (0 for lines kept) and the amount
        that quantity takes back (:func:`fidelis.core.returns.remaining_amount`). None: no returns.
    metadata : dict; the readers record ``timezone``, ``minor_units``, ``sources`` and
        ``first_input_row`` (int64, shape (R,): each receipt's first line among all input rows)
    """

    receipt_id: pa.Array
    customer_id: pa.Array
    store_code: np.ndarray
    instant_us: np.ndarray
    local_day: np.ndarray
    local_minute: np.ndarray
    local_month: np.ndarray
    line_offsets: np.ndarray
    line_category_code: np.ndarray
    line_qty: np.ndarray
    line_amount_minor: np.ndarray
    store_names: list[str]
    category_names: list[str]
    line_sku: pa.Array | None = None
    original_receipt_id: pa.Array | None = None
    metadata: dict = field(default_factory=dict)

    @classmethod
    def build(cls, *, receipt_id: pa.Array, customer_id: pa.Array, store_code: np.ndarray, store_names: list[str],
              instant_us: np.ndarray, timezone: str, line_offsets: np.ndarray, line_category_code: np.ndarray,
              category_names: list[str], line_qty: np.ndarray, line_amount_minor: np.ndarray,
              line_sku: pa.Array | None = None, original_receipt_id: pa.Array | None = None,
              metadata: dict | None = None) -> "ReceiptBatch":
        """A batch from its receipts' instants and lines: the local calendar (day, minute,
        month in the chain's ``timezone``) is derived here, and every column gets its dtype,
        so every reader builds receipts the one way."""
        instant_us = np.ascontiguousarray(instant_us, dtype=np.int64)
        calendar = local_calendar(instant_us, timezone)
        return cls(
            receipt_id=receipt_id,
            customer_id=customer_id,
            store_code=np.ascontiguousarray(store_code, dtype=np.int32),
            instant_us=instant_us,
            local_day=calendar.local_day,
            local_minute=calendar.local_minute,
            local_month=calendar.local_month,
            line_offsets=np.ascontiguousarray(line_offsets, dtype=np.int64),
            line_category_code=np.ascontiguousarray(line_category_code, dtype=np.int32),
            line_qty=np.ascontiguousarray(line_qty, dtype=np.int32),
            line_amount_minor=np.ascontiguousarray(line_amount_minor, dtype=np.int64),
            store_names=store_names,
            category_names=category_names,
            line_sku=line_sku,
            original_receipt_id=original_receipt_id,
            metadata={} if metadata is None else metadata,
        )

    def __len__(self) -> int:
        return len(self.instant_us)

    @property
    def is_return(self) -> np.ndarray:
        """Which receipts are returns (bool, shape (R,))."""
        if self.original_receipt_id is None:
            return np.zeros(len(self), dtype=bool)
        return self.original_receipt_id.is_valid().to_numpy(zero_copy_only=False)

    @property
    def line_count(self) -> int:
        return int(self.line_offsets[-1])

    @property
    def local_weekday(self) -> np.ndarray:
        """0 = Monday … 6 = Sunday."""
        return ((self.local_day.astype(np.int64) + EPOCH_WEEKDAY) % 7).astype(np.int8)

    def take(self, receipt_indices: np.ndarray) -> "ReceiptBatch":
        """A batch of the given receipts (in the given order), lines carried along."""
        receipt_indices = np.ascontiguousarray(receipt_indices, dtype=np.int64)
        starts = self.line_offsets[receipt_indices]
        counts = self.line_offsets[receipt_indices + 1] - starts
        offsets = np.zeros(len(receipt_indices) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        line_indices = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1], dtype=np.int64)
        arrow_indices = pa.array(receipt_indices)
        return ReceiptBatch(
            receipt_id=self.receipt_id.take(arrow_indices),
            customer_id=self.customer_id.take(arrow_indices),
            store_code=self.store_code[receipt_indices],
            instant_us=self.instant_us[receipt_indices],
            local_day=self.local_day[receipt_indices],
            local_minute=self.local_minute[receipt_indices],
            local_month=self.local_month[receipt_indices],
            line_offsets=offsets,
            line_category_code=self.line_category_code[line_indices],
            line_qty=self.line_qty[line_indices],
            line_amount_minor=self.line_amount_minor[line_indices],
            store_names=self.store_names,
            category_names=self.category_names,
            line_sku=None if self.line_sku is None else self.line_sku.take(pa.array(line_indices)),
            original_receipt_id=None if self.original_receipt_id is None
            else self.original_receipt_id.take(arrow_indices),
            # per-receipt arrays in the metadata (such as first_input_row) follow their receipts
            metadata={
                key: value[receipt_indices] if isinstance(value, np.ndarray) and len(value) == len(self) else value
                for key, value in self.metadata.items()
            },
        )

    def slice(self, start: int, stop: int) -> "ReceiptBatch":
        """Receipts ``start:stop`` as a batch (a chunk of a larger history)."""
        return self.take(np.arange(start, min(stop, len(self)), dtype=np.int64))

    @classmethod
    def concat(cls, parts: list["ReceiptBatch"]) -> "ReceiptBatch":
        """The receipts of several batches as one, in processing order.

        Vocabularies are merged; metadata is the first part's, with per-receipt arrays joined.
        """
        if len(parts) == 1:
            return parts[0]
        store_names, store_codes = _merged_codes([(p.store_names, p.store_code) for p in parts])
        category_names, category_codes = _merged_codes([(p.category_names, p.line_category_code) for p in parts])
        line_counts = np.concatenate([np.diff(p.line_offsets) for p in parts])
        offsets = np.zeros(len(line_counts) + 1, dtype=np.int64)
        np.cumsum(line_counts, out=offsets[1:])
        skus = None
        if any(p.line_sku is not None for p in parts):
            skus = _concat_text([p.line_sku if p.line_sku is not None else pa.nulls(p.line_count, pa.string())
                                 for p in parts])
        originals = None
        if any(p.original_receipt_id is not None for p in parts):
            originals = _concat_text([p.original_receipt_id if p.original_receipt_id is not None
                                      else pa.nulls(len(p), pa.string()) for p in parts])
        joined = cls(
            receipt_id=_concat_text([p.receipt_id for p in parts]),
            customer_id=_concat_text([p.customer_id for p in parts]),
            store_code=store_codes,
            instant_us=np.concatenate([p.instant_us for p in parts]),
            local_day=np.concatenate([p.local_day for p in parts]),
            local_minute=np.concatenate([p.local_minute for p in parts]),
            local_month=np.concatenate([p.local_month for p in parts]),
            line_offsets=offsets,
            line_category_code=category_codes,
            line_qty=np.concatenate([p.line_qty for p in parts]),
            line_amount_minor=np.concatenate([p.line_amount_minor for p in parts]),
            store_names=store_names,
            category_names=category_names,
            line_sku=skus,
            original_receipt_id=originals,
            # per-receipt arrays every part has (such as content fingerprints) follow their receipts
            metadata={
                key: np.concatenate([p.metadata[key] for p in parts]) if isinstance(value, np.ndarray) else value
                for key, value in parts[0].metadata.items()
                if not isinstance(value, np.ndarray) or all(isinstance(p.metadata.get(key), np.ndarray) for p in parts)
            },
        )
        order = processing_order(joined.instant_us, joined.receipt_id)
        return joined if order is None else joined.take(order)


@dataclass
class CustomerTable:
    """The optional customers file: who exists, and what the rules need about them.

    Parameters
    ----------
    customer_id : pa.Array of string, shape (C,); unique
    birth_date : datetime64[D], shape (C,); NaT where unknown
    joined_on : datetime64[D], shape (C,); NaT where unknown
    attributes : pa.Table with C rows; any further columns, kept as they came
    """

    customer_id: pa.Array
    birth_date: np.ndarray
    joined_on: np.ndarray
    attributes: pa.Table | None = None

    def __len__(self) -> int:
        return len(self.customer_id)

    def birth_month_numbers(self) -> np.ndarray:
        """Each customer's birth month, 1..12, or 0 where the birth date is unknown (int8)."""
        months = np.zeros(len(self), dtype=np.int8)
        known = ~np.isnat(self.birth_date)
        months[known] = self.birth_date[known].astype("datetime64[M]").astype(np.int64) % 12 + 1
        return months

    def birth_months(self) -> dict[str, int]:
        """Customer id -> birth month (1..12) for customers with a known birth date."""
        months = self.birth_month_numbers()
        ids = self.customer_id.to_pylist()
        return {ids[i]: int(months[i]) for i in np.flatnonzero(months)}


def _merged_codes(parts: list[tuple[list[str], np.ndarray]]) -> tuple[list[str], np.ndarray]:
    """One vocabulary for several (names, codes) pairs, and every part's codes into it."""
    merged: dict[str, int] = {}
    recoded = []
    for names, codes in parts:
        table = np.array([merged.setdefault(name, len(merged)) for name in names], dtype=np.int32)
        recoded.append(table[codes] if len(table) else codes.astype(np.int32))
    return list(merged), np.concatenate(recoded)


def _concat_text(arrays: list[pa.Array]) -> pa.Array:
    if len({array.type for array in arrays}) > 1:
        arrays = [array.cast(pa.large_string()) for array in arrays]
    return pa.concat_arrays(arrays)


def processing_order(instant_us: np.ndarray, receipt_id: pa.Array) -> np.ndarray | None:
    """Permutation into (instant, receipt_id by code point) order; None if already in it.

    Exports are usually in time order but break ties by store or till rather than by receipt
    id, so only receipts that share an instant with a neighbour are compared as strings.
    """
    n = len(instant_us)
    if n < 2:
        return None
    order = None if (np.diff(instant_us) >= 0).all() else np.argsort(instant_us, kind="stable")
    ordered_instant = instant_us if order is None else instant_us[order]
    ordered_id = receipt_id if order is None else receipt_id.take(pa.array(order))
    ties = np.flatnonzero(np.diff(ordered_instant) == 0)
    if not len(ties):
        return order
    # UTF-8 byte order is code point order, which is how Arrow compares strings.
    later = ordered_id.take(pa.array(ties + 1))
    if pc.greater(later, ordered_id.take(pa.array(ties))).to_numpy(zero_copy_only=False).all():
        return order
    # Each group of equal instants fills consecutive places; sorting all their members by
    # (instant, id) and putting them back into those places sorts every group.
    members = np.unique(np.concatenate([ties, ties + 1]))
    keys = pa.table({
        "instant_us": ordered_instant[members],
        "receipt_id": ordered_id.take(pa.array(members)),
    })
    within = pc.sort_indices(
        keys, sort_keys=[("instant_us", "ascending"), ("receipt_id", "ascending")]
    ).to_numpy()
    if order is None:
        order = np.arange(n, dtype=np.int64)
    order[members] = order[members[within]]
    return order


