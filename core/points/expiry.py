"""Expiry: when points are gone — the day a lot expires, and inactivity.

The program's ``[expiry]`` gives each lot an expiry day when it is earned (points are gone
from the first day of a later month, :meth:`~fidelis.core.program.model.Expiry.gone_from_month`),
and under ``inactivity_months`` every lot of a customer with no earn or redemption in that
many full months goes at a close. The rule's bounds for a month's close are computed here;
the query that finds the lots is :func:`fidelis.core.ledger.closes.due_lots`.
:func:`fidelis.core.jobs.month_end.replay_close` checks closes against a second, independent
reading of the same rule.
"""
from __future__ import annotations

import functools

import numpy as np

from ..ledger.closes import due_lots, next_month_to_close
from ..ledger.customers import customer_ids_of, customer_index_of
from ..ledger.handle import Ledger
from ..localtime import (
    cached_month_start_us,
    month_first_day,
    month_label,
    month_start_us,
)


def upcoming_expiry(ledger: Ledger) -> tuple[int, list[tuple[str, int]]]:
    """The next month to close and what its close would expire as things stand: (customer id,
    points) by customer, largest first — the list a chain sends "your points expire" notices to.

    Activity (an earn or a redemption) before the month ends still saves points from the
    inactivity rule, so the list shrinks as the month goes on.
    """
    month = next_month_to_close(ledger)
    if month is None:
        return 0, []
    program = ledger.current_program().program
    gone_day, inactive_before = expiry_rule(program, month)
    end_us = month_start_us(month + 1, program.info.timezone) - 1
    due: dict[int, int] = {}
    for customer, _, points in due_lots(ledger.db.conn, month, gone_day, inactive_before, end_us):
        due[customer] = due.get(customer, 0) + points
    ranked = sorted(due.items(), key=lambda item: (-item[1], item[0]))
    return month, list(zip(customer_ids_of(ledger, [customer for customer, _ in ranked]),
                           [points for _, points in ranked]))


def expiring_at_next_close(ledger: Ledger, customer_id: str, *, index: int | None = None) -> tuple[str | None, int]:
    """(the next month to close, the points of one customer its close would expire as things stand)."""
    index = customer_index_of(ledger, customer_id) if index is None else index
    month = next_month_to_close(ledger)
    if month is None:
        return None, 0
    program = ledger.current_program().program
    gone_day, inactive_before = expiry_rule(program, month)
    end_us = cached_month_start_us(month + 1, program.info.timezone) - 1
    due = due_lots(ledger.db.conn, month, gone_day, inactive_before, end_us, customer=index)
    return month_label(month), sum(points for _, _, points in due)


def expiry_rule(program, month: int) -> tuple[int, int | None]:
    """(the day lots due by this close are gone on, the instant activity must reach to keep points)."""
    return _close_bounds(program.info.timezone, program.expiry.inactivity_months, month)


@functools.lru_cache(maxsize=256)
def _close_bounds(timezone: str, inactivity_months: int | None, month: int) -> tuple[int, int | None]:
    # (remembered: balance lookups ask for the next close's bounds on every request)
    gone_day = int(month_first_day(np.array([month + 1]))[0])
    inactive_before = None
    if inactivity_months is not None:
        # a window reaching before the supported range (1970) holds no more activity than one
        # starting with it: a rule of 100 years is valid, not a crash at month-end
        inactive_before = month_start_us(max(month - inactivity_months + 1, 1), timezone)
    return gone_day, inactive_before
