"""Staging a load's input: receipt files split into parts small enough to validate at once.

A receipt's lines may be anywhere in any of a load's files, and every receipt must be checked
whole (its lines agree on customer, store and instant; its id is in one file only) before
anything is written. Holding all input at once would make a load's memory grow with its
files. Instead the files are read once, in pieces, and every row goes to the part its
receipt id hashes to (:func:`~fidelis.core.ingest.fingerprints.text_hashes`): each part then holds
whole receipts and is validated on its own, with every message the same as for one table.
Return rows go to the part of the receipt they return (their ``original_receipt_id``), so a
return is resolved against an original in the same input, and returns of one receipt are
counted against each other, within one part.

Input that fits in one part stays in memory, exactly as read; larger input is written to
Arrow IPC files in a scratch folder, with each row's number in its file so that problems
still name the file and row.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError, InputProblem
from .columns import NO_ROWS, InputSegment, column_type_problems, table_problems
from .files import estimated_rows, file_kind, read_table, read_table_parts
from .fingerprints import text_hashes

#: Input rows validated at once: bounds a load's memory (about 0.5 KB a row while validating).
PART_ROWS = 1_000_000
_ROW_COLUMN = "__source_row"


@dataclass
class StagedInput:
    """Receipt files split by receipt id into parts; see the module docstring.

    ``segments(part)`` gives a part's rows, one segment per file it has rows of.
    """

    sources: list[str]
    part_count: int
    #: every column name any file has, in order of first appearance (for the rejects file)
    column_names: list[str]
    #: why files were left out whole, when asked to skip unusable files
    unusable: list[InputProblem] = field(default_factory=list)
    _memory: list[InputSegment] = field(default_factory=list)
    _folder: Path | None = None

    def segments(self, part: int) -> list[InputSegment]:
        if self._folder is None:
            return [InputSegment(segment.source, segment.table) for segment in self._memory]
        segments = []
        for number, source in enumerate(self.sources):
            path = self._folder / f"part{part}-file{number}.arrow"
            if not path.exists():
                continue
            with pa.memory_map(str(path)) as stream:
                table = pa.ipc.open_stream(stream).read_all()
            segments.append(InputSegment(
                source, table.drop_columns([_ROW_COLUMN]),
                row_numbers=table.column(_ROW_COLUMN).to_numpy(),
            ))
        return segments

    def close(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> "StagedInput":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stage_receipts(
    paths: Sequence[str | Path],
    *,
    timezone: str,
    minor_units: int,
    part_rows: int = PART_ROWS,
    scratch: str | Path | None = None,
    skip_unusable: bool = False,
    progress=None,
) -> StagedInput:
    """Check every file's columns and split the files' rows into parts of about ``part_rows``.

    Raises :class:`InputError` for files that cannot be used at all (unreadable, not UTF-8,
    malformed, missing columns or unusable column types, no rows), once every file has been
    looked at; :class:`~fidelis.core.errors.UnsupportedFileError` for a file type Fidelis
    does not read, before anything is read. With ``skip_unusable`` such files are left out
    instead, each with its problems in ``unusable``. ``scratch`` is where parts are written
    when the input does not fit in one (a temporary folder there, removed on close).
    """
    paths = [Path(path) for path in paths]
    for path in paths:
        file_kind(path)
    if not paths:
        raise InputError([InputProblem("<input>", None, None, None, "no receipt files given")])
    part_count = max(1, math.ceil(sum(estimated_rows(path) for path in paths) / part_rows))
    if part_count == 1:
        staged = _in_memory(paths, timezone=timezone, minor_units=minor_units, progress=progress)
    else:
        folder = scratch_folder("load", scratch)
        try:
            staged = _split(paths, part_count, folder, part_rows=part_rows, timezone=timezone,
                            minor_units=minor_units, progress=progress)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    if staged.unusable and not skip_unusable:
        staged.close()
        raise InputError(staged.unusable)
    return staged


def scratch_folder(kind: str, directory: str | Path | None) -> Path:
    """A new scratch folder named for this process, so a later run can tell it was left behind."""
    return Path(tempfile.mkdtemp(prefix=f".fidelis-{kind}-{os.getpid()}-", dir=directory))


def remove_stale_scratch(directory: str | Path) -> None:
    """Remove scratch folders of processes that no longer run (a load killed mid-way)."""
    for folder in Path(directory).glob(".fidelis-*-*-*"):
        try:
            pid = int(folder.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass  # another user's live process


def _in_memory(paths: list[Path], *, timezone: str, minor_units: int, progress) -> StagedInput:
    segments: list[InputSegment] = []
    problems: list[InputProblem] = []
    for path in paths:
        try:
            segment = InputSegment(str(path), read_table(path))
        except InputError as error:
            problems += error.problems
            continue
        found = _file_problems(segment, segment.table.num_rows, timezone=timezone, minor_units=minor_units)
        problems += found
        if not found:
            segments.append(segment)
        if progress is not None:
            progress(str(path), segment.table.num_rows)
    return StagedInput([segment.source for segment in segments], 1, _column_names(segments), problems,
                       _memory=segments)


def _split(paths: list[Path], part_count: int, folder: Path, *, part_rows: int, timezone: str, minor_units: int,
           progress) -> StagedInput:
    problems: list[InputProblem] = []
    usable: list[InputSegment] = []  # each usable file's columns, as an empty table
    for number, path in enumerate(paths):
        writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        columns = None
        found: list[InputProblem] = []
        rows_read = 0
        try:
            for table in read_table_parts(path, rows_per_part=min(part_rows, 262_144)):
                if columns is None:
                    columns = InputSegment(str(path), table.slice(0, 0))
                    found = _file_problems(InputSegment(str(path), table), table.num_rows or 1,
                                           timezone=timezone, minor_units=minor_units)
                    if found:
                        break
                _write_parts(table, rows_read, part_count, folder, number, writers)
                rows_read += table.num_rows
                if progress is not None:
                    progress(str(path), table.num_rows)
            if not found and rows_read == 0:
                found = [InputProblem(str(path), None, None, None, NO_ROWS)]
        except InputError as error:
            found = error.problems
        finally:
            for writer in writers.values():
                writer.close()
        if found:  # the file is left out whole, rows already split included
            problems += found
            for part_file in folder.glob(f"part*-file{number}.arrow"):
                part_file.unlink()
        else:
            usable.append(columns)
    return StagedInput([str(path) for path in paths], part_count, _column_names(usable), problems, _folder=folder)


def _file_problems(segment: InputSegment, row_count: int, *, timezone: str, minor_units: int) -> list[InputProblem]:
    """Column names, whether the file has rows, and column types (checked on its first rows)."""
    return (table_problems(segment, row_count=row_count)
            or column_type_problems(segment, timezone=timezone, minor_units=minor_units))


def _write_parts(table: pa.Table, first_index: int, part_count: int, folder: Path, file_number: int,
                 writers: dict) -> None:
    """Append each row of ``table`` to its part, with its 1-based row number."""
    part = (text_hashes(_part_key(table)) % np.uint64(part_count)).astype(np.int64)
    order = np.argsort(part, kind="stable")
    counts = np.bincount(part, minlength=part_count)
    rows = table.append_column(_ROW_COLUMN, pa.array(np.arange(1, table.num_rows + 1) + first_index))
    rows = rows.take(pa.array(order))
    start = 0
    for number in np.flatnonzero(counts):
        piece = rows.slice(start, int(counts[number]))
        start += int(counts[number])
        writer = writers.get(number)
        if writer is None:
            writer = writers[number] = pa.ipc.new_stream(str(folder / f"part{number}-file{file_number}.arrow"),
                                                         piece.schema)
        writer.write_table(piece)


def _part_key(table: pa.Table) -> pa.ChunkedArray:
    """What a row's part is chosen by: its receipt id, or on a return row the original's."""
    def text(name: str) -> pa.ChunkedArray:
        column = table.column(name)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            return column
        return pc.cast(column, pa.string())  # numeric ids are read as text

    key = text("receipt_id")
    if "kind" in table.column_names and "original_receipt_id" in table.column_names:
        is_return = pc.fill_null(pc.equal(text("kind"), "return"), False)
        original = pc.fill_null(text("original_receipt_id"), "")
        key = pc.if_else(is_return, original.cast(key.type), key)
    return key


def _column_names(segments: list[InputSegment]) -> list[str]:
    return list(dict.fromkeys(name for segment in segments for name in segment.table.column_names))
