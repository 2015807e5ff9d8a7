"""Standing: a customer's status, balance and progress to the next tier, as of a month.

Status is computed by the kernel's own status function from the customer's scoring state,
so what a till shows, what month-end records and the tier the next receipt is scored at
agree. Status in the past is not in the stored state once later receipts are loaded: those
customers are replayed from their stored receipts up to the month's end.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from ..engine import kernel
from ..errors import LedgerError
from ..ledger.customers import customer_details, stored_standing, stored_state_arrays
from ..ledger.handle import Ledger
from ..localtime import month_of, month_start_us
from ..state import CustomerState
from .replay import ledger_batch, replay_part

#: Customers replayed at once when their status must be recomputed from their receipts.
BLOCK_CUSTOMERS = 50_000


@dataclass(frozen=True)
class Standing:
    """A customer's balance and status, as a till or an app shows it."""

    customer_id: str
    points: int
    tier: str
    #: Qualifying total so far, in the measure's units (minor units of spend, visits or points).
    qualifying_total: int
    next_tier: str | None
    #: How much more of the measure reaches ``next_tier`` (None at the top tier).
    to_next_tier: int | None
    #: The ledger's index of the customer.
    customer_index: int = -1


def standing(ledger: Ledger, customer_id: str, as_of: dt.date | None = None) -> Standing:
    """Balance, status and progress to the next tier for a receipt on ``as_of``.

    ``as_of`` defaults to today in the chain's time zone (or the customer's last receipt's
    month, if the ledger holds receipts dated later than today).
    """
    program, compiled = ledger.compiled_program()
    index, balance, records, rolling, reached = stored_standing(ledger, compiled, customer_id)
    last_month = int(records["last_visit_month"][0])
    if as_of is None:
        month = max(month_of(dt.datetime.now(program.info.zone()).date()), last_month)
    else:
        month = month_of(as_of)
        if month < max(last_month, 0):
            raise LedgerError(f"customer {customer_id!r} has receipts after {as_of}; status can be asked for "
                              "the month of their last receipt or later")
    tiers, totals = kernel.standing_of(compiled, records, rolling, reached, month)
    tier, total = int(tiers[0]), int(totals[0])
    following = tier + 1 if tier + 1 < len(program.tiers) else None
    return Standing(
        customer_id=customer_id,
        points=balance,
        tier=program.tiers[tier].name,
        qualifying_total=total,
        next_tier=None if following is None else program.tiers[following].name,
        to_next_tier=None if following is None
        else max(0, int(compiled.tier_threshold[following]) - total),
        customer_index=index,
    )


def month_end_statuses(ledger: Ledger, months: list[int], *, block_customers: int = BLOCK_CUSTOMERS) -> list[np.ndarray]:
    """Every customer's status tier as of the first day after each month (int8, by customer index).

    Customers whose stored history ends before a month's end are read from the stored state;
    the others are replayed through the kernel up to it.
    """
    program, compiled = ledger.compiled_program()
    timezone = program.info.timezone
    records, rolling_totals, tier_reached_month = stored_state_arrays(ledger, compiled)
    boundaries = np.array([month_start_us(month + 1, timezone) for month in months], dtype=np.int64)
    last_instant = records["last_instant_us"]
    result = []
    for month, boundary in zip(months, boundaries):
        tiers = np.zeros(len(records), dtype=np.int8)
        # the stored state holds no receipt after this month for these customers
        settled = np.flatnonzero(last_instant < boundary)
        tiers[settled] = kernel.standing_of(compiled, records[settled], rolling_totals[settled],
                                            tier_reached_month[settled], month + 1)[0]
        result.append(tiers)
    unsettled = np.flatnonzero(last_instant >= boundaries.min()) if len(months) else np.zeros(0, np.int64)
    for start in range(0, len(unsettled), block_customers):
        block = unsettled[start:start + block_customers]
        customer_ids, birth_months = customer_details(ledger, block)
        replay = CustomerState.for_program(compiled, capacity=max(len(block), 1))
        replay.index_of(customer_ids)
        replay.records["birth_month"][:len(block)] = birth_months
        batch, _ = ledger_batch(ledger, customers=block)
        cut = 0
        for position, (month, boundary) in enumerate(zip(months, boundaries)):
            upto = int(np.searchsorted(batch.instant_us, boundary, side="left"))
            if upto > cut:
                replay_part(ledger, batch, cut, upto, compiled, replay)
                cut = upto
            mine = last_instant[block] >= boundary
            if mine.any():
                result[position][block[mine]] = kernel.standing_of(compiled, *replay.arrays(), month + 1)[0][mine]
    return result
