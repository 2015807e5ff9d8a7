"""Receipt and customer files in, tables out: reading, validating and ordering input.

Receipt files (CSV, gzipped CSV, Parquet) become one :class:`~fidelis.core.batch.ReceiptBatch`
in processing order, whatever order the files are given in. The columns and their rules are
PROGRAM.md §1; this module adds these decisions:

- CSV columns are read as text, never inferred, so ``000123`` stays a card number and an
  ``NA`` store stays a store. Files must be UTF-8 (a byte-order mark is fine).
- A timestamp is ``YYYY-MM-DD``, ``T`` or a space, ``HH:MM``, optional ``:SS`` with up to 9
  fractional digits (kept to the microsecond, rounding down), then optionally ``Z``,
  ``±HH:MM`` or ``±HHMM``. Instants from 1970-01-02T00:00Z up to 2199-12-31T00:00Z are
  supported, so that local dates fall in 1970–2199 in every time zone.
- An amount is plain digits with an optional point and at most ``minor_units`` fractional
  digits (``12``, ``12.5``, ``12.50``; not ``12.500``); no sign, exponent, spaces or thousands
  separators. Parquet may instead carry a decimal or integer ``amount`` column, or an integer
  ``amount_minor``; floating-point amounts are refused because they are inexact.
- ``qty`` is a whole number from 1 to 999 999 999.
- An empty (or null) ``customer_id`` is an anonymous receipt; an empty ``sku`` is null.
- A file with no data rows is an error: an empty export is far more often a failed one than a
  day without sales.
- A receipt's lines keep their input order (files in the order given, then rows).

Every problem is reported, each with its file, 1-based data row, column and value. A receipt
with any bad row is rejected whole, so a receipt is never scored with lines missing.
:func:`check_receipts` returns the good receipts, the problems and the rejected rows (what a
quarantine of bad rows needs); :func:`read_receipts` raises
:class:`~fidelis.core.errors.InputError` if there is any problem.

Validation is columnar: Arrow compute kernels check text, and values that repeat (a receipt's
timestamp on each of its lines, prices) are parsed once per distinct value. Independent
columns are checked on parallel threads. Receipts that arrive contiguous and in time order,
the usual shape of an export, are neither regrouped nor fully sorted.
"""
from __future__ import annotations

import codecs
import os
import zoneinfo
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from . import localtime
from .batch import CustomerTable, ReceiptBatch, processing_order
from . import columnar
from .errors import InputError, InputProblem, OutputError, UnsupportedFileError

#: File name endings this module reads and writes.
SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".msgpack")
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
_DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_QTY_PATTERN = r"^[0-9]{1,9}$"
_MICROS_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}
_CARD_NUMBER_HINT = " (numeric card numbers lose their leading zeros; store them as text)"

# Why a value is bad, as small codes per column; 0 is "fine", the tuples hold the messages.
_EMPTY = "required value is empty"
NO_ROWS = "no receipt rows (only a header)"
_TS_EMPTY, _TS_NOT_ISO, _TS_DATE_ONLY, _TS_INVALID, _TS_OUT_OF_RANGE = range(1, 6)
_TIMESTAMP_REASONS = (
    None,
    _EMPTY,
    "not an ISO 8601 timestamp such as 2025-06-07T10:00:00 or 2025-06-07 10:00:00+03:00",
    "a date without a time of day",
    "not a real date and time",
    "outside the supported range 1970-01-02T00:00Z to 2199-12-30T23:59:59Z",
)
_QTY_EMPTY, _QTY_NOT_INTEGER, _QTY_BELOW_ONE, _QTY_TOO_LARGE = range(1, 5)
_QTY_REASONS = (
    None,
    _EMPTY,
    "qty must be a whole number",
    "qty must be at least 1",
    f"qty must be at most {MAX_QTY}",
)
_AMOUNT_EMPTY, _AMOUNT_NOT_NUMBER, _AMOUNT_NEGATIVE, _AMOUNT_TOO_PRECISE, _AMOUNT_TOO_LARGE = (
    range(1, 6)
)


def _amount_reasons(minor_units: int) -> tuple[str | None, ...]:
    digits = f"{minor_units} fractional digit{'s' if minor_units != 1 else ''}"
    return (
        None,
        _EMPTY,
        "amount must be a decimal number such as 12.50 (a point, no sign, no thousands separators)",
        "amount must not be negative",
        f"amount has more than {digits}, the currency's minor units",
        "amount is too large",
    )


# ---------------------------------------------------------------------------------------------
# Files


def file_kind(path: str | Path) -> str:
    """``"csv"``, ``"parquet"`` or ``"msgpack"`` by the file's name; else UnsupportedFileError."""
    name = Path(path).name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".msgpack"):
        return "msgpack"
    raise UnsupportedFileError(
        f"{path}: unsupported file type; Fidelis reads and writes {', '.join(SUPPORTED_SUFFIXES)}"
    )


def read_table(path: str | Path) -> pa.Table:
    """Read a CSV file (every column as text), a Parquet file (as typed) or a msgpack batch.

    Raises :class:`InputError` naming the file, and the place where it can: a missing file,
    bytes that are not UTF-8, rows with the wrong number of fields, an unreadable file.
    """
    kind = file_kind(path)
    try:
        if kind == "parquet":
            return pq.read_table(path)
        if kind == "msgpack":
            return columnar.decode(Path(path).read_bytes(), source=str(path))
        return _read_csv(Path(path))
    except FileNotFoundError:
        raise InputError([InputProblem(str(path), None, None, None, "file not found")]) from None
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as error:
        raise InputError(_file_problems(Path(path), kind, error)) from None


def read_table_parts(path: str | Path, rows_per_part: int) -> Iterator[pa.Table]:
    """A receipt file as consecutive tables of about ``rows_per_part`` rows (CSV, Parquet).

    What a bounded-memory load reads instead of :func:`read_table`; the same values, the
    same errors. A msgpack batch is one request body and is decoded whole.
    """
    kind = file_kind(path)
    try:
        if kind == "parquet":
            for record_batch in pq.ParquetFile(path).iter_batches(batch_size=rows_per_part):
                yield pa.Table.from_batches([record_batch])
        elif kind == "msgpack":
            yield read_table(path)
        else:
            # about 40 bytes a row in a typical export: blocks of that many rows
            read = pacsv.ReadOptions(block_size=max(rows_per_part * 40, 1 << 16))
            with pacsv.open_csv(path, read_options=read, convert_options=_csv_text_columns(Path(path))) as reader:
                for record_batch in reader:
                    yield pa.Table.from_batches([record_batch])
    except FileNotFoundError:
        raise InputError([InputProblem(str(path), None, None, None, "file not found")]) from None
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as error:
        raise InputError(_file_problems(Path(path), kind, error)) from None


def estimated_rows(path: str | Path) -> int:
    """About how many rows a receipt file holds, cheaply (Parquet: exactly, from its footer).

    CSV is measured by the rows in its first MiB; a gzipped file is taken to be eight times
    its size (exports compress 5–10×; erring high makes parts smaller, not larger). What a bounded-memory load uses to decide how many parts to split input into.
    """
    path = Path(path)
    kind = file_kind(path)
    try:
        if kind == "parquet":
            return pq.ParquetFile(path).metadata.num_rows
        size = path.stat().st_size
        if kind == "msgpack":
            return size // 40
        with pa.input_stream(str(path), compression="detect") as stream:
            sample = stream.read(1 << 20)
    except (FileNotFoundError, pa.ArrowInvalid, OSError):
        return 0  # the reader reports what is wrong with it
    if str(path).lower().endswith(".gz"):
        size *= 8
    row_bytes = len(sample) / max(sample.count(b"\n"), 1)
    return int(size / max(row_bytes, 1.0))


def check_writable(path: str | Path) -> None:
    """Fail before any work if ``path`` cannot take an output (type, folder)."""
    file_kind(path)
    folder = Path(path).parent
    if not folder.is_dir():
        raise OutputError(f"{path}: the folder {folder} does not exist")


def write_table(table: pa.Table, path: str | Path) -> None:
    """Write a table as CSV (gzipped for ``.csv.gz``) or Parquet, by the file's name."""
    check_writable(path)
    kind = file_kind(path)
    try:
        if kind == "parquet":
            pq.write_table(table, path)
        elif kind == "msgpack":
            Path(path).write_bytes(columnar.encode(table))
        elif str(path).lower().endswith(".gz"):
            with pa.CompressedOutputStream(str(path), "gzip") as stream:
                pacsv.write_csv(table, stream)
        else:
            pacsv.write_csv(table, path)
    except OSError as error:
        raise OutputError(f"{path}: cannot write the file: {error}") from None


class TableWriter:
    """Tables appended to one CSV, gzipped CSV or Parquet file, all in ``schema``.

    For outputs written piece by piece (a load's rejects): columns a piece lacks are empty,
    columns are cast to the schema's types.
    """

    def __init__(self, path: str | Path, schema: pa.Schema):
        self.check(path)
        self.schema = schema
        self._sink = None
        try:
            if file_kind(path) == "parquet":
                self._writer = pq.ParquetWriter(str(path), schema)
            else:
                self._sink = (pa.CompressedOutputStream(str(path), "gzip") if str(path).lower().endswith(".gz")
                              else pa.OSFile(str(path), "wb"))
                self._writer = pacsv.CSVWriter(self._sink, schema)
        except OSError as error:
            raise OutputError(f"{path}: cannot write the file: {error}") from None

    @staticmethod
    def check(path: str | Path) -> None:
        """Fail before any work if ``path`` cannot take the output."""
        check_writable(path)
        if file_kind(path) == "msgpack":
            raise OutputError(f"{path}: msgpack is a format for receipt batches; write this as .csv, .csv.gz "
                              "or .parquet")

    def write(self, table: pa.Table) -> None:
        columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
                   else pa.nulls(table.num_rows, f.type) for f in self.schema]
        self._writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))

    def close(self) -> None:
        self._writer.close()
        if self._sink is not None:
            self._sink.close()

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _csv_text_columns(path: Path) -> pacsv.ConvertOptions:
    # The header is read first so that every column, known or not, can be typed as text:
    # inference would turn card numbers into integers and drop their leading zeros.
    with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16)) as reader:
        names = reader.schema.names
    return pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )


def _read_csv(path: Path) -> pa.Table:
    read = pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES)
    return pacsv.read_csv(path, read_options=read, convert_options=_csv_text_columns(path))


def _file_problems(path: Path, kind: str, error: Exception) -> list[InputProblem]:
    """Turn a reader's failure into problems a person can act on (error path only)."""
    message = str(error)
    source = str(path)
    if kind == "parquet":
        return [InputProblem(source, None, None, None, f"not a readable Parquet file ({message})")]
    if "Empty CSV file" in message:
        return [InputProblem(source, None, None, None, "the file is empty (not even a header row)")]
    if isinstance(error, UnicodeDecodeError) or "UTF8" in message:
        return [_encoding_problem(path)]
    if "CSV parse error" in message:
        return _malformed_rows(path) or [InputProblem(source, None, None, None, message)]
    if "zlib" in message or "gzip" in message:
        return [InputProblem(source, None, None, None, f"not a readable gzip file ({message})")]
    return [InputProblem(source, None, None, None, message)]


def _encoding_problem(path: Path) -> InputProblem:
    """Where the first byte that is not UTF-8 is: its offset and row."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # of the block in the (decompressed) file
    newlines = 0  # before the block
    with pa.input_stream(str(path), compression="detect") as stream:
        while block := stream.read(1 << 20):
            pending = len(decoder.getstate()[0])  # bytes of a character split across blocks
            try:
                decoder.decode(block)
            except UnicodeDecodeError as error:
                at = max(error.start - pending, 0)
                # The header is row 0, so the newlines before a byte number its data row.
                row = newlines + block[:at].count(b"\n")
                return InputProblem(
                    str(path), row, None, None,
                    f"not UTF-8 text: byte {offset + at} (0x{block[at]:02x}) is not valid "
                    "UTF-8; save the file as UTF-8",
                )
            newlines += block.count(b"\n")
            offset += len(block)
    return InputProblem(str(path), None, None, None, "not UTF-8 text; save the file as UTF-8")


def _malformed_rows(path: Path) -> list[InputProblem]:
    """Every row with the wrong number of fields; a single-threaded reread numbers them."""
    found: list[InputProblem] = []

    def record(row) -> str:
        found.append(InputProblem(
            str(path), None if row.number is None else row.number - 1, None, row.text,
            f"expected {row.expected_columns} fields, found {row.actual_columns}",
        ))
        return "skip"

    try:
        pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=record),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=False, check_utf8=False),
        )
    except pa.ArrowInvalid:
        pass
    return found


# ---------------------------------------------------------------------------------------------
# Receipts: the public entry points


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


@dataclass
class CheckedReceipts:
    """Good receipts, every problem, and which input rows were left out.

    ``rejected`` has one entry per input row, segments in order: the rows of every receipt
    with at least one bad row. A segment's rows are
    ``rejected[segment.start:segment.start + segment.table.num_rows]``.
    """

    batch: ReceiptBatch
    problems: list[InputProblem]
    rejected: np.ndarray
    segments: list[InputSegment] = field(default_factory=list)
    #: valid return rows, in input order; :func:`fidelis.core.returns.resolve_returns` turns
    #: them into return receipts once their originals are known
    returns: list["ReturnLine"] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        if self.problems:
            raise InputError(self.problems)


def read_receipts(
    paths: str | Path | Sequence[str | Path],
    *,
    timezone: str,
    minor_units: int,
    progress: Progress | None = None,
) -> ReceiptBatch:
    """Read receipt files into one batch in processing order; any bad row raises InputError.

    Return rows become return receipts of the originals in the same files (without a ledger
    there is nowhere else to find them).
    """
    from .returns import resolve_returns, with_returns

    checked = check_receipts(paths, timezone=timezone, minor_units=minor_units, progress=progress)
    checked.raise_for_problems()
    if not checked.returns:
        return checked.batch
    returned, problems = resolve_returns(checked.returns, checked.batch, lambda ids: {}, timezone)
    if problems:
        raise InputError(problems)
    return with_returns(checked.batch, returned)


def check_receipts(
    paths: str | Path | Sequence[str | Path],
    *,
    timezone: str,
    minor_units: int,
    progress: Progress | None = None,
) -> CheckedReceipts:
    """Read receipt files, keeping the good receipts and reporting every bad row.

    A file that cannot be used at all (unreadable, not UTF-8, malformed CSV, missing columns,
    no rows) raises :class:`InputError` once every file has been looked at; a file of unknown
    type raises :class:`UnsupportedFileError` before anything is read.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(path) for path in paths]
    for path in paths:
        file_kind(path)
    segments: list[InputSegment] = []
    file_problems: list[InputProblem] = []
    for path in paths:
        try:
            table = read_table(path)
        except InputError as error:
            file_problems += error.problems
            continue
        segments.append(InputSegment(str(path), table))
        if progress is not None:
            progress(str(path), table.num_rows)
    for segment in segments:
        file_problems += table_problems(segment)
    if file_problems:
        raise InputError(file_problems)
    return check_segments(segments, timezone=timezone, minor_units=minor_units)


def receipts_from_table(
    table: pa.Table,
    *,
    timezone: str,
    minor_units: int,
    source: str,
    first_row: int = 1,
) -> ReceiptBatch:
    """Validate one table of receipt lines (a file, a request body) into a batch, or raise."""
    checked = check_receipt_table(
        table, timezone=timezone, minor_units=minor_units, source=source, first_row=first_row
    )
    checked.raise_for_problems()
    return checked.batch


def check_receipt_table(
    table: pa.Table,
    *,
    timezone: str,
    minor_units: int,
    source: str,
    first_row: int = 1,
) -> CheckedReceipts:
    """Like :func:`receipts_from_table`, but returns the good receipts and the problems."""
    segment = InputSegment(source, table, first_row=first_row)
    return check_segments([segment], timezone=timezone, minor_units=minor_units)


def check_segments(
    segments: list[InputSegment], *, timezone: str, minor_units: int
) -> CheckedReceipts:
    """Validate tables of receipt lines together: a receipt may span tables, order is global.

    Problems that make a whole table unusable (missing columns, column types that cannot hold
    the values, no rows) raise :class:`InputError` at once, for every such table.
    """
    zoneinfo.ZoneInfo(timezone)
    if not 0 <= minor_units <= 4:
        raise ValueError(f"minor_units must be 0..4, got {minor_units}")
    if not segments:
        raise InputError([InputProblem("<input>", None, None, None, "no receipt files given")])
    unusable = [problem for segment in segments for problem in table_problems(segment)]
    if unusable:
        raise InputError(unusable)
    # sale lines first, then return rows: each kind is validated by its own rules
    sale_segments, return_segments = _split_by_kind(segments)
    start = 0
    parsed: list[_Lines] = []
    for segment in sale_segments + return_segments:
        segment.start = start
        start += segment.table.num_rows
    for segment in sale_segments:
        found = _parse_lines(segment, timezone=timezone, minor_units=minor_units)
        if isinstance(found, list):
            unusable += found
        else:
            parsed.append(found)
    if unusable:
        raise InputError(unusable)
    if parsed:
        checked = _assemble(_Lines.concat(parsed), sale_segments, timezone=timezone, minor_units=minor_units)
    else:  # return rows only
        checked = CheckedReceipts(_no_receipts(timezone, minor_units), [], np.zeros(0, dtype=bool))
    if return_segments:
        returns, problems, rejected = _check_return_rows(return_segments, timezone)
        checked.returns = returns
        checked.problems += problems
        checked.rejected = np.concatenate([checked.rejected, rejected])
        checked.segments = sale_segments + return_segments
    return checked


def _no_receipts(timezone: str, minor_units: int) -> ReceiptBatch:
    empty = np.zeros(0, dtype=np.int32)
    return ReceiptBatch(
        receipt_id=pa.array([], pa.string()), customer_id=pa.array([], pa.string()), store_code=empty,
        instant_us=np.zeros(0, np.int64), local_day=empty, local_minute=np.zeros(0, np.int16), local_month=empty,
        line_offsets=np.zeros(1, np.int64), line_category_code=empty, line_qty=empty,
        line_amount_minor=np.zeros(0, np.int64), store_names=[], category_names=[],
        metadata={"timezone": timezone, "minor_units": minor_units, "sources": [],
                  "first_input_row": np.zeros(0, np.int64)},
    )


def _split_by_kind(segments: list[InputSegment]) -> tuple[list[InputSegment], list[InputSegment]]:
    """Each table's sale rows and return rows (``kind = return``) as segments of their own."""
    sales, returns = [], []
    for segment in segments:
        table = segment.table
        kind = _text_column(table.column("kind"), allow_integers=False) if "kind" in table.column_names else None
        is_return = np.zeros(table.num_rows, dtype=bool) if kind is None else _mask(pc.equal(kind, RETURN))
        if not is_return.any():
            sales.append(segment)
            continue
        for rows, into in ((np.flatnonzero(~is_return), sales), (np.flatnonzero(is_return), returns)):
            if len(rows):
                into.append(InputSegment(segment.source, table.take(pa.array(rows)),
                                         row_numbers=segment.source_rows(rows)))
    return sales, returns


# ---------------------------------------------------------------------------------------------
# Receipts: each table's columns, row by row


@dataclass
class _Findings:
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


@dataclass
class _Lines:
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
    findings: _Findings

    def __len__(self) -> int:
        return len(self.instant_us)

    @classmethod
    def concat(cls, parts: list["_Lines"]) -> "_Lines":
        if len(parts) == 1:
            return parts[0]
        findings = _Findings(sum(len(part) for part in parts))
        start = 0
        for part in parts:
            for rows, column, reason in part.findings.entries:
                findings.add(rows + start, column, reason)
            start += len(part)
        def sku_of(part: _Lines) -> pa.ChunkedArray:
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
    found = _parse_lines(InputSegment(segment.source, segment.table.slice(0, 1)),
                         timezone=timezone, minor_units=minor_units)
    return found if isinstance(found, list) else []


def _parse_lines(
    segment: InputSegment, *, timezone: str, minor_units: int
) -> _Lines | list[InputProblem]:
    """Parse each column of one table, or say which column types make it unusable."""
    table, source = segment.table, segment.source
    names = table.column_names
    amount_column = _amount_column_name(names)
    text_names = [
        name
        for name in ("receipt_id", "customer_id", "store_id", "category", "sku")
        if name in names
    ]

    def text_columns() -> dict[str, pa.ChunkedArray | None]:
        return {
            name: _text_column(table.column(name), allow_integers=name != "customer_id")
            for name in text_names
        }

    text, instant, qty, amount = _in_parallel(
        table.num_rows,
        text_columns,
        lambda: _instant_column(table.column("ts"), timezone),
        lambda: _qty_column(table.column("qty")),
        lambda: _amount_column(table.column(amount_column), amount_column, minor_units),
    )

    def unusable(name: str, holds: str, hint: str = "") -> InputProblem:
        kind = table.column(name).type
        return InputProblem(source, None, name, None, f"column must hold {holds}, not {kind}{hint}")

    problems = [
        unusable(name, "text", _CARD_NUMBER_HINT if name == "customer_id" else "")
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

    findings = _Findings(table.num_rows)
    for name in ("receipt_id", "store_id", "category"):
        findings.add(np.flatnonzero(_mask(pc.equal(text[name], ""))), name, _EMPTY)
    if "kind" in names:  # return rows were taken out already: what is left must be a sale
        kind = _text_column(table.column("kind"), allow_integers=False)
        if kind is None:
            kind = pa.chunked_array([pa.array(["?"] * table.num_rows)])
        findings.add(np.flatnonzero(~_mask(pc.is_in(kind, value_set=pa.array(["", SALE])))), "kind",
                     f"must be {SALE!r} or {RETURN!r} (empty is a sale)")
    instant_us, instant_codes = instant
    findings.add_coded(instant_codes, "ts", _TIMESTAMP_REASONS)
    qty_values, qty_codes = qty
    findings.add_coded(qty_codes, "qty", _QTY_REASONS)
    amount_minor, amount_codes = amount
    findings.add_coded(amount_codes, amount_column, _amount_reasons(minor_units))
    sku = text.get("sku")
    if sku is not None:
        sku = pc.if_else(pc.equal(sku, ""), pa.scalar(None, sku.type), sku)
    return _Lines(
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


def _in_parallel(rows: int, *calls: Callable[[], object]) -> list:
    """Run independent column work side by side; Arrow and numpy release the GIL. A few rows
    (a receipt from a till) are checked in line: starting threads would cost more."""
    if _THREADS == 1 or rows < _PARALLEL_FROM_ROWS:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=min(_THREADS, len(calls))) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


def _text_column(column: pa.ChunkedArray, *, allow_integers: bool) -> pa.ChunkedArray | None:
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


def _instant_column(
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
        codes[_mask(column.is_null())] = _TS_EMPTY
        return np.zeros(n, dtype=np.int64), codes
    if pa.types.is_timestamp(data_type):
        ticks = _integers(_combined(column).cast(pa.int64()))
        if data_type.unit == "ns":
            values = np.floor_divide(ticks, 1000)
        else:
            values = ticks * _MICROS_PER_UNIT[data_type.unit]
        codes = np.zeros(n, dtype=np.int8)
        codes[_mask(column.is_null())] = _TS_EMPTY
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
    shaped = _mask(pc.match_substring_regex(text, _TIMESTAMP_PATTERN))
    if not shaped.all():
        unshaped = np.flatnonzero(~shaped)
        values = text.take(pa.array(unshaped))
        date_only = _mask(pc.match_substring_regex(values, _DATE_PATTERN))
        codes[unshaped] = np.where(
            _mask(pc.equal(values, "")), _TS_EMPTY, np.where(date_only, _TS_DATE_ONLY, _TS_NOT_ISO)
        )
    with_offset = shaped & _mask(pc.match_substring_regex(text, _OFFSET_PATTERN))
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
        nanos = _integers(pc.cast(values, target).cast(pa.int64()))
        return nanos, np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    except pa.ArrowInvalid:
        pass
    year, real = _real_calendar(values, with_time=True)
    # Nanosecond timestamps span 1677-09-21 to 2262-04-11: whole years inside are safe.
    # Whether an instant is in the supported range is decided once it is parsed.
    out_of_range = (year < 1678) | (year > 2261)
    candidates = np.flatnonzero(real & ~out_of_range)
    parsed, parsed_ok = _cast_each(values.take(pa.array(candidates)), target)
    nanos = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    nanos[candidates] = _integers(parsed.cast(pa.int64()))
    ok[candidates] = parsed_ok
    return nanos, ok, out_of_range


def _real_calendar(values: pa.Array, *, with_time: bool) -> tuple[np.ndarray, np.ndarray]:
    """The year of each well-shaped date (and time), and whether it names a real one.

    The fields sit at fixed places once the shape is checked: ``YYYY-MM-DD[T ]HH:MM[:SS…``.
    """

    def number(start: int, stop: int, present: pa.Array | None = None) -> np.ndarray:
        digits = pc.utf8_slice_codeunits(values, start, stop)
        if present is not None:
            digits = pc.if_else(present, digits, "0")
        return _integers(pc.cast(digits, pa.int64()))

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


def _qty_column(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray] | None:
    """Quantities (int32) and reason codes; None for a column type that cannot hold them."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_integer(column.type):
        array = _combined(column)
        values = _integers(array)
        codes = np.select([values < 1, values > MAX_QTY], [_QTY_BELOW_ONE, _QTY_TOO_LARGE], 0)
        codes = codes.astype(np.int8)
        codes[_mask(array.is_null())] = _QTY_EMPTY
        return np.where(codes == 0, values, 0).astype(np.int32), codes
    if not _is_text(column.type):
        return None
    distinct, which = _distinct(_filled(column), adjacent=False)
    values = np.zeros(len(distinct), dtype=np.int32)
    codes = np.zeros(len(distinct), dtype=np.int8)
    valid = _mask(pc.match_substring_regex(distinct, _QTY_PATTERN))
    values[valid] = _integers(pc.cast(distinct.filter(pa.array(valid)), pa.int64()))
    codes[valid & (values < 1)] = _QTY_BELOW_ONE
    if not valid.all():
        invalid = np.flatnonzero(~valid)
        bad = distinct.take(pa.array(invalid))
        codes[invalid] = np.select(
            [
                _mask(pc.equal(bad, "")),
                _mask(pc.match_substring_regex(bad, r"^-[0-9]+$")),
                _mask(pc.match_substring_regex(bad, r"^[0-9]+$")),
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
        array = _combined(column)
        values = _integers(array)
        limit = np.iinfo(np.int64).max // 10**scale
        codes = np.select([values < 0, values > limit], [_AMOUNT_NEGATIVE, _AMOUNT_TOO_LARGE], 0)
        codes = codes.astype(np.int8)
        codes[_mask(array.is_null())] = _AMOUNT_EMPTY
        return np.where(codes == 0, values, 0) * 10**scale, codes
    if pa.types.is_decimal(column.type) and name == "amount":
        return _decimal_amounts(_combined(column), minor_units)
    if not _is_text(column.type):
        return None
    distinct, which = _distinct(_filled(column), adjacent=False)
    pattern = f"^[0-9]{{1,{MAX_AMOUNT_DIGITS - scale}}}"
    pattern += f"(\\.[0-9]{{1,{scale}}})?$" if scale else "$"
    valid = _mask(pc.match_substring_regex(distinct, pattern))
    values = np.zeros(len(distinct), dtype=np.int64)
    codes = np.zeros(len(distinct), dtype=np.int8)
    decimals = pc.cast(distinct.filter(pa.array(valid)), pa.decimal128(MAX_AMOUNT_DIGITS, scale))
    values[valid] = _decimal_low_words(decimals)
    if not valid.all():
        invalid = np.flatnonzero(~valid)
        bad = distinct.take(pa.array(invalid))
        unsigned = _mask(pc.match_substring_regex(bad, r"^[0-9]+(\.[0-9]+)?$"))
        point = _integers(pc.find_substring(bad, "."))
        fraction_digits = _integers(pc.binary_length(bad)) - point - 1
        codes[invalid] = np.select(
            [
                _mask(pc.equal(bad, "")),
                _mask(pc.match_substring_regex(bad, r"^-[0-9]*\.?[0-9]+$")),
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
    nulls = _mask(array.is_null())
    scale = array.type.scale
    if not pa.types.is_decimal128(array.type):
        array, fits = _cast_each(array, pa.decimal128(38, scale))
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
        change[1:] = _mask(pc.not_equal(column.slice(1), column.slice(0, n - 1)))
        starts = np.flatnonzero(change)
        if len(starts) <= n // 2:
            return _one_array(column.take(pa.array(starts))), np.cumsum(change) - 1
    which, distinct = _encode(column)
    return distinct, which


def _cast_each(array: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Cast, finding the values that fail one by one only when the whole cast fails."""
    array = _one_array(array)
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


# ---------------------------------------------------------------------------------------------
# Receipts: grouping lines, checking receipts, ordering


@dataclass
class _Receipts:
    """Input rows grouped by receipt id, receipts numbered by first appearance.

    Receipt ``r`` is the rows ``row_order[starts[r]:starts[r] + counts[r]]``, in input order;
    ``row_order`` is None when every receipt's lines already sit together.
    """

    ids: pa.Array
    row_order: np.ndarray | None
    starts: np.ndarray
    counts: np.ndarray

    @classmethod
    def group(cls, receipt_id: pa.ChunkedArray) -> "_Receipts":
        n = len(receipt_id)
        change = np.ones(n, dtype=bool)
        change[1:] = _mask(pc.not_equal(receipt_id.slice(1), receipt_id.slice(0, n - 1)))
        run_starts = np.flatnonzero(change)
        run_lengths = np.diff(np.append(run_starts, n))
        run_ids = _one_array(receipt_id.take(pa.array(run_starts)))
        run_receipt, ids = _encode(run_ids)
        if len(ids) == len(run_starts):
            return cls(run_ids, None, run_starts, run_lengths)
        # Some receipt's lines are split into several runs: gather them, keeping input order.
        row_receipt = np.repeat(run_receipt.astype(np.int64), run_lengths)
        counts = np.bincount(row_receipt, minlength=len(ids))
        starts = np.zeros(len(counts), dtype=np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        return cls(ids, np.argsort(row_receipt, kind="stable"), starts, counts)

    def __len__(self) -> int:
        return len(self.starts)

    def grouped(self, values):
        """Row values in grouped order (each receipt's rows together)."""
        if self.row_order is None:
            return values
        if isinstance(values, np.ndarray):
            return values[self.row_order]
        return values.take(pa.array(self.row_order))

    def rows_of(self, receipt: int) -> np.ndarray:
        grouped_rows = np.arange(self.starts[receipt], self.starts[receipt] + self.counts[receipt])
        return grouped_rows if self.row_order is None else self.row_order[grouped_rows]

    def first_rows(self) -> np.ndarray:
        return self.starts if self.row_order is None else self.row_order[self.starts]

    def any_row(self, row_flags: np.ndarray) -> np.ndarray:
        """Per receipt: does any of its rows have the flag?"""
        flags = self.grouped(row_flags).view(np.uint8)
        return np.maximum.reduceat(flags, self.starts).astype(bool)

    def spread(self, receipt_flags: np.ndarray) -> np.ndarray:
        """Per row: its receipt's flag."""
        per_grouped_row = np.repeat(receipt_flags, self.counts)
        if self.row_order is None:
            return per_grouped_row
        per_row = np.empty_like(per_grouped_row)
        per_row[self.row_order] = per_grouped_row
        return per_row

    def line_rows(self, receipts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """CSR offsets of the given receipts' lines, and the input row of each line.

        The rows are None when they would be every input row in input order.
        """
        line_counts = self.counts[receipts]
        offsets = np.zeros(len(receipts) + 1, dtype=np.int64)
        np.cumsum(line_counts, out=offsets[1:])
        if self.row_order is None and len(receipts) == len(self) and (np.diff(receipts) == 1).all():
            return offsets, None
        grouped_rows = np.repeat(self.starts[receipts] - offsets[:-1], line_counts)
        grouped_rows += np.arange(offsets[-1], dtype=np.int64)
        return offsets, grouped_rows if self.row_order is None else self.row_order[grouped_rows]


def _disagreements(lines: _Lines, receipts: _Receipts) -> dict[str, np.ndarray]:
    """Receipts whose lines disagree on customer, store or instant, by column."""
    n = len(lines)
    continues = np.ones(n - 1, dtype=bool)  # row i + 1 (grouped) is of the same receipt as row i
    continues[receipts.starts[1:] - 1] = False
    found: dict[str, np.ndarray] = {}
    for name in ("customer_id", "store_id"):
        values = receipts.grouped(getattr(lines, name))
        differs = _mask(pc.not_equal(values.slice(1), values.slice(0, n - 1))) & continues
        found[name] = np.unique(
            np.searchsorted(receipts.starts, np.flatnonzero(differs) + 1, side="right") - 1
        )
    instant = receipts.grouped(lines.instant_us)
    ok = receipts.grouped(lines.instant_ok)
    if ok.all() and not ((instant[1:] != instant[:-1]) & continues).any():
        found["ts"] = np.zeros(0, dtype=np.int64)
    else:
        # Rows with a bad timestamp are reported on their own; compare the others.
        latest = np.where(ok, instant, np.iinfo(np.int64).min)
        earliest = np.where(ok, instant, np.iinfo(np.int64).max)
        spread_out = (
            np.minimum.reduceat(earliest, receipts.starts)
            < np.maximum.reduceat(latest, receipts.starts)
        )
        found["ts"] = np.flatnonzero(receipts.any_row(ok) & spread_out)
    return found


def _assemble(
    lines: _Lines, segments: list[InputSegment], *, timezone: str, minor_units: int
) -> CheckedReceipts:
    """Group lines into receipts, reject receipts with a bad line, order and build the batch."""
    findings = lines.findings
    receipts, (category_codes, category_names) = _in_parallel(
        len(lines),
        lambda: _Receipts.group(lines.receipt_id),
        # Codes are found over all rows and then carried along: integers move faster than text.
        lambda: _vocabulary(lines.category),
    )
    for name, disagreeing in _disagreements(lines, receipts).items():
        for receipt in disagreeing:
            receipt_id = receipts.ids[receipt].as_py()
            if receipt_id == "":  # rows without an id are bad already, not one receipt
                continue
            rows = receipts.rows_of(receipt)
            values = dict.fromkeys(_display_values(segments, rows, name))
            listed = ", ".join(repr(value) for value in values)
            reason = f"the lines of receipt {receipt_id!r} disagree on {name}: {listed}"
            findings.add(rows, name, reason)

    # A receipt with any bad line is left out whole.
    if findings.bad.any():
        receipt_bad = receipts.any_row(findings.bad)
        rejected = receipts.spread(receipt_bad)
        kept = np.flatnonzero(~receipt_bad)
    else:
        rejected = np.zeros(len(lines), dtype=bool)
        kept = np.arange(len(receipts))
    first_rows = receipts.first_rows()
    order = processing_order(lines.instant_us[first_rows[kept]], receipts.ids.take(pa.array(kept)))
    chosen = kept if order is None else kept[order]
    line_offsets, line_rows = receipts.line_rows(chosen)

    def line_values(values):
        if line_rows is None:
            return values
        if isinstance(values, np.ndarray):
            return values[line_rows]
        return values.take(pa.array(line_rows))

    category_codes = line_values(category_codes)
    if len(kept) < len(receipts):
        category_codes, category_names = _used_vocabulary(category_codes, category_names)
    header_rows = first_rows[chosen]
    store_codes, store_names = _vocabulary(lines.store_id.take(pa.array(header_rows)))
    customer = _one_array(lines.customer_id.take(pa.array(header_rows)))
    customer = pc.if_else(pc.equal(customer, ""), pa.scalar(None, customer.type), customer)
    instant_us = lines.instant_us[header_rows]
    calendar = localtime.local_calendar(instant_us, timezone)
    batch = ReceiptBatch(
        receipt_id=receipts.ids.take(pa.array(chosen)),
        customer_id=customer,
        store_code=store_codes,
        instant_us=instant_us,
        local_day=calendar.local_day,
        local_minute=calendar.local_minute,
        local_month=calendar.local_month,
        line_offsets=line_offsets,
        line_category_code=category_codes,
        line_qty=line_values(lines.qty).astype(np.int32, copy=False),
        line_amount_minor=line_values(lines.amount_minor).astype(np.int64, copy=False),
        store_names=store_names,
        category_names=category_names,
        line_sku=None if lines.sku is None else _one_array(line_values(lines.sku)),
        metadata={
            "timezone": timezone,
            "minor_units": minor_units,
            "sources": [segment.source for segment in segments],
            # each receipt's first line among all input rows, to name it in later messages
            "first_input_row": header_rows,
        },
    )
    return CheckedReceipts(
        batch=batch,
        problems=_located_problems(findings, segments),
        rejected=rejected,
        segments=segments,
    )


def _vocabulary(values: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """int32 codes into the distinct values, in order of first appearance."""
    codes, distinct = _encode(values)
    return codes.astype(np.int32, copy=False), distinct.to_pylist()


def _used_vocabulary(codes: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Drop the names no code refers to (they were only on rejected rows)."""
    used = np.zeros(len(names), dtype=bool)
    used[codes] = True
    if used.all():
        return codes, names
    renumbered = (np.cumsum(used) - 1).astype(np.int32)
    return renumbered[codes], [name for name, keep in zip(names, used) if keep]


def _display_values(
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
        for position, value in zip(picked, values.to_pylist()):
            shown[position] = None if value is None else str(value)
    return shown


def _located_problems(findings: _Findings, segments: list[InputSegment]) -> list[InputProblem]:
    """Findings as InputProblems, ordered by row, then by the column's place in the format."""
    starts = np.array([segment.start for segment in segments], dtype=np.int64)
    rank = {name: i for i, name in enumerate(RECEIPT_COLUMNS + ("amount_minor",))}
    keyed = []
    for rows, column, reason in findings.entries:
        owner = np.searchsorted(starts, rows, side="right") - 1
        values = _display_values(segments, rows, column)
        numbers = np.empty(len(rows), dtype=np.int64)
        for index in np.unique(owner):
            mine = owner == index
            numbers[mine] = segments[index].source_rows(rows[mine] - segments[index].start)
        for row, index, number, value in zip(rows.tolist(), owner.tolist(), numbers.tolist(), values):
            problem = InputProblem(segments[index].source, number, column, value, reason)
            keyed.append((row, rank.get(column, len(rank)), problem))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [problem for _, _, problem in keyed]


# ---------------------------------------------------------------------------------------------
# Return rows


@dataclass(frozen=True)
class ReturnLine:
    """One valid return row: units of one line of the original receipt brought back.

    The line is named by ``line`` (its position on the original, from 1) or by ``sku``.
    """

    return_id: str
    customer_id: str | None
    store_id: str
    instant_us: int
    original_receipt_id: str
    line: int | None
    sku: str | None
    qty: int
    source: str
    row: int
    #: the row's index among all input rows of the check
    input_row: int = 0


def _check_return_rows(
    segments: list[InputSegment], timezone: str
) -> tuple[list[ReturnLine], list[InputProblem], np.ndarray]:
    """Validate return rows: (the good ones, every problem, which rows were rejected).

    A return may span rows (one per line brought back); its rows must agree on who, where,
    when and which receipt, and a return with any bad row is rejected whole. Returns are a
    small share of rows, so they are checked row by row.
    """
    rows: list[dict] = []
    for segment in segments:
        table = segment.table
        count = table.num_rows

        def text(name: str) -> list[str | None]:
            if name not in table.column_names:
                return [None] * count
            column = _text_column(table.column(name), allow_integers=name != "customer_id")
            values = (column if column is not None else table.column(name).cast(pa.string())).to_pylist()
            return [value if value not in (None, "") else None for value in values]

        instant = _instant_column(table.column("ts"), timezone)
        quantity = _qty_column(table.column("qty"))
        numbers = segment.source_rows(np.arange(count)).tolist()
        columns = {name: text(name) for name in ("receipt_id", "customer_id", "store_id", "original_receipt_id",
                                                 "sku", "line")}
        for i in range(count):
            reasons = []
            for name in ("receipt_id", "store_id"):
                if columns[name][i] is None:
                    reasons.append((name, _EMPTY))
            if columns["original_receipt_id"][i] is None:
                reasons.append(("original_receipt_id", "a return row needs the id of the receipt it returns"))
            if instant is None or instant[1][i]:
                reasons.append(("ts", _TIMESTAMP_REASONS[instant[1][i]] if instant else "not a timestamp"))
            if quantity is None or quantity[1][i]:
                reasons.append(("qty", _QTY_REASONS[quantity[1][i]] if quantity else "qty must be a whole number"))
            line = columns["line"][i]
            if line is not None and not (line.isdigit() and 1 <= int(line) <= MAX_QTY):
                reasons.append(("line", "the line's position on the original receipt, a whole number from 1"))
            elif line is None and columns["sku"][i] is None:
                reasons.append(("line", "a return row names the line returned by its position (line) or its sku"))
            rows.append({
                "index": len(rows), "input_row": segment.start + i, "source": segment.source, "row": numbers[i], "reasons": reasons,
                "values": {name: values[i] for name, values in columns.items()},
                "instant_us": int(instant[0][i]) if instant is not None else 0,
                "qty": int(quantity[0][i]) if quantity is not None else 0,
            })
    by_return: dict[str, list[dict]] = {}
    for row in rows:
        by_return.setdefault(row["values"]["receipt_id"] or "", []).append(row)
    for return_id, members in by_return.items():
        if not return_id:
            continue
        for name in ("customer_id", "store_id", "ts", "original_receipt_id"):
            seen = dict.fromkeys(row["instant_us"] if name == "ts" else row["values"][name] for row in members)
            if len(seen) > 1:
                shown = ", ".join(repr(value) for value in seen)
                for row in members:
                    row["reasons"].append((name, f"the rows of return {return_id!r} disagree on {name}: {shown}"))
    good, problems = [], []
    rejected = np.zeros(len(rows), dtype=bool)
    for return_id, members in by_return.items():
        bad = any(row["reasons"] for row in members) or not return_id
        for row in members:
            if bad:
                rejected[row["index"]] = True
                for column, reason in row["reasons"]:
                    shown = row["values"].get(column) if column != "ts" else None
                    problems.append(InputProblem(row["source"], row["row"], column, shown, reason))
                continue
            values = row["values"]
            good.append(ReturnLine(
                return_id=return_id, customer_id=values["customer_id"], store_id=values["store_id"],
                instant_us=row["instant_us"], original_receipt_id=values["original_receipt_id"],
                line=int(values["line"]) if values["line"] is not None else None, sku=values["sku"],
                qty=row["qty"], source=row["source"], row=row["row"], input_row=row["input_row"],
            ))
    problems.sort(key=lambda problem: (problem.file, problem.row or 0))
    return good, problems, rejected


# ---------------------------------------------------------------------------------------------
# Arrow helpers


def _is_text(data_type: pa.DataType) -> bool:
    return pa.types.is_string(data_type) or pa.types.is_large_string(data_type)


def _filled(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Text with nulls as empty strings."""
    return pc.fill_null(column, "") if column.null_count else column


def _combined(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A column of numbers, times or decimals as one array."""
    return column if isinstance(column, pa.Array) else column.combine_chunks()


def _one_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
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


def _encode(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Dictionary-encode: int32 indices and the distinct values, by first appearance."""
    encoded = pc.dictionary_encode(values)
    if isinstance(encoded, pa.Array):
        return encoded.indices.to_numpy(zero_copy_only=False), encoded.dictionary
    if encoded.num_chunks == 0:
        return np.zeros(0, dtype=np.int32), pa.array([], values.type)
    # The chunks share one growing dictionary; the last chunk's holds every value.
    indices = [chunk.indices.to_numpy(zero_copy_only=False) for chunk in encoded.chunks]
    return np.concatenate(indices), encoded.chunk(encoded.num_chunks - 1).dictionary


def _mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow result as numpy (null counts as False)."""
    if array.null_count:
        array = pc.fill_null(array, False)
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)


def _integers(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An integer Arrow array as int64 (null as 0)."""
    return np.asarray(pc.fill_null(array, 0).to_numpy(zero_copy_only=False), dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Customers


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
    text = _text_column(table.column("customer_id"), allow_integers=False)
    if text is None:
        raise InputError([InputProblem(
            source, None, "customer_id", None,
            f"column must hold text, not {table.column('customer_id').type}{_CARD_NUMBER_HINT}",
        )])
    customer_id = _one_array(text)
    findings = _Findings(table.num_rows)
    empty = _mask(pc.equal(customer_id, ""))
    findings.add(np.flatnonzero(empty), "customer_id", _EMPTY)
    codes, distinct = _encode(customer_id)
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
    problems = _located_problems(findings, [InputSegment(source, table)])
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
    column: pa.ChunkedArray, name: str, findings: _Findings, source: str
) -> np.ndarray:
    """``YYYY-MM-DD`` text or a date column as datetime64[D]; empty is unknown (NaT)."""
    result = np.full(len(column), np.datetime64("NaT"), dtype="datetime64[D]")
    if pa.types.is_date(column.type):
        days = _combined(column).cast(pa.date32())
        known = ~_mask(days.is_null())
        result[known] = _integers(days.cast(pa.int32()))[known].astype("datetime64[D]")
        return result
    text = _text_column(column, allow_integers=False)
    if text is None:
        raise InputError([
            InputProblem(source, None, name, None, f"column must hold dates, not {column.type}")
        ])
    present = ~_mask(pc.equal(text, ""))
    shaped = _mask(pc.match_substring_regex(text, _DATE_PATTERN))
    findings.add(np.flatnonzero(present & ~shaped), name, "not a date in the form YYYY-MM-DD")
    rows = np.flatnonzero(shaped)
    values = _one_array(text.take(pa.array(rows)))
    _, real = _real_calendar(values, with_time=False)
    findings.add(rows[~real], name, "not a real date")
    parsed, ok = _cast_each(values.filter(pa.array(real)), pa.date32())
    days = _integers(parsed.cast(pa.int32()))
    result[rows[real][ok]] = days[ok].astype("datetime64[D]")
    findings.add(rows[real][~ok], name, "not a real date")
    return result
