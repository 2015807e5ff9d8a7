"""Chunk files: the receipts of bulk writes, with their lines, in Parquet beside the ledger.

SQLite keeps what lookups need — each receipt's id, customer, points and fingerprint — and
a bulk load writes the rest of each committed chunk (every receipt's facts, points and
lines) as one Parquet file in ``<ledger>.receipts/`` (``chain.db`` → ``chain.receipts/``).
Scans of the whole history (replay, ``check``, the analytics) then read columns at disk
speed instead of rows through SQLite, and pyarrow.dataset, DuckDB and polars read the
directory as it is.

A file is committed with its chunk: written under a temporary name, flushed to disk,
renamed, and named in ``chunk_files`` by the chunk's own transaction. A file no commit
names is the trace of a write that never committed (a killed load): the next load removes
it, unless it belongs to a run still going. Receipts accrued one at a time keep their lines
in SQLite (``receipts.lines``) until a month-end moves them, in bulk, into a file of their
own — so files are only ever written whole, never appended to.

Layout of a file (one row per receipt, in ``receipt_row`` order; row groups of
:data:`ROW_GROUP_RECEIPTS`): see :data:`CHUNK_SCHEMA`. Category and sku ids are the
ledger's (tables ``categories`` and ``skus``); a customer is their ledger index (table
``customers``), so erasing a customer's personal data touches SQLite only. A receipt later
voided stays in its file and is listed, by row, in ``voided_receipts``.
"""
from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import CorruptReceiptLines

if TYPE_CHECKING:
    from .handle import Ledger

LINE_TYPE = pa.struct([("category_id", pa.int32()), ("sku_id", pa.int32()), ("qty", pa.int32()),
                       ("amount_minor", pa.int64())])

#: The columns of a chunk file. ``local_minute`` and ``local_month`` are the kernel's local
#: calendar (minutes since local midnight; ``(year - 1970) * 12 + month - 1``), stored so a
#: replay does no time-zone arithmetic.
CHUNK_SCHEMA = pa.schema([
    ("receipt_row", pa.int64()),
    ("receipt_id", pa.string()),
    ("customer_index", pa.int64()),        # null: anonymous
    ("store_id", pa.string()),
    ("instant", pa.timestamp("us", tz="UTC")),
    ("local_date", pa.date32()),
    ("local_minute", pa.int16()),
    ("local_month", pa.int32()),
    ("amount_minor", pa.int64()),          # all lines; negative on a return
    ("tier", pa.int8()),                   # status tier at the receipt; null: anonymous
    ("points", pa.int64()),
    ("original_receipt_id", pa.string()),  # a return: the receipt it returns
    ("program_version", pa.int32()),
    ("run_id", pa.int64()),
    ("lines", pa.list_(LINE_TYPE)),
])

#: Receipts per row group: a lookup of a few receipts (a return's original) decodes one group.
ROW_GROUP_RECEIPTS = 32_768

_NAME = re.compile(r"^\.?(\d{12})-(\d{12})-r(\d+)\.parquet(\.tmp)?$")


def directory_of(ledger_path: Path) -> Path:
    """Where a ledger's chunk files live: ``chain.db`` → ``chain.receipts``."""
    return ledger_path.with_name(ledger_path.stem + ".receipts")


def chunk_table(receipt_row: np.ndarray, columns: dict[str, pa.Array | np.ndarray], line_offsets: np.ndarray,
                lines: dict[str, np.ndarray]) -> pa.Table:
    """A chunk file's table from per-receipt ``columns`` (the names of :data:`CHUNK_SCHEMA`)
    and the lines in CSR by ``line_offsets``; every column gets the schema's type."""
    count = int(line_offsets[-1])
    children = [pa.array(np.ascontiguousarray(np.broadcast_to(lines[name], count)), type=LINE_TYPE.field(name).type)
                for name in LINE_TYPE.names]
    line_values = pa.StructArray.from_arrays(children, fields=list(LINE_TYPE))
    arrays = {"receipt_row": pa.array(receipt_row, pa.int64()), **columns,
              "lines": pa.ListArray.from_arrays(pa.array(line_offsets.astype(np.int32)), line_values)}
    return pa.table([pa.array(arrays[field.name], type=field.type) if not isinstance(arrays[field.name], pa.Array)
                     else arrays[field.name].cast(field.type) for field in CHUNK_SCHEMA], schema=CHUNK_SCHEMA)


def write_chunk_file(ledger: Ledger, connection: sqlite3.Connection, table: pa.Table, run_id: int) -> str:
    """Write ``table`` as a chunk file and name it in ``chunk_files`` inside the caller's
    transaction: the file is durable before the transaction that names it commits."""
    directory = directory_of(ledger.path)
    directory.mkdir(exist_ok=True)
    rows = table.column("receipt_row")
    name = f"{rows[0].as_py():012d}-{rows[-1].as_py():012d}-r{int(run_id)}.parquet"
    temporary = directory / f".{name}.tmp"
    with open(temporary, "wb") as sink:
        pq.write_table(table, sink, row_group_size=ROW_GROUP_RECEIPTS, compression="lz4",
                       write_statistics=["receipt_row", "customer_index", "local_date"])
        sink.flush()
        os.fsync(sink.fileno())
    os.replace(temporary, directory / name)
    _sync_directory(directory)
    connection.execute(
        "INSERT INTO chunk_files (name, first_row, last_row, receipts, run_id) VALUES (?, ?, ?, ?, ?)",
        (name, rows[0].as_py(), rows[-1].as_py(), len(table), int(run_id)))
    return name


def _sync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_uncommitted(ledger: Ledger) -> list[str]:
    """Remove files no commit names, except those of runs still going; the names removed.

    Call after runs whose process died were settled as failed, so a killed load's files go
    and a live writer's file, written but not yet committed, stays.
    """
    directory = directory_of(ledger.path)
    if not directory.is_dir():
        return []
    named = {name for (name,) in ledger.db.execute("SELECT name FROM chunk_files")}
    running = {run_id for (run_id,) in ledger.db.execute("SELECT run_id FROM runs WHERE status = 'running'")}
    removed = []
    for path in sorted(directory.iterdir()):
        match = _NAME.match(path.name)
        if match is None or path.name in named or int(match.group(3)) in running:
            continue
        path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


def committed_files(ledger: Ledger) -> list[tuple[str, int, int, int]]:
    """(name, first row, last row, receipts) of every committed file, by first row."""
    return ledger.db.execute(
        "SELECT name, first_row, last_row, receipts FROM chunk_files ORDER BY first_row, name").fetchall()


def unnamed_files(ledger: Ledger) -> list[str]:
    """Files in the directory that no commit names (``check`` reports them)."""
    directory = directory_of(ledger.path)
    if not directory.is_dir():
        return []
    named = {name for (name,) in ledger.db.execute("SELECT name FROM chunk_files")}
    return sorted(path.name for path in directory.iterdir() if _NAME.match(path.name) and path.name not in named)


def open_file(ledger: Ledger, name: str, read_dictionary: list[str] | None = None) -> pq.ParquetFile:
    """A committed file, or :class:`CorruptReceiptLines` naming it if it is missing or unreadable."""
    path = directory_of(ledger.path) / name
    try:
        return pq.ParquetFile(path, read_dictionary=read_dictionary)
    except (OSError, pa.ArrowException) as error:
        raise CorruptReceiptLines(
            f"{path}: a chunk file of the ledger is missing or unreadable ({error}); restore the ledger and its "
            f"{directory_of(ledger.path).name}/ directory from a backup") from None


def row_groups(file: pq.ParquetFile) -> list[tuple[int, int, int, int | None, int | None]]:
    """(group, first row, last row, least customer, greatest customer) of each row group,
    from the file's statistics (customers None when the group has only anonymous receipts)."""
    groups = []
    customer_column = CHUNK_SCHEMA.get_field_index("customer_index")
    for group in range(file.num_row_groups):
        metadata = file.metadata.row_group(group)
        rows, customers = metadata.column(0).statistics, metadata.column(customer_column).statistics
        least = customers.min if customers is not None and customers.has_min_max else None
        greatest = customers.max if customers is not None and customers.has_min_max else None
        groups.append((group, rows.min, rows.max, least, greatest))
    return groups


def read_rows(ledger: Ledger, receipt_rows: np.ndarray, columns: list[str],
              customers: tuple[int, int] | None = None) -> pa.Table:
    """The file-held receipts among ``receipt_rows`` (sorted), only ``columns`` (and
    ``receipt_row``), in row order; row groups that hold none of them are not read.

    ``customers`` (least, greatest ledger index of the receipts' customers): prunes row
    groups by their customer range too, which is what makes a lookup of a block of
    customers over the whole history cheap (files are written customer by customer).
    """
    receipt_rows = np.asarray(receipt_rows, dtype=np.int64)
    wanted = ["receipt_row", *[column for column in columns if column != "receipt_row"]]
    parts = []
    for name, first, last, _ in committed_files(ledger):
        lo, hi = np.searchsorted(receipt_rows, [first, last + 1])
        if lo == hi:
            continue
        file = open_file(ledger, name)
        groups = []
        for group, least_row, greatest_row, least, greatest in row_groups(file):
            if customers is not None and (least is None or greatest < customers[0] or least > customers[1]):
                continue
            a, b = np.searchsorted(receipt_rows[lo:hi], [least_row, greatest_row + 1])
            if a < b:
                groups.append(group)
        if groups:
            table = file.read_row_groups(groups, columns=wanted)
            parts.append(table.filter(pc.is_in(table.column("receipt_row"), pa.array(receipt_rows[lo:hi]))))
    if not parts:
        return CHUNK_SCHEMA.empty_table().select(wanted)
    return pa.concat_tables(parts).sort_by("receipt_row") if len(parts) > 1 else parts[0]


def line_records(lines: pa.ChunkedArray | pa.Array, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """A ``lines`` column as records of ``dtype`` (fields named as :data:`LINE_TYPE`) and CSR offsets."""
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks() if lines.num_chunks != 1 else lines.chunk(0)
    offsets = np.asarray(lines.offsets, dtype=np.int64)
    offsets = offsets - offsets[0]
    values = lines.values.slice(int(lines.offsets[0].as_py()), int(offsets[-1]))
    records = np.empty(len(values), dtype=dtype)
    for name in dtype.names:
        records[name] = values.field(name).to_numpy(zero_copy_only=False)
    return records, offsets


def scan_windows(ledger: Ledger, held_rows: np.ndarray, block_receipts: int
                 ) -> Iterator[tuple[int, int, list[tuple[str, int]]]]:
    """Windows ``[lo, hi)`` of receipt rows covering every file-held and SQLite-held receipt
    (``held_rows``, sorted), each of about ``block_receipts``, with the row groups that
    overlap it: how a replay walks the history in arrival order with bounded memory,
    whatever the files' ranges (a month-end's file of moved accruals spans many loads')."""
    intervals = []
    for name, _, _, _ in committed_files(ledger):
        file = open_file(ledger, name)
        for group, first, last, _, _ in row_groups(file):
            intervals.append((first, last, file.metadata.row_group(group).num_rows, (name, group)))
    for start in range(0, len(held_rows), block_receipts):
        part = held_rows[start:start + block_receipts]
        intervals.append((int(part[0]), int(part[-1]), len(part), None))
    intervals.sort(key=lambda interval: interval[0])
    if not intervals:
        return
    cuts, count = [intervals[0][0]], 0
    for first, _, rows, _ in intervals:
        if count >= block_receipts and first > cuts[-1]:
            cuts.append(first)
            count = 0
        count += rows
    cuts.append(max(last for _, last, _, _ in intervals) + 1)
    for lo, hi in zip(cuts, cuts[1:]):
        yield lo, hi, [source for first, last, _, source in intervals
                       if source is not None and first < hi and last >= lo]

