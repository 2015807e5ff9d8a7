"""Tabular files in and out: CSV (every column as text), gzipped CSV, Parquet, msgpack batches.

What every reader and writer of a table shares: the file kind by name, reading whole or in
parts, an estimate of rows, writing whole or piece by piece, and a reader's failure turned
into problems a person can act on (the file, the row, the byte).
"""
from __future__ import annotations

import codecs
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import InputError, InputProblem, OutputError, UnsupportedFileError
from . import msgpack_batch as columnar

#: File name endings this module reads and writes.
SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".msgpack")
# Larger blocks read faster: 0.57 s at 16 MiB against 1.2 s at 1 MiB for a 450 MB file.
_CSV_BLOCK_BYTES = 16 << 20


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


def check_writable(path: str | Path, inputs: Sequence[str | Path] = ()) -> None:
    """Fail before any work if ``path`` cannot take an output (type, folder), or is one of
    the ``inputs`` (writing it would destroy what is being read)."""
    file_kind(path)
    folder = Path(path).parent
    if not folder.is_dir():
        raise OutputError(f"{path}: the folder {folder} does not exist")
    target = Path(path).resolve()
    for source in inputs:
        if Path(source).resolve() == target:
            raise OutputError(f"{path}: this is also an input file; writing it would overwrite what is being read — "
                              "name another file")


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
    def check(path: str | Path, inputs: Sequence[str | Path] = ()) -> None:
        """Fail before any work if ``path`` cannot take the output (see :func:`check_writable`)."""
        check_writable(path, inputs)
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
