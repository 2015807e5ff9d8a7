"""Columnar msgpack batches: receipt lines as one msgpack map of columns.

The format ``fidelis load`` reads from ``.msgpack`` files and the server's batch endpoint
takes as its body. Tills and integrations can produce it without Arrow, and Fidelis decodes
numeric columns without touching each value. One row per line item, the columns of
PROGRAM.md §1, in one map:

- a text column (``receipt_id``, ``customer_id``, ``store_id``, ``ts``, ``category``,
  ``sku``) is a msgpack array of strings, ``nil`` for a missing value;
- a numeric column (``qty``, ``amount_minor``) is a map ``{"dtype": "<i8", "data": <bin>}``:
  the values as raw little-endian bytes and their numpy dtype (signed or unsigned integers).

For example ``{"receipt_id": ["R1"], "customer_id": ["0042"], "store_id": ["S1"],
"ts": ["2025-06-07T10:00:00"], "category": ["grocery"], "qty": {"dtype": "<i4", "data":
b"\\x01\\x00\\x00\\x00"}, "amount_minor": {"dtype": "<i8", "data": <8 bytes of 1250>}}``.
Amounts may also be given as an ``amount`` text column of decimal strings, as in CSV.
"""
from __future__ import annotations

import msgpack
import numpy as np
import pyarrow as pa

from ..errors import InputError, InputProblem

#: numpy dtype kinds a numeric column may have: signed and unsigned integers.
_INTEGER_KINDS = "iu"


def _problem(source: str, column: str | None, reason: str) -> InputError:
    return InputError([InputProblem(source, None, column, None, reason)])


def decode(body: bytes, source: str = "<msgpack>") -> pa.Table:
    """A columnar msgpack batch as an Arrow table; malformed bodies raise InputError."""
    try:
        columns = msgpack.unpackb(body, raw=False)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as error:
        raise _problem(source, None, f"not a msgpack batch: {error}") from None
    if not isinstance(columns, dict) or not columns:
        raise _problem(source, None, "a msgpack batch must be a non-empty map of column name to values")
    arrays = {}
    for name, values in columns.items():
        if not isinstance(name, str):
            raise _problem(source, None, f"column names must be strings, got {name!r}")
        if isinstance(values, dict):
            arrays[name] = _numeric(values, name, source)
        elif isinstance(values, list):
            if not all(value is None or isinstance(value, str) for value in values):
                raise _problem(source, name, "a text column must be an array of strings or nil")
            arrays[name] = pa.array(values, type=pa.string())
        else:
            raise _problem(source, name, "a column must be an array of strings or a {dtype, data} map")
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise _problem(source, None, f"columns differ in length: {lengths}")
    return pa.table(arrays)


def _numeric(values: dict, name: str, source: str) -> pa.Array:
    if set(values) != {"dtype", "data"} or not isinstance(values["data"], bytes):
        raise _problem(source, name, 'a numeric column must be {"dtype": "<i8", "data": <bytes>}')
    try:
        dtype = np.dtype(values["dtype"])
    except TypeError:
        raise _problem(source, name, f"unknown dtype {values['dtype']!r}") from None
    if dtype.kind not in _INTEGER_KINDS or dtype.byteorder == ">":
        raise _problem(source, name, f"dtype {values['dtype']!r} is not a little-endian integer type")
    if len(values["data"]) % dtype.itemsize:
        raise _problem(source, name, f"{len(values['data'])} bytes is not a whole number of {dtype} values")
    return pa.array(np.frombuffer(values["data"], dtype=dtype))


def encode(table: pa.Table) -> bytes:
    """The msgpack batch of a table with text and integer columns (the inverse of decode)."""
    columns = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_integer(column.type):
            values = column.to_numpy(zero_copy_only=False)
            columns[name] = {"dtype": values.dtype.newbyteorder("<").str, "data": values.astype(
                values.dtype.newbyteorder("<")).tobytes()}
        else:
            columns[name] = column.cast(pa.string()).to_pylist()
    return msgpack.packb(columns, use_bin_type=True)
