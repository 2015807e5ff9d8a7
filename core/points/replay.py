"""Whole-history replay: stored receipts back through the kernel, as the ledger holds them.

A ledger's receipts are enough to recompute every point and every status. :func:`replay`
streams every stored receipt (sales and returns) in arrival order — each customer's
receipts in their processing order, which is what scoring needs — through the kernel from
an empty state, a block at a time, under the ledger's program or any other: ``check``
compares it with what is stored; a what-if prices a candidate program with it. Month-end
and voids replay one block of customers with :func:`ledger_batch` and :func:`replay_part`.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..batch import ReceiptBatch
from ..engine import kernel
from ..ingest.return_rows import originals_outside
from ..ledger.customers import unscored_state
from ..ledger.chunk_files import line_records, open_file, scan_windows
from ..ledger.handle import Ledger
from ..ledger.receipts import (
    LINE_DTYPE,
    category_names,
    decode_receipt_lines,
    held_receipts,
    returns_written_from,
    stored_originals,
    stored_receipts,
)
from ..program.model import Program
from ..program.tables import ProgramTables, compile_program
from ..scores import Scores
from ..state import CustomerState

#: Receipts read and scored at once by :func:`replay`: bounds its memory whatever the ledger's size.
REPLAY_BLOCK_RECEIPTS = 200_000


@dataclass
class ReplayedBlock:
    """One block of a replay, in arrival order: the receipts, their replayed scores, and the
    points stored with them (in their chunk file, or SQLite for receipts it holds)."""

    batch: ReceiptBatch
    #: the ledger's index of each receipt's customer (-1: anonymous)
    customer_index: np.ndarray
    scores: Scores
    stored_points: np.ndarray
    #: each receipt's row in arrival order (``receipts.receipt_row``)
    receipt_row: np.ndarray


class Replay:
    """The blocks of a replay, scored as they are iterated; ``state`` is each customer's
    scoring state after the receipts replayed so far (the final state once exhausted).

    Iterate it once. Everything it reads — customers, vocabularies, receipts — is one
    snapshot of the ledger, held from :func:`replay` until the last block or :meth:`close`
    (``with replay(...) as run:`` closes it however the loop ends), so writers committing
    meanwhile are not seen halfway.
    """

    def __init__(self, compiled: ProgramTables, state: CustomerState, blocks: Iterator[ReplayedBlock],
                 snapshot: contextlib.ExitStack):
        self.compiled, self.state = compiled, state
        self._blocks, self._snapshot = blocks, snapshot

    def __iter__(self) -> Iterator[ReplayedBlock]:
        try:
            yield from self._blocks
        finally:
            self.close()

    def close(self) -> None:
        """End the read snapshot (also when the blocks were not all iterated)."""
        self._blocks.close()
        self._snapshot.close()

    def __enter__(self) -> "Replay":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def replay(ledger: Ledger, program: Program | None = None, *, customers: Sequence[str] | None = None,
           start: dt.date | None = None, end: dt.date | None = None,
           block_receipts: int = REPLAY_BLOCK_RECEIPTS) -> Replay:
    """Every stored receipt through the kernel from an empty state; see the module docstring.

    ``program``: score with this one instead of the ledger's (a what-if). ``customers``: only
    those customers' receipts (unknown ids are ignored). ``start``/``end``: only receipts of
    local dates ``start <= date < end``, still from an empty state. Memory is one block of
    ``block_receipts`` receipts plus every customer's state.
    """
    if program is None:  # the ledger's, compiled once per handle
        program, compiled = ledger.compiled_program()
    else:
        compiled = compile_program(program)
    snapshot = contextlib.ExitStack()
    snapshot.enter_context(ledger.reading())
    try:
        state = unscored_state(ledger, compiled)
        names = category_names(ledger)
    except BaseException:
        snapshot.close()
        raise
    wanted = None
    if customers is not None:
        found = (state.lookup(customer_id) for customer_id in customers)
        wanted = np.array([index for index in found if index is not None], dtype=np.int64)
    first_day = None if start is None else (start - dt.date(1970, 1, 1)).days
    end_day = None if end is None else (end - dt.date(1970, 1, 1)).days
    blocks = _blocks(ledger, program, compiled, state, names, wanted, first_day, end_day, block_receipts)
    return Replay(compiled, state, blocks, snapshot)


def _blocks(ledger: Ledger, program: Program, compiled: ProgramTables, state: CustomerState, names: list[str],
            customers: np.ndarray | None, first_day: int | None, end_day: int | None,
            block_receipts: int) -> Iterator[ReplayedBlock]:
    """The blocks, read inside the caller's snapshot: windows of receipt rows, each gathered
    from the chunk files' row groups it overlaps and SQLite's held receipts."""
    if customers is not None and not len(customers):
        return
    customer_ids = pa.array(state.customer_ids[:len(state)], pa.string())
    voided = pa.array([row for (row,) in ledger.db.execute(
        "SELECT receipt_row FROM voided_receipts WHERE receipt_row IS NOT NULL")], pa.int64())
    held = np.array([row for (row,) in ledger.db.execute(
        "SELECT receipt_row FROM receipts WHERE lines IS NOT NULL ORDER BY receipt_row")], dtype=np.int64)
    windows = list(scan_windows(ledger, held, block_receipts))
    read = _FileParts(ledger)
    # the next window's files are read (pyarrow, without the GIL) while this one is scored
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(read, *windows[0]) if windows else None
        for number, (lo, hi, _) in enumerate(windows):
            parts = pending.result()
            pending = reader.submit(read, *windows[number + 1]) if number + 1 < len(windows) else None
            a, b = np.searchsorted(held, [lo, hi])
            if b > a:
                parts.append(_held_table(ledger, lo, hi, program.info.timezone))
            table = _kept_rows(_joined(parts), voided, customers, first_day, end_day)
            if not len(table):
                continue
            batch, customer = _stored_batch(table, customer_ids, names)
            prepared = kernel.prepare(batch, compiled, state, customer_index=customer)
            first_row = int(table.column("receipt_row")[0].as_py())
            scores = kernel.score(prepared, compiled, state, originals=_originals_before(ledger, batch, first_row))
            yield ReplayedBlock(batch, customer, scores, table.column("points").to_numpy(),
                                table.column("receipt_row").to_numpy())


class _FileParts:
    """Reads a window's receipts out of the chunk files' row groups it overlaps, keeping a
    group that reaches beyond the window for the next (called one window at a time)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.files: dict[str, pq.ParquetFile] = {}
        self.groups: dict[tuple[str, int], pa.Table] = {}

    def __call__(self, lo: int, hi: int, sources: list[tuple[str, int]]) -> list[pa.Table]:
        wanted = [source for source in sources if source not in self.groups]
        for name in dict.fromkeys(name for name, _ in wanted):
            if name not in self.files:
                self.files[name] = open_file(self.ledger, name, read_dictionary=["store_id"])
            file = self.files[name]
            numbers = [group for file_name, group in wanted if file_name == name]
            table = file.read_row_groups(numbers, columns=REPLAY_COLUMNS)
            offsets = np.cumsum([0] + [file.metadata.row_group(g).num_rows for g in numbers])
            for number, a, b in zip(numbers, offsets, offsets[1:]):
                self.groups[(name, number)] = table.slice(a, b - a)
        parts = []
        for source in sources:
            table = self.groups[source]
            rows = table.column("receipt_row").to_numpy()
            a, b = np.searchsorted(rows, [lo, hi])
            parts.append(table.slice(a, b - a))
            if rows[-1] < hi:  # wholly read: no later window needs it
                del self.groups[source]
        return parts


#: What a replay reads of each stored receipt.
REPLAY_COLUMNS = ["receipt_row", "receipt_id", "customer_index", "store_id", "instant", "local_date", "local_minute",
                  "local_month", "points", "original_receipt_id", "lines"]


def _held_table(ledger: Ledger, lo: int, hi: int, timezone: str) -> pa.Table:
    """The receipts of rows ``lo <= row < hi`` whose lines SQLite holds, as the files read."""
    table = held_receipts(ledger.db.conn, timezone, lo=lo, hi=hi).select(REPLAY_COLUMNS)
    return table.set_column(REPLAY_COLUMNS.index("store_id"), "store_id",
                            table.column("store_id").dictionary_encode())


def _joined(parts: list[pa.Table]) -> pa.Table:
    """One window's receipts from its sources, in arrival order (sources overlap only where a
    month-end moved accruals into a file of their own)."""
    if len(parts) == 1:
        return parts[0]
    table = pa.concat_tables(parts)
    rows = table.column("receipt_row").to_numpy()
    return table if (np.diff(rows) > 0).all() else table.take(pa.array(np.argsort(rows, kind="stable")))


def _kept_rows(table: pa.Table, voided: pa.Array, customers: np.ndarray | None, first_day: int | None,
               end_day: int | None) -> pa.Table:
    """The window's receipts less those voided, and only the customers and days asked for."""
    keep = None
    conditions = []
    if len(voided):
        conditions.append(pc.invert(pc.is_in(table.column("receipt_row"), voided)))
    if customers is not None:
        conditions.append(pc.is_in(table.column("customer_index"), pa.array(customers, pa.int64())))
    day = table.column("local_date").cast(pa.int32()) if first_day is not None or end_day is not None else None
    if first_day is not None:
        conditions.append(pc.greater_equal(day, first_day))
    if end_day is not None:
        conditions.append(pc.less(day, end_day))
    for condition in conditions:
        keep = condition if keep is None else pc.and_(keep, condition)
    return table if keep is None else table.filter(pc.fill_null(keep, False))


def _stored_batch(table: pa.Table, customer_ids: pa.Array, names: list[str]) -> tuple[ReceiptBatch, np.ndarray]:
    """A batch of stored receipts (chunk-file columns) and its customers' ledger indices,
    built from the stored local calendar without time-zone arithmetic."""
    customer = table.column("customer_index").fill_null(-1).to_numpy().astype(np.int64)
    identified = customer >= 0
    stores = table.column("store_id")
    if not pa.types.is_dictionary(stores.type):
        stores = stores.dictionary_encode()
    stores = stores.unify_dictionaries()
    store_code = np.concatenate([chunk.indices.to_numpy(zero_copy_only=False) for chunk in stores.chunks]) \
        if stores.num_chunks else np.zeros(0, np.int32)
    records, offsets = line_records(table.column("lines"), LINE_DTYPE)
    originals = table.column("original_receipt_id").combine_chunks()
    batch = ReceiptBatch(
        receipt_id=table.column("receipt_id").combine_chunks(),
        customer_id=customer_ids.take(pa.array(np.where(identified, customer, 0), mask=~identified)),
        store_code=np.ascontiguousarray(store_code, dtype=np.int32),
        instant_us=table.column("instant").cast(pa.int64()).to_numpy(),
        local_day=table.column("local_date").cast(pa.int32()).to_numpy(),
        local_minute=np.ascontiguousarray(table.column("local_minute").to_numpy(), dtype=np.int16),
        local_month=np.ascontiguousarray(table.column("local_month").to_numpy(), dtype=np.int32),
        line_offsets=offsets,
        line_category_code=np.ascontiguousarray(records["category_id"]),
        line_qty=np.ascontiguousarray(records["qty"]),
        line_amount_minor=np.ascontiguousarray(records["amount_minor"]),
        store_names=stores.chunk(0).dictionary.to_pylist() if stores.num_chunks else [],
        category_names=names,
        original_receipt_id=originals if originals.null_count < len(originals) else None,
    )
    return batch, customer


def _originals_before(ledger: Ledger, batch: ReceiptBatch, first_row: int) -> dict:
    """The stored originals of the block's returns whose original is not in it, as they stood
    when the block begins: with only the returns written before its first row."""
    outside = originals_outside(batch)
    if not outside:
        return {}
    later = returns_written_from(ledger, outside, first_row)
    return {receipt_id: dataclasses.replace(original, returned_qty=original.returned_before(None, excluding=later))
            for receipt_id, original in stored_originals(ledger, outside).items()}


def _batch(rows: list[tuple], customer_id: pa.Array, names: list[str], timezone: str) -> ReceiptBatch:
    """A batch of stored receipts from (receipt id, customer, store id, instant, lines, points,
    original receipt id) rows, the customers' ids given apart."""
    lines, offsets = decode_receipt_lines([row[4] for row in rows])
    stores = pa.array([row[2] for row in rows], type=pa.string()).dictionary_encode()
    return ReceiptBatch.build(
        receipt_id=pa.array([row[0] for row in rows], type=pa.string()),
        customer_id=customer_id,
        store_code=stores.indices.to_numpy(zero_copy_only=False),
        store_names=stores.dictionary.to_pylist(),
        instant_us=np.array([row[3] for row in rows], dtype=np.int64),
        timezone=timezone,
        line_offsets=offsets,
        line_category_code=lines["category_id"],
        category_names=names,
        line_qty=lines["qty"],
        line_amount_minor=lines["amount_minor"],
        original_receipt_id=pa.array([row[6] for row in rows], type=pa.string())
        if any(row[6] is not None for row in rows) else None,
    )


def ledger_batch(ledger: Ledger, customers: range | np.ndarray | None = None) -> tuple[ReceiptBatch, np.ndarray]:
    """Stored receipts as a batch in processing order, and their stored points.

    Rebuilt from the ledger alone (lines, vocabularies, instants), so replaying it through
    the kernel checks the ledger against its own history. ``customers`` limits it to the
    receipts of a range of customer indices (None: every receipt, anonymous ones included).
    """
    program = ledger.current_program().program
    rows = stored_receipts(ledger, customers)
    batch = _batch(rows, pa.array([row[1] for row in rows], type=pa.string()), category_names(ledger),
                   program.info.timezone)
    return batch, np.array([row[5] for row in rows], dtype=np.int64)


def replay_part(ledger: Ledger, batch: ReceiptBatch, start: int, stop: int, compiled: ProgramTables,
                state: CustomerState) -> None:
    """Score stored receipts ``start:stop`` of ``batch`` into ``state``; returns of receipts
    before ``start`` are re-scored from the ledger's record of their originals."""
    part = batch.slice(start, stop)
    point = (int(batch.instant_us[start]), batch.receipt_id[start].as_py()) if len(part) else None
    # as they stood when this part begins: the returns stored before it
    originals = {receipt_id: dataclasses.replace(original, returned_qty=original.returned_before(point))
                 for receipt_id, original in stored_originals(ledger, originals_outside(part)).items()}
    kernel.score(part, compiled, state, originals=originals)
