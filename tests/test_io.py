"""Receipt and customer readers: exact values, processing order, and every bad-input message."""
from __future__ import annotations

import datetime as dt
import gzip
import random
import zoneinfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fidelis.core.ingest.customers import read_customers
from fidelis.core.ingest.files import TableWriter, estimated_rows, read_table, read_table_parts, write_table
from fidelis.core.ingest.receipts import check_receipts, read_receipts, receipts_from_table
from fidelis.core.batch import ReceiptBatch
from fidelis.core.errors import InputError, OutputError, UnsupportedFileError

from .conftest import assert_same_batch, names_of

ZONE = "Europe/Bucharest"
HEADER = "receipt_id,customer_id,store_id,ts,category,qty,amount"
HEADER_SKU = HEADER + ",sku"


@pytest.fixture
def write_csv(tmp_path):
    """Write CSV text (header added unless given) to a file in tmp_path; return its path."""

    def write(name: str, *rows: str, header: str | None = HEADER):
        path = tmp_path / name
        text = "\n".join(([header] if header is not None else []) + list(rows)) + "\n"
        if name.endswith(".gz"):
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text, encoding="utf-8")
        return path

    return write


def read(paths, *, minor_units: int = 2, timezone: str = ZONE) -> ReceiptBatch:
    if not isinstance(paths, list):
        paths = [paths]
    return read_receipts(paths, timezone=timezone, minor_units=minor_units)


def problems_of(paths, *, minor_units: int = 2) -> list:
    with pytest.raises(InputError) as caught:
        read(paths, minor_units=minor_units)
    return caught.value.problems


def utc_us(text: str) -> int:
    return int(np.datetime64(text, "us").astype(np.int64))


def lines_of(batch: ReceiptBatch, receipt: int) -> list[tuple[str, int, int]]:
    """(category, qty, amount_minor) of each line of one receipt."""
    start, stop = batch.line_offsets[receipt], batch.line_offsets[receipt + 1]
    return [
        (
            batch.category_names[batch.line_category_code[i]],
            int(batch.line_qty[i]),
            int(batch.line_amount_minor[i]),
        )
        for i in range(start, stop)
    ]


# --- good input -------------------------------------------------------------------------------


def test_values_are_read_exactly(write_csv):
    path = write_csv(
        "r.csv",
        "R1,000123,S001,2025-06-07T10:00:00,grocery,2,12.5,0042",
        "R1,000123,S001,2025-06-07T10:00:00,tobacco,1,30,",
        "R1,000123,S001,2025-06-07T10:00:00,own_brand,3,0.07,X",
        "R2,,NA,2025-06-07 11:15:30.25,grocery,1,0,",
        header=HEADER_SKU,
    )
    batch = read(path)
    assert batch.receipt_id.to_pylist() == ["R1", "R2"]
    # Leading zeros are kept; empty is anonymous; "NA" is a store, not a null.
    assert batch.customer_id.to_pylist() == ["000123", None]
    assert names_of(batch.store_code, batch.store_names) == ["S001", "NA"]
    assert lines_of(batch, 0) == [("grocery", 2, 1250), ("tobacco", 1, 3000), ("own_brand", 3, 7)]
    assert lines_of(batch, 1) == [("grocery", 1, 0)]
    assert batch.line_sku.to_pylist() == ["0042", None, "X", None]
    # 10:00 EEST is 07:00Z; fractional seconds are kept.
    assert batch.instant_us.tolist() == [
        utc_us("2025-06-07T07:00"), utc_us("2025-06-07T08:15:30.25"),
    ]
    assert batch.local_minute.tolist() == [600, 675]
    assert batch.local_day.tolist() == [(dt.date(2025, 6, 7) - dt.date(1970, 1, 1)).days] * 2
    assert batch.local_month.tolist() == [(2025 - 1970) * 12 + 5] * 2
    assert batch.local_weekday.tolist() == [5, 5]  # Saturday
    assert batch.line_offsets.tolist() == [0, 3, 4]
    assert batch.store_code.dtype == np.int32 and batch.line_category_code.dtype == np.int32
    assert batch.line_qty.dtype == np.int32 and batch.line_amount_minor.dtype == np.int64
    assert batch.metadata["minor_units"] == 2 and batch.metadata["timezone"] == ZONE


def test_naive_and_offset_timestamps(write_csv):
    path = write_csv(
        "r.csv",
        "A,1,S,2025-06-07T10:00:00,c,1,1",
        "B,1,S,2025-06-07T07:00:00Z,c,1,1",
        "C,1,S,2025-06-07T10:00:00+03:00,c,1,1",
        "D,1,S,2025-06-07T09:00:00+0200,c,1,1",
        "E,1,S,2025-06-07 03:00-04:00,c,1,1",
    )
    batch = read(path)
    assert batch.receipt_id.to_pylist() == ["A", "B", "C", "D", "E"]
    assert set(batch.instant_us.tolist()) == {utc_us("2025-06-07T07:00")}
    # Local fields are in the chain's zone, whatever offset the file used.
    assert set(batch.local_minute.tolist()) == {600}


@pytest.mark.parametrize(
    ("ts", "instant", "local_minute"),
    [
        ("2025-03-30 03:30", "2025-03-30T01:30", 4 * 60 + 30),  # in the gap: 04:30 EEST
        ("2025-03-30T03:30:00", "2025-03-30T01:30", 4 * 60 + 30),
        ("2025-10-26 03:30", "2025-10-26T00:30", 3 * 60 + 30),  # repeated: the first, +03:00
        ("2025-10-26T03:30:00+02:00", "2025-10-26T01:30", 3 * 60 + 30),  # the second, by offset
    ],
)
def test_daylight_saving_changes_in_bucharest(write_csv, ts, instant, local_minute):
    batch = read(write_csv("r.csv", f"R,1,S,{ts},c,1,1"))
    assert batch.instant_us.tolist() == [utc_us(instant)]
    assert batch.local_minute.tolist() == [local_minute]


def test_fractional_seconds_beyond_microseconds_round_down(write_csv):
    batch = read(write_csv("r.csv", "R,1,S,2025-06-07T07:00:00.123456789Z,c,1,1"))
    assert batch.instant_us.tolist() == [utc_us("2025-06-07T07:00:00.123456")]


def test_lines_of_a_receipt_need_not_be_contiguous(write_csv):
    path = write_csv(
        "r.csv",
        "R1,C1,S,2025-06-07T10:00,a,1,1.00",
        "R2,C2,S,2025-06-07T09:00,b,1,2.00",
        "R1,C1,S,2025-06-07T10:00,c,1,3.00",
        "R2,C2,S,2025-06-07T09:00,d,1,4.00",
        "R1,C1,S,2025-06-07T10:00,e,1,5.00",
    )
    batch = read(path)
    assert batch.receipt_id.to_pylist() == ["R2", "R1"]
    assert lines_of(batch, 0) == [("b", 1, 200), ("d", 1, 400)]
    assert lines_of(batch, 1) == [("a", 1, 100), ("c", 1, 300), ("e", 1, 500)]


def test_equal_instants_are_ordered_by_receipt_id_code_point(write_csv):
    ids = ["b", "é", "R9", "B", "R10", "a", "Z", "ß"]
    rows = [f"{rid},1,S,2025-06-07T10:00,c,1,1" for rid in ids]
    batch = read(write_csv("r.csv", *rows))
    assert batch.receipt_id.to_pylist() == sorted(ids)  # Python compares str by code point
    assert batch.receipt_id.to_pylist() == ["B", "R10", "R9", "Z", "a", "b", "ß", "é"]


def test_time_order_with_ties_broken_by_store_is_reordered(write_csv):
    # An export sorted by time, then store: equal seconds are not in receipt id order.
    rows = [
        "S2-1,1,S2,2025-06-07T10:00,c,1,1",
        "S1-1,1,S1,2025-06-07T10:00,c,1,1",
        "S1-2,1,S1,2025-06-07T10:01,c,1,1",
        "S3-1,1,S3,2025-06-07T10:02,c,1,1",
        "S2-2,1,S2,2025-06-07T10:02,c,1,1",
        "S1-3,1,S1,2025-06-07T10:02,c,1,1",
    ]
    batch = read(write_csv("r.csv", *rows))
    assert batch.receipt_id.to_pylist() == ["S1-1", "S2-1", "S1-2", "S1-3", "S2-2", "S3-1"]


def test_order_across_files_does_not_matter(write_csv):
    first = write_csv("a.csv", "R3,1,S,2025-06-07T12:00,c,1,1", "R1,2,S,2025-06-07T10:00,c,1,2")
    second = write_csv("b.csv.gz", "R2,3,T,2025-06-07T11:00,d,2,3", "R0,4,T,2025-06-07T10:00,d,1,4")
    forward = read([first, second])
    backward = read([second, first])
    assert forward.receipt_id.to_pylist() == ["R0", "R1", "R2", "R3"]
    assert_same_batch(forward, backward)
    assert forward.customer_id.to_pylist() == ["4", "2", "3", "1"]


def test_minor_units_zero_and_three(write_csv):
    path = write_csv("r.csv", "R,1,S,2025-06-07T10:00,c,1,1500", "R,1,S,2025-06-07T10:00,c,1,7")
    assert read(path, minor_units=0).line_amount_minor.tolist() == [1500, 7]
    path = write_csv("r3.csv", "R,1,S,2025-06-07T10:00,c,1,1.5", "R,1,S,2025-06-07T10:00,c,1,0.125")
    assert read(path, minor_units=3).line_amount_minor.tolist() == [1500, 125]


def test_csv_and_parquet_give_identical_batches(write_csv, tmp_path):
    rows = [
        "R2,007,S1,2025-03-30 03:30,grocery,2,12.5,A",
        "R1,,S2,2025-10-26T03:30:00,tobacco,1,3,",
        "R2,007,S1,2025-03-30 03:30,bakery,1,0.99,B",
        "R3,7,S1,2025-03-30T01:30:00Z,grocery,1,1.00,B",
    ]
    csv_path = write_csv("r.csv", *rows, header=HEADER_SKU)
    from_csv = read(csv_path)

    text_parquet = tmp_path / "text.parquet"
    write_table(read_table(csv_path), text_parquet)
    assert_same_batch(from_csv, read(text_parquet))

    # The same receipts with Parquet's own types: instants, decimals, integers.
    typed = pa.table({
        "receipt_id": ["R2", "R1", "R2", "R3"],
        "customer_id": ["007", None, "007", "7"],
        "store_id": pa.array(["S1", "S2", "S1", "S1"]).dictionary_encode(),
        "ts": pa.array(
            [dt.datetime(2025, 3, 30, 1, 30), dt.datetime(2025, 10, 26, 0, 30),
             dt.datetime(2025, 3, 30, 1, 30), dt.datetime(2025, 3, 30, 1, 30)],
            pa.timestamp("ms", "UTC"),
        ),
        "category": ["grocery", "tobacco", "bakery", "grocery"],
        "qty": pa.array([2, 1, 1, 1], pa.int16()),
        "amount": pa.array(["12.5", "3", "0.99", "1"]).cast(pa.decimal128(10, 4)),
        "sku": ["A", None, "B", "B"],
    })
    typed_path = tmp_path / "typed.parquet"
    pq.write_table(typed, typed_path)
    assert_same_batch(from_csv, read(typed_path))

    minor = typed.drop_columns(["amount"]).append_column(
        "amount_minor", pa.array([1250, 300, 99, 100], pa.int64())
    )
    minor_path = tmp_path / "minor.parquet"
    pq.write_table(minor, minor_path)
    assert_same_batch(from_csv, read(minor_path))


def test_naive_parquet_timestamps_are_chain_local(tmp_path):
    table = pa.table({
        "receipt_id": ["R"], "customer_id": ["1"], "store_id": ["S"],
        "ts": pa.array([dt.datetime(2025, 3, 30, 3, 30)], pa.timestamp("us")),
        "category": ["c"], "qty": [1], "amount": ["1"],
    })
    path = tmp_path / "r.parquet"
    pq.write_table(table, path)
    assert read(path).instant_us.tolist() == [utc_us("2025-03-30T01:30")]


def test_a_receipt_may_span_files_and_column_types(tmp_path, write_csv):
    first = write_csv(
        "a.csv", "R1,0042,S,2025-06-07T10:00,a,1,1.00", "R0,,S,2025-06-07T09:00,a,1,2.00"
    )
    second = tmp_path / "b.parquet"
    pq.write_table(pa.table({
        "receipt_id": pa.array(["R1"], pa.large_string()),
        "customer_id": pa.array(["0042"], pa.large_string()),
        "store_id": ["S"],
        "ts": pa.array([dt.datetime(2025, 6, 7, 7, 0)], pa.timestamp("s", "UTC")),
        "category": ["b"], "qty": [3], "amount": ["4.50"],
        "sku": pa.nulls(1),  # a column that is empty throughout has Parquet's null type
    }), second)
    batch = read([second, first])
    assert batch.receipt_id.to_pylist() == ["R0", "R1"]
    assert batch.customer_id.to_pylist() == [None, "0042"]
    assert sorted(lines_of(batch, 1)) == [("a", 1, 100), ("b", 3, 450)]


def test_receipts_from_table_numbers_rows_from_first_row():
    table = pa.table({
        "receipt_id": ["R1", "R2"], "customer_id": ["1", "2"], "store_id": ["S", "S"],
        "ts": ["2025-06-07T10:00", "2025-06-07T10:00"], "category": ["c", "c"],
        "qty": ["1", "0"], "amount": ["1", "1"],
    })
    with pytest.raises(InputError) as caught:
        receipts_from_table(
            table, timezone=ZONE, minor_units=2, source="POST /receipts", first_row=101
        )
    [problem] = caught.value.problems
    assert (problem.file, problem.row, problem.column, problem.value) == (
        "POST /receipts", 102, "qty", "0",
    )


def test_progress_is_called_per_file(write_csv):
    first = write_csv("a.csv", "R1,1,S,2025-06-07T10:00,c,1,1")
    second = write_csv("b.csv", "R2,1,S,2025-06-07T10:00,c,1,1", "R3,1,S,2025-06-07T10:00,c,1,1")
    seen = []
    read_receipts(
        [first, second], timezone=ZONE, minor_units=2,
        progress=lambda name, rows: seen.append((name, rows)),
    )
    assert seen == [(str(first), 1), (str(second), 2)]


# --- bad input --------------------------------------------------------------------------------


def test_missing_required_column_names_it_and_the_columns_found(write_csv):
    header = "receipt_id,customer_id,store_id,timestamp,qty,amount"
    path = write_csv("r.csv", "R,1,S,2025-06-07T10:00,1,1", header=header)
    [problem] = problems_of(path)
    assert problem.file == str(path) and problem.row is None
    assert "missing required columns 'ts', 'category'" in problem.reason
    assert "'receipt_id', 'customer_id', 'store_id', 'timestamp', 'qty', 'amount'" in problem.reason


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        ("yesterday", "not an ISO 8601 timestamp"),
        ("07/06/2025 10:00", "not an ISO 8601 timestamp"),
        ("2025-06-07T10", "not an ISO 8601 timestamp"),
        ("2025-06-07", "a date without a time of day"),
        ("2025-02-30T10:00", "not a real date and time"),
        ("2025-06-07T25:00", "not a real date and time"),
        ("2023-02-29 10:00", "not a real date and time"),
        ("2025-06-07T10:00:60", "not a real date and time"),
        ("1969-12-31T23:59:59Z", "outside the supported range"),
        ("1970-01-01T00:30", "outside the supported range"),  # 1969-12-31T22:30Z in Bucharest
        ("1970-01-01T03:00:00Z", "outside the supported range"),  # a 1969 local date west of UTC
        ("2199-12-31T00:00:00Z", "outside the supported range"),  # 2200 local date east of UTC
        ("2200-01-01T00:00:00Z", "outside the supported range"),
        ("2500-01-01T00:00:00Z", "outside the supported range"),
        ("0001-01-01T00:00:00", "outside the supported range"),
        ("", "required value is empty"),
    ],
)
def test_bad_timestamps(write_csv, ts, reason):
    [problem] = problems_of(write_csv("r.csv", f"R,1,S,{ts},c,1,1"))
    assert (problem.row, problem.column, problem.value) == (1, "ts", ts)
    assert reason in problem.reason


def test_bad_timestamps_among_many_good_ones(write_csv):
    good = [f"G{i},1,S,2024-02-29T10:{i % 60:02d}:{i // 60 % 60:02d},c,1,1" for i in range(5000)]
    bad = ["B1,1,S,2024-02-30T10:00,c,1,1", "B2,1,S,2024-04-31 10:00,c,1,1"]
    checked = check_receipts([write_csv("r.csv", *good, *bad)], timezone=ZONE, minor_units=2)
    assert [(p.row, p.reason) for p in checked.problems] == [
        (5001, "not a real date and time"), (5002, "not a real date and time"),
    ]
    assert len(checked.batch) == 5000


def test_supported_range_edges_are_accepted(write_csv):
    batch = read(write_csv(
        "r.csv", "A,1,S,1970-01-02T00:00:00Z,c,1,1", "B,1,S,2199-12-30T23:59:59.999999Z,c,1,1"
    ))
    assert batch.instant_us.tolist() == [utc_us("1970-01-02T00:00:00"), utc_us("2199-12-30T23:59:59.999999")]
    assert batch.local_day.min() >= 0


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("amount", "-1.00", "amount must not be negative"),
        ("amount", "-0", "amount must not be negative"),
        ("amount", "12.505", "more than 2 fractional digits"),
        ("amount", "12.500", "more than 2 fractional digits"),
        ("amount", "abc", "must be a decimal number"),
        ("amount", "1,50", "must be a decimal number"),
        ("amount", "1e3", "must be a decimal number"),
        ("amount", " 1.5", "must be a decimal number"),
        ("amount", "1.", "must be a decimal number"),
        ("amount", "99999999999999999", "amount is too large"),
        ("amount", "", "required value is empty"),
        ("qty", "0", "qty must be at least 1"),
        ("qty", "-2", "qty must be at least 1"),
        ("qty", "1.5", "qty must be a whole number"),
        ("qty", "two", "qty must be a whole number"),
        ("qty", "0x10", "qty must be a whole number"),
        ("qty", "1000000000", "qty must be at most 999999999"),
        ("qty", "", "required value is empty"),
        ("receipt_id", "", "required value is empty"),
        ("store_id", "", "required value is empty"),
        ("category", "", "required value is empty"),
        ("receipt_id", "R\x00", "holds a control character"),
        ("customer_id", "1\x00", "holds a control character"),
        ("store_id", "S\t1", "holds a control character"),
        ("category", "c\x1b", "holds a control character"),
        ("sku", "A\x7f", "holds a control character"),
    ],
)
def test_bad_values(write_csv, column, value, reason):
    row = {"receipt_id": "R", "customer_id": "1", "store_id": "S", "ts": "2025-06-07T10:00",
           "category": "c", "qty": "1", "amount": "1.00", "sku": ""}
    row[column] = value
    fields = [f'"{v}"' if "," in v else v for v in row.values()]
    [problem] = problems_of(write_csv("r.csv", ",".join(fields), header=HEADER_SKU))
    assert (problem.row, problem.column, problem.value) == (1, column, value)
    assert reason in problem.reason


def test_ids_and_names_are_trimmed_of_surrounding_spaces(write_csv):
    """A card number exported as "0042 " is customer 0042: one customer, not two."""
    batch = read(write_csv("r.csv", " R1 ,0042 ,S1,2025-06-07T10:00,c ,1,1.00", "R2,0042,S1,2025-06-08T10:00,c,1,1.00"))
    assert batch.receipt_id.to_pylist() == ["R1", "R2"]
    assert batch.customer_id.to_pylist() == ["0042", "0042"] and names_of(batch.store_code, batch.store_names) == [
        "S1", "S1"]
    assert batch.category_names == ["c"]


def test_a_control_character_in_a_return_row_or_a_customers_file_is_refused(write_csv):
    path = write_csv("r.csv", "R1,1,S,2025-06-07T10:00,c,1,1.00,,,",
                     "X1,1,S,2025-06-08T10:00,,1,,return,R\x001,1", header=HEADER + ",kind,original_receipt_id,line")
    [problem] = problems_of(path)
    assert (problem.row, problem.column) == (2, "original_receipt_id") and "control character" in problem.reason
    with pytest.raises(InputError, match="row 2, column 'customer_id': holds a control character"):
        read_customers(write_csv("c.csv", "1", "2\x00", header="customer_id"))


def test_every_problem_is_reported_with_its_row(write_csv):
    path = write_csv(
        "r.csv",
        "R1,1,S,2025-06-07T10:00,c,1,1.00",
        "R2,1,S,not a time,c,0,-5",
        "R3,1,S,2025-06-07T10:00,c,1,1.00",
        "R4,1,,2025-06-07T10:00,c,x,1.001",
    )
    problems = problems_of(path)
    assert [(p.row, p.column) for p in problems] == [
        (2, "ts"), (2, "qty"), (2, "amount"), (4, "store_id"), (4, "qty"), (4, "amount"),
    ]
    assert str(problems[0]).startswith(f"{path}, row 2, column 'ts': not an ISO 8601 timestamp")


def test_a_line_that_disagrees_with_its_receipt_is_one_problem(write_csv):
    """One mistyped line of a receipt is one problem, named against what the other lines say."""
    path = write_csv(
        "r.csv",
        "R1,C1,S1,2025-06-07T10:00,a,1,1",
        "R2,C9,S1,2025-06-07T10:00,a,1,1",
        "R1,C1,S2,2025-06-07T10:00,b,1,1",
        "R1,C1,S1,2025-06-07T10:00,c,1,1",
    )
    checked = check_receipts([path], timezone=ZONE, minor_units=2)
    assert [(p.row, p.column, p.value, p.reason) for p in checked.problems] == [
        (3, "store_id", "S2", "the lines of receipt 'R1' disagree on store_id: 2 of 3 say 'S1'"),
    ]
    # The receipt is still left out whole: all three of its rows are rejected.
    assert checked.rejected.tolist() == [True, False, True, True]
    assert checked.batch.receipt_id.to_pylist() == ["R2"]


def test_receipt_rows_that_disagree_on_customer_or_time(write_csv):
    path = write_csv(
        "r.csv",
        "R1,0042,S,2025-06-07T10:00,a,1,1",
        "R1,,S,2025-06-07T10:00,a,1,1",
        "R2,1,S,2025-06-07T10:00,a,1,1",
        "R2,1,S,2025-06-07T10:05,a,1,1",
        # The same instant written two ways is not a disagreement.
        "R3,1,S,2025-06-07T10:00,a,1,1",
        "R3,1,S,2025-06-07T07:00:00Z,a,1,1",
        # A bad timestamp is its own problem and has no vote.
        "R4,1,S,2025-06-07T10:00,a,1,1",
        "R4,1,S,yesterday,a,1,1",
        "R4,1,S,2025-06-07T10:09,a,1,1",
        "R4,1,S,2025-06-07T10:09,a,1,1",
    )
    checked = check_receipts([path], timezone=ZONE, minor_units=2)
    reasons = {(p.row, p.column): p.reason for p in checked.problems}
    # A tie goes to the first line.
    assert reasons.pop((2, "customer_id")) == "the lines of receipt 'R1' disagree on customer_id: 1 of 2 say '0042'"
    assert reasons.pop((4, "ts")) == "the lines of receipt 'R2' disagree on ts: 1 of 2 say '2025-06-07T10:00'"
    assert reasons.pop((7, "ts")) == "the lines of receipt 'R4' disagree on ts: 2 of 3 say '2025-06-07T10:09'"
    assert reasons.pop((8, "ts")).startswith("not an ISO 8601 timestamp")
    assert reasons == {}
    assert checked.batch.receipt_id.to_pylist() == ["R3"]


def test_check_receipts_keeps_good_receipts_and_rejects_whole_receipts(write_csv):
    first = write_csv(
        "a.csv",
        "R1,1,S,2025-06-07T10:00,a,1,1.00",
        "R2,2,S,2025-06-07T09:00,a,1,1.00",
        "R1,1,S,2025-06-07T10:00,b,0,1.00",  # makes all of R1 bad
    )
    second = write_csv(
        "b.csv", "R3,3,S,2025-06-07T08:00,z,1,2.50", "R4,4,S,2025-06-07T08:00,y,1,1.5x"
    )
    checked = check_receipts([first, second], timezone=ZONE, minor_units=2)
    assert not checked.ok
    assert [(p.file, p.row, p.column) for p in checked.problems] == [
        (str(first), 3, "qty"), (str(second), 2, "amount"),
    ]
    assert checked.rejected.tolist() == [True, False, True, False, True]
    assert checked.batch.receipt_id.to_pylist() == ["R3", "R2"]
    assert checked.batch.line_amount_minor.tolist() == [250, 100]
    # Vocabularies hold only what the kept receipts use.
    assert sorted(checked.batch.category_names) == ["a", "z"]
    assert [s.start for s in checked.segments] == [0, 3]
    with pytest.raises(InputError, match="2 problems in the input"):
        checked.raise_for_problems()


def test_all_rows_bad_gives_an_empty_batch_when_checking(write_csv):
    path = write_csv("r.csv", "R1,1,S,2025-06-07,a,1,1")
    checked = check_receipts([path], timezone=ZONE, minor_units=2)
    assert len(checked.batch) == 0 and checked.batch.line_count == 0
    assert checked.rejected.tolist() == [True]


def test_unknown_file_type_is_refused_before_reading(tmp_path, write_csv):
    good = write_csv("r.csv", "R1,1,S,2025-06-07T10:00,a,1,1")
    other = tmp_path / "receipts.xlsx"
    other.write_bytes(b"PK")
    with pytest.raises(UnsupportedFileError) as caught:
        read([good, other])
    assert str(other) in str(caught.value)
    assert ".csv, .csv.gz, .parquet" in str(caught.value)


def test_empty_file_is_an_error(tmp_path, write_csv):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    header_only = write_csv("header.csv")
    problems = problems_of([empty, header_only])
    assert [(p.file, p.reason) for p in problems] == [
        (str(empty), "the file is empty (not even a header row)"),
        (str(header_only), "no receipt rows (only a header)"),
    ]


def test_file_that_is_not_utf8_names_the_byte_and_row(tmp_path):
    path = tmp_path / "latin1.csv"
    text = HEADER_SKU + "\nR1,1,S,2025-06-07T10:00,a,1,1,\nR2,1,S,2025-06-07T10:00,caf\xe9,1,1,\n"
    path.write_bytes(text.encode("latin-1"))
    [problem] = problems_of(path)
    offset = text.encode("latin-1").index(b"\xe9")
    assert problem.file == str(path) and problem.row == 2
    assert f"byte {offset} (0xe9) is not valid UTF-8" in problem.reason


def test_header_that_is_not_utf8(tmp_path):
    path = tmp_path / "r.csv"
    header = b"receipt_id,customer_id,store_id,ts,cat\xe9gorie,qty,amount\n"
    path.write_bytes(header)
    [problem] = problems_of(path)
    assert problem.row == 0  # the header
    assert f"byte {header.index(0xE9)} (0xe9) is not valid UTF-8" in problem.reason


def test_malformed_csv_rows_are_located(write_csv):
    path = write_csv(
        "r.csv",
        "R1,1,S,2025-06-07T10:00,a,1,1,",
        "R2,1,S,2025-06-07T10:00,a,1,1",  # no sku field at all
        "R3,1,S,2025-06-07T10:00,a,1,1,",
        header=HEADER_SKU,
    )
    [problem] = problems_of(path)
    assert problem.row == 2 and problem.reason == "expected 8 fields, found 7"


def test_missing_file(tmp_path):
    [problem] = problems_of(tmp_path / "nowhere.csv")
    assert problem.reason == "file not found"


def test_parquet_column_types_that_lose_information_are_refused(tmp_path):
    table = pa.table({
        "receipt_id": ["R"], "customer_id": pa.array([123], pa.int64()), "store_id": ["S"],
        "ts": ["2025-06-07T10:00"], "category": ["c"], "qty": [1], "amount": pa.array([1.5]),
    })
    path = tmp_path / "r.parquet"
    pq.write_table(table, path)
    reasons = {p.column: p.reason for p in problems_of(path)}
    assert "leading zeros" in reasons["customer_id"]
    assert "binary floating point is inexact" in reasons["amount"]


def test_parquet_decimal_with_too_many_digits(tmp_path):
    table = pa.table({
        "receipt_id": ["R", "R"], "customer_id": ["1", "1"], "store_id": ["S", "S"],
        "ts": ["2025-06-07T10:00"] * 2, "category": ["c", "c"], "qty": [1, 1],
        "amount": pa.array(["1.2500", "1.2550"]).cast(pa.decimal128(9, 4)),
    })
    path = tmp_path / "r.parquet"
    pq.write_table(table, path)
    [problem] = problems_of(path)
    assert (problem.row, problem.column) == (2, "amount")
    assert "more than 2 fractional digits" in problem.reason


def test_error_message_lists_problems_and_the_total(write_csv):
    rows = [f"R{i},1,S,2025-06-07T10:00,c,0,1" for i in range(30)]
    with pytest.raises(InputError) as caught:
        read(write_csv("r.csv", *rows))
    message = str(caught.value)
    assert message.startswith("30 problems in the input:")
    assert "… and 10 more" in message


# --- larger inputs, any order -----------------------------------------------------------------


def synthetic_rows(receipt_count: int, seed: int) -> list[list[str]]:
    """Receipts with several lines each, many sharing a second, written in processing order."""
    rng = random.Random(seed)
    rows = []
    moments = sorted(rng.randrange(0, 40 * 86_400) for _ in range(receipt_count))
    base = dt.datetime(2025, 3, 1)
    receipts = []
    for i, moment in enumerate(moments):
        rid = f"S{rng.randrange(3)}-{i:05d}"
        when = (base + dt.timedelta(seconds=moment - moment % 30)).isoformat(sep=" ")
        customer = "" if rng.random() < 0.2 else f"{rng.randrange(200):06d}"
        receipts.append((when, rid, customer, f"S{rng.randrange(3)}"))
    receipts.sort(key=lambda r: (dt.datetime.fromisoformat(r[0]), r[1]))
    for when, rid, customer, store in receipts:
        for _ in range(rng.randrange(1, 5)):
            cents = rng.randrange(0, 10_000)
            rows.append([rid, customer, store, when, rng.choice("abcde"), str(rng.randrange(1, 4)),
                         f"{cents // 100}.{cents % 100:02d}", str(rng.randrange(100))])
    return rows


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), files=st.integers(1, 3), shuffle=st.booleans())
def test_row_order_and_file_split_never_change_the_batch(tmp_path_factory, seed, files, shuffle):
    rows = synthetic_rows(60, seed)
    directory = tmp_path_factory.mktemp("split")
    header = HEADER_SKU.split(",")

    def write(name, part):
        table = pa.table({name_: [row[i] for row in part] for i, name_ in enumerate(header)})
        path = directory / name
        write_table(table, path)
        return path

    in_order = read(write("sorted.csv", rows))
    rng = random.Random(seed)
    mixed = list(rows)
    if shuffle:
        rng.shuffle(mixed)
    cut = sorted(rng.sample(range(1, len(mixed)), files - 1)) if files > 1 else []
    parts = [mixed[a:b] for a, b in zip([0] + cut, cut + [len(mixed)])]
    suffixes = [".csv", ".parquet", ".csv.gz"]
    paths = [write(f"part{i}{suffixes[i % 3]}", part) for i, part in enumerate(parts)]
    rng.shuffle(paths)
    split = read(paths)
    # Lines keep file order within a receipt, so compare line multisets per receipt.
    assert split.receipt_id.to_pylist() == in_order.receipt_id.to_pylist()
    assert split.customer_id.to_pylist() == in_order.customer_id.to_pylist()
    assert split.instant_us.tolist() == in_order.instant_us.tolist()
    assert split.local_minute.tolist() == in_order.local_minute.tolist()
    for receipt in range(len(in_order)):
        assert sorted(lines_of(split, receipt)) == sorted(lines_of(in_order, receipt))
    if not shuffle and files == 1:
        assert_same_batch(split, in_order)


def test_already_ordered_input_matches_a_python_oracle(write_csv):
    rows = synthetic_rows(300, seed=1)
    batch = read(write_csv("r.csv", *[",".join(row) for row in rows], header=HEADER_SKU))
    zone = zoneinfo.ZoneInfo(ZONE)
    expected = {}
    for rid, customer, store, when, category, qty, amount, _ in rows:
        instant = dt.datetime.fromisoformat(when).replace(tzinfo=zone)
        expected.setdefault(rid, (instant, customer or None, store, []))[3].append(
            (category, int(qty), int(amount.replace(".", "")))
        )
    order = sorted(expected, key=lambda rid: (expected[rid][0], rid))
    assert batch.receipt_id.to_pylist() == order
    for index, rid in enumerate(order):
        instant, customer, store, lines = expected[rid]
        assert batch.instant_us[index] == int(instant.timestamp() * 1_000_000)
        assert batch.customer_id[index].as_py() == customer
        assert batch.store_names[batch.store_code[index]] == store
        assert lines_of(batch, index) == lines
        local = instant.astimezone(zone)
        assert batch.local_minute[index] == local.hour * 60 + local.minute


# Local times on and around Bucharest's 2025 changes, and instants written with offsets.
AROUND_CHANGES = [
    "2025-03-30 02:59:59", "2025-03-30 03:00", "2025-03-30T03:30", "2025-03-30 04:00:00",
    "2025-10-26 02:59", "2025-10-26T03:00", "2025-10-26 03:30:00.5", "2025-10-26 04:00",
    "2025-10-26T00:30:00Z", "2025-10-26T01:30:00Z", "2025-10-26T03:30:00+02:00",
    "2025-12-31 23:59:59.999999", "2026-01-01T00:00", "2025-06-07T10:00:00+03:00",
]


@st.composite
def receipt_rows(draw):
    """Rows of a few receipts (headers shared by their lines), in any order."""
    ids = draw(st.lists(st.sampled_from(["R1", "R10", "R9", "a", "B", "é", "S001-T2-000123"]),
                        min_size=1, max_size=7, unique=True))
    rows = []
    for receipt_id in ids:
        customer = draw(st.sampled_from([None, "0042", "42", "000000"]))
        store = draw(st.sampled_from(["S1", "S2", "NA"]))
        ts = draw(st.sampled_from(AROUND_CHANGES))
        for _ in range(draw(st.integers(1, 3))):
            cents = draw(st.integers(0, 10**9))
            amount = draw(st.sampled_from([f"{cents // 100}.{cents % 100:02d}", f"{cents // 100}"]))
            rows.append((receipt_id, customer, store, ts, draw(st.sampled_from("xyz")),
                         draw(st.integers(1, 5)), amount))
    return draw(st.permutations(rows))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=receipt_rows())
def test_reader_agrees_with_the_row_by_row_oracle(tmp_path, make_batch, rows):
    path = tmp_path / "r.csv"
    columns = list(zip(*rows))
    table = pa.table({
        name: pa.array([None if v is None else str(v) for v in values], pa.string())
        for name, values in zip(HEADER.split(","), columns)
    })
    write_table(table, path)
    assert_same_batch(read(path), make_batch(rows))


#: One spoiled receipt per column the readers parse: each sends its column from the single
#: vectorised conversion to the path that locates the bad row value by value.
SPOILERS = [
    ("BAD-TS", "0042", "S1", "2025-02-30T10:00", "x", "1", "1.00"),
    ("BAD-QTY", "0042", "S1", "2025-03-01T10:00", "x", "one", "1.00"),
    ("BAD-AMOUNT", "0042", "S1", "2025-03-01T10:00", "x", "1", "1.0.0"),
]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=receipt_rows(), at=st.integers(0, 1_000))
def test_the_locating_path_gives_the_good_rows_what_the_fast_path_gives(tmp_path, rows, at):
    """Fast path == slow path: a good file read whole, and the same rows with a spoiled
    receipt per column among them (read value by value where a column does not convert at
    once), give identical batches of the good receipts and one problem per spoiler."""
    def write(name, lines):
        columns = list(zip(*lines))
        write_table(pa.table({column: pa.array([None if v is None else str(v) for v in values], pa.string())
                              for column, values in zip(HEADER.split(","), columns)}), tmp_path / name)
        return tmp_path / name

    position = at % (len(rows) + 1)
    spoiled = rows[:position] + SPOILERS + rows[position:]
    checked = check_receipts([write("spoiled.csv", spoiled)], timezone=ZONE, minor_units=2)
    assert sorted(problem.column for problem in checked.problems) == ["amount", "qty", "ts"]
    assert_same_batch(checked.batch, read(write("good.csv", rows)))


# --- tables and customers ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.parquet"])
def test_write_table_round_trips(tmp_path, name):
    table = pa.table({"customer_id": ["007", "12"], "points": ["10", "20"]})
    path = tmp_path / name
    write_table(table, path)
    assert read_table(path).to_pylist() == table.to_pylist()


def test_write_table_refuses_unknown_types(tmp_path):
    with pytest.raises(UnsupportedFileError):
        write_table(pa.table({"a": [1]}), tmp_path / "t.json")


def test_read_customers(write_csv):
    path = write_csv(
        "customers.csv",
        "000123,1990-05-17,2024-01-02,gold",
        "42,,,",
        header="customer_id,birth_date,joined_on,segment",
    )
    customers = read_customers(path)
    assert customers.customer_id.to_pylist() == ["000123", "42"]
    assert customers.birth_date.tolist() == [dt.date(1990, 5, 17), None]
    assert customers.joined_on.tolist() == [dt.date(2024, 1, 2), None]
    assert customers.attributes.to_pylist() == [{"segment": "gold"}, {"segment": ""}]
    assert customers.birth_months() == {"000123": 5}


def test_read_customers_reports_every_bad_row(write_csv):
    path = write_csv(
        "customers.csv",
        "1,1990-13-01",
        "2,17/05/1990",
        "1,",
        ",1990-01-01",
        header="customer_id,birth_date",
    )
    with pytest.raises(InputError) as caught:
        read_customers(path)
    assert [(p.row, p.column, p.reason) for p in caught.value.problems] == [
        (1, "customer_id", "customer_id appears on more than one row"),
        (1, "birth_date", "not a real date"),
        (2, "birth_date", "not a date in the form YYYY-MM-DD"),
        (3, "customer_id", "customer_id appears on more than one row"),
        (4, "customer_id", "required value is empty"),
    ]


def test_read_customers_needs_customer_id(write_csv):
    path = write_csv("customers.csv", "1,1990-01-01", header="card,birth_date")
    with pytest.raises(InputError) as caught:
        read_customers(path)
    [problem] = caught.value.problems
    assert problem.reason == (
        "missing required column 'customer_id'; the columns found are: 'card', 'birth_date'"
    )


# --- reading in parts, writing piece by piece -----------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_a_file_read_in_parts_is_the_file(tmp_path, suffix):
    rows = {"receipt_id": [f"R{i}" for i in range(5000)], "customer_id": [f"{i % 97:05d}" for i in range(5000)]}
    path = tmp_path / f"t{suffix}"
    write_table(pa.table(rows), path)
    parts = list(read_table_parts(path, rows_per_part=700))
    assert len(parts) > 1 or suffix == ".csv.gz"
    assert pa.concat_tables(parts).to_pydict() == read_table(path).to_pydict()
    assert 2500 <= estimated_rows(path) <= 10_000


def test_reading_in_parts_reports_like_reading_whole(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(HEADER.encode() + b"\nR1,C1,S1,2025-06-07T10:00,b\xe9b\xe9,1,1.00\n")
    with pytest.raises(InputError, match=r"not UTF-8 text: byte \d+ \(0xe9\)"):
        list(read_table_parts(path, rows_per_part=1000))


@pytest.mark.parametrize("name", ["rejects.csv", "rejects.csv.gz", "rejects.parquet"])
def test_a_table_writer_appends_pieces_in_one_schema(tmp_path, name):
    schema = pa.schema([("file", pa.string()), ("row", pa.int64()), ("qty", pa.string())])
    with TableWriter(tmp_path / name, schema) as writer:
        writer.write(pa.table({"file": ["a.csv"], "row": [3], "qty": ["0"]}))
        writer.write(pa.table({"file": ["b.csv"], "row": pa.array([None], pa.int64())}))  # no qty column
    read = read_table(tmp_path / name)
    assert read.column("file").to_pylist() == ["a.csv", "b.csv"]
    assert [None if v in (None, "") else str(v) for v in read.column("qty").to_pylist()] == ["0", None]


def test_a_table_writer_refuses_msgpack(tmp_path):
    with pytest.raises(OutputError, match="msgpack is a format for receipt batches"):
        TableWriter(tmp_path / "rejects.msgpack", pa.schema([("file", pa.string())]))


@pytest.mark.parametrize("unit, tick", [("ms", 10**17), ("s", 10**15), ("ms", -(10**17))])
def test_parquet_timestamps_too_far_to_hold_in_microseconds_are_out_of_range(tmp_path, unit, tick):
    """Multiplied to microseconds they would wrap around into a plausible year."""
    path = tmp_path / "r.parquet"
    table = pa.table({"receipt_id": ["R1"], "customer_id": ["1"], "store_id": ["S"],
                      "ts": pa.array([tick], pa.timestamp(unit, "UTC")), "category": ["c"],
                      "qty": pa.array([1], pa.int64()), "amount": ["1.00"]})
    pq.write_table(table, path)
    [problem] = problems_of(path)
    assert (problem.row, problem.column) == (1, "ts") and "outside the supported range" in problem.reason


def test_a_decimal256_amount_is_read_like_a_decimal128(tmp_path):
    from decimal import Decimal

    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"receipt_id": ["R1"], "customer_id": ["1"], "store_id": ["S"],
                             "ts": ["2025-06-07T10:00"], "category": ["c"], "qty": pa.array([1], pa.int64()),
                             "amount": pa.array([Decimal("12.50")], pa.decimal256(40, 2))}), path)
    assert read(path).line_amount_minor.tolist() == [1250]


def test_a_customers_file_with_a_column_twice_is_refused(write_csv):
    with pytest.raises(InputError, match="column 'customer_id': the column appears more than once"):
        read_customers(write_csv("c.csv", "1,1", header="customer_id,customer_id"))
