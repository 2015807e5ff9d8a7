"""Bounded fuzzing of every reader: bad input is named, never a traceback, and loses nothing good.

Each example writes a few well-formed receipts, spoils some cells with hostile values
(control characters, huge numbers, odd dates, empty text, unicode) and reads the file as
CSV, Parquet or a columnar msgpack batch — or sends a receipt body, spoiled the same way, to
the API. Every outcome must be an answer: problems that name file, row and column; every
receipt none of whose rows was spoiled, kept.
"""
from __future__ import annotations

import csv
import itertools

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fidelis.core.errors import InputError
from fidelis.core.ingest.msgpack_batch import encode
from fidelis.core.ingest.receipts import check_receipts

COLUMNS = ("receipt_id", "customer_id", "store_id", "ts", "category", "qty", "amount")
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])

#: Values a careless export or a hostile client sends.
HOSTILE = st.one_of(
    st.sampled_from(["", " ", "\x00", "a\x00b", "\t", "\r\n", "\x7f", "9" * 40, "-1", "1e308", "NaN", "inf",
                     "0x10", "1,5", "2025-02-30T10:00", "2025-13-01T00:00", "9999-12-31T23:59:59Z",
                     "1969-12-31T23:59:59Z", "2025-06-07T10:00+25:00", "2025-06-07", "💳", "ñ" * 200,
                     "1" * 5000, "12.345", "-0", "' OR 1=1 --", "<script>", "null", "None"]),
    st.text(max_size=30),
)


@st.composite
def spoiled_receipts(draw):
    """(rows of good receipts with some cells replaced, the receipt ids left untouched)."""
    receipt_count = draw(st.integers(1, 6))
    rows = []
    for receipt in range(receipt_count):
        customer = draw(st.sampled_from(["0001", "0002", ""]))
        ts = f"2025-06-{1 + receipt:02d}T{draw(st.integers(0, 23)):02d}:30"
        for _ in range(draw(st.integers(1, 3))):
            rows.append([f"R{receipt}", customer, "S1", ts, draw(st.sampled_from(["grocery", "own_brand"])),
                         str(draw(st.integers(1, 5))), f"{draw(st.integers(0, 9999))}.{draw(st.integers(0, 99)):02d}"])
    owner = [row[0] for row in rows]  # each row's receipt before spoiling
    spoiled = draw(st.lists(st.tuples(st.integers(0, len(rows) - 1), st.sampled_from(COLUMNS), HOSTILE),
                            max_size=4))
    for row, column, value in spoiled:
        if column == "receipt_id" and value.lstrip(" ").startswith("R"):
            value = "x" + value  # never another good receipt's id (ids are trimmed of spaces)
        rows[row][COLUMNS.index(column)] = value
    return rows, set(owner) - {owner[row] for row, _, _ in spoiled}


def _write(rows, kind, folder) -> str:
    path = folder / f"receipts.{kind}"
    if kind == "csv":
        with path.open("w", newline="", encoding="utf-8", errors="surrogatepass") as handle:
            csv.writer(handle).writerows([COLUMNS, *rows])
    else:
        table = pa.table({name: pa.array([row[i] for row in rows], pa.string()) for i, name in enumerate(COLUMNS)})
        if kind == "parquet":
            pq.write_table(table, path)
        else:
            path.write_bytes(encode(table))
    return str(path)


@pytest.mark.parametrize("kind", ["csv", "parquet", "msgpack"])
def test_a_spoiled_file_is_named_and_keeps_every_good_receipt(tmp_path_factory, kind):
    @FUZZ
    @given(spoiled_receipts())
    def check(case):
        rows, untouched = case
        folder = tmp_path_factory.mktemp(kind)
        try:
            path = _write(rows, kind, folder)
        except (UnicodeEncodeError, ValueError):  # text no file of this kind can hold (lone surrogates)
            return
        try:
            checked = check_receipts([path], timezone="Europe/Bucharest", minor_units=2)
        except InputError as unusable:  # the file as a whole (a column type, no rows)
            assert all(problem.file == path for problem in unusable.problems), unusable
            return
        for problem in checked.problems:
            assert problem.file == path and problem.row is not None and problem.column is not None, problem
            assert 1 <= problem.row <= len(rows)
        kept = set(checked.batch.receipt_id.to_pylist())
        assert untouched <= kept, (untouched - kept, checked.problems)
        assert len(kept) + len({problem.row for problem in checked.problems}) >= 1

    check()


@pytest.fixture
def api_client(tmp_path, verde_club):
    from fidelis.core.ledger.api_keys import create_api_key
    from fidelis.core.ledger.handle import Ledger
    from fidelis.server.app import create_app

    with Ledger.create(tmp_path / "chain.db", verde_club) as ledger:
        key = create_api_key(ledger, "write")
    return create_app({"LEDGER": str(tmp_path / "chain.db")}).test_client(), key


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | HOSTILE,
                           lambda children: st.lists(children, max_size=3)
                           | st.dictionaries(st.sampled_from(["receipt_id", "lines", "qty", "amount", "x"]),
                                             children, max_size=3), max_leaves=8)


def test_a_spoiled_receipt_body_is_answered_never_500(api_client):
    client, key = api_client
    good = {"receipt_id": "R1", "customer_id": "C1", "store_id": "S1", "ts": "2025-06-07T10:00",
            "lines": [{"category": "grocery", "qty": 1, "amount": "10.00"}]}
    numbers = itertools.count()

    @FUZZ
    @given(field=st.sampled_from(["receipt_id", "customer_id", "store_id", "ts", "lines", "extra"]),
           value=JSON_VALUES, line_field=st.sampled_from(["category", "qty", "amount", "sku", None]))
    def check(field, value, line_field):
        body = {**good, "receipt_id": f"R{next(numbers)}", "lines": [dict(good["lines"][0])]}
        if line_field is None:
            body[field] = value
        else:
            body["lines"][0][line_field] = value
        response = client.post("/v1/receipts", json=body, headers={"X-API-Key": key})
        assert response.status_code in (200, 201, 400, 409, 413, 422), (response.status_code, response.json)
        if response.status_code >= 400:
            error = response.json["error"]
            assert error["code"] and error["message"]

    check()
