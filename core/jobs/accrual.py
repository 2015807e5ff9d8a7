"""Real-time accrual: a receipt (or a small batch) scored and committed as it happens.

The point of sale sends a receipt; it must earn exactly what a bulk load of the same receipt
gives. So it goes through the same readers (validation), the same kernel and the same ledger
writes as a load, with two differences that make it fast and safe for one receipt at a time:

- only the state of the receipt's customers is read, inside the write transaction
  (``BEGIN IMMEDIATE``), so concurrent accruals and redemptions queue and each scores from
  the history the one before it committed;
- it is all or nothing per call: any receipt that cannot be taken (late, in a closed month,
  an id already used for other content) refuses the whole call with an error naming it.

Receipt ids stay idempotency keys: a receipt already in the ledger with the same content
gives its stored result again, marked ``existing``.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..batch import ReceiptBatch
from ..engine import kernel
from ..errors import (
    FidelisError,
    InputError,
    InputProblem,
    LateReceipt,
    LedgerBusy,
    ReceiptConflict,
)
from ..ingest.columns import InputSegment
from ..ingest.fingerprints import receipt_fingerprints
from ..ingest.receipts import CheckedReceipts, check_segments
from ..ingest.return_rows import originals_outside, resolve_returns, with_returns
from ..ledger.customers import (
    advance_state_generation,
    current_state_generation,
    customer_states,
    insert_customers,
)
from ..ledger.handle import Ledger
from ..ledger.journal import realtime_run
from ..ledger.receipts import (
    receipt_results,
    stored_originals,
    vocabulary_ids,
)
from ..scores import POINT_COLUMNS
from .admission import CONFLICT, FUTURE_TOLERANCE_US, admit, ahead_of_now, receipts_over
from .commit import append_chunk, sku_ids_of
from .rejects import input_location


@dataclass(frozen=True)
class Accrued:
    """What one receipt (or return) earned (took back), and the customer's balance after it."""

    receipt_id: str
    customer_id: str | None
    tier: str | None
    #: rate, basket, visit, welcome and cap points, and their total (≤ 0 on a return)
    points: dict[str, int]
    #: on a return under ``negative_balance = "floor_zero"``: points it could not take back
    unrecovered_points: int
    balance: int | None
    existing: bool
    is_return: bool


def accrue(ledger: Ledger, checked: CheckedReceipts) -> list[Accrued]:
    """Score and commit validated receipts (and return rows) in one transaction.

    Raises :class:`InputError` (bad rows, receipts dated ahead of now, returns that cannot
    be taken), :class:`ReceiptConflict` or :class:`LateReceipt`; nothing is written then.
    """
    if checked.problems:
        raise InputError(checked.problems)
    _refuse_future(checked)
    program, compiled = ledger.compiled_program()
    _refuse_beyond_bounds(checked, compiled.amount_bound_minor)
    version = ledger.current_program().version
    with ledger.write() as connection:
        batch = checked.batch
        if checked.returns:
            returned, problems = resolve_returns(checked.returns, batch, functools.partial(stored_originals, ledger),
                                                 program.info.timezone)
            if problems:
                raise InputError(problems)
            batch = with_returns(batch, returned)
        receipt_ids = batch.receipt_id.to_pylist()
        prints = receipt_fingerprints(batch)
        state, stored_index = customer_states(ledger, compiled, batch.customer_id.drop_null().to_pylist())
        # (dates ahead of now were refused by input row above, before the write lock)
        admission = admit(ledger, batch, prints, state, stored_index=stored_index, future_tolerance_us=None)
        for refusal in admission.refused.values():
            raise (ReceiptConflict if refusal.kind == CONFLICT else LateReceipt)(refusal.reason)
        new = admission.admitted
        if new.any():
            fresh = batch if new.all() else batch.take(np.flatnonzero(new))
            _commit(ledger, connection, compiled, version, fresh, prints[new], state, stored_index)
        return _results(ledger, connection, program, receipt_ids, existing=~new)


def _commit(ledger: Ledger, connection, compiled, version: int, batch: ReceiptBatch, prints: np.ndarray,
            state, stored_index: np.ndarray) -> None:
    """Score admitted receipts from their customers' stored state and write them (inside the transaction)."""
    known = len(state)
    prepared = kernel.prepare(batch, compiled, state)
    scores = kernel.score(prepared, compiled, state, originals=stored_originals(ledger, originals_outside(batch)))
    if len(state) > known:  # customers seen for the first time
        stored_index = np.concatenate([stored_index, insert_customers(connection, state.customer_ids[known:])])
    category_ids = vocabulary_ids(connection, "categories", batch.category_names)
    append_chunk(connection, ledger, prepared, scores, prints, category_ids, sku_ids_of(ledger, connection, batch),
                 version, realtime_run(ledger, connection), state, stored_index)
    advance_state_generation(ledger, connection, current_state_generation(connection), batch.local_month)


def _refuse_future(checked: CheckedReceipts) -> None:
    """Receipts and returns dated beyond the admission rule's tolerance, by input row."""
    hours = FUTURE_TOLERANCE_US // 3_600_000_000
    problems = [_problem_at(checked, position, "ts", f"the receipt is dated more than {hours} hours ahead of now")
                for position in np.flatnonzero(ahead_of_now(checked.batch.instant_us))]
    returns = [line for line in checked.returns if ahead_of_now(line.instant_us)]
    problems += [InputProblem(line.source, line.row, "ts", None, f"the return is dated more than {hours} hours ahead "
                              "of now") for line in returns]
    if problems:
        raise InputError(problems)


def _refuse_beyond_bounds(checked: CheckedReceipts, amount_bound: int) -> None:
    """Receipts larger than the engine scores exactly are bad input, as in a load."""
    over = np.flatnonzero(receipts_over(checked.batch, amount_bound))
    if len(over):
        raise InputError([_problem_at(checked, position, "amount", f"the receipt is larger than the engine's "
                                      f"exact-arithmetic bound of {amount_bound} minor units") for position in over])


def _problem_at(checked: CheckedReceipts, position: int, column: str, reason: str) -> InputProblem:
    """A problem about receipt ``position`` of a checked input, at its first row."""
    source, row = input_location(checked, int(checked.batch.metadata["first_input_row"][position]))
    return InputProblem(source, row, column, None, reason)


def _results(ledger: Ledger, connection, program, receipt_ids: list[str], existing: np.ndarray) -> list[Accrued]:
    tiers = [tier.name for tier in program.tiers]
    rows = receipt_results(connection, receipt_ids)
    results = []
    for receipt_id, was_there in zip(receipt_ids, existing.tolist()):
        customer_id, tier, points, unrecovered, original, balance = rows[receipt_id]
        results.append(Accrued(
            receipt_id=receipt_id, customer_id=customer_id, tier=None if tier is None else tiers[tier],
            points=dict(zip(POINT_COLUMNS, points)), unrecovered_points=unrecovered, balance=balance,
            existing=was_there, is_return=original is not None,
        ))
    return results


@dataclass(eq=False)  # a caller's place in the queue: compared by identity, never by its rows,
class _Ticket:       # for a till's retries hand in identical rows
    table: pa.Table
    ledger_path: object = None
    result: list[Accrued] | None = None
    error: BaseException | None = None
    finished: bool = False

    def outcome(self) -> list[Accrued]:
        if self.error is not None:
            raise self.error
        return self.result


@dataclass
class GroupCommit:
    """Receipts from many threads of one process, validated and committed together.

    A thread hands in its receipt rows (the columns of a receipts file) and waits; a thread
    that finds no commit running leads: it takes everything handed in so far (up to
    ``max_rows``), validates it as one input of several parts and commits it in one
    transaction — one pass of the readers' checks, one write lock, one pass of the kernel —
    then wakes the others with their results. Receipts of one commit are scored in
    processing order, as in a load. A caller whose rows are bad gets its own problems, rows
    numbered within its own rows; if the joint commit is refused (a receipt is late, reuses
    an id…), each caller's receipts are committed on their own, so every refusal reaches its
    own caller and the others still go in. Under load this turns many small transactions,
    each paying the fixed cost of checking and writing, into a few larger ones.
    """

    timezone: str
    minor_units: int
    max_rows: int = 2_000
    _condition: threading.Condition = field(default_factory=threading.Condition)
    _pending: list[_Ticket] = field(default_factory=list)
    _leading: bool = False

    def accrue(self, ledger: Ledger, table: pa.Table) -> list[Accrued]:
        """What :func:`accrue` gives for ``table``'s rows, committed with whatever else waits."""
        ticket = _Ticket(table, ledger.path)
        with self._condition:
            self._pending.append(ticket)
            while self._leading and not ticket.finished:
                self._condition.wait()
            if ticket.finished:
                return ticket.outcome()
            group = self._take_group(ticket)
            self._leading = True  # set only once nothing can fail before the hand-off below
        try:
            self._commit(ledger, group)
        except BaseException as error:  # nobody in the group may be left without an answer
            for member in group:
                if member.result is None and member.error is None:
                    member.error = error
            raise
        finally:
            with self._condition:
                for member in group:
                    member.finished = True
                self._leading = False
                self._condition.notify_all()
        return ticket.outcome()

    def _take_group(self, leader: _Ticket) -> list[_Ticket]:
        """The leader's own rows first, then whoever waits for the same ledger, as far as
        ``max_rows`` allows; taken out of the queue (by identity)."""
        group, rows = [leader], leader.table.num_rows
        for waiting in self._pending:
            if waiting is not leader and waiting.ledger_path == leader.ledger_path \
                    and rows + waiting.table.num_rows <= self.max_rows:
                group.append(waiting)
                rows += waiting.table.num_rows
        taken = set(map(id, group))
        self._pending = [waiting for waiting in self._pending if id(waiting) not in taken]
        return group

    def commit(self, ledger: Ledger, tables: list[pa.Table]) -> list[list[Accrued] | BaseException]:
        """Commit several callers' rows as one group now: each caller's results or its error."""
        group = [_Ticket(table) for table in tables]
        self._commit(ledger, group)
        return [ticket.error if ticket.error is not None else ticket.result for ticket in group]

    def _check(self, group: list[_Ticket]) -> CheckedReceipts:
        """The group's rows checked as one table (one pass of the checks for all callers);
        each caller's problems go to its ticket, rows numbered within its own rows."""
        tables = [ticket.table for ticket in group]
        offsets = np.cumsum([0] + [table.num_rows for table in tables])
        checked = check_segments([InputSegment("request body", pa.concat_tables(tables, promote_options="default"))],
                                 timezone=self.timezone, minor_units=self.minor_units)
        for problem in checked.problems:
            if problem.row is None:
                raise InputError(checked.problems)  # about the input as a whole: each caller alone
            owner = int(np.searchsorted(offsets, problem.row - 1, side="right")) - 1
            ticket = group[owner]
            moved = replace(problem, row=problem.row - int(offsets[owner]))
            ticket.error = InputError([*ticket.error.problems, moved] if ticket.error else [moved])
        return checked

    def _commit(self, ledger: Ledger, group: list[_Ticket]) -> None:
        """Commit a group together, or each caller alone if together they are refused."""
        ids = [pc.unique(ticket.table.column("receipt_id")).to_pylist() for ticket in group]
        # (one receipt id from two callers would be read as one receipt's lines: those go alone)
        together = len(group) > 1 and len({i for found in ids for i in found}) == sum(map(len, ids))
        if together:
            try:
                checked = self._check(group)
                if checked.problems:
                    raise _Regroup()
                by_id = {result.receipt_id: result for result in accrue(ledger, checked)}
            except LedgerBusy:
                raise  # the same for everyone: retrying one by one would only wait longer
            except (FidelisError, _Regroup):
                pass  # someone's receipts are refused: find whose, one caller at a time
            else:
                for ticket, found in zip(group, ids):
                    ticket.result = [by_id[receipt_id] for receipt_id in found]
                return
        busy = None
        for ticket in group:
            if ticket.error is not None:
                continue
            if busy is not None:  # a busy ledger is busy for everyone: no one waits again
                ticket.error = busy
                continue
            try:
                ticket.result = accrue(ledger, check_segments(
                    [InputSegment("request body", ticket.table)], timezone=self.timezone, minor_units=self.minor_units))
            except LedgerBusy as error:
                ticket.error = busy = error
            except Exception as error:  # handed to its own caller
                ticket.error = error


class _Regroup(Exception):
    """Some callers' rows are bad: commit the others one by one."""
