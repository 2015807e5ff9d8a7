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

Status in the past is not recoverable from the stored state once later receipts are loaded,
so customers with receipts after a month's end are replayed through the kernel from their
stored receipts, a block of customers at a time (memory stays bounded); customers without
are read from the stored state directly.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ..engine import kernel
from ..points.replay import ledger_batch
from ..ledger.handle import Ledger
from ..errors import LedgerError
from ..localtime import cached_month_start_us, last_completed_month, local_months, month_first_day, month_label, month_start_us
from ..ingest.return_rows import originals_outside
from ..state import CustomerState

#: Customers replayed at once when their status must be recomputed from their receipts.
BLOCK_CUSTOMERS = 50_000


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
    generation = ledger.state_generation()
    first = ledger.next_month_to_close()
    if first is None or first > through_month:
        return []
    months = list(range(first, through_month + 1))
    statuses = month_end_statuses(ledger, months, block_customers=block_customers)
    closes = []
    run_arguments = {"through": month_label(through_month)}
    for month, tiers in tqdm(zip(months, statuses), total=len(months), desc="closing", unit=" months",
                             disable=not progress):
        closes.append(_close(ledger, month, tiers, run_arguments, generation))
    return closes


def month_end_statuses(ledger: Ledger, months: list[int], *, block_customers: int = BLOCK_CUSTOMERS) -> list[np.ndarray]:
    """Every customer's status tier as of the first day after each month (int8, by customer index).

    Customers whose stored history ends before a month's end are read from the stored state;
    the others are replayed through the kernel up to it.
    """
    program, compiled = ledger.compiled_program()
    timezone = program.info.timezone
    records, rolling_totals, tier_reached_month = ledger.stored_state_arrays(compiled)
    boundaries = np.array([month_start_us(month + 1, timezone) for month in months], dtype=np.int64)
    last_instant = records["last_instant_us"]
    result = []
    for month, boundary in zip(months, boundaries):
        tiers = np.zeros(len(records), dtype=np.int8)
        # the stored state holds no receipt after this month for these customers
        settled = np.flatnonzero(last_instant < boundary)
        tiers[settled] = kernel.status_of(compiled, records[settled], rolling_totals[settled],
                                          tier_reached_month[settled], month + 1)
        result.append(tiers)
    unsettled = np.flatnonzero(last_instant >= boundaries.min()) if len(months) else np.zeros(0, np.int64)
    for start in range(0, len(unsettled), block_customers):
        block = unsettled[start:start + block_customers]
        customer_ids, birth_months = ledger.customer_details(block)
        replay = CustomerState.for_program(compiled, capacity=max(len(block), 1))
        replay.index_of(customer_ids)
        replay.records["birth_month"][:len(block)] = birth_months
        batch, _ = ledger_batch(ledger, customers=block)
        cut = 0
        for position, (month, boundary) in enumerate(zip(months, boundaries)):
            upto = int(np.searchsorted(batch.instant_us, boundary, side="left"))
            if upto > cut:
                _replay(ledger, batch, cut, upto, compiled, replay)
                cut = upto
            mine = last_instant[block] >= boundary
            if mine.any():
                result[position][block[mine]] = kernel.status_as_of(compiled, replay, month + 1)[mine]
    return result


def _replay(ledger: Ledger, batch, start: int, stop: int, compiled, state: CustomerState) -> None:
    """Score stored receipts ``start:stop`` of ``batch`` into ``state``; returns of receipts
    before ``start`` are re-scored from the ledger's record of their originals."""
    part = batch.slice(start, stop)
    point = (int(batch.instant_us[start]), batch.receipt_id[start].as_py()) if len(part) else None
    # as they stood when this part begins: the returns stored before it
    originals = {receipt_id: dataclasses.replace(original, returned_qty=original.returned_before(point))
                 for receipt_id, original in ledger.stored_originals(originals_outside(part)).items()}
    kernel.score(part, compiled, state, originals=originals)


def _close(ledger: Ledger, month: int, tiers: np.ndarray, run_arguments: dict, generation: int) -> MonthClose:
    """Expire, record movements and the close of one month, in one transaction."""
    program = ledger.current_program().program
    end_us = month_start_us(month + 1, program.info.timezone) - 1
    # inactive: no earn or redemption since the start of the month inactivity_months - 1
    # before this one, i.e. inactivity_months full months have passed without any
    gone_day, inactive_before = _expiry_rule(program, month)
    with ledger.write() as connection:
        if ledger.month_closed(connection, month):
            raise LedgerError(f"{month_label(month)} was closed meanwhile by another process; run again")
        # statuses were computed from the receipts as they were when this run started
        ledger.check_state_generation(connection, generation, "receipts were loaded while month-end ran; run it "
                                      "again (the months it closed stay closed)")
        run_id = ledger.start_run(connection, "month-end", {**run_arguments, "month": month_label(month)}, {})
        journal_before = ledger.journal_end(connection)
        expired = ledger.expire_lots(connection, month, gone_day, inactive_before, end_us,
                                     f"expiry {month_label(month)}", run_id)
        movements = ledger.record_status(connection, month, tiers)
        close = MonthClose(month, sum(expired.values()), len(expired), movements)
        ledger.record_close(connection, close, run_id, journal_before)
    return close


def upcoming_expiry(ledger: Ledger) -> tuple[int, list[tuple[str, int]]]:
    """The next month to close and what its close would expire as things stand: (customer id,
    points) by customer, largest first — the list a chain sends "your points expire" notices to.

    Activity (an earn or a redemption) before the month ends still saves points from the
    inactivity rule, so the list shrinks as the month goes on.
    """
    month = ledger.next_month_to_close()
    if month is None:
        return 0, []
    program = ledger.current_program().program
    gone_day, inactive_before = _expiry_rule(program, month)
    end_us = month_start_us(month + 1, program.info.timezone) - 1
    due: dict[int, int] = {}
    for customer, _, points in Ledger.due_lots(ledger.db.conn, month, gone_day, inactive_before, end_us):
        due[customer] = due.get(customer, 0) + points
    ranked = sorted(due.items(), key=lambda item: (-item[1], item[0]))
    return month, list(zip(ledger.customer_ids([customer for customer, _ in ranked]),
                           [points for _, points in ranked]))


def expiring_at_next_close(ledger: Ledger, customer_id: str, *, index: int | None = None) -> tuple[str | None, int]:
    """(the next month to close, the points of one customer its close would expire as things stand)."""
    index = ledger.customer_index(customer_id) if index is None else index
    month = ledger.next_month_to_close()
    if month is None:
        return None, 0
    program = ledger.current_program().program
    gone_day, inactive_before = _expiry_rule(program, month)
    end_us = cached_month_start_us(month + 1, program.info.timezone) - 1
    due = Ledger.due_lots(ledger.db.conn, month, gone_day, inactive_before, end_us, customer=index)
    return month_label(month), sum(points for _, _, points in due)


def _expiry_rule(program, month: int) -> tuple[int, int | None]:
    """(the day lots due by this close are gone on, the instant activity must reach to keep points)."""
    return _close_bounds(program.info.timezone, program.expiry.inactivity_months, month)


@functools.lru_cache(maxsize=256)
def _close_bounds(timezone: str, inactivity_months: int | None, month: int) -> tuple[int, int | None]:
    # (remembered: balance lookups ask for the next close's bounds on every request)
    gone_day = int(month_first_day(np.array([month + 1]))[0])
    inactive_before = None
    if inactivity_months is not None:
        inactive_before = month_start_us(month - inactivity_months + 1, timezone)
    return gone_day, inactive_before


def replay_close(ledger: Ledger, month: int) -> list[str]:
    """Recompute a closed month from the journal and the receipts; what differs from the record.

    The lots as they stood at the close are rebuilt from the journal entries before it
    (earnings into the lot of their local month, everything taken oldest first, a return's
    points taken beyond the lots owed and paid from the next earnings), the expiry
    rules applied to them, and every customer's status at the close and at the one before
    recomputed from their receipts. An empty list: the close is reproduced exactly.
    """
    record = ledger.close_record(month)
    if record is None:
        raise LedgerError(f"{month_label(month)} is not closed; nothing to replay")
    run_id, journal_before = record
    program = ledger.current_program().program
    gone_day, inactive_before = _expiry_rule(program, month)
    end_us = month_start_us(month + 1, program.info.timezone) - 1
    expected: dict[int, int] = {}
    entries = ledger.journal_entries(journal_before)  # by customer, then entry
    if entries:
        customers, kinds, points, instants, _ = (np.array(column) for column in zip(*entries))
        months = local_months(instants, program.info.timezone)
        due_on = month_first_day(program.expiry.gone_from_month(np.arange(months.max() + 1)))
        starts = np.flatnonzero(np.r_[True, customers[1:] != customers[:-1]])
        for first, stop in zip(starts, np.r_[starts[1:], len(customers)]):
            lots: dict[int, int] = {}
            debt = 0
            for amount, lot_month in zip(points[first:stop].tolist(), months[first:stop].tolist()):
                if amount > 0:  # earned or added: the lot of its local month, then any debt paid
                    lots[lot_month] = lots.get(lot_month, 0) + amount
                    debt = _take_oldest_first(lots, debt)
                else:  # redeemed, taken back or expired: the oldest lots first; beyond them, a debt
                    debt += _take_oldest_first(lots, -amount)
            inactive = inactive_before is not None and not any(
                kind in ("earn", "redeem") and inactive_before <= instant <= end_us
                for kind, instant in zip(kinds[first:stop], instants[first:stop]))
            gone = sum(left for key, left in lots.items() if left > 0 and key <= month and (
                inactive or (due_on[key] is not None and due_on[key] <= gone_day)))
            if gone:
                expected[int(customers[first])] = gone
    problems = []
    recorded = ledger.expired_by_close(run_id)
    for customer in sorted(set(expected) | set(recorded)):
        if expected.get(customer, 0) != recorded.get(customer, 0):
            problems.append(f"customer #{customer}: the close expired {recorded.get(customer, 0)} points, "
                            f"the replay expires {expected.get(customer, 0)}")
    before, after = month_end_statuses(ledger, [month - 1, month])
    moved = np.flatnonzero(before != after)
    expected_moves = {int(c): (int(before[c]), int(after[c])) for c in moved}
    recorded_moves = ledger.movements_of(month)
    for customer in sorted(set(expected_moves) | set(recorded_moves)):
        if expected_moves.get(customer) != recorded_moves.get(customer):
            problems.append(f"customer #{customer}: the close recorded the move {recorded_moves.get(customer)}, "
                            f"the replay gives {expected_moves.get(customer)}")
    return problems


def _take_oldest_first(lots: dict[int, int], points: int) -> int:
    """Take up to ``points`` from lots, oldest first; what they could not give."""
    for key in sorted(lots):
        taken = min(points, lots[key])
        lots[key] -= taken
        points -= taken
    return points
