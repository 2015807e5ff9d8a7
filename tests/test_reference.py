"""The reference scorer on its own: its pieces, its history, and its independence from the batch's
precomputed local columns. What it scores is pinned by the golden cases (test_golden.py)."""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import pickle
import random
from fractions import Fraction

import numpy as np
import pytest

from fidelis.core.engine import reference
from fidelis.core.errors import ScoringError
from fidelis.core.program.model import parse_program
from fidelis.core.engine.reference import Line, ReceiptContext, ReceiptFacts, ReferenceHistory, points_for_receipt, round_points, status_as_of
from fidelis.core.scores import NO_TIER, Scores
from fidelis.core.engine.engines import score_batch

MONTHS_HOLD_BY_POINTS = """
[program]
name = "Points, rolling, held"
currency = "EUR"
minor_units = 2
timezone = "Europe/Bucharest"

[earning]
points_per_unit = "1"
rounding = "half_even"
exclude_categories = ["tobacco"]
welcome_points = 50
birthday_multiplier = "1.5"

[qualification]
basis = "points"
period = "rolling_12_months"
hold = "months"
hold_months = 3

[[tiers]]
name = "Base"
threshold = "0"
[[tiers]]
name = "Silver"
threshold = "300"
multiplier = "1.25"
[[tiers]]
name = "Gold"
threshold = "900"
multiplier = "2"

[[promotions]]
name = "Gold mornings"
multiplier = "3"
hours = "08:00-11:00"
tiers = ["Gold"]

[[visit_bonuses]]
nth = 3
points = 15

[caps]
per_customer_day = 200
"""

VISITS_BY_CALENDAR_YEAR = """
[program]
name = "Visits"
currency = "EUR"
minor_units = 2
timezone = "Europe/Bucharest"

[earning]
points_per_unit = "0.5"
rounding = "half_up"

[qualification]
basis = "visits"
period = "calendar_year"
hold = "next_year"

[[tiers]]
name = "Base"
threshold = "0"
[[tiers]]
name = "Regular"
threshold = "5"
multiplier = "2"

[[basket_bonuses]]
min_items = 4
min_amount = "30.00"
points = 5

[caps]
per_receipt = 40
"""


CUSTOMER_IDS = ["C1", "C2", "C3", "C4", "C5", "004"]


def random_rows(seed: int, receipt_count: int = 400) -> list[tuple]:
    """Receipts over three years: one busy customer, several occasional ones, some anonymous,
    mostly small baskets, so that tiers are reached, held and lost."""
    rng = random.Random(seed)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    rows = []
    for number in range(receipt_count):
        moment = start + dt.timedelta(minutes=rng.randrange(3 * 365 * 24 * 60))
        if rng.random() < 0.5:
            ts = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        else:  # a naive local time, now and then in a DST gap or overlap
            ts = moment.astimezone(dt.timezone(dt.timedelta(hours=2))).strftime("%Y-%m-%dT%H:%M:%S")
        customer = rng.choices([*CUSTOMER_IDS, None], weights=[12, 3, 2, 2, 1, 1, 3])[0]
        store = rng.choice(["S001", "S002"])
        for _ in range(rng.randint(1, 4)):
            category = rng.choice(["grocery", "own_brand", "tobacco", "baby"])
            amount_minor = rng.choices(
                [rng.randrange(0, 2000), rng.randrange(2000, 10000), rng.randrange(10000, 60000)], weights=[70, 25, 5]
            )[0]
            amount = f"{amount_minor // 100}.{amount_minor % 100:02d}"
            rows.append((f"R{number:05d}", customer, store, ts, category, rng.randint(1, 6), amount))
    return rows


@pytest.fixture(params=["verde_club", "months_hold_by_points", "visits_by_calendar_year"])
def any_program(request, verde_club):
    return {
        "verde_club": verde_club,
        "months_hold_by_points": parse_program(MONTHS_HOLD_BY_POINTS),
        "visits_by_calendar_year": parse_program(VISITS_BY_CALENDAR_YEAR),
    }[request.param]


# --- rounding and one receipt in an explicit context ---------------------------------------


@pytest.mark.parametrize(
    "raw, floor, half_up, half_even",
    [
        (Fraction(0), 0, 0, 0),
        (Fraction(1, 2), 0, 1, 0),
        (Fraction(3, 2), 1, 2, 2),
        (Fraction(5, 2), 2, 3, 2),
        (Fraction(249, 100), 2, 2, 2),
        (Fraction(251, 100), 2, 3, 3),
        (Fraction(10**13 + 1, 2), 5 * 10**12, 5 * 10**12 + 1, 5 * 10**12),
        (Fraction(2, 3), 0, 1, 1),
    ],
)
def test_round_points(raw, floor, half_up, half_even):
    assert (round_points(raw, "floor"), round_points(raw, "half_up"), round_points(raw, "half_even")) == (
        floor,
        half_up,
        half_even,
    )


def worked_example_r4(verde_club) -> tuple[list[Line], ReceiptFacts]:
    instant_us = reference.instant_us_of(dt.datetime(2025, 6, 14, 8, 0, tzinfo=dt.timezone.utc))
    facts = ReceiptFacts.at_instant("R4", "C1", "S001", instant_us, verde_club.info.zone())
    return [Line("grocery", 1, 333)], facts


def test_points_for_receipt_in_the_worked_example_context(verde_club):
    lines, facts = worked_example_r4(verde_club)
    assert facts.local_time.hour == 11 and facts.weekday_name == "sat"
    context = ReceiptContext(
        status_tier=verde_club.tier_index("Silver"),
        visit_rank_in_month=4,
        earned_earlier_today_points=0,
        first_sale_receipt=False,
        birthday_month=False,
    )
    points = points_for_receipt(verde_club, lines, facts, context)
    assert points.raw_rate_points == Fraction(8325, 1000)
    assert (points.rate_points, points.visit_points, points.points) == (8, 100, 108)


def test_points_for_receipt_follows_the_context_it_is_given(verde_club):
    lines, facts = worked_example_r4(verde_club)
    base = ReceiptContext(
        status_tier=0, visit_rank_in_month=1, earned_earlier_today_points=0, first_sale_receipt=False,
        birthday_month=False,
    )
    assert points_for_receipt(verde_club, lines, facts, base).points == 6  # 3.33×2 = 6.66
    birthday = points_for_receipt(verde_club, lines, facts, dataclasses.replace(base, birthday_month=True))
    assert birthday.points == 13  # 3.33×2×2 = 13.32
    first = dataclasses.replace(base, earned_earlier_today_points=9_999, first_sale_receipt=True)
    points = points_for_receipt(verde_club, lines, facts, first)
    # The day allowance (10000) has 1 point left; welcome points are not capped.
    assert (points.rate_points, points.cap_points, points.welcome_points, points.points) == (6, -5, 100, 101)
    assert points.earned_points == 1


def test_points_for_receipt_without_some_lines_keeps_the_original_context(verde_club):
    """How a partial return is re-scored: the same facts and context, fewer lines."""
    instant_us = reference.instant_us_of(dt.datetime(2025, 6, 7, 7, 0, tzinfo=dt.timezone.utc))
    facts = ReceiptFacts.at_instant("R1", "C1", "S001", instant_us, verde_club.info.zone())
    lines = [Line("own_brand", 2, 1000), Line("tobacco", 1, 3000), Line("grocery", 3, 4599)]
    context = ReceiptContext(0, 1, 0, True, False)
    whole = points_for_receipt(verde_club, lines, facts, context)
    kept = points_for_receipt(verde_club, [lines[0], lines[1]], facts, context)
    assert (whole.rate_points, whole.basket_points, whole.points) == (131, 50, 281)
    assert (kept.rate_points, kept.basket_points, kept.points) == (40, 0, 140)
    assert kept.eligible_amount_minor == 1000 and kept.eligible_items == 2


def test_rate_points_are_exact_at_the_largest_receipt(verde_club):
    program = parse_program(VISITS_BY_CALENDAR_YEAR.replace('points_per_unit = "0.5"', 'points_per_unit = "1.000001"')
                            .replace('rounding = "half_up"', 'rounding = "floor"'))
    _, facts = worked_example_r4(verde_club)
    context = ReceiptContext(1, 1, 0, False, False)  # Regular: ×2
    points = points_for_receipt(program, [Line("grocery", 1, 10**12 - 1)], facts, context)
    # 999 999 999 999 / 100 × 1.000001 × 2 = 1 000 000 999 998 999 999 × 2 / 10^8 = 20 000 019 999.97999998
    assert points.raw_rate_points == Fraction(2_000_001_999_997_999_998, 10**8)
    assert points.rate_points == 20_000_019_999


# --- status -------------------------------------------------------------------------------


def scored_history(program, batch, customers=None) -> tuple[Scores, ReferenceHistory]:
    history = ReferenceHistory()
    return reference.score_batch(program, batch, customers, history), history


WORKED_EXAMPLE_ROWS = [
    ("R1", "C1", "S001", "2025-06-07T10:00", "own_brand", 2, "10.00"),
    ("R1", "C1", "S001", "2025-06-07T10:00", "tobacco", 1, "30.00"),
    ("R1", "C1", "S001", "2025-06-07T10:00", "grocery", 3, "45.99"),
    ("R2", "C1", "S001", "2025-06-09T18:00", "grocery", 1, "460.00"),
    ("R3", "C1", "S001", "2025-06-10T09:00", "grocery", 1, "100.00"),
    ("R4", "C1", "S001", "2025-06-14T11:00", "grocery", 1, "3.33"),
    ("R5", "C1", "S001", "2026-01-05T12:00", "grocery", 1, "20.00"),
]


def test_status_as_of_ignores_receipts_from_that_day_on(verde_club, make_batch):
    _, history = scored_history(verde_club, make_batch(WORKED_EXAMPLE_ROWS))
    silver = verde_club.tier_index("Silver")
    # The history holds all five receipts; as of 9 June only R1 counts.
    assert status_as_of(verde_club, history, "C1", dt.date(2025, 6, 9)) == 0
    assert status_as_of(verde_club, history, "C1", dt.date(2025, 6, 10)) == silver
    assert status_as_of(verde_club, history, "C1", dt.date(2025, 1, 1)) == 0
    assert status_as_of(verde_club, history, "C1", dt.date(2026, 12, 31)) == silver
    assert status_as_of(verde_club, history, "C1", dt.date(2027, 1, 1)) == 0


@pytest.mark.parametrize(
    "date",
    [dt.date(2025, 1, 1), dt.date(2025, 3, 30), dt.date(2025, 7, 15), dt.date(2026, 1, 1), dt.date(2026, 3, 1),
     dt.date(2026, 6, 1), dt.date(2027, 1, 1), dt.date(2027, 4, 1), dt.date(2027, 12, 1), dt.date(2028, 1, 1)],
)
def test_status_as_of_is_the_status_of_a_receipt_at_midnight(any_program, make_batch, date):
    """Probe: score the history up to midnight, then a receipt at midnight, and compare its tier."""
    batch = make_batch(random_rows(seed=7))
    _, full_history = scored_history(any_program, batch)
    midnight = dt.datetime.combine(date, dt.time(0), tzinfo=any_program.info.zone())
    before_midnight = batch.slice(0, int(np.searchsorted(batch.instant_us, reference.instant_us_of(midnight))))
    _, history_until_midnight = scored_history(any_program, before_midnight)
    for customer_id in CUSTOMER_IDS:
        history = copy.deepcopy(history_until_midnight)
        probe = make_batch([("~probe", customer_id, "S001", f"{date}T00:00", "grocery", 1, "1.00")])
        tier = int(reference.score_batch(any_program, probe, None, history).tier[0])
        assert status_as_of(any_program, full_history, customer_id, date) == tier


def test_status_as_of_leaves_out_a_receipt_at_the_first_instant_of_the_day(verde_club, make_batch):
    """A receipt at exactly local midnight is not before a receipt at local midnight."""
    rows = [("R1", "C1", "S001", "2025-06-10T00:00", "grocery", 1, "500.00")]
    _, history = scored_history(verde_club, make_batch(rows))
    assert status_as_of(verde_club, history, "C1", dt.date(2025, 6, 10)) == 0
    assert status_as_of(verde_club, history, "C1", dt.date(2025, 6, 11)) == verde_club.tier_index("Silver")


def test_status_as_of_for_an_unknown_customer_is_the_first_tier(verde_club):
    assert status_as_of(verde_club, ReferenceHistory(), "nobody", dt.date(2025, 6, 1)) == 0


def test_months_hold_renews_only_from_reached_tiers(make_batch):
    """Reaching is tier(qualifying total including the receipt), never the held status."""
    program = parse_program(MONTHS_HOLD_BY_POINTS)
    rows = [
        ("R1", "C1", "S001", "2025-01-10T12:00", "grocery", 1, "200.00"),  # earns 200
        ("R2", "C1", "S001", "2025-01-11T12:00", "grocery", 1, "150.00"),  # earns 150 → 350: reaches Silver
        ("R3", "C1", "S001", "2025-12-20T12:00", "grocery", 1, "1.00"),    # Jan–Dec 2025: 350 → Silver, reaches it
        ("R4", "C1", "S001", "2026-02-10T12:00", "grocery", 1, "1.00"),    # window 1 → Base; Dec held → Silver
        ("R5", "C1", "S001", "2026-04-10T12:00", "grocery", 1, "1.00"),    # Jan–Apr: R4 reached Base → Base
    ]
    scores, history = scored_history(program, make_batch(rows))
    assert [r.reached_tier for r in history.receipts_of("C1")] == [0, 1, 1, 0, 0]
    assert scores.tier.tolist() == [0, 0, 1, 1, 0]
    assert status_as_of(program, history, "C1", dt.date(2026, 3, 31)) == 1  # December within Dec–Mar
    assert status_as_of(program, history, "C1", dt.date(2026, 4, 1)) == 0


# --- the history across calls ----------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 7, 150])
def test_scoring_in_chunks_with_a_carried_history_equals_scoring_at_once(any_program, make_batch, chunk_size):
    batch = make_batch(random_rows(seed=chunk_size))
    whole, whole_history = scored_history(any_program, batch)
    history = ReferenceHistory()
    parts = [
        reference.score_batch(any_program, batch.slice(start, start + chunk_size), None, history)
        for start in range(0, len(batch), chunk_size)
    ]
    assert Scores.concatenate(parts).equals(whole)
    assert history == whole_history


def test_a_saved_history_continues_like_the_original(any_program, make_batch):
    batch = make_batch(random_rows(seed=3))
    middle = len(batch) // 2
    history = ReferenceHistory()
    reference.score_batch(any_program, batch.slice(0, middle), None, history)
    restored = pickle.loads(pickle.dumps(history))
    duplicate = copy.deepcopy(history)
    assert restored == history == duplicate
    rest = reference.score_batch(any_program, batch.slice(middle, len(batch)), None, history)
    assert reference.score_batch(any_program, batch.slice(middle, len(batch)), None, restored).equals(rest)
    assert reference.score_batch(any_program, batch.slice(middle, len(batch)), None, duplicate).equals(rest)
    assert restored == history == duplicate


def test_a_customers_receipt_older_than_their_history_is_refused(verde_club, make_batch):
    history = ReferenceHistory()
    reference.score_batch(verde_club, make_batch(WORKED_EXAMPLE_ROWS[:4]), None, history)  # R1, R2
    late = make_batch([("R0", "C1", "S001", "2025-06-08T10:00", "grocery", 1, "1.00")])
    with pytest.raises(ScoringError) as caught:
        reference.score_batch(verde_club, late, None, history)
    assert caught.value.receipt_id == "R0"
    # Another customer's older receipt is fine: customers are independent.
    other = make_batch([("R0", "C2", "S001", "2025-06-08T10:00", "grocery", 1, "1.00")])
    assert reference.score_batch(verde_club, other, None, history).points.tolist() == [102]  # Sunday ×2 + welcome


def test_history_records_what_later_receipts_need(verde_club, make_batch):
    _, history = scored_history(verde_club, make_batch(WORKED_EXAMPLE_ROWS))
    past = history.receipts_of("C1")
    assert [r.receipt_id for r in past] == ["R1", "R2", "R3", "R4", "R5"]
    assert [r.measure for r in past] == [5599, 46000, 10000, 333, 2000]
    assert [r.earned_points for r in past] == [181, 460, 125, 108, 25]  # without welcome
    assert [r.reached_tier for r in past] == [0, 1, 1, 1, 0]
    assert past[0].local_date == dt.date(2025, 6, 7)


def test_context_comes_from_the_customers_earlier_receipts(verde_club, make_batch):
    _, history = scored_history(verde_club, make_batch(WORKED_EXAMPLE_ROWS[:5]))  # R1..R3
    instant_us = reference.instant_us_of(dt.datetime(2025, 6, 10, 15, 0, tzinfo=dt.timezone.utc))
    facts = ReceiptFacts.at_instant("R9", "C1", "S002", instant_us, verde_club.info.zone())
    context = reference.context_for(verde_club, history.receipts_of("C1"), facts, birth_month=6)
    assert context == ReceiptContext(
        status_tier=verde_club.tier_index("Silver"),
        visit_rank_in_month=4,
        earned_earlier_today_points=125,  # R3, the same local day
        first_sale_receipt=False,
        birthday_month=True,
    )


# --- reading the batch --------------------------------------------------------------------------


def test_local_fields_come_from_the_instant_not_the_batch_columns(any_program, make_batch):
    batch = make_batch(random_rows(seed=11))
    expected = reference.score_batch(any_program, batch)
    batch.local_day = np.zeros_like(batch.local_day)
    batch.local_minute = np.zeros_like(batch.local_minute)
    batch.local_month = np.zeros_like(batch.local_month)
    assert reference.score_batch(any_program, batch).equals(expected)


def test_receipt_facts_in_a_dst_gap(verde_club, make_batch):
    batch = make_batch([("R1", "C1", "S001", "2025-03-30T03:30", "grocery", 1, "1.00")])
    facts, lines = next(reference.receipts_in(verde_club, batch))
    assert facts.local_time.replace(tzinfo=None) == dt.datetime(2025, 3, 30, 4, 30)
    assert facts.local_minute == 270 and facts.weekday_name == "sun"
    assert lines == (Line("grocery", 1, 100),)


def test_vocabulary_codes_are_mapped_back_to_names(verde_club, make_batch):
    rows = [
        ("R1", "C1", "S009", "2025-06-10T12:00", "tobacco", 1, "50.00"),
        ("R1", "C1", "S009", "2025-06-10T12:00", "own_brand", 1, "10.00"),
    ]
    batch = make_batch(rows)
    batch.category_names = list(reversed(batch.category_names))
    batch.line_category_code = (1 - batch.line_category_code).astype(np.int32)
    # own_brand ×2 = 20, welcome 100; tobacco excluded whatever its code.
    assert reference.score_batch(verde_club, batch).points.tolist() == [120]


@pytest.mark.parametrize("anonymous", [None, ""])
def test_anonymous_receipts_have_no_tier_and_no_points(verde_club, make_batch, anonymous):
    rows = [
        ("R1", anonymous, "S001", "2025-06-07T10:00", "grocery", 9, "500.00"),
        ("R2", "C1", "S001", "2025-06-07T11:00", "grocery", 1, "1.00"),
    ]
    scores, history = scored_history(verde_club, make_batch(rows))
    assert scores.tier.tolist() == [NO_TIER, 0]
    assert scores.points.tolist() == [0, 102]  # C1: 1.00×2 (summer weekend) + welcome 100
    assert list(history.receipts_by_customer) == ["C1"]


def test_birth_months_come_from_the_customers_table(verde_club, make_batch, make_customers):
    rows = [("R1", "C1", "S001", "2025-06-10T12:00", "grocery", 1, "10.00")]
    customers = make_customers({"C1": "1980-06-30", "C2": None})
    assert reference.score_batch(verde_club, make_batch(rows), customers).rate_points.tolist() == [20]
    assert reference.score_batch(verde_club, make_batch(rows)).rate_points.tolist() == [10]


def test_the_scoring_entry_point_dispatches_to_the_reference(any_program, make_batch):
    batch = make_batch(random_rows(seed=5, receipt_count=100))
    assert score_batch(any_program, batch, engine="reference").equals(reference.score_batch(any_program, batch))


def test_scores_add_up_and_caps_only_lower(any_program, make_batch):
    scores = reference.score_batch(any_program, make_batch(random_rows(seed=13)))
    parts = scores.rate_points + scores.basket_points + scores.visit_points + scores.welcome_points + scores.cap_points
    assert np.array_equal(parts, scores.points)
    assert (scores.cap_points <= 0).all() and (scores.points >= 0).all()
