"""ReceiptBatch: receipts as numpy columns, line items in CSR layout, in processing order.

A batch is what the readers in :mod:`fidelis.core.io` produce and what both engines score.
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
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.instant_us)

    @property
    def line_count(self) -> int:
        return int(self.line_offsets[-1])

    @property
    def local_weekday(self) -> np.ndarray:
        """0 = Monday … 6 = Sunday."""
        return ((self.local_day.astype(np.int64) + EPOCH_WEEKDAY) % 7).astype(np.int8)

    def take(self, receipt_indices: np.ndarray) -> "ReceiptBatch":
        """A batch of the given receipts (in the given order), lines carried along."""
        receipt_indices = np.asarray(receipt_indices, dtype=np.int64)
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
            # per-receipt arrays in the metadata (such as first_input_row) follow their receipts
            metadata={
                key: value[receipt_indices] if isinstance(value, np.ndarray) and len(value) == len(self) else value
                for key, value in self.metadata.items()
            },
        )

    def slice(self, start: int, stop: int) -> "ReceiptBatch":
        """Receipts ``start:stop`` as a batch (a chunk of a larger history)."""
        return self.take(np.arange(start, min(stop, len(self)), dtype=np.int64))


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
