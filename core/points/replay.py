"""Whole-history replay: stored receipts back through the kernel, as the ledger holds them.

A ledger's receipts are enough to recompute every point and every status: ``check`` replays
them to verify the stored results, month-end to find each customer's status at a month's end
after later receipts were loaded.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from ..batch import ReceiptBatch
from ..engine import kernel
from ..ingest.return_rows import originals_outside
from ..ledger.handle import Ledger
from ..ledger.receipts import (
    category_names,
    decode_receipt_lines,
    stored_originals,
    stored_receipts,
)
from ..program.tables import ProgramTables
from ..state import CustomerState


def ledger_batch(ledger: Ledger, customers: range | np.ndarray | None = None) -> tuple[ReceiptBatch, np.ndarray]:
    """Stored receipts as a batch in processing order, and their stored points.

    Rebuilt from the ledger alone (lines, vocabularies, instants), so replaying it through
    the kernel checks the ledger against its own history. ``customers`` limits it to the
    receipts of a range of customer indices (None: every receipt, anonymous ones included).
    """
    program = ledger.current_program().program
    rows = stored_receipts(ledger, customers)
    lines, offsets = decode_receipt_lines([row[4] for row in rows])
    stores = pa.array([row[2] for row in rows], type=pa.string()).dictionary_encode()
    batch = ReceiptBatch.build(
        receipt_id=pa.array([row[0] for row in rows], type=pa.string()),
        customer_id=pa.array([row[1] for row in rows], type=pa.string()),
        store_code=stores.indices.to_numpy(zero_copy_only=False),
        store_names=stores.dictionary.to_pylist(),
        instant_us=np.array([row[3] for row in rows], dtype=np.int64),
        timezone=program.info.timezone,
        line_offsets=offsets,
        line_category_code=lines["category_id"],
        category_names=category_names(ledger),
        line_qty=lines["qty"],
        line_amount_minor=lines["amount_minor"],
        original_receipt_id=pa.array([row[6] for row in rows], type=pa.string())
        if any(row[6] is not None for row in rows) else None,
    )
    return batch, np.array([row[5] for row in rows], dtype=np.int64)


def replay_part(ledger: Ledger, batch: ReceiptBatch, start: int, stop: int, compiled: ProgramTables,
                state: CustomerState) -> None:
    """Score stored receipts ``start:stop`` of ``batch`` into ``state``; returns of receipts
    before ``start`` are re-scored from the ledger's record of their originals."""
    part = batch.slice(start, stop)
    point = (int(batch.instant_us[start]), batch.receipt_id[start].as_py()) if len(part) else None
    # as they stood when this part begins: the returns stored before it
    originals = {receipt_id: dataclasses.replace(original, returned_qty=original.returned_before(point))
                 for receipt_id, original in stored_originals(ledger, originals_outside(part)).items()}
    kernel.score(part, compiled, state, originals=originals)
