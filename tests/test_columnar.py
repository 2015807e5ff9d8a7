"""Columnar msgpack batches: the documented layout, round trips, and clear errors."""
import msgpack
import numpy as np
import pyarrow as pa
import pytest

from fidelis.core.ingest import msgpack_batch as columnar, receipts as io
from fidelis.core.errors import InputError

ZONE = "Europe/Bucharest"


def worked_example_body() -> bytes:
    """PROGRAM.md §5's first receipt, written by hand in the documented layout."""
    return msgpack.packb({
        "receipt_id": ["R1", "R1", "R1"],
        "customer_id": ["C1", "C1", "C1"],
        "store_id": ["S001"] * 3,
        "ts": ["2025-06-07T10:00"] * 3,
        "category": ["own_brand", "tobacco", "grocery"],
        "qty": {"dtype": "<i4", "data": np.array([2, 1, 3], dtype="<i4").tobytes()},
        "amount_minor": {"dtype": "<i8", "data": np.array([1000, 3000, 4599], dtype="<i8").tobytes()},
    }, use_bin_type=True)


def test_a_hand_written_batch_reads_like_the_csv(tmp_path):
    path = tmp_path / "batch.msgpack"
    path.write_bytes(worked_example_body())
    batch = io.read_receipts([path], timezone=ZONE, minor_units=2)
    assert batch.receipt_id.to_pylist() == ["R1"]
    assert batch.line_amount_minor.tolist() == [1000, 3000, 4599]
    assert batch.line_qty.tolist() == [2, 1, 3]

    csv = tmp_path / "batch.csv"
    csv.write_text("receipt_id,customer_id,store_id,ts,category,qty,amount\n"
                   "R1,C1,S001,2025-06-07T10:00,own_brand,2,10.00\nR1,C1,S001,2025-06-07T10:00,tobacco,1,30.00\n"
                   "R1,C1,S001,2025-06-07T10:00,grocery,3,45.99\n")
    from_csv = io.read_receipts([csv], timezone=ZONE, minor_units=2)
    assert from_csv.instant_us.tolist() == batch.instant_us.tolist()
    assert from_csv.line_amount_minor.tolist() == batch.line_amount_minor.tolist()


def test_encode_then_decode_is_the_same_table():
    table = pa.table({"receipt_id": ["A", None], "qty": pa.array([1, 2], pa.int32()),
                      "amount_minor": pa.array([5, 2**40], pa.int64())})
    assert columnar.decode(columnar.encode(table)).equals(table)


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"\xc1", "not a msgpack batch"),
        (msgpack.packb([1, 2]), "non-empty map"),
        (msgpack.packb({"qty": {"dtype": "<f8", "data": b"\0" * 8}}), "not a little-endian integer type"),
        (msgpack.packb({"qty": {"dtype": "<i8", "data": b"\0" * 7}}), "not a whole number"),
        (msgpack.packb({"qty": {"dtype": "nonsense", "data": b""}}), "unknown dtype"),
        (msgpack.packb({"receipt_id": ["A", 1]}), "array of strings or nil"),
        (msgpack.packb({"receipt_id": ["A"], "store_id": ["S", "T"]}), "differ in length"),
    ],
)
def test_malformed_batches_name_what_is_wrong(body, reason):
    with pytest.raises(InputError, match=reason):
        columnar.decode(body, source="body")
