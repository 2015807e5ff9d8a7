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

import datetime as dt
import zoneinfo
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from . import kernel
from .compiled import compile_program
from .ledger import Ledger, LedgerError
from .localtime import local_calendar, local_to_instant_us, month_first_day
from .state import CustomerState

#: Customers replayed at once when their status must be recomputed from their receipts.
BLOCK_CUSTOMERS = 50_000
_US_PER_DAY = 86_400_000_000


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


def month_label(month: int) -> str:
    """``YYYY-MM`` of a local month number."""
    return f"{1970 + month // 12:04d}-{month % 12 + 1:02d}"


def parse_month(text: str) -> int:
    """A ``YYYY-MM`` string as a local month number."""
    try:
        year, month = (int(part) for part in text.split("-"))
        if not (1970 <= year <= 2199 and 1 <= month <= 12):
            raise ValueError
    except ValueError:
        raise LedgerError(f"{text!r} is not a month (YYYY-MM between 1970-01 and 2199-12)") from None
    return (year - 1970) * 12 + month - 1


def month_start_us(month: int, timezone: str) -> int:
    """The first local instant of a month (local midnight of its first day)."""
    day = int(month_first_day(np.array([month]))[0])
    return int(local_to_instant_us(np.array([day * _US_PER_DAY]), timezone)[0])


def last_completed_month(timezone: str, today: dt.date | None = None) -> int:
    """The month before ``today``'s local month (default: today in the chain's time zone)."""
    today = today or dt.datetime.now(zoneinfo.ZoneInfo(timezone)).date()
    return (today.year - 1970) * 12 + today.month - 2


def month_end(ledger: Ledger, through_month: int | None = None, *, progress: bool = False,
              block_customers: int = BLOCK_CUSTOMERS) -> list[MonthClose]:
    """Close every month not yet closed up to ``through_month`` (default: the last completed one).

    The first month closed is the month of the ledger's first receipt (or the month after
    the last close). Returns what each close did; an empty list when all were closed.
    """
    program = ledger.current_program().program
    timezone = program.info.timezone
    through_month = last_completed_month(timezone) if through_month is None else through_month
    first = ledger.next_month_to_close()
    if first is None or first > through_month:
        return []
    months = list(range(first, through_month + 1))
    statuses = month_end_statuses(ledger, months, block_customers=block_customers)
    closes = []
    run_arguments = {"through": month_label(through_month)}
    for month, tiers in tqdm(zip(months, statuses), total=len(months), desc="closing", unit=" months",
                             disable=not progress):
        closes.append(_close(ledger, month, tiers, run_arguments))
    return closes


def month_end_statuses(ledger: Ledger, months: list[int], *, block_customers: int = BLOCK_CUSTOMERS) -> list[np.ndarray]:
    """Every customer's status tier as of the first day after each month (int8, by customer index).

    Customers whose stored history ends before a month's end are read from the stored state;
    the others are replayed through the kernel up to it.
    """
    program, compiled = ledger.compiled_program()
    timezone = program.info.timezone
    stored = CustomerState.for_program(compiled)
    ledger.load_state(stored)
    count = len(stored)
    boundaries = np.array([month_start_us(month + 1, timezone) for month in months], dtype=np.int64)
    last_instant = stored.records["last_instant_us"][:count]
    result = []
    for month, boundary in zip(months, boundaries):
        tiers = np.zeros(count, dtype=np.int8)
        # the stored state holds no receipt after this month for these customers
        settled = np.flatnonzero(last_instant < boundary)
        tiers[settled] = kernel.status_of(compiled, stored, month + 1, settled)
        result.append(tiers)
    unsettled = np.flatnonzero(last_instant >= boundaries.min()) if count and len(months) else np.zeros(0, np.int64)
    from .jobs import ledger_batch  # receipts as a batch, rebuilt from the ledger

    for start in range(0, len(unsettled), block_customers):
        block = unsettled[start:start + block_customers]
        replay = CustomerState.for_program(compiled, capacity=max(len(block), 1))
        replay.index_of([stored.customer_ids[index] for index in block])
        replay.records["birth_month"][:len(block)] = stored.records["birth_month"][block]
        batch, _ = ledger_batch(ledger, customers=block)
        cut = 0
        for position, (month, boundary) in enumerate(zip(months, boundaries)):
            upto = int(np.searchsorted(batch.instant_us, boundary, side="left"))
            if upto > cut:
                kernel.score(batch.slice(cut, upto), compiled, replay)
                cut = upto
            mine = last_instant[block] >= boundary
            if mine.any():
                result[position][block[mine]] = kernel.status_as_of(compiled, replay, month + 1)[mine]
    return result


def _close(ledger: Ledger, month: int, tiers: np.ndarray, run_arguments: dict) -> MonthClose:
    """Expire, record movements and the close of one month, in one transaction."""
    program = ledger.current_program().program
    timezone = program.info.timezone
    end_us = month_start_us(month + 1, timezone) - 1
    gone_day = int(month_first_day(np.array([month + 1]))[0])
    inactive_before = None
    if program.expiry.inactivity_months is not None:
        # no earn or redemption in the last inactivity_months full months: active last in a
        # month at most month - inactivity_months
        inactive_before = month_start_us(month - program.expiry.inactivity_months + 1, timezone)
    with ledger.write() as connection:
        if ledger.month_closed(connection, month):
            raise LedgerError(f"{month_label(month)} was closed meanwhile by another process; run again")
        run_id = ledger.start_run(connection, "month-end", {**run_arguments, "month": month_label(month)}, {})
        expired = ledger.expire_lots(connection, gone_day, inactive_before, end_us,
                                     f"expiry {month_label(month)}", run_id)
        movements = ledger.record_status(connection, month, tiers)
        close = MonthClose(month, sum(expired.values()), len(expired), movements)
        ledger.record_close(connection, close, run_id)
    return close


def local_months(instant_us: np.ndarray, timezone: str) -> np.ndarray:
    """The local month of each instant."""
    return local_calendar(np.asarray(instant_us, dtype=np.int64), timezone).local_month
