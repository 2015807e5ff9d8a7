"""Receipt columns, row by row: each column of PROGRAM.md §1 parsed and checked.

Every bad value is recorded as a reason code per row (0 is fine) and turned into one
problem per row with its column and value; values that repeat are parsed once per distinct
value, independent columns on parallel threads. The Arrow helpers at the end are what the
parsers share.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import localtime
from ..errors import InputProblem

RECEIPT_COLUMNS = (
    "receipt_id", "customer_id", "store_id", "ts", "category", "qty", "amount", "sku",
    "kind", "original_receipt_id", "line",
)
#: ``kind`` values: a row is a sale line unless it says ``return``.
SALE, RETURN = "sale", "return"
#: ``amount`` may be given as ``amount_minor`` instead; ``sku`` is optional.
REQUIRED_RECEIPT_COLUMNS = (
    "receipt_id", "customer_id", "store_id", "ts", "category", "qty", "amount",
)
CUSTOMER_COLUMNS = ("customer_id", "birth_date", "joined_on")
#: Largest quantity on one line: ``line_qty`` is int32.
MAX_QTY = 999_999_999
#: Digits an amount may have in all, so that its minor units fit in int64.
MAX_AMOUNT_DIGITS = 18

#: Called after each file is read, with the file's name and its number of data rows.
Progress = Callable[[str, int], None]

# Threads for checking columns side by side (the CSV reader has its own pool).
_THREADS = min(os.cpu_count() or 1, 4)
_PARALLEL_FROM_ROWS = 10_000
# Larger blocks read faster: 0.57 s at 16 MiB against 1.2 s at 1 MiB for a 450 MB file.
_CSV_BLOCK_BYTES = 16 << 20
_TEXT_OVERFLOW = (pa.ArrowInvalid, pa.ArrowCapacityError)

_TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?$"
)
_OFFSET_PATTERN = r"(Z|[+-][0-9]{2}:?[0-9]{2})$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_QTY_PATTERN = r"^[0-9]{1,9}$"
_MICROS_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}
CARD_NUMBER_HINT = " (numeric card numbers lose their leading zeros; store them as text)"

# Why a value is bad, as small codes per column; 0 is "fine", the tuples hold the messages.
EMPTY_VALUE = "required value is empty"
#: An id or name holding a C0 control character (NUL, tab, line break…) or DEL is a corrupt
#: export or till, not a receipt: it is refused, never stored.
CONTROL_CHARACTER = "holds a control character (NUL, tab, line break…); ids and names must be printable text"
_CONTROL = r"[\x00-\x1f\x7f]"
_CONTROL_PATTERN = re.compile(_CONTROL)
NO_ROWS = "no receipt rows (only a header)"
_TS_EMPTY, _TS_NOT_ISO, _TS_DATE_ONLY, _TS_INVALID, _TS_OUT_OF_RANGE = range(1, 6)
TIMESTAMP_REASONS = (
    None,
    EMPTY_VALUE,
    "not an ISO 8601 timestamp such as 2025-06-07T10:00:00 or 2025-06-07 10:00:00+03:00",
    "a date without a time of day",
    "not a real date and time",
    "outside the supported range 1970-01-02T00:00Z to 2199-12-30T23:59:59Z",
)
_QTY_EMPTY, _QTY_NOT_INTEGER, _QTY_BELOW_ONE, _QTY_TOO_LARGE = range(1, 5)
QTY_REASONS = (
    None,
    EMPTY_VALUE,
    "qty must be a whole number",
    "qty must be at least 1",
    f"qty must be at most {MAX_QTY}",
)
_AMOUNT_EMPTY, _AMOUNT_NOT_NUMBER, _AMOUNT_NEGATIVE, _AMOUNT_TOO_PRECISE, _AMOUNT_TOO_LARGE = (
    range(1, 6)
)


@dataclass
class InputSegment:
    """One input table and where its rows sit among all input rows of a read."""

    source: str
    table: pa.Table
    #: Row number of the table's first row in its source (a chunk of a larger body).
    first_row: int = 1
    #: Index of the table's first row among all input rows.
    start: int = 0
    #: Each row's number in its source, where the rows are not consecutive ones (a part of a
    #: file split for a bounded-memory load); None means ``first_row`` onwards.
    row_numbers: np.ndarray | None = None

    def source_rows(self, rows: np.ndarray) -> np.ndarray:
        """1-based source row numbers of the table's rows ``rows`` (indices into the table)."""
        rows = np.asarray(rows, dtype=np.int64)
        return rows + self.first_row if self.row_numbers is None else self.row_numbers[rows]


def _amount_reasons(minor_units: int) -> tuple[str | None, ...]:
    digits = f"{minor_units} fractional digit{'s' if minor_units != 1 else ''}"
    return (
        None,
        EMPTY_VALUE,
        "amount must be a decimal number such as 12.50 (a point, no sign, no thousands separators)",
        "amount must not be negative",
        f"amount has more than {digits}, the currency's minor units",
        "amount is too large",
    )



@dataclass
class Findings:
    """Bad values found column by column, as arrays of row indices (located at the end)."""

    row_count: int
    bad: np.ndarray = field(init=False)
    entries: list[tuple[np.ndarray, str | None, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bad = np.zeros(self.row_count, dtype=bool)

    def add(self, rows: np.ndarray, column: str | None, reason: str) -> None:
        if len(rows):
            rows = np.asarray(rows, dtype=np.int64)
            self.entries.append((rows, column, reason))
            self.bad[rows] = True

    def add_coded(self, codes: np.ndarray, column: str, reasons: Sequence[str | None]) -> None:
        """Record every row whose reason code is not 0."""
        flagged = np.flatnonzero(codes)
        for code in np.unique(codes[flagged]):
            self.add(flagged[codes[flagged] == code], column, reasons[code])


def majority(values: list) -> tuple[np.ndarray, object]:
    """The value most of a receipt's lines carry (ties: the first line's), and the others' positions.

    Lines that disagree are reported one problem each against the majority, so one mistyped
    line of a twelve-line receipt is one problem, not twelve.
    """
    if not values:
        return np.zeros(0, dtype=np.int64), None
    said = Counter(values).most_common(1)[0][0]  # most_common keeps first-seen order in ties
    return np.flatnonzero([value != said for value in values]), said


@dataclass
class ParsedLines:
    """Input rows, parsed; ``findings`` holds the rows with a bad value of their own."""

    receipt_id: pa.ChunkedArray
    customer_id: pa.ChunkedArray
    store_id: pa.ChunkedArray
    instant_us: np.ndarray
    instant_ok: np.ndarray
    category: pa.ChunkedArray
    qty: np.ndarray
    amount_minor: np.ndarray
    sku: pa.ChunkedArray | None
    findings: Findings

    def __len__(self) -> int:
        return len(self.instant_us)

    @classmethod
    def concat(cls, parts: list["ParsedLines"]) -> "ParsedLines":
        if len(parts) == 1:
            return parts[0]
        findings = Findings(sum(len(part) for part in parts))
        start = 0
        for part in parts:
            for rows, column, reason in part.findings.entries:
                findings.add(rows + start, column, reason)
            start += len(part)
        def sku_of(part: ParsedLines) -> pa.ChunkedArray:
            if part.sku is None:  # a table without the optional column
                return pa.chunked_array([pa.nulls(len(part), pa.string())])
            return part.sku

        sku = None
        if any(part.sku is not None for part in parts):
            sku = _concat_text([sku_of(part) for part in parts])
        return cls(
            receipt_id=_concat_text([part.receipt_id for part in parts]),
            customer_id=_concat_text([part.customer_id for part in parts]),
            store_id=_concat_text([part.store_id for part in parts]),
            instant_us=np.concatenate([part.instant_us for part in parts]),
            instant_ok=np.concatenate([part.instant_ok for part in parts]),
            category=_concat_text([part.category for part in parts]),
            qty=np.concatenate([part.qty for part in parts]),
            amount_minor=np.concatenate([part.amount_minor for part in parts]),
            sku=sku,
            findings=findings,
        )


def _amount_column_name(names: list[str]) -> str:
    return "amount_minor" if "amount_minor" in names and "amount" not in names else "amount"


def table_problems(segment: InputSegment, *, row_count: int | None = None) -> list[InputProblem]:
    """What makes a whole table unusable: missing or repeated columns, no rows.

    ``row_count`` is the whole file's when the segment is only its first rows.
    """
    problems = column_problems(segment.table.column_names, segment.source)
    if not problems and (segment.table.num_rows if row_count is None else row_count) == 0:
        problems.append(InputProblem(segment.source, None, None, None, NO_ROWS))
    return problems


def column_problems(names: list[str], source: str) -> list[InputProblem]:
    """Missing or repeated receipt columns: what makes a file unusable whatever its rows."""
    problems: list[InputProblem] = []
    amount_column = _amount_column_name(names)
    required = [amount_column if name == "amount" else name for name in REQUIRED_RECEIPT_COLUMNS]
    missing = [name for name in required if name not in names]
    if missing:
        listed = ", ".join(repr(name) for name in missing)
        found = ", ".join(repr(name) for name in names) or "none"
        plural = "s" if len(missing) > 1 else ""
        problems.append(InputProblem(
            source, None, None, None,
            f"missing required column{plural} {listed}; the columns found are: {found}",
        ))
    if "amount" in names and "amount_minor" in names:
        problems.append(InputProblem(
            source, None, "amount_minor", None, "give either 'amount' or 'amount_minor', not both"
        ))
    known = set(RECEIPT_COLUMNS) | {"amount_minor"}
    for name in sorted({name for name in names if names.count(name) > 1 and name in known}):
        problems.append(InputProblem(source, None, name, None, "the column appears more than once"))
    return problems


def column_type_problems(segment: InputSegment, *, timezone: str, minor_units: int) -> list[InputProblem]:
    """Columns whose type cannot hold their values (a numeric card number, float amounts).

    A type is the file's, not a row's: checking a table's first row checks the whole file.
    """
    found = parse_lines(InputSegment(segment.source, segment.table.slice(0, 1)),
                         timezone=timezone, minor_units=minor_units)
    return found if isinstance(found, list) else []


def parse_lines(
    segment: InputSegment, *, timezone: str, minor_units: int
) -> ParsedLines | list[InputProblem]:
    """Parse each column of one table, or say which column types make it unusable."""
    table, source = segment.table, segment.source
    names = table.column_names
    amount_column = _amount_column_name(names)
    text_names = [
        name
        for name in ("receipt_id", "customer_id", "store_id", "category", "sku")
        if name in names
    ]

    def text_columns() -> dict[str, tuple[pa.ChunkedArray | None, np.ndarray]]:
        return {
            name: identifier_column(table.column(name), allow_integers=name != "customer_id")
            for name in text_names
        }

    identifiers, instant, qty, amount = in_parallel(
        table.num_rows,
        text_columns,
        lambda: instant_column(table.column("ts"), timezone),
        lambda: qty_column(table.column("qty")),
        lambda: _amount_column(table.column(amount_column), amount_column, minor_units),
    )

    text = {name: found for name, (found, _) in identifiers.items()}

    def unusable(name: str, holds: str, hint: str = "") -> InputProblem:
        kind = table.column(name).type
        return InputProblem(source, None, name, None, f"column must hold {holds}, not {kind}{hint}")

    problems = [
        unusable(name, "text", CARD_NUMBER_HINT if name == "customer_id" else "")
        for name in text_names
        if text[name] is None
    ]
    if instant is None:
        problems.append(unusable("ts", "ISO 8601 text or timestamps"))
    if qty is None:
        problems.append(unusable("qty", "whole numbers"))
    if amount is None:
        floating = pa.types.is_floating(table.column(amount_column).type)
        problems.append(unusable(
            amount_column, "decimal text, decimals or integers",
            " (binary floating point is inexact)" if floating else "",
        ))
    if problems:
        return problems

    findings = Findings(table.num_rows)
    for name in ("receipt_id", "store_id", "category"):
        findings.add(np.flatnonzero(bool_mask(pc.equal(text[name], ""))), name, EMPTY_VALUE)
    for name, (_, control_rows) in identifiers.items():
        findings.add(control_rows, name, CONTROL_CHARACTER)
    if "kind" in names:  # return rows were taken out already: what is left must be a sale
        kind = text_column(table.column("kind"), allow_integers=False)
        if kind is None:
            kind = pa.chunked_array([pa.array(["?"] * table.num_rows)])
        findings.add(np.flatnonzero(~bool_mask(pc.is_in(kind, value_set=pa.array(["", SALE])))), "kind",
                     f"must be {SALE!r} or {RETURN!r} (empty is a sale)")
    instant_us, instant_codes = instant
    findings.add_coded(instant_codes, "ts", TIMESTAMP_REASONS)
    qty_values, qty_codes = qty
    findings.add_coded(qty_codes, "qty", QTY_REASONS)
    amount_minor, amount_codes = amount
    findings.add_coded(amount_codes, amount_column, _amount_reasons(minor_units))
    sku = text.get("sku")
    if sku is not None:
        sku = pc.if_else(pc.equal(sku, ""), pa.scalar(None, sku.type), sku)
    return ParsedLines(
        receipt_id=text["receipt_id"],
        customer_id=text["customer_id"],
        store_id=text["store_id"],
        instant_us=instant_us,
        instant_ok=instant_codes == 0,
        category=text["category"],
        qty=qty_values,
        amount_minor=amount_minor,
        sku=sku,
        findings=findings,
    )


def in_parallel(rows: int, *calls: Callable[[], object]) -> list:
    """Run independent column work side by side; Arrow and numpy release the GIL. A few rows
    (a receipt from a till) are checked in line: starting threads would cost more."""
    if _THREADS == 1 or rows < _PARALLEL_FROM_ROWS:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=min(_THREADS, len(calls))) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


def _needs_a_look(text: pa.ChunkedArray) -> bool:
    """Whether any value may hold a control character or surrounding spaces: one pass over
    the text's bytes (no control byte, no space: nothing to do), then, only where spaces
    occur, Arrow's prefix and suffix tests."""
    for chunk in text.chunks:
        data = chunk.buffers()[2]
        if data is None or not len(chunk):
            continue
        raw = np.frombuffer(data, dtype=np.uint8)
        if ((raw < 0x20) | (raw == 0x7F)).any():
            return True
        if (raw == 0x20).any() and (pc.any(pc.starts_with(chunk, " ")).as_py() or
                                    pc.any(pc.ends_with(chunk, " ")).as_py()):
            return True
    return False


def holds_control_character(value: str) -> bool:
    """The row-by-row form of the control-character check (return rows are checked one by one)."""
    return _CONTROL_PATTERN.search(value) is not None


def identifier_column(column: pa.ChunkedArray, *, allow_integers: bool
                      ) -> tuple[pa.ChunkedArray | None, np.ndarray]:
    """An id or name column as text (:func:`text_column`), surrounding spaces trimmed — a card
    number exported as ``"0042 "`` is customer ``0042`` — and the rows holding a control
    character. One pass over the bytes when nothing needs either (the common case)."""
    text = text_column(column, allow_integers=allow_integers)
    nothing = np.zeros(0, dtype=np.int64)
    if text is None or not _needs_a_look(text):
        return text, nothing
    text = pc.utf8_trim(text, " ")
    return text, np.flatnonzero(bool_mask(pc.match_substring_regex(text, _CONTROL)))


def text_column(column: pa.ChunkedArray, *, allow_integers: bool) -> pa.ChunkedArray | None:
    """The column as text with nulls as empty strings; None if it does not hold text.

    Chunks are kept as read: Arrow kernels work chunk by chunk, and joining them would copy.
    """
    data_type = column.type
    if pa.types.is_dictionary(data_type):
        if not _is_text(data_type.value_type):
            return None
        column = column.cast(data_type.value_type)
    elif pa.types.is_null(data_type):  # a Parquet column that is empty throughout
        column = column.cast(pa.string())
    elif pa.types.is_integer(data_type):
        if not allow_integers:
            return None
        column = column.cast(pa.string())
    elif not _is_text(data_type):
        return None
    return pc.fill_null(column, "") if column.null_count else column


def instant_column(
    column: pa.ChunkedArray, timezone: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """Instants (µs UTC) and reason codes; None for a column type that cannot hold times."""
    data_type = column.type
    if pa.types.is_dictionary(data_type) and _is_text(data_type.value_type):
        column = column.cast(data_type.value_type)
        data_type = column.type
    n = len(column)
    if _is_text(data_type):
        distinct, which = _distinct(_filled(column), adjacent=True)
        instant, codes = _parse_timestamps(distinct, timezone)
        return instant[which], codes[which]
    if pa.types.is_date(data_type):
        codes = np.full(n, _TS_DATE_ONLY, dtype=np.int8)
        codes[bool_mask(column.is_null())] = _TS_EMPTY
        return np.zeros(n, dtype=np.int64), codes
    if pa.types.is_timestamp(data_type):
        ticks = int64_values(combined_chunks(column).cast(pa.int64()))
        codes = np.zeros(n, dtype=np.int8)
        codes[bool_mask(column.is_null())] = _TS_EMPTY
        if data_type.unit == "ns":
            values = np.floor_divide(ticks, 1000)
        else:  # seconds or milliseconds far out of range would wrap around in microseconds
            per_tick = _MICROS_PER_UNIT[data_type.unit]
            margin_us = 2 * localtime.MICROS_PER_DAY
            wraps = (ticks < (localtime.FIRST_INSTANT_US - margin_us) // per_tick) | (
                ticks > (localtime.END_INSTANT_US + margin_us) // per_tick)
            codes[(codes == 0) & wraps] = _TS_OUT_OF_RANGE
            values = np.where(wraps, 0, ticks) * per_tick
        if data_type.tz is None:
            return _local_to_instant(values, codes, timezone)
        codes[(codes == 0) & _outside_supported_range(values)] = _TS_OUT_OF_RANGE
        return values, codes
    return None


def _parse_timestamps(text: pa.Array, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse distinct ISO 8601 strings: naive ones as chain-local time, others as instants."""
    n = len(text)
    instant = np.zeros(n, dtype=np.int64)
    codes = np.zeros(n, dtype=np.int8)
    shaped = bool_mask(pc.match_substring_regex(text, _TIMESTAMP_PATTERN))
    if not shaped.all():
        unshaped = np.flatnonzero(~shaped)
        values = text.take(pa.array(unshaped))
        date_only = bool_mask(pc.match_substring_regex(values, DATE_PATTERN))
        codes[unshaped] = np.where(
            bool_mask(pc.equal(values, "")), _TS_EMPTY, np.where(date_only, _TS_DATE_ONLY, _TS_NOT_ISO)
        )
    with_offset = shaped & bool_mask(pc.match_substring_regex(text, _OFFSET_PATTERN))
    kinds = ((shaped & ~with_offset, pa.timestamp("ns")), (with_offset, pa.timestamp("ns", "UTC")))
    for subset, target in kinds:
        rows = np.flatnonzero(subset)
        if not len(rows):
            continue
        values = text if len(rows) == n else text.take(pa.array(rows))
        nanos, ok, out_of_range = _cast_timestamps(values, target)
        codes[rows[~ok]] = np.where(out_of_range[~ok], _TS_OUT_OF_RANGE, _TS_INVALID)
        micros = np.floor_divide(nanos[ok], 1000)
        good = rows[ok]
        if target.tz is None:
            instant[good], codes[good] = _local_to_instant(micros, codes[good], timezone)
        else:
            instant[good] = micros
            codes[good[_outside_supported_range(micros)]] = _TS_OUT_OF_RANGE
    return instant, codes


def _cast_timestamps(
    values: pa.Array, target: pa.DataType
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nanoseconds of well-shaped ISO 8601 strings; which parsed; which are out of range.

    One cast does it when every value is a real date and time. Otherwise the calendar is
    checked column-wise, so that only plausible values are cast and only those Arrow still
    refuses are tried one by one.
    """
    n = len(values)
    try:
        nanos = int64_values(pc.cast(values, target).cast(pa.int64()))
        return nanos, np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    except pa.ArrowInvalid:
        pass
    year, real = real_calendar(values, with_time=True)
    # Nanosecond timestamps span 1677-09-21 to 2262-04-11: whole years inside are safe.
    # Whether an instant is in the supported range is decided once it is parsed.
    out_of_range = (year < 1678) | (year > 2261)
    candidates = np.flatnonzero(real & ~out_of_range)
    parsed, parsed_ok = cast_each(values.take(pa.array(candidates)), target)
    nanos = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    nanos[candidates] = int64_values(parsed.cast(pa.int64()))
    ok[candidates] = parsed_ok
    return nanos, ok, out_of_range


def real_calendar(values: pa.Array, *, with_time: bool) -> tuple[np.ndarray, np.ndarray]:
    """The year of each well-shaped date (and time), and whether it names a real one.

    The fields sit at fixed places once the shape is checked: ``YYYY-MM-DD[T ]HH:MM[:SS…``.
    """

    def number(start: int, stop: int, present: pa.Array | None = None) -> np.ndarray:
        digits = pc.utf8_slice_codeunits(values, start, stop)
        if present is not None:
            digits = pc.if_else(present, digits, "0")
        return int64_values(pc.cast(digits, pa.int64()))

    year, month, day = number(0, 4), number(5, 7), number(8, 10)
    month_index = (year - 1970) * 12 + np.clip(month, 1, 12) - 1
    first_day = month_index.astype("datetime64[M]").astype("datetime64[D]")
    next_first_day = (month_index + 1).astype("datetime64[M]").astype("datetime64[D]")
    month_days = (next_first_day - first_day).astype(np.int64)
    real = (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    if with_time:
        has_seconds = pc.equal(pc.utf8_slice_codeunits(values, 16, 17), ":")
        hour, minute, second = number(11, 13), number(14, 16), number(17, 19, has_seconds)
        real &= (hour <= 23) & (minute <= 59) & (second <= 59)
    return year, real


def _outside_supported_range(instant_us: np.ndarray) -> np.ndarray:
    return (instant_us < localtime.FIRST_INSTANT_US) | (instant_us >= localtime.END_INSTANT_US)


def _local_to_instant(
    local_us: np.ndarray, codes: np.ndarray, timezone: str
) -> tuple[np.ndarray, np.ndarray]:
    """Chain-local wall-clock times to instants, flagging those outside the supported range."""
    codes = codes.copy()
    margin_us = 2 * localtime.MICROS_PER_DAY
    near = (
        (codes == 0)
        & (local_us >= localtime.FIRST_INSTANT_US - margin_us)
        & (local_us < localtime.END_INSTANT_US + margin_us)
    )
    codes[(codes == 0) & ~near] = _TS_OUT_OF_RANGE
    instant = np.zeros(len(local_us), dtype=np.int64)
    instant[near] = localtime.local_to_instant_us(local_us[near], timezone)
    codes[near & _outside_supported_range(instant)] = _TS_OUT_OF_RANGE
    return instant, codes


def qty_column(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray] | None:
    """Quantities (int32) and reason codes; None for a column type that cannot hold them."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_integer(column.type):
        array = combined_chunks(column)
        values = int64_values(array)
        codes = np.select([values < 1, values > MAX_QTY], [_QTY_BELOW_ONE, _QTY_TOO_LARGE], 0)
        codes = codes.astype(np.int8)
        codes[bool_mask(array.is_null())] = _QTY_EMPTY
        return np.where(codes == 0, values, 0).astype(np.int32), codes
    if not _is_text(column.type):
        return None
    distinct, which = _distinct(_filled(column), adjacent=False)
    values = np.zeros(len(distinct), dtype=np.int32)
    codes = np.zeros(len(distinct), dtype=np.int8)
    valid = bool_mask(pc.match_substring_regex(distinct, _QTY_PATTERN))
    values[valid] = int64_values(pc.cast(distinct.filter(pa.array(valid)), pa.int64()))
    codes[valid & (values < 1)] = _QTY_BELOW_ONE
    if not valid.all():
        invalid = np.flatnonzero(~valid)
        bad = distinct.take(pa.array(invalid))
        codes[invalid] = np.select(
            [
                bool_mask(pc.equal(bad, "")),
                bool_mask(pc.match_substring_regex(bad, r"^-[0-9]+$")),
                bool_mask(pc.match_substring_regex(bad, r"^[0-9]+$")),
            ],
            [_QTY_EMPTY, _QTY_BELOW_ONE, _QTY_TOO_LARGE],
            _QTY_NOT_INTEGER,
        )
    return values[which], codes[which]


def _amount_column(
    column: pa.ChunkedArray, name: str, minor_units: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Amounts in minor units (int64) and reason codes; None for an unusable column type.

    Text goes through Arrow's decimal128: its unscaled value is the amount in minor units,
    exactly, never through a float.
    """
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    scale = 0 if name == "amount_minor" else minor_units
    if pa.types.is_integer(column.type):
        array = combined_chunks(column)
        values = int64_values(array)
        limit = np.iinfo(np.int64).max // 10**scale
        codes = np.select([values < 0, values > limit], [_AMOUNT_NEGATIVE, _AMOUNT_TOO_LARGE], 0)
        codes = codes.astype(np.int8)
        codes[bool_mask(array.is_null())] = _AMOUNT_EMPTY
        return np.where(codes == 0, values, 0) * 10**scale, codes
    if pa.types.is_decimal(column.type) and name == "amount":
        return _decimal_amounts(combined_chunks(column), minor_units)
    if not _is_text(column.type):
        return None
    distinct, which = _distinct(_filled(column), adjacent=False)
    pattern = f"^[0-9]{{1,{MAX_AMOUNT_DIGITS - scale}}}"
    pattern += f"(\\.[0-9]{{1,{scale}}})?$" if scale else "$"
    valid = bool_mask(pc.match_substring_regex(distinct, pattern))
    values = np.zeros(len(distinct), dtype=np.int64)
    codes = np.zeros(len(distinct), dtype=np.int8)
    decimals = pc.cast(distinct.filter(pa.array(valid)), pa.decimal128(MAX_AMOUNT_DIGITS, scale))
    values[valid] = _decimal_low_words(decimals)
    if not valid.all():
        invalid = np.flatnonzero(~valid)
        bad = distinct.take(pa.array(invalid))
        unsigned = bool_mask(pc.match_substring_regex(bad, r"^[0-9]+(\.[0-9]+)?$"))
        point = int64_values(pc.find_substring(bad, "."))
        fraction_digits = int64_values(pc.binary_length(bad)) - point - 1
        codes[invalid] = np.select(
            [
                bool_mask(pc.equal(bad, "")),
                bool_mask(pc.match_substring_regex(bad, r"^-[0-9]*\.?[0-9]+$")),
                unsigned & (point >= 0) & (fraction_digits > scale),
                unsigned,
            ],
            [_AMOUNT_EMPTY, _AMOUNT_NEGATIVE, _AMOUNT_TOO_PRECISE, _AMOUNT_TOO_LARGE],
            _AMOUNT_NOT_NUMBER,
        )
    return values[which], codes[which]


def _decimal_low_words(decimals: pa.Array) -> np.ndarray:
    """Unscaled values of a decimal128 array that fit in int64: its low little-endian words."""
    words = np.frombuffer(decimals.buffers()[1], dtype="<i8").reshape(-1, 2)
    return words[decimals.offset: decimals.offset + len(decimals), 0].astype(np.int64)


def _decimal_amounts(array: pa.Array, minor_units: int) -> tuple[np.ndarray, np.ndarray]:
    """A Parquet decimal column: exact when no value has more than ``minor_units`` digits."""
    n = len(array)
    codes = np.zeros(n, dtype=np.int8)
    nulls = bool_mask(array.is_null())
    scale = array.type.scale
    if not pa.types.is_decimal128(array.type):
        array, fits = cast_each(array, pa.decimal128(38, scale))
        codes[~fits] = _AMOUNT_TOO_LARGE
    words = np.frombuffer(array.buffers()[1], dtype="<i8").reshape(-1, 2)
    words = words[array.offset: array.offset + n]
    low, high = words[:, 0].astype(np.int64), words[:, 1]
    codes[(codes == 0) & (high != (low >> 63))] = _AMOUNT_TOO_LARGE
    usable = codes == 0
    if scale > minor_units:
        step = 10 ** (scale - minor_units)
        codes[usable & (low % step != 0)] = _AMOUNT_TOO_PRECISE
        values = low // step
    else:
        step = 10 ** (minor_units - scale)
        codes[usable & (np.abs(low) > np.iinfo(np.int64).max // step)] = _AMOUNT_TOO_LARGE
        values = np.where(codes == 0, low, 0) * step
    codes[(codes == 0) & (values < 0)] = _AMOUNT_NEGATIVE
    codes[nulls] = _AMOUNT_EMPTY
    return np.where(codes == 0, values, 0), codes


def _distinct(column: pa.ChunkedArray, *, adjacent: bool) -> tuple[pa.Array, np.ndarray]:
    """Values to parse once and, per row, which of them it holds.

    ``adjacent`` first tries runs of equal neighbours (a receipt's lines share a timestamp),
    which costs one comparison per row; otherwise, or if runs are short, values are hashed.
    """
    n = len(column)
    if adjacent and n > 1:
        change = np.ones(n, dtype=bool)
        change[1:] = bool_mask(pc.not_equal(column.slice(1), column.slice(0, n - 1)))
        if np.count_nonzero(change) <= n // 2:
            # filter, not take: take on a chunked array copies it whole first
            return one_array(column.filter(pa.array(change))), np.cumsum(change, dtype=np.int64) - 1
    which, distinct = dictionary_codes(column)
    return distinct, which


def cast_each(array: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Cast, finding the values that fail one by one only when the whole cast fails."""
    array = one_array(array)
    try:
        return pc.cast(array, target), np.ones(len(array), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    ok = np.ones(len(array), dtype=bool)
    pieces = []
    step = 4096
    for start in range(0, len(array), step):
        piece = array.slice(start, step)
        try:
            pieces.append(pc.cast(piece, target))
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        for i in range(len(piece)):
            try:
                pieces.append(pc.cast(piece.slice(i, 1), target))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pieces.append(pa.nulls(1, target))
                ok[start + i] = False
    return pa.concat_arrays(pieces), ok


def display_values(
    segments: list[InputSegment], rows: np.ndarray, column: str | None
) -> list[str | None]:
    """Input values at rows (over all segments), as text for messages; error path only."""
    shown: list[str | None] = [None] * len(rows)
    if column is None:
        return shown
    starts = np.array([segment.start for segment in segments], dtype=np.int64)
    owner = np.searchsorted(starts, rows, side="right") - 1
    for index in np.unique(owner):
        segment = segments[index]
        if column not in segment.table.column_names:
            continue
        picked = np.flatnonzero(owner == index)
        values = segment.table.column(column).take(pa.array(rows[picked] - segment.start))
        for position, value in zip(picked, _as_text(values)):
            shown[position] = value
    return shown


def _as_text(values: pa.ChunkedArray) -> list[str | None]:
    """Values as Arrow writes them (a timestamp beyond Python's datetime range included)."""
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        try:
            values = values.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return [None if value is None else str(value) for value in values.to_pylist()]
    return values.to_pylist()


def located_problems(findings: Findings, segments: list[InputSegment]) -> list[InputProblem]:
    """Findings as InputProblems, ordered by row, then by the column's place in the format."""
    starts = np.array([segment.start for segment in segments], dtype=np.int64)
    rank = {name: i for i, name in enumerate(RECEIPT_COLUMNS + ("amount_minor",))}
    keyed = []
    for rows, column, reason in findings.entries:
        owner = np.searchsorted(starts, rows, side="right") - 1
        values = display_values(segments, rows, column)
        numbers = np.empty(len(rows), dtype=np.int64)
        for index in np.unique(owner):
            mine = owner == index
            numbers[mine] = segments[index].source_rows(rows[mine] - segments[index].start)
        for row, index, number, value in zip(rows.tolist(), owner.tolist(), numbers.tolist(), values):
            problem = InputProblem(segments[index].source, number, column, value, reason)
            keyed.append((row, rank.get(column, len(rank)), problem))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [problem for _, _, problem in keyed]


# Arrow helpers


def _is_text(data_type: pa.DataType) -> bool:
    return pa.types.is_string(data_type) or pa.types.is_large_string(data_type)


def _filled(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Text with nulls as empty strings."""
    return pc.fill_null(column, "") if column.null_count else column


def combined_chunks(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A column of numbers, times or decimals as one array."""
    return column if isinstance(column, pa.Array) else column.combine_chunks()


def one_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array (batch columns are plain arrays), with 64-bit offsets past 2 GiB of text."""
    if isinstance(values, pa.Array):
        return values
    try:
        return values.combine_chunks()
    except _TEXT_OVERFLOW:
        return values.cast(pa.large_string()).combine_chunks()


def _concat_text(columns: list[pa.ChunkedArray]) -> pa.ChunkedArray:
    """Columns of several tables as one, without copying."""
    if len({column.type for column in columns}) > 1:
        columns = [column.cast(pa.large_string()) for column in columns]
    chunks = [chunk for column in columns for chunk in column.chunks]
    return pa.chunked_array(chunks, columns[0].type)


def dictionary_codes(values: pa.Array | pa.ChunkedArray, *, missing: int | None = None
                     ) -> tuple[np.ndarray, pa.Array]:
    """Dictionary-encode: int32 indices and the distinct values, by first appearance.

    Nulls get the index ``missing`` (-1 picks an entry appended after the distinct values);
    without it, the values must have none.
    """
    if pa.types.is_dictionary(values.type):  # chunks may carry dictionaries of their own
        values = values.cast(values.type.value_type)
    encoded = pc.dictionary_encode(values)
    if isinstance(encoded, pa.Array):
        chunks, dictionary = [encoded], encoded.dictionary
    elif encoded.num_chunks == 0:
        return np.zeros(0, dtype=np.int32), pa.array([], values.type)
    else:
        # The chunks share one growing dictionary; the last chunk's holds every value (no
        # unify_dictionaries, which compares every chunk's dictionary: minutes at 10⁷ values).
        chunks, dictionary = encoded.chunks, encoded.chunk(encoded.num_chunks - 1).dictionary
    indices = [chunk.indices if missing is None or not chunk.null_count else chunk.indices.fill_null(missing)
               for chunk in chunks]
    codes = [index.to_numpy(zero_copy_only=False) for index in indices]
    return (codes[0] if len(codes) == 1 else np.concatenate(codes)), dictionary


def bool_mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow result as numpy (null counts as False)."""
    if array.null_count:
        array = pc.fill_null(array, False)
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)


def int64_values(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An integer Arrow array as int64 (null as 0)."""
    return np.asarray(pc.fill_null(array, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
