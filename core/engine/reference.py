"""The reference scorer: PROGRAM.md §3 and §4 written to be read.

This is the executable spec and the oracle the compiled kernel is checked against, so it
follows the shape of the text rather than chasing speed:

- exact arithmetic only: integers and :class:`fractions.Fraction`, never a float;
- local date, weekday, minute and month are computed here from each receipt's instant with
  :mod:`zoneinfo`, not read from the batch's precomputed ``local_*`` columns, so a mistake
  in those columns cannot hide in both engines at once;
- a customer's history is a plain list of their past sale receipts, and every total the
  rules need (qualifying total, visits this month, points earned today) is a scan of it.

Decisions where PROGRAM.md is silent, each pinned by a golden case in ``tests/cases``:

- An empty ``customer_id`` is anonymous, like a null one (§1: "empty = anonymous").
- A customer's receipts must arrive in processing order across calls; a receipt whose
  instant is before the last one in the customer's history raises :class:`ScoringError`
  rather than being scored against a history it should precede. Receipts at the same
  instant are taken in the order given (within one call, that is receipt id order); that
  the same receipt is not given twice is the ledger's job (receipt ids are idempotency
  keys). Order between different customers does not change anyone's points.
- The birthday multiplier applies when the customer's birth month (from the customers
  table) equals the receipt's local month; customers absent from the table, or without a
  birth date, have no birthday.
- A promotion restricted to ``tiers`` looks at the status at the receipt, held status
  included. Its ``min_basket`` is the whole receipt's eligible amount, even when its
  ``categories`` restrict which lines it multiplies.
- A return (see :mod:`fidelis.core.returns` for the rule) re-scores its original in the
  original's context with the lines left before and after it; the difference is taken
  back. Its measure leaves the original's qualifying total; the day's cap usage, visit
  ranks, welcome and tiers already reached stand. A return is ordered like a receipt: its
  customer's later receipts (and returns) must come after it.
- ``hold = "months"`` counts calendar months: a tier reached in local month M − h (with
  h = ``hold_months``) still holds in month M and is gone in month M + 1.
- Status as of a date D counts the customer's receipts with an instant strictly before the
  first local instant of D (a receipt at exactly that instant is not "before" a receipt
  there). A customer with no receipts has the first tier (index 0), not ``NO_TIER``, which
  is only for anonymous receipts. The first local instant of D is local midnight read like
  a naive timestamp (fold=0): in a zone whose clocks skip midnight it is the end of the gap.
"""
from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

from ..batch import CustomerTable, ReceiptBatch
from ..errors import ScoringError
from ..program.model import (
    MAX_POINTS_PER_RECEIPT,
    MAX_RECEIPT_AMOUNT_MINOR,
    WEEKDAYS,
    Program,
    Promotion,
)
from ..scores import NO_TIER, Scores

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_ONE_MICROSECOND = dt.timedelta(microseconds=1)


# --- receipts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One line item as the rules see it; the amount is the line total after discounts."""

    category: str
    qty: int
    amount_minor: int


@dataclass(frozen=True)
class ReceiptFacts:
    """What a receipt says about itself apart from its lines: who, where and when."""

    receipt_id: str
    customer_id: str | None
    store_id: str
    instant_us: int
    local_time: dt.datetime

    @classmethod
    def at_instant(
        cls,
        receipt_id: str,
        customer_id: str | None,
        store_id: str,
        instant_us: int,
        zone: zoneinfo.ZoneInfo,
    ) -> "ReceiptFacts":
        return cls(receipt_id, customer_id, store_id, instant_us, local_time_of(instant_us, zone))

    @property
    def is_sale(self) -> bool:
        """A sale receipt is one with a customer, whatever its lines (§1)."""
        return self.customer_id is not None and self.customer_id != ""

    @property
    def local_date(self) -> dt.date:
        return self.local_time.date()

    @property
    def local_minute(self) -> int:
        """Minutes since local midnight; hour windows are whole minutes, so seconds never matter."""
        return self.local_time.hour * 60 + self.local_time.minute

    @property
    def weekday_name(self) -> str:
        return WEEKDAYS[self.local_time.weekday()]

    @property
    def month_index(self) -> int:
        return month_index_of(self.local_date)


def local_time_of(instant_us: int, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The wall-clock time in ``zone`` at an instant given in microseconds since the epoch."""
    return (_EPOCH + dt.timedelta(microseconds=int(instant_us))).astimezone(zone)


def instant_us_of(moment: dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime, exactly."""
    return (moment - _EPOCH) // _ONE_MICROSECOND


def month_index_of(date: dt.date) -> int:
    """Months since year 0, so that "the 11 months before" is plain subtraction."""
    return date.year * 12 + date.month - 1


def receipts_in(program: Program, batch: ReceiptBatch) -> Iterator[tuple[ReceiptFacts, tuple[Line, ...]]]:
    """Each receipt of a batch, in batch order, with the batch's codes turned back into names."""
    zone = program.info.zone()
    receipt_ids = batch.receipt_id.to_pylist()
    customer_ids = batch.customer_id.to_pylist()
    offsets = batch.line_offsets.tolist()
    categories = [batch.category_names[code] for code in batch.line_category_code.tolist()]
    quantities = batch.line_qty.tolist()
    amounts_minor = batch.line_amount_minor.tolist()
    for index in range(len(batch)):
        facts = ReceiptFacts.at_instant(
            receipt_ids[index],
            customer_ids[index],
            batch.store_names[int(batch.store_code[index])],
            int(batch.instant_us[index]),
            zone,
        )
        lines = tuple(
            Line(categories[i], quantities[i], amounts_minor[i])
            for i in range(offsets[index], offsets[index + 1])
        )
        yield facts, lines


# --- points for one receipt (§3) ------------------------------------------------------------


@dataclass(frozen=True)
class ReceiptContext:
    """Everything about the customer's past that one receipt's points depend on.

    Scoring takes this from the history; re-scoring a receipt later (a partial return)
    passes the context the receipt had when it was first scored.
    """

    status_tier: int
    visit_rank_in_month: int
    earned_earlier_today_points: int
    first_sale_receipt: bool
    birthday_month: bool


@dataclass(frozen=True)
class ReceiptPoints:
    """One receipt's points, rule by rule; ``cap_points`` is ≤ 0."""

    eligible_amount_minor: int
    eligible_items: int
    raw_rate_points: Fraction
    rate_points: int
    basket_points: int
    visit_points: int
    cap_points: int
    welcome_points: int

    @property
    def earned_points(self) -> int:
        """Points after caps without welcome points: what day caps and the points basis count."""
        return self.rate_points + self.basket_points + self.visit_points + self.cap_points

    @property
    def points(self) -> int:
        return self.earned_points + self.welcome_points


NO_POINTS = ReceiptPoints(0, 0, Fraction(0), 0, 0, 0, 0, 0)


def eligible_lines(program: Program, lines: Sequence[Line]) -> list[Line]:
    excluded = set(program.earning.exclude_categories)
    return [line for line in lines if line.category not in excluded]


def promotion_applies_to_receipt(
    program: Program,
    promotion: Promotion,
    facts: ReceiptFacts,
    status_tier: int,
    eligible_amount_minor: int,
) -> bool:
    """Every condition the promotion states holds for the receipt; absent ones always hold."""
    date = facts.local_date
    if promotion.start is not None and date < promotion.start:
        return False
    if promotion.end is not None and date > promotion.end:
        return False
    if promotion.weekdays is not None and facts.weekday_name not in promotion.weekdays:
        return False
    window = promotion.hour_window()
    if window is not None and not window[0] <= facts.local_minute < window[1]:
        return False
    if promotion.stores is not None and facts.store_id not in promotion.stores:
        return False
    if promotion.tiers is not None and program.tiers[status_tier].name not in promotion.tiers:
        return False
    if promotion.min_basket is not None and eligible_amount_minor < program.to_minor(promotion.min_basket):
        return False
    return True


def promotion_applies_to_line(promotion: Promotion, line: Line) -> bool:
    return promotion.categories is None or line.category in promotion.categories


def round_points(raw: Fraction, rounding: str) -> int:
    """Round non-negative points once: ``half_up`` takes .5 up (away from zero), ``half_even``
    to the even neighbour."""
    whole, remainder = divmod(raw.numerator, raw.denominator)
    if rounding == "floor":
        return whole
    twice_remainder = 2 * remainder
    if twice_remainder < raw.denominator:
        return whole
    if twice_remainder > raw.denominator:
        return whole + 1
    if rounding == "half_up":
        return whole + 1
    if rounding == "half_even":
        return whole + (whole % 2)
    raise ValueError(f"unknown rounding {rounding!r}")


def points_for_receipt(
    program: Program,
    lines: Sequence[Line],
    facts: ReceiptFacts,
    context: ReceiptContext,
) -> ReceiptPoints:
    """A sale receipt's points (§3 steps 2 to 6) in an explicitly given context."""
    earning = program.earning
    eligible = eligible_lines(program, lines)
    eligible_amount_minor = sum(line.amount_minor for line in eligible)
    eligible_items = sum(line.qty for line in eligible)
    if eligible_amount_minor > MAX_RECEIPT_AMOUNT_MINOR or any(
        line.amount_minor > MAX_RECEIPT_AMOUNT_MINOR for line in lines
    ):
        raise ScoringError(
            f"the eligible amount exceeds the engine's exact-arithmetic bound of "
            f"{MAX_RECEIPT_AMOUNT_MINOR} minor units per receipt",
            facts.receipt_id,
        )

    tier_multiplier = Fraction(program.tiers[context.status_tier].multiplier)
    birthday = Fraction(earning.birthday_multiplier) if context.birthday_month else Fraction(1)
    promotions = [
        promotion
        for promotion in program.promotions
        if promotion_applies_to_receipt(program, promotion, facts, context.status_tier, eligible_amount_minor)
    ]
    raw = Fraction(0)
    for line in eligible:
        category_multiplier = Fraction(earning.category_multipliers.get(line.category, 1))
        # Promotions never stack: the largest one that covers the line wins.
        promo_multiplier = max(
            (Fraction(p.multiplier) for p in promotions if promotion_applies_to_line(p, line)),
            default=Fraction(1),
        )
        raw += (
            Fraction(line.amount_minor, program.minor_per_major)
            * Fraction(earning.points_per_unit)
            * tier_multiplier
            * category_multiplier
            * promo_multiplier
            * birthday
        )
    rate_points = round_points(raw, earning.rounding)
    if rate_points > MAX_POINTS_PER_RECEIPT:
        raise ScoringError(
            f"the receipt would earn more than {MAX_POINTS_PER_RECEIPT} points, the engine's bound per receipt",
            facts.receipt_id,
        )

    basket_points = sum(
        bonus.points
        for bonus in program.basket_bonuses
        if (bonus.min_items is None or eligible_items >= bonus.min_items)
        and (bonus.min_amount is None or eligible_amount_minor >= program.to_minor(bonus.min_amount))
    )
    visit_points = sum(
        bonus.points for bonus in program.visit_bonuses if bonus.nth == context.visit_rank_in_month
    )

    uncapped = rate_points + basket_points + visit_points
    earned = uncapped
    if program.caps.per_receipt is not None:
        earned = min(earned, program.caps.per_receipt)
    if program.caps.per_customer_day is not None:
        earned = min(earned, max(0, program.caps.per_customer_day - context.earned_earlier_today_points))
    welcome_points = earning.welcome_points if context.first_sale_receipt else 0

    return ReceiptPoints(
        eligible_amount_minor=eligible_amount_minor,
        eligible_items=eligible_items,
        raw_rate_points=raw,
        rate_points=rate_points,
        basket_points=basket_points,
        visit_points=visit_points,
        cap_points=earned - uncapped,
        welcome_points=welcome_points,
    )


# --- history and status (§4) ----------------------------------------------------------------


@dataclass(frozen=True)
class PastReceipt:
    """A scored sale receipt as the customer's later receipts need to know it."""

    receipt_id: str
    instant_us: int
    local_date: dt.date
    #: Eligible amount in minor units (spend), 1 (visits) or earned points (points).
    measure: int
    #: After caps, without welcome points.
    earned_points: int
    #: tier(qualifying total including this receipt), never a held status.
    reached_tier: int

    @property
    def month_index(self) -> int:
        return month_index_of(self.local_date)


@dataclass
class ReferenceHistory:
    """Every customer's scored sale receipts in processing order; carried across calls.

    Scoring a history in chunks with one ``ReferenceHistory`` gives exactly the results of
    scoring it at once. Plain data: it pickles, copies and compares with ``==``.
    """

    receipts_by_customer: dict[str, list[PastReceipt]] = field(default_factory=dict)
    #: every scored sale receipt by id, as a return re-scores it
    sales: dict[str, "ScoredSale"] = field(default_factory=dict)
    #: the instant of each customer's last return (returns are ordered like receipts)
    last_return_us: dict[str, int] = field(default_factory=dict)

    def receipts_of(self, customer_id: str) -> list[PastReceipt]:
        return self.receipts_by_customer.get(customer_id, [])

    def record(self, customer_id: str, receipt: PastReceipt) -> None:
        self.receipts_by_customer.setdefault(customer_id, []).append(receipt)

    def last_instant_us(self, customer_id: str) -> int | None:
        """The instant of the customer's last receipt or return, None if they have none."""
        earlier = self.receipts_of(customer_id)
        instants = [earlier[-1].instant_us] if earlier else []
        if customer_id in self.last_return_us:
            instants.append(self.last_return_us[customer_id])
        return max(instants, default=None)


@dataclass
class ScoredSale:
    """A scored sale receipt as a later return needs it: what it was scored from, and how
    many of each line's units earlier returns took back."""

    facts: ReceiptFacts
    lines: tuple[Line, ...]
    context: ReceiptContext | None  # None: an anonymous receipt
    returned: list[int]


def tier_for(program: Program, total: int) -> int:
    """The highest tier whose threshold (in measure units) is ≤ the total."""
    reached = 0
    for index, tier in enumerate(program.tiers):
        if program.threshold_in_measure_units(tier) <= total:
            reached = index
    return reached


def qualifying_total(program: Program, earlier: Sequence[PastReceipt], local_date: dt.date) -> int:
    """Sum of measures of earlier receipts in the period that a receipt on ``local_date`` looks at."""
    if program.qualification.period == "calendar_year":
        return sum(r.measure for r in earlier if r.local_date.year == local_date.year)
    month = month_index_of(local_date)
    return sum(r.measure for r in earlier if month - 11 <= r.month_index <= month)


def status_at(program: Program, earlier: Sequence[PastReceipt], local_date: dt.date) -> int:
    """The tier index of a receipt on ``local_date`` whose customer's earlier receipts are ``earlier``."""
    qualification = program.qualification
    status = tier_for(program, qualifying_total(program, earlier, local_date))
    if qualification.hold == "next_year":
        previous_year_total = sum(r.measure for r in earlier if r.local_date.year == local_date.year - 1)
        status = max(status, tier_for(program, previous_year_total))
    elif qualification.hold == "months":
        month = month_index_of(local_date)
        held = [
            r.reached_tier for r in earlier if month - qualification.hold_months <= r.month_index <= month
        ]
        status = max([status, *held])
    return status


def status_as_of(program: Program, history: ReferenceHistory, customer_id: str, local_date: dt.date) -> int:
    """The status a receipt at the first local instant of ``local_date`` would get (§4)."""
    first_instant = dt.datetime.combine(local_date, dt.time(0), tzinfo=program.info.zone())
    first_instant_us = instant_us_of(first_instant)
    earlier = [r for r in history.receipts_of(customer_id) if r.instant_us < first_instant_us]
    return status_at(program, earlier, local_date)


def context_for(
    program: Program,
    earlier: Sequence[PastReceipt],
    facts: ReceiptFacts,
    birth_month: int | None,
) -> ReceiptContext:
    """A sale receipt's context from the customer's earlier receipts."""
    return ReceiptContext(
        status_tier=status_at(program, earlier, facts.local_date),
        visit_rank_in_month=1 + sum(1 for r in earlier if r.month_index == facts.month_index),
        earned_earlier_today_points=sum(r.earned_points for r in earlier if r.local_date == facts.local_date),
        first_sale_receipt=not earlier,
        birthday_month=birth_month is not None and birth_month == facts.local_time.month,
    )


def measure_of(program: Program, points: ReceiptPoints) -> int:
    basis = program.qualification.basis
    if basis == "spend":
        return points.eligible_amount_minor
    if basis == "visits":
        return 1
    return points.earned_points


def score_receipt(
    program: Program,
    history: ReferenceHistory,
    facts: ReceiptFacts,
    lines: Sequence[Line],
    birth_month: int | None = None,
) -> tuple[int, ReceiptPoints]:
    """Score the next receipt of a history and record it; returns (status tier, points).

    Anonymous receipts get ``NO_TIER`` and no points, and leave the history untouched.
    """
    if not facts.is_sale:
        history.sales[facts.receipt_id] = ScoredSale(facts, tuple(lines), None, [0] * len(lines))
        return NO_TIER, NO_POINTS
    earlier = history.receipts_of(facts.customer_id)
    _check_order(history, facts)
    context = context_for(program, earlier, facts, birth_month)
    points = points_for_receipt(program, lines, facts, context)
    measure = measure_of(program, points)
    reached = tier_for(program, qualifying_total(program, earlier, facts.local_date) + measure)
    history.record(
        facts.customer_id,
        PastReceipt(
            receipt_id=facts.receipt_id,
            instant_us=facts.instant_us,
            local_date=facts.local_date,
            measure=measure,
            earned_points=points.earned_points,
            reached_tier=reached,
        ),
    )
    history.sales[facts.receipt_id] = ScoredSale(facts, tuple(lines), context, [0] * len(lines))
    return context.status_tier, points


def _check_order(history: ReferenceHistory, facts: ReceiptFacts) -> None:
    last = history.last_instant_us(facts.customer_id)
    if last is not None and facts.instant_us < last:
        raise ScoringError(
            f"customer {facts.customer_id!r} already has a receipt or return after this one; "
            "a customer's receipts must be scored in order",
            facts.receipt_id,
        )


def lines_left(lines: Sequence[Line], returned: Sequence[int]) -> list[Line]:
    """The lines of a receipt with ``returned`` units of each taken back, amounts pro rata
    rounded down (the rule in :mod:`fidelis.core.returns`)."""
    return [
        Line(line.category, line.qty - gone, line.amount_minor * (line.qty - gone) // line.qty)
        for line, gone in zip(lines, returned)
    ]


def score_return(
    program: Program,
    history: ReferenceHistory,
    facts: ReceiptFacts,
    original_receipt_id: str,
    returned_qty: Sequence[int],
) -> tuple[int, ReceiptPoints, ReceiptContext | None]:
    """Take back what a return's goods earned; returns (original status, the points taken
    back rule by rule as negative numbers, the original's context).

    ``facts`` are the return's own (its customer is the original's); ``returned_qty`` has one
    entry per line of the original.
    """
    sale = history.sales.get(original_receipt_id)
    if sale is None:
        raise ScoringError(f"return of unknown receipt {original_receipt_id!r}", facts.receipt_id)
    if len(returned_qty) != len(sale.lines):
        raise ScoringError(f"the return has {len(returned_qty)} lines, its original has {len(sale.lines)}",
                           facts.receipt_id)
    now_returned = [before + now for before, now in zip(sale.returned, returned_qty)]
    if any(gone > line.qty for gone, line in zip(now_returned, sale.lines)):
        raise ScoringError(f"the return takes back more of receipt {original_receipt_id!r} than was bought",
                           facts.receipt_id)
    if sale.context is None:  # anonymous: it earned nothing, there is nothing to take back
        sale.returned = now_returned
        return NO_TIER, NO_POINTS, None
    _check_order(history, facts)
    before = points_for_receipt(program, lines_left(sale.lines, sale.returned), sale.facts, sale.context)
    after = points_for_receipt(program, lines_left(sale.lines, now_returned), sale.facts, sale.context)
    sale.returned = now_returned
    history.last_return_us[facts.customer_id] = facts.instant_us
    # the returned measure leaves the original's qualifying total
    returned_measure = measure_of(program, before) - measure_of(program, after)
    if returned_measure:
        past = history.receipts_by_customer[sale.facts.customer_id]
        at = next(i for i, receipt in enumerate(past) if receipt.receipt_id == original_receipt_id)
        past[at] = replace(past[at], measure=past[at].measure - returned_measure)
    taken = ReceiptPoints(
        eligible_amount_minor=after.eligible_amount_minor - before.eligible_amount_minor,
        eligible_items=after.eligible_items - before.eligible_items,
        raw_rate_points=after.raw_rate_points - before.raw_rate_points,
        rate_points=after.rate_points - before.rate_points,
        basket_points=after.basket_points - before.basket_points,
        visit_points=after.visit_points - before.visit_points,
        cap_points=after.cap_points - before.cap_points,
        welcome_points=0,
    )
    return sale.context.status_tier, taken, sale.context


def score_batch(
    program: Program,
    batch: ReceiptBatch,
    customers: CustomerTable | None = None,
    history: ReferenceHistory | None = None,
) -> Scores:
    """Score a batch in its (processing) order, continuing ``history`` in place if given."""
    history = ReferenceHistory() if history is None else history
    birth_months = customers.birth_months() if customers is not None else {}
    scores = Scores.empty(len(batch))
    original_ids = [None] * len(batch) if batch.original_receipt_id is None else batch.original_receipt_id.to_pylist()
    for index, (facts, lines) in enumerate(receipts_in(program, batch)):
        if original_ids[index] is not None:
            tier, points, context = score_return(program, history, facts, original_ids[index],
                                                 [line.qty for line in lines])
        else:
            birth_month = birth_months.get(facts.customer_id)
            tier, points = score_receipt(program, history, facts, lines, birth_month)
            context = history.sales[facts.receipt_id].context if facts.is_sale else None
        if context is not None:
            scores.visit_rank[index] = context.visit_rank_in_month
            scores.earned_before_today[index] = context.earned_earlier_today_points
            scores.birthday[index] = context.birthday_month
        scores.tier[index] = tier
        scores.rate_points[index] = points.rate_points
        scores.basket_points[index] = points.basket_points
        scores.visit_points[index] = points.visit_points
        scores.welcome_points[index] = points.welcome_points
        scores.cap_points[index] = points.cap_points
        scores.points[index] = points.points
    return scores


__all__ = [
    "Line",
    "NO_POINTS",
    "PastReceipt",
    "ReceiptContext",
    "ReceiptFacts",
    "ReceiptPoints",
    "ReferenceHistory",
    "context_for",
    "points_for_receipt",
    "qualifying_total",
    "receipts_in",
    "round_points",
    "lines_left",
    "score_batch",
    "score_receipt",
    "score_return",
    "status_as_of",
    "status_at",
    "tier_for",
]
