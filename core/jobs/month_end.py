"""Month-end: points expire, status is recalculated, tier movements are recorded.

A chain closes each local month once, in order. Closing month M:

1. expires the lots whose expiry day has come by the first day of M + 1, and, under
   ``inactivity_months``, every lot of a customer with no earn or redemption in the months
   that rule counts — one journal ``expire`` entry per customer, dated the last instant of M;
2. computes every customer's status as of the first day of M + 1 with the kernel's own status
   function (PROGRAM.md §4), so the close agrees with the tier the next receipt is scored at;
3. records each customer whose status moved since the last close (from → to) and the close
   itself, all in one transaction: a close is all or nothing, and closing a closed month is
   a no-op.

Tills keep accruing while a month-end runs. Statuses are computed without holding the
write lock; a close conflicts only with receipts dated in the months it closes that were
written meanwhile (an offline till catching up), and then that month's statuses are
computed again under the write lock, so the close always completes with the receipts as
they are. Receipts dated after the month (today's) do not concern it. Once a month is
closed, no writer takes receipts dated in it (:mod:`~fidelis.core.jobs.admission`).

Status in the past is not recoverable from the stored state once later receipts are loaded,
so customers with receipts after a month's end are replayed through the kernel from their
stored receipts, a block of customers at a time (memory stays bounded); customers without
are read from the stored state directly.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ..errors import LedgerError
from ..ledger.closes import (
    close_record,
    expire_lots,
    expired_by_close,
    journal_entries,
    month_closed,
    movements_of,
    next_month_to_close,
    record_close,
    record_status,
    void_takebacks,
)
from ..ledger.customers import (
    current_state_generation,
    months_written_since,
    state_generation,
)
from ..ledger.handle import Ledger
from ..ledger.receipts import move_held_receipts
from ..ledger.journal import finish_run, journal_end, start_run
from ..localtime import (
    last_completed_month,
    local_months,
    month_first_day,
    month_label,
    month_start_us,
)
from ..points.expiry import expiry_rule
from ..points.lots import lots_from_journal
from ..points.standing import BLOCK_CUSTOMERS, month_end_statuses


@dataclass(frozen=True)
class MonthClose:
    """What closing one month did."""

    month: int
    expired_points: int
    customers_expired: int
    movements: int

    @property
    def label(self) -> str:
        return month_label(self.month)


def month_end(ledger: Ledger, through_month: int | None = None, *, progress: bool = False,
              block_customers: int = BLOCK_CUSTOMERS, today: dt.date | None = None) -> list[MonthClose]:
    """Close every month not yet closed up to ``through_month`` (default: the last completed one).

    The first month closed is the month of the ledger's first receipt (or the month after
    the last close). A month that has not ended by ``today`` (default: today in the chain's
    time zone) is refused. Returns what each close did; an empty list when all were closed.
    """
    program = ledger.current_program().program
    timezone = program.info.timezone
    completed = last_completed_month(timezone, today)
    through_month = completed if through_month is None else through_month
    if through_month > completed:
        raise LedgerError(f"{month_label(through_month)} has not ended yet (the last completed month is "
                          f"{month_label(completed)}); a month is closed once, after it ends")
    generation = state_generation(ledger)
    first = next_month_to_close(ledger)
    if first is None or first > through_month:
        return []
    months = list(range(first, through_month + 1))
    statuses = month_end_statuses(ledger, months, block_customers=block_customers)
    closes = []
    run_arguments = {"through": month_label(through_month)}
    for month, tiers in tqdm(zip(months, statuses), total=len(months), desc="closing", unit=" months",
                             disable=not progress):
        closes.append(_close(ledger, month, tiers, run_arguments, generation, block_customers))
    move_accrued_lines(ledger)
    return closes


def move_accrued_lines(ledger: Ledger) -> int:
    """Move the lines of receipts accrued one by one from SQLite into chunk files, in bulk:
    what keeps whole-history scans reading files; how many receipts were moved."""
    timezone = ledger.current_program().program.info.timezone
    moved = 0
    with ledger.write() as connection:
        if not connection.execute("SELECT 1 FROM receipts WHERE lines IS NOT NULL LIMIT 1").fetchone():
            return 0
        run_id = start_run(connection, "move-lines", {}, {})
    try:
        while True:
            with ledger.write() as connection:
                count = move_held_receipts(ledger, connection, run_id, timezone)
            if not count:
                break
            moved += count
    except BaseException:
        finish_run(ledger, run_id, "failed", {"receipts": moved})
        raise
    finish_run(ledger, run_id, "done", {"receipts": moved})
    return moved


def _close(ledger: Ledger, month: int, tiers: np.ndarray, run_arguments: dict, generation: int,
           block_customers: int) -> MonthClose:
    """Expire, record movements and the close of one month, in one transaction.

    ``tiers`` were computed from the ledger at state ``generation``; if receipts dated in
    this month or before were written since, they are computed again inside the
    transaction, where no other writer can come in.
    """
    program = ledger.current_program().program
    end_us = month_start_us(month + 1, program.info.timezone) - 1
    # inactive: no earn or redemption since the start of the month inactivity_months - 1
    # before this one, i.e. inactivity_months full months have passed without any
    gone_day, inactive_before = expiry_rule(program, month)
    with ledger.write() as connection:
        if month_closed(connection, month):
            raise LedgerError(f"{month_label(month)} was closed meanwhile by another process; run again")
        if months_written_since(connection, generation, month):
            [tiers] = month_end_statuses(ledger, [month], block_customers=block_customers)
        run_id = start_run(connection, "month-end", {**run_arguments, "month": month_label(month)}, {})
        journal_before = journal_end(connection)
        expired = expire_lots(connection, month, gone_day, inactive_before, end_us,
                                     f"expiry {month_label(month)}", run_id)
        movements = record_status(connection, month, tiers)
        close = MonthClose(month, sum(expired.values()), len(expired), movements)
        record_close(connection, close, run_id, journal_before, current_state_generation(connection))
    return close


def replay_close(ledger: Ledger, month: int) -> list[str]:
    """Recompute a closed month from the journal and the receipts; what differs from the record.

    The lots as they stood at the close are rebuilt from the journal entries before it
    (earnings into the lot of their local month, everything taken oldest first, a return's
    points taken beyond the lots owed and paid from the next earnings), the expiry
    rules applied to them, and every customer's status at the close and at the one before
    recomputed from their receipts. An empty list: the close is reproduced exactly.
    """
    record = close_record(ledger, month)
    if record is None:
        raise LedgerError(f"{month_label(month)} is not closed; nothing to replay")
    run_id, journal_before = record
    program = ledger.current_program().program
    gone_day, inactive_before = expiry_rule(program, month)
    end_us = month_start_us(month + 1, program.info.timezone) - 1
    expected: dict[int, int] = {}
    entries = journal_entries(ledger, journal_before)  # by customer, then entry
    if entries:
        customers, kinds, points, instants, entry_ids = (np.array(column) for column in zip(*entries))
        months = local_months(instants, program.info.timezone)
        voided = void_takebacks(ledger)
        due_on = month_first_day(program.expiry.gone_from_month(np.arange(months.max() + 1)))
        starts = np.flatnonzero(np.r_[True, customers[1:] != customers[:-1]])
        for first, stop in zip(starts, np.r_[starts[1:], len(customers)]):
            lots, _ = lots_from_journal(points[first:stop].tolist(), months[first:stop].tolist(),
                                        [voided.get(entry) for entry in entry_ids[first:stop].tolist()])
            inactive = inactive_before is not None and not any(
                kind in ("earn", "redeem") and inactive_before <= instant <= end_us
                for kind, instant in zip(kinds[first:stop], instants[first:stop]))
            gone = sum(left for key, left in lots.items() if left > 0 and key <= month and (
                inactive or (due_on[key] is not None and due_on[key] <= gone_day)))
            if gone:
                expected[int(customers[first])] = gone
    problems = []
    recorded = expired_by_close(ledger, run_id)
    for customer in sorted(set(expected) | set(recorded)):
        if expected.get(customer, 0) != recorded.get(customer, 0):
            problems.append(f"customer #{customer}: the close expired {recorded.get(customer, 0)} points, "
                            f"the replay expires {expected.get(customer, 0)}")
    before, after = month_end_statuses(ledger, [month - 1, month])
    moved = np.flatnonzero(before != after)
    expected_moves = {int(c): (int(before[c]), int(after[c])) for c in moved}
    recorded_moves = movements_of(ledger, month)
    for customer in sorted(set(expected_moves) | set(recorded_moves)):
        if expected_moves.get(customer) != recorded_moves.get(customer):
            problems.append(f"customer #{customer}: the close recorded the move {recorded_moves.get(customer)}, "
                            f"the replay gives {expected_moves.get(customer)}")
    return problems
