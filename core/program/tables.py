"""ProgramTables: a Program flattened into the numpy tables the kernel indexes.

Compiling once per program keeps every decision about the program's text out of the hot
loop: rates become integer numerators over one common denominator (exact, see
:func:`fidelis.core.program.combined_rates`), promotions become date segments and bit masks,
and category and store names become small integer classes.

Category class 0 is "any category the program does not name"; store class 0 likewise. A
batch's own category and store vocabularies are mapped onto these classes by
:meth:`ProgramTables.category_classes` and :meth:`ProgramTables.store_classes`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..localtime import day_number
from ..state import NEVER
from .model import (
    MAX_POINTS_PER_RECEIPT,
    MAX_RECEIPT_AMOUNT_MINOR,
    WEEKDAYS,
    Program,
    combined_rates,
)

_LAST_DAY = np.iinfo(np.int32).max
_ALL_TIERS = np.uint64(2**64 - 1)
_ALL_WEEKDAYS = 0x7F
_INT64_MAX = np.iinfo(np.int64).max

ROUNDING_CODES = {"floor": 0, "half_up": 1, "half_even": 2}
BASIS_CODES = {"spend": 0, "visits": 1, "points": 2}
PERIOD_CODES = {"calendar_year": 0, "rolling_12_months": 1}
HOLD_CODES = {"none": 0, "next_year": 1, "months": 2}


def padded_table(values, dtype) -> np.ndarray:
    """The kernel takes the address of element 0, so empty tables carry one unused slot."""
    array = np.asarray(values, dtype=dtype)
    return array if len(array) else np.zeros(1, dtype=dtype)


@dataclass(frozen=True)
class ProgramTables:
    """Flat tables for the kernel; attribute names are read by ``_kernel.score_receipts``."""

    program: Program
    rounding: int
    basis: int
    period: int
    hold: int
    hold_months: int
    tier_count: int
    category_class_count: int
    promotion_level_count: int
    store_class_count: int
    denominator: int
    amount_bound_minor: int
    points_bound: int
    wide: bool
    promotions_need_basket: bool
    has_birthday: int
    welcome_points: int
    cap_per_receipt: int
    cap_per_customer_day: int
    tier_threshold: np.ndarray
    rate_numerator: np.ndarray
    promotion_numerator: np.ndarray
    category_excluded: np.ndarray
    promotion_count: int
    promotion_level: np.ndarray
    promotion_weekdays: np.ndarray
    promotion_minute_start: np.ndarray
    promotion_minute_end: np.ndarray
    promotion_tiers: np.ndarray
    promotion_any_store: np.ndarray
    promotion_store: np.ndarray
    promotion_category: np.ndarray
    promotion_min_basket: np.ndarray
    breakpoint_count: int
    segment_breakpoint: np.ndarray
    segment_offsets: np.ndarray
    segment_promotions: np.ndarray
    basket_bonus_count: int
    basket_min_items: np.ndarray
    basket_min_amount: np.ndarray
    basket_points: np.ndarray
    visit_bonus_count: int
    visit_nth: np.ndarray
    visit_points: np.ndarray
    category_class_names: tuple[str, ...]
    store_class_names: tuple[str, ...]

    @property
    def tracks_rolling_months(self) -> bool:
        return self.period == PERIOD_CODES["rolling_12_months"]

    @property
    def tracks_reached_tiers(self) -> bool:
        return self.hold == HOLD_CODES["months"]

    def category_classes(self, category_names: list[str]) -> np.ndarray:
        """Map a batch's category vocabulary onto the program's category classes (int32)."""
        lookup = {name: index for index, name in enumerate(self.category_class_names) if index}
        return np.array([lookup.get(name, 0) for name in category_names], dtype=np.int32)

    def store_classes(self, store_names: list[str]) -> np.ndarray:
        """Map a batch's store vocabulary onto the program's store classes (int32)."""
        lookup = {name: index for index, name in enumerate(self.store_class_names) if index}
        return np.array([lookup.get(name, 0) for name in store_names], dtype=np.int32)


#: The name of :class:`ProgramTables` before the tables had a module of their own.
CompiledProgram = ProgramTables


def compile_program(program: Program) -> ProgramTables:
    """Flatten a validated program into kernel tables."""
    earning = program.earning
    tier_names = [tier.name for tier in program.tiers]
    categories = (None, *program.named_categories())
    stores = (None, *program.named_stores())
    category_index = {name: index for index, name in enumerate(categories) if name}
    store_index = {name: index for index, name in enumerate(stores) if name}
    tier_count, category_count, store_count = len(program.tiers), len(categories), len(stores)
    level_count = len(program.promotions) + 1

    rates = combined_rates(program)
    denominator = rates.denominator
    # the rate without promotions by (birthday, tier, category class); the kernel multiplies
    # it by the promotion level's factor, so the tables grow with tiers + categories + promotions
    rate_numerator = np.zeros(2 * tier_count * category_count, dtype=np.int64)
    for (tier, category_class, birthday), numerator in rates.base.items():
        rate_numerator[(int(birthday) * tier_count + tier) * category_count + category_class] = numerator
    promotion_numerator = np.array(rates.promotion, dtype=np.int64)
    largest = int(rate_numerator.max()) * int(promotion_numerator.max())

    category_excluded = np.zeros(category_count, dtype=np.uint8)
    for name in earning.exclude_categories:
        category_excluded[category_index[name]] = 1

    # Promotions in order of decreasing multiplier, so the first that applies to a line is the largest.
    order = sorted(range(len(program.promotions)), key=lambda i: -program.promotions[i].multiplier)
    promotions = [program.promotions[i] for i in order]
    promotion_store = np.zeros((len(promotions), store_count), dtype=np.uint8)
    promotion_category = np.zeros((len(promotions), category_count), dtype=np.uint8)
    for p, promotion in enumerate(promotions):
        for name in promotion.stores or ():
            promotion_store[p, store_index[name]] = 1
        if promotion.categories is None:
            promotion_category[p, :] = 1
        else:
            for name in promotion.categories:
                promotion_category[p, category_index[name]] = 1
    first_day = [day_number(p.start) if p.start else NEVER for p in promotions]
    last_day = [day_number(p.end) if p.end else _LAST_DAY for p in promotions]
    windows = [p.hour_window() or (0, 24 * 60) for p in promotions]

    breakpoints, segment_offsets, segment_promotions = _date_segments(first_day, last_day)

    bonuses = program.basket_bonuses
    caps = program.caps
    qualification = program.qualification
    return ProgramTables(
        program=program,
        rounding=ROUNDING_CODES[earning.rounding],
        basis=BASIS_CODES[qualification.basis],
        period=PERIOD_CODES[qualification.period],
        hold=HOLD_CODES[qualification.hold],
        hold_months=qualification.hold_months or 0,
        tier_count=tier_count,
        category_class_count=category_count,
        promotion_level_count=level_count,
        store_class_count=store_count,
        denominator=denominator,
        amount_bound_minor=MAX_RECEIPT_AMOUNT_MINOR,
        points_bound=MAX_POINTS_PER_RECEIPT,
        wide=largest > _INT64_MAX // MAX_RECEIPT_AMOUNT_MINOR,
        promotions_need_basket=any(p.min_basket is not None for p in promotions),
        has_birthday=int(earning.birthday_multiplier != 1),
        welcome_points=earning.welcome_points,
        cap_per_receipt=-1 if caps.per_receipt is None else caps.per_receipt,
        cap_per_customer_day=-1 if caps.per_customer_day is None else caps.per_customer_day,
        tier_threshold=np.array([program.threshold_in_measure_units(t) for t in program.tiers], dtype=np.int64),
        rate_numerator=rate_numerator,
        promotion_numerator=promotion_numerator,
        category_excluded=category_excluded,
        promotion_count=len(promotions),
        promotion_level=padded_table([i + 1 for i in order], np.int32),
        promotion_weekdays=padded_table(
            [_weekday_mask(p.weekdays) for p in promotions], np.uint8
        ),
        promotion_minute_start=padded_table([w[0] for w in windows], np.int16),
        promotion_minute_end=padded_table([w[1] for w in windows], np.int16),
        promotion_tiers=padded_table(
            [_tier_mask(p.tiers, tier_names) for p in promotions], np.uint64
        ),
        promotion_any_store=padded_table([int(p.stores is None) for p in promotions], np.uint8),
        promotion_store=padded_table(promotion_store.ravel(), np.uint8),
        promotion_category=padded_table(promotion_category.ravel(), np.uint8),
        promotion_min_basket=padded_table(
            [program.to_minor(p.min_basket) if p.min_basket is not None else 0 for p in promotions],
            np.int64,
        ),
        breakpoint_count=len(breakpoints),
        segment_breakpoint=padded_table(breakpoints, np.int32),
        segment_offsets=np.asarray(segment_offsets, dtype=np.int64),
        segment_promotions=padded_table(segment_promotions, np.int32),
        basket_bonus_count=len(bonuses),
        basket_min_items=padded_table([b.min_items or 0 for b in bonuses], np.int64),
        basket_min_amount=padded_table(
            [program.to_minor(b.min_amount) if b.min_amount is not None else 0 for b in bonuses], np.int64
        ),
        basket_points=padded_table([b.points for b in bonuses], np.int64),
        visit_bonus_count=len(program.visit_bonuses),
        visit_nth=padded_table([b.nth for b in program.visit_bonuses], np.int32),
        visit_points=padded_table([b.points for b in program.visit_bonuses], np.int64),
        category_class_names=tuple(name or "" for name in categories),
        store_class_names=tuple(name or "" for name in stores),
    )


def _weekday_mask(weekdays: list[str] | None) -> int:
    if weekdays is None:
        return _ALL_WEEKDAYS
    return sum(1 << WEEKDAYS.index(day) for day in set(weekdays))


def _tier_mask(tiers: list[str] | None, tier_names: list[str]) -> np.uint64:
    if tiers is None:
        return _ALL_TIERS
    return np.uint64(sum(1 << tier_names.index(name) for name in set(tiers)))


def _date_segments(first_day: list[int], last_day: list[int]) -> tuple[list[int], list[int], list[int]]:
    """Split the calendar where any promotion starts or ends.

    Segment ``s`` covers days ``[breakpoints[s-1], breakpoints[s])``; within it the same
    promotions are in their date range, listed (in the kernel's promotion order) in
    ``promotions[offsets[s]:offsets[s+1]]``. The kernel finds a receipt's segment by binary
    search and then checks only those promotions.
    """
    points = {day for day in first_day if day != NEVER}
    points |= {day + 1 for day in last_day if day != _LAST_DAY}
    breakpoints = sorted(points)
    offsets, members = [0], []
    for segment in range(len(breakpoints) + 1):
        day = breakpoints[segment - 1] if segment else (breakpoints[0] - 1 if breakpoints else 0)
        members += [p for p in range(len(first_day)) if first_day[p] <= day <= last_day[p]]
        offsets.append(len(members))
    return breakpoints, offsets, members
