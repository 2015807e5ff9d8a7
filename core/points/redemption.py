"""Redemption: spending points under the program's ``[redemption]`` terms, exactly once."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import IdempotencyConflict, InsufficientPoints, RedemptionError
from ..ledger.clock import now_us
from ..ledger.customers import customer_ids_of, customer_index_of
from ..ledger.handle import Ledger
from ..ledger.journal import (
    add_redeem_entry,
    balance_of,
    balance_through,
    redemption_by_reference,
)
from .lots import take_oldest_first


@dataclass(frozen=True)
class Redeemed:
    """A recorded redemption; ``existing`` when the key had already been redeemed.

    (The program's section of terms is :class:`fidelis.core.program.model.Redemption`.)
    """

    customer_id: str
    points: int
    reference: str
    entry_id: int
    balance: int
    existing: bool


def redeem(ledger: Ledger, customer_id: str, points: int, reference: str, *, instant_us: int | None = None) -> Redeemed:
    """Spend ``points`` of a customer's balance, oldest lots first, exactly once per ``reference``.

    One ``BEGIN IMMEDIATE`` transaction reads the balance and writes the entry and the lots,
    so concurrent redemptions queue and never overdraw. The same reference again gives the
    first result (``existing``); the same reference with other points or another customer
    is an :class:`IdempotencyConflict`. Oldest lots are also the first to expire under
    every expiry rule Fidelis has, so this order never loses a customer points.
    """
    rules = ledger.current_program().program.redemption
    if not reference:
        raise RedemptionError("a redemption needs a reference (its idempotency key)")
    if points < rules.min_points or points % rules.multiple_of:
        raise RedemptionError(f"{points} points cannot be redeemed: the program redeems at least "
                              f"{rules.min_points} points, in multiples of {rules.multiple_of}")
    index = customer_index_of(ledger, customer_id)
    instant_us = now_us() if instant_us is None else instant_us
    with ledger.write() as connection:
        done = redemption_by_reference(connection, reference)
        if done is not None:
            if (done[1], done[2]) != (index, points):
                made_for = customer_ids_of(ledger, [done[1]])[0]
                raise IdempotencyConflict(
                    f"redemption {reference!r} was already made for {done[2]} points of customer {made_for!r}; "
                    "use a new reference for a new redemption")
            # the first result again: the balance right after it, not today's
            return Redeemed(customer_id, points, reference, done[0], balance_through(connection, index, done[0]), True)
        balance = balance_of(connection, index)
        if balance < points:
            raise InsufficientPoints(customer_id, points, balance)
        take_oldest_first(connection, index, points)
        entry_id = add_redeem_entry(connection, index, -points, instant_us, reference)
        return Redeemed(customer_id, points, reference, entry_id, balance - points, False)
