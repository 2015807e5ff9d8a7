"""Whole-history replay: stored receipts back through the kernel, as the ledger holds them.

A ledger's receipts are enough to recompute every point and every status: ``check`` replays
them to verify the stored results, month-end to find each customer's status at a month's end
after later receipts were loaded.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..batch import ReceiptBatch
from ..ledger.handle import LINE_DTYPE, Ledger
from ..localtime import local_calendar


def ledger_batch(ledger: Ledger, customers: range | None = None) -> tuple[ReceiptBatch, np.ndarray]:
    """Stored receipts as a batch in processing order, and their stored points.

    Rebuilt from the ledger alone (lines, vocabularies, instants), so replaying it through
    the kernel checks the ledger against its own history. ``customers`` limits it to the
    receipts of a range of customer indices (None: every receipt, anonymous ones included).
    """
    program = ledger.current_program().program
    rows = ledger.stored_receipts(customers)
    category_names = ledger.category_names()
    lines = np.frombuffer(b"".join(row[4] for row in rows), dtype=LINE_DTYPE)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(row[4]) // LINE_DTYPE.itemsize for row in rows], out=offsets[1:])
    stores = pa.array([row[2] for row in rows], type=pa.string()).dictionary_encode()
    instant_us = np.array([row[3] for row in rows], dtype=np.int64)
    calendar = local_calendar(instant_us, program.info.timezone)
    batch = ReceiptBatch(
        receipt_id=pa.array([row[0] for row in rows], type=pa.string()),
        customer_id=pa.array([row[1] for row in rows], type=pa.string()),
        store_code=stores.indices.to_numpy(zero_copy_only=False).astype(np.int32),
        instant_us=instant_us,
        local_day=calendar.local_day,
        local_minute=calendar.local_minute,
        local_month=calendar.local_month,
        line_offsets=offsets,
        line_category_code=lines["category_id"].astype(np.int32),
        line_qty=lines["qty"].astype(np.int32),
        line_amount_minor=lines["amount_minor"].astype(np.int64),
        store_names=stores.dictionary.to_pylist(),
        category_names=category_names,
        original_receipt_id=pa.array([row[6] for row in rows], type=pa.string())
        if any(row[6] is not None for row in rows) else None,
    )
    return batch, np.array([row[5] for row in rows], dtype=np.int64)

