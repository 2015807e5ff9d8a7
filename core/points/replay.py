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
import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa

from ..batch import ReceiptBatch
from ..engine import kernel
from ..ingest.return_rows import originals_outside
from ..ledger.customers import unscored_state
from ..ledger.handle import Ledger
from ..ledger.receipts import (
    category_names,
    decode_receipt_lines,
    receipts_in_arrival_order,
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
    points the ledger stored for them."""

    batch: ReceiptBatch
    #: the ledger's index of each receipt's customer (-1: anonymous)
    customer_index: np.ndarray
    scores: Scores
    stored_points: np.ndarray


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
    """The blocks, read inside the caller's snapshot."""
    if customers is not None and not len(customers):
        return
    customer_ids = pa.array(state.customer_ids[:len(state)], pa.string())
    after = 0
    while rows := receipts_in_arrival_order(ledger, after, block_receipts, first_day=first_day, end_day=end_day,
                                            customers=customers):
        after = rows[-1][0]
        customer = np.array([-1 if row[2] is None else row[2] for row in rows], dtype=np.int64)
        identified = customer >= 0
        named = customer_ids.take(pa.array(np.where(identified, customer, 0), mask=~identified))
        batch = _batch([row[1:] for row in rows], named, names, program.info.timezone)
        stored_points = np.array([row[6] for row in rows], dtype=np.int64)
        scores = kernel.score(batch, compiled, state, originals=_originals_before(ledger, batch, rows[0][0]))
        yield ReplayedBlock(batch, customer, scores, stored_points)


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


def _originals_before(ledger: Ledger, batch: ReceiptBatch, first_row: int) -> dict:
    """The stored originals of the block's returns whose original is not in it, as they stood
    when the block begins: with only the returns written before its first row."""
    outside = originals_outside(batch)
    if not outside:
        return {}
    later = returns_written_from(ledger, outside, first_row)
    return {receipt_id: dataclasses.replace(original, returned_qty=original.returned_before(None, excluding=later))
            for receipt_id, original in stored_originals(ledger, outside).items()}


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
