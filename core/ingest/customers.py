"""The optional customers file: birth dates and join dates by customer id."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..batch import CustomerTable
from ..errors import InputError, InputProblem
from .columns import (
    CARD_NUMBER_HINT,
    CONTROL_CHARACTER,
    CUSTOMER_COLUMNS,
    DATE_PATTERN,
    EMPTY_VALUE,
    Findings,
    InputSegment,
    bool_mask,
    cast_each,
    combined_chunks,
    dictionary_codes,
    identifier_column,
    int64_values,
    located_problems,
    one_array,
    real_calendar,
    text_column,
)
from .files import read_table


def read_customers(path: str | Path) -> CustomerTable:
    """Read the optional customers file; every bad row is reported in one InputError."""
    source = str(path)
    table = read_table(path)
    names = table.column_names
    if "customer_id" not in names:
        found = ", ".join(repr(name) for name in names) or "none"
        raise InputError([InputProblem(
            source, None, None, None,
            f"missing required column 'customer_id'; the columns found are: {found}",
        )])
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError([InputProblem(source, None, name, None, "the column appears more than once")
                          for name in repeated])
    text, control_rows = identifier_column(table.column("customer_id"), allow_integers=False)
    if text is None:
        raise InputError([InputProblem(
            source, None, "customer_id", None,
            f"column must hold text, not {table.column('customer_id').type}{CARD_NUMBER_HINT}",
        )])
    customer_id = one_array(text)
    findings = Findings(table.num_rows)
    empty = bool_mask(pc.equal(customer_id, ""))
    findings.add(np.flatnonzero(empty), "customer_id", EMPTY_VALUE)
    findings.add(control_rows, "customer_id", CONTROL_CHARACTER)
    codes, distinct = dictionary_codes(customer_id)
    if len(distinct) < len(customer_id):
        repeated = (np.bincount(codes, minlength=len(distinct))[codes] > 1) & ~empty
        reason = "customer_id appears on more than one row"
        findings.add(np.flatnonzero(repeated), "customer_id", reason)
    dates = {
        name: _date_column(table.column(name), name, findings, source)
        if name in names
        else np.full(table.num_rows, np.datetime64("NaT"), dtype="datetime64[D]")
        for name in ("birth_date", "joined_on")
    }
    problems = located_problems(findings, [InputSegment(source, table)])
    if problems:
        raise InputError(problems)
    extra = [name for name in names if name not in CUSTOMER_COLUMNS]
    return CustomerTable(
        customer_id=customer_id,
        birth_date=dates["birth_date"],
        joined_on=dates["joined_on"],
        attributes=table.select(extra) if extra else None,
    )


def _date_column(
    column: pa.ChunkedArray, name: str, findings: Findings, source: str
) -> np.ndarray:
    """``YYYY-MM-DD`` text or a date column as datetime64[D]; empty is unknown (NaT)."""
    result = np.full(len(column), np.datetime64("NaT"), dtype="datetime64[D]")
    if pa.types.is_date(column.type):
        days = combined_chunks(column).cast(pa.date32())
        known = ~bool_mask(days.is_null())
        result[known] = int64_values(days.cast(pa.int32()))[known].astype("datetime64[D]")
        return result
    text = text_column(column, allow_integers=False)
    if text is None:
        raise InputError([
            InputProblem(source, None, name, None, f"column must hold dates, not {column.type}")
        ])
    present = ~bool_mask(pc.equal(text, ""))
    shaped = bool_mask(pc.match_substring_regex(text, DATE_PATTERN))
    findings.add(np.flatnonzero(present & ~shaped), name, "not a date in the form YYYY-MM-DD")
    rows = np.flatnonzero(shaped)
    values = one_array(text.take(pa.array(rows)))
    _, real = real_calendar(values, with_time=False)
    findings.add(rows[~real], name, "not a real date")
    parsed, ok = cast_each(values.filter(pa.array(real)), pa.date32())
    days = int64_values(parsed.cast(pa.int32()))
    result[rows[real][ok]] = days[ok].astype("datetime64[D]")
    findings.add(rows[real][~ok], name, "not a real date")
    return result
