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

import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..batch import ReceiptBatch, processing_order
from ..errors import InputError, InputProblem
from .columns import (
    RETURN,
    InputSegment,
    ParsedLines,
    Progress,
    bool_mask,
    dictionary_codes,
    display_values,
    in_parallel,
    located_problems,
    majority,
    one_array,
    parse_lines,
    table_problems,
    text_column,
)
from .files import file_kind, read_table
from .return_rows import ReturnLine, check_return_rows


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
    #: valid return rows, in input order; :func:`fidelis.core.ingest.return_rows.resolve_returns` turns
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
    from .return_rows import resolve_returns, with_returns

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
    parsed: list[ParsedLines] = []
    for segment in sale_segments + return_segments:
        segment.start = start
        start += segment.table.num_rows
    for segment in sale_segments:
        found = parse_lines(segment, timezone=timezone, minor_units=minor_units)
        if isinstance(found, list):
            unusable += found
        else:
            parsed.append(found)
    if unusable:
        raise InputError(unusable)
    if parsed:
        checked = _assemble(ParsedLines.concat(parsed), sale_segments, timezone=timezone, minor_units=minor_units)
    else:  # return rows only
        checked = CheckedReceipts(_no_receipts(timezone, minor_units), [], np.zeros(0, dtype=bool))
    if return_segments:
        returns, problems, rejected = check_return_rows(return_segments, timezone)
        checked.returns = returns
        checked.problems += problems
        checked.rejected = np.concatenate([checked.rejected, rejected])
        checked.segments = sale_segments + return_segments
    return checked


def _no_receipts(timezone: str, minor_units: int) -> ReceiptBatch:
    empty = np.zeros(0, dtype=np.int32)
    return ReceiptBatch.build(
        receipt_id=pa.array([], pa.string()), customer_id=pa.array([], pa.string()), store_code=empty, store_names=[],
        instant_us=np.zeros(0, np.int64), timezone=timezone, line_offsets=np.zeros(1, np.int64),
        line_category_code=empty, category_names=[], line_qty=empty, line_amount_minor=np.zeros(0, np.int64),
        metadata={"timezone": timezone, "minor_units": minor_units, "sources": [],
                  "first_input_row": np.zeros(0, np.int64)},
    )


def _split_by_kind(segments: list[InputSegment]) -> tuple[list[InputSegment], list[InputSegment]]:
    """Each table's sale rows and return rows (``kind = return``) as segments of their own."""
    sales, returns = [], []
    for segment in segments:
        table = segment.table
        kind = text_column(table.column("kind"), allow_integers=False) if "kind" in table.column_names else None
        is_return = np.zeros(table.num_rows, dtype=bool) if kind is None else bool_mask(pc.equal(kind, RETURN))
        if not is_return.any():
            sales.append(segment)
            continue
        for rows, into in ((np.flatnonzero(~is_return), sales), (np.flatnonzero(is_return), returns)):
            if len(rows):
                into.append(InputSegment(segment.source, table.take(pa.array(rows)),
                                         row_numbers=segment.source_rows(rows)))
    return sales, returns


# Grouping lines into receipts, checking receipts, ordering


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
        change[1:] = bool_mask(pc.not_equal(receipt_id.slice(1), receipt_id.slice(0, n - 1)))
        run_starts = np.flatnonzero(change)
        run_lengths = np.diff(np.append(run_starts, n))
        run_ids = one_array(receipt_id.filter(pa.array(change)))  # (take would copy the chunks whole first)
        run_receipt, ids = dictionary_codes(run_ids)
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

    def header_values(self, values: pa.ChunkedArray) -> pa.Array:
        """Per receipt, the value on its first row. Receipts are numbered by first appearance,
        so their first rows ascend: a filter, which is cheap on chunks, where take is not."""
        first = np.zeros(len(values), dtype=bool)
        first[self.first_rows()] = True
        return one_array(values.filter(pa.array(first)))

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


def _disagreements(lines: ParsedLines, receipts: _Receipts) -> dict[str, np.ndarray]:
    """Receipts whose lines disagree on customer, store or instant, by column."""
    n = len(lines)
    continues = np.ones(n - 1, dtype=bool)  # row i + 1 (grouped) is of the same receipt as row i
    continues[receipts.starts[1:] - 1] = False
    found: dict[str, np.ndarray] = {}
    for name in ("customer_id", "store_id"):
        values = receipts.grouped(getattr(lines, name))
        differs = bool_mask(pc.not_equal(values.slice(1), values.slice(0, n - 1))) & continues
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
    lines: ParsedLines, segments: list[InputSegment], *, timezone: str, minor_units: int
) -> CheckedReceipts:
    """Group lines into receipts, reject receipts with a bad line, order and build the batch."""
    findings = lines.findings
    receipts, (category_codes, category_names) = in_parallel(
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
            if name == "ts":  # rows with a bad timestamp are reported on their own
                rows = rows[lines.instant_ok[rows]]
                keys = lines.instant_us[rows].tolist()
            else:
                keys = getattr(lines, name).take(pa.array(rows)).to_pylist()
            outvoted, said = majority(keys)
            shown = display_values(segments, rows[[keys.index(said)]], name)[0]
            reason = (f"the lines of receipt {receipt_id!r} disagree on {name}: "
                      f"{keys.count(said)} of {len(keys)} say {shown!r}")
            findings.add(rows[outvoted], name, reason)

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
    store_codes, store_names = _vocabulary(receipts.header_values(lines.store_id).take(pa.array(chosen)))
    customer = receipts.header_values(lines.customer_id).take(pa.array(chosen))
    customer = pc.if_else(pc.equal(customer, ""), pa.scalar(None, customer.type), customer)
    batch = ReceiptBatch.build(
        receipt_id=receipts.ids.take(pa.array(chosen)),
        customer_id=customer,
        store_code=store_codes,
        store_names=store_names,
        instant_us=lines.instant_us[header_rows],
        timezone=timezone,
        line_offsets=line_offsets,
        line_category_code=category_codes,
        category_names=category_names,
        line_qty=line_values(lines.qty),
        line_amount_minor=line_values(lines.amount_minor),
        line_sku=None if lines.sku is None else one_array(line_values(lines.sku)),
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
        problems=located_problems(findings, segments),
        rejected=rejected,
        segments=segments,
    )


def _vocabulary(values: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """int32 codes into the distinct values, in order of first appearance."""
    codes, distinct = dictionary_codes(values)
    return codes.astype(np.int32, copy=False), distinct.to_pylist()


def _used_vocabulary(codes: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Drop the names no code refers to (they were only on rejected rows)."""
    used = np.zeros(len(names), dtype=bool)
    used[codes] = True
    if used.all():
        return codes, names
    renumbered = (np.cumsum(used) - 1).astype(np.int32)
    return renumbered[codes], [name for name, keep in zip(names, used) if keep]
