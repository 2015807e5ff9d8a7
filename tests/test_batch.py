"""ReceiptBatch: taking, slicing and joining batches keeps receipts whole and in processing order."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from fidelis.core.batch import ReceiptBatch, processing_order

from .conftest import assert_same_batch

ROWS = [
    ("R1", "C1", "S1", "2025-06-07T10:00", "grocery", 1, "10.00"),
    ("R1", "C1", "S1", "2025-06-07T10:00", "baby", 2, "3.00"),
    ("R2", "C2", "S2", "2025-06-07T10:00", "fuel", 1, "50.00"),
    ("R3", None, "S3", "2025-06-08T09:00", "grocery", 1, "1.00"),
    ("R0", "C1", "S1", "2025-06-09T09:00", "tobacco", 3, "30.00"),
]


def test_joined_parts_are_the_whole_batch_in_processing_order(make_batch):
    whole = make_batch(ROWS)
    whole.metadata["content_fingerprint"] = np.arange(len(whole), dtype=np.int64) * 11
    # parts with their own vocabularies, given out of order
    later, earlier = whole.take(np.array([3, 1])), whole.take(np.array([2, 0]))
    later.store_names = list(reversed(whole.store_names))
    later.store_code = (len(whole.store_names) - 1 - later.store_code).astype(np.int32)
    joined = ReceiptBatch.concat([later, earlier])
    assert_same_batch(joined, whole)
    assert joined.metadata["content_fingerprint"].tolist() == [0, 11, 22, 33]


def test_processing_order_breaks_ties_by_receipt_id_code_point():
    instants = np.array([5, 5, 3, 5], dtype=np.int64)
    ids = pa.array(["b", "a", "z", "B"])
    order = processing_order(instants, ids)
    assert [ids[i].as_py() for i in order] == ["z", "B", "a", "b"]
    assert processing_order(np.array([1, 2, 2]), pa.array(["x", "a", "b"])) is None
