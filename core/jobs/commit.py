"""Writing scored receipts: one chunk's receipts, journal entries, lots and customer state.

Shared by loads and real-time accrual, so a receipt is stored the same way whichever way it
came in.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pyarrow as pa

from ..batch import ReceiptBatch
from ..engine import kernel
from ..ledger.customers import save_state
from ..ledger.handle import Ledger
from ..ledger.journal import add_earn_entries
from ..ledger.chunk_files import chunk_table, write_chunk_file
from ..ledger.receipts import encode_lines, insert_receipts, next_receipt_row, vocabulary_ids
from ..points.lots import add_to_lots
from ..points.takeback import take_back
from ..scores import Scores


def sku_ids_of(ledger: Ledger, connection, batch: ReceiptBatch) -> np.ndarray | None:
    if batch.line_sku is None:
        return None
    return _per_distinct_value(batch.line_sku, lambda skus: vocabulary_ids(connection, "skus", skus),
                               np.int32(0))


def _per_distinct_value(values: pa.Array, per_value: Callable[[list], np.ndarray], missing) -> np.ndarray:
    """``per_value`` computed once per distinct value and spread over ``values``; nulls get ``missing``."""
    encoded = values.dictionary_encode()
    table = np.append(per_value(encoded.dictionary.to_pylist()), missing)
    return table[encoded.indices.fill_null(len(encoded.dictionary)).to_numpy(zero_copy_only=False)]


def append_chunk(connection, ledger: Ledger, prepared: kernel.PreparedBatch, scores: Scores, prints: np.ndarray,
                  category_ids: np.ndarray, sku_ids: np.ndarray | None, program_version: int, run_id: int,
                  state, stored_index: np.ndarray | None = None, to_file: bool = False) -> int:
    """Write one scored chunk: receipts, earn entries, lots, returns and the touched customers'
    state; the points returns could not take back.

    ``stored_index`` maps the state's customer indices to the ledger's, for a state that
    holds only some customers (real-time accrual); None when they are the same.
    ``to_file``: the receipts' lines go to a chunk file (bulk loads) instead of SQLite.
    """
    batch = prepared.batch
    count = len(batch)
    local = prepared.customer_index
    customer = local if stored_index is None else np.append(stored_index, -1)[local]  # -1 stays -1
    is_return = batch.is_return
    first_row = next_receipt_row(connection)
    rows = np.arange(first_row, first_row + count, dtype=np.int64)
    line_categories = category_ids[batch.line_category_code]
    blobs = [None] * count if to_file else encode_lines(batch.line_offsets, line_categories, sku_ids,
                                                        batch.line_qty, batch.line_amount_minor)
    amount = np.add.reduceat(batch.line_amount_minor, batch.line_offsets[:-1]) if batch.line_count else np.zeros(count, np.int64)
    amount[np.diff(batch.line_offsets) == 0] = 0
    amount = np.where(is_return, -amount, amount)  # a return's goods leave the sales
    identified = customer >= 0
    tier = np.where(identified, scores.tier, -1)
    originals = [None] * count if batch.original_receipt_id is None else batch.original_receipt_id.to_pylist()
    stores = np.array(batch.store_names, dtype=object)[batch.store_code]
    receipts = zip(
        rows.tolist(), batch.receipt_id.to_pylist(),
        np.where(identified, customer, -1).tolist(),
        stores.tolist(),
        batch.instant_us.tolist(), batch.local_day.tolist(), amount.tolist(), tier.tolist(),
        scores.rate_points.tolist(), scores.basket_points.tolist(), scores.visit_points.tolist(),
        scores.welcome_points.tolist(), scores.cap_points.tolist(), scores.points.tolist(),
        prints.tolist(), blobs, originals, scores.visit_rank.tolist(), scores.earned_before_today.tolist(),
        scores.birthday.tolist(),
    )
    earning = identified & ~is_return & (scores.points != 0)
    earn_entries = zip(customer[earning].tolist(), scores.points[earning].tolist(), batch.instant_us[earning].tolist(),
                       batch.receipt_id.filter(pa.array(earning)).to_pylist())
    # lots: points earned per customer and local month, added to what earlier chunks earned
    # (summed in int64: a float sum would round points past 2**53)
    keys = customer[earning].astype(np.int64) * 4096 + batch.local_month[earning]
    unique_keys, inverse = np.unique(keys, return_inverse=True)
    sums = np.zeros(len(unique_keys), dtype=np.int64)
    np.add.at(sums, inverse, scores.points[earning].astype(np.int64))
    lots = (unique_keys // 4096, unique_keys % 4096, sums)
    taking = np.flatnonzero(identified & is_return & (scores.points < 0))
    returns = list(zip(batch.receipt_id.take(pa.array(taking)).to_pylist(), customer[taking].tolist(),
                       (-scores.points[taking]).tolist(), batch.instant_us[taking].tolist()))
    insert_receipts(connection, receipts, program_version, run_id)
    if to_file and count:
        write_chunk_file(ledger, connection, chunk_table(rows, {
            "receipt_id": batch.receipt_id, "customer_index": pa.array(customer, mask=~identified),
            "store_id": pa.array(stores, pa.string()), "instant": batch.instant_us, "local_date": batch.local_day,
            "local_minute": batch.local_minute, "local_month": batch.local_month, "amount_minor": amount,
            "tier": pa.array(tier, pa.int8(), mask=~identified), "points": scores.points[:count],
            "original_receipt_id": pa.array(originals, pa.string()),
            "program_version": np.full(count, program_version, np.int32), "run_id": np.full(count, run_id, np.int64),
        }, batch.line_offsets, {"category_id": line_categories, "sku_id": 0 if sku_ids is None else sku_ids,
                                "qty": batch.line_qty, "amount_minor": batch.line_amount_minor}), run_id)
    add_earn_entries(connection, earn_entries, run_id)
    add_to_lots(ledger, connection, *lots)
    # taken back after the chunk's earnings, in processing order
    unrecovered = sum(take_back(ledger, connection, owner, points, instant_us, return_id, run_id)
                      for return_id, owner, points, instant_us in returns)
    touched = np.unique(local[identified])
    save_state(connection, state, touched, None if stored_index is None else stored_index[touched])
    return unrecovered
