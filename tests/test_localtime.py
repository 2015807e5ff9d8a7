"""Vectorised chain-local time against zoneinfo, value by value, including DST changes."""
from __future__ import annotations

import datetime as dt
import zoneinfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fidelis.core import localtime

ZONES = [
    "Europe/Bucharest",
    "America/New_York",
    "Australia/Lord_Howe",  # a 30-minute daylight-saving shift
    "Asia/Kolkata",  # a half-hour offset, no DST since 1970
    "UTC",
    "America/Sao_Paulo",  # DST in the southern summer, abolished in 2019
]
UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
NAIVE_EPOCH = dt.datetime(1970, 1, 1)
MICROSECOND = dt.timedelta(microseconds=1)
THREE_HOURS_US = 3 * 3600 * 1_000_000


def expected_local(instant_us: int, zone: str) -> dt.datetime:
    return (EPOCH + dt.timedelta(microseconds=instant_us)).astimezone(zoneinfo.ZoneInfo(zone))


def expected_instant(local_us: int, zone: str) -> int:
    """zoneinfo's reading of a naive local time (fold=0), as µs since the epoch."""
    naive = NAIVE_EPOCH + dt.timedelta(microseconds=local_us)
    aware = naive.replace(tzinfo=zoneinfo.ZoneInfo(zone), fold=0)
    return (aware - EPOCH) // MICROSECOND


def transition_instants_us(zone: str) -> np.ndarray:
    found = localtime.transitions(zone, 1970, 2199)
    return found.instant_s * localtime.MICROS_PER_SECOND


@st.composite
def zone_and_instants(draw):
    """A zone and instants across the supported range, many within hours of a transition."""
    zone = draw(st.sampled_from(ZONES))
    changes = transition_instants_us(zone)
    anywhere = st.integers(localtime.FIRST_INSTANT_US, localtime.END_INSTANT_US - 1)
    if len(changes):
        near = st.builds(
            lambda change, delta: int(change) + delta,
            st.sampled_from(list(changes)),
            st.integers(-THREE_HOURS_US, THREE_HOURS_US),
        )
        values = st.one_of(anywhere, near)
    else:
        values = anywhere
    instants = draw(st.lists(values, min_size=1, max_size=40))
    first, last = localtime.FIRST_INSTANT_US, localtime.END_INSTANT_US - 1
    return zone, [min(max(v, first), last) for v in instants]


@settings(max_examples=200, deadline=None)
@given(zone_and_instants())
def test_local_calendar_matches_zoneinfo(case):
    zone, instants = case
    calendar = localtime.local_calendar(np.array(instants, dtype=np.int64), zone)
    for i, instant_us in enumerate(instants):
        local = expected_local(instant_us, zone)
        assert calendar.local_day[i] == (local.date() - dt.date(1970, 1, 1)).days
        assert calendar.local_minute[i] == local.hour * 60 + local.minute
        assert calendar.local_month[i] == (local.year - 1970) * 12 + local.month - 1
    assert calendar.local_day.dtype == np.int32
    assert calendar.local_minute.dtype == np.int16
    assert calendar.local_month.dtype == np.int32


@st.composite
def zone_and_local_times(draw):
    """A zone and naive local times, many in or beside a gap or an overlap.

    Around a change at instant T from offset b, the local times T + b ± a few hours include
    the gap (b < a) or the repeated hour (b > a).
    """
    zone = draw(st.sampled_from(ZONES))
    found = localtime.transitions(zone, 1970, 2199)
    day_us = localtime.MICROS_PER_DAY
    anywhere = st.integers(day_us, localtime.END_INSTANT_US - day_us)
    if len(found.instant_s):
        local_changes = (found.instant_s + found.offset_s[:-1]) * localtime.MICROS_PER_SECOND
        near = st.builds(
            lambda change, delta: int(change) + delta,
            st.sampled_from(list(local_changes)),
            st.integers(-THREE_HOURS_US, THREE_HOURS_US),
        )
        values = st.one_of(anywhere, near, near)
    else:
        values = anywhere
    return zone, draw(st.lists(values, min_size=1, max_size=40))


@settings(max_examples=200, deadline=None)
@given(zone_and_local_times())
def test_naive_local_times_match_zoneinfo_fold_zero(case):
    zone, local = case
    got = localtime.local_to_instant_us(np.array(local, dtype=np.int64), zone)
    assert got.tolist() == [expected_instant(v, zone) for v in local]


@settings(max_examples=200, deadline=None)
@given(zone_and_instants())
def test_local_time_of_an_instant_reads_back_to_it_unless_repeated(case):
    zone, instants = case
    instants = np.array(instants, dtype=np.int64)
    local = localtime.instant_to_local_us(instants, zone)
    back = localtime.local_to_instant_us(local, zone)
    for instant_us, local_us, back_us in zip(instants.tolist(), local.tolist(), back.tolist()):
        if back_us != instant_us:
            # Only the second occurrence of a repeated local time reads back differently:
            # to its first occurrence, earlier by the size of the overlap.
            assert back_us < instant_us
            assert localtime.instant_to_local_us(np.array([back_us]), zone)[0] == local_us


@pytest.mark.parametrize(
    ("local", "expected_utc", "expected_local"),
    [
        # 03:00 → 04:00 on 2025-03-30: 03:30 does not exist and moves forward to 04:30 EEST.
        ("2025-03-30T03:30", "2025-03-30T01:30", "2025-03-30T04:30"),
        ("2025-03-30T02:59", "2025-03-30T00:59", "2025-03-30T02:59"),
        ("2025-03-30T04:00", "2025-03-30T01:00", "2025-03-30T04:00"),
        # 04:00 → 03:00 on 2025-10-26: 03:30 happens twice; the first (+03:00) is taken.
        ("2025-10-26T03:30", "2025-10-26T00:30", "2025-10-26T03:30"),
        ("2025-10-26T04:00", "2025-10-26T02:00", "2025-10-26T04:00"),
        ("2025-10-26T02:59", "2025-10-25T23:59", "2025-10-26T02:59"),
    ],
)
def test_bucharest_gap_and_overlap(local, expected_utc, expected_local):
    local_us = np.datetime64(local, "us").astype(np.int64)
    instant = localtime.local_to_instant_us(np.array([local_us]), "Europe/Bucharest")
    assert instant[0] == np.datetime64(expected_utc, "us").astype(np.int64)
    shown = localtime.instant_to_local_us(instant, "Europe/Bucharest")
    assert shown[0] == np.datetime64(expected_local, "us").astype(np.int64)


def test_lord_howe_half_hour_gap():
    # 2025-10-05 02:00 → 02:30 (+10:30 → +11:00): 02:15 moves forward to 02:45.
    local_us = np.datetime64("2025-10-05T02:15", "us").astype(np.int64)
    instant = localtime.local_to_instant_us(np.array([local_us]), "Australia/Lord_Howe")
    assert instant[0] == np.datetime64("2025-10-04T15:45", "us").astype(np.int64)
    calendar = localtime.local_calendar(instant, "Australia/Lord_Howe")
    assert calendar.local_minute[0] == 2 * 60 + 45


def test_bucharest_transitions_are_the_known_ones():
    found = localtime.transitions("Europe/Bucharest", 2025, 2025)
    assert found.instant_s.astype("datetime64[s]").tolist() == [
        dt.datetime(2025, 3, 30, 1, 0),
        dt.datetime(2025, 10, 26, 1, 0),
    ]
    assert found.offset_s.tolist() == [7200, 10800, 7200]


def test_zone_without_changes_has_a_single_offset():
    found = localtime.transitions("Asia/Kolkata", 1980, 2100)
    assert len(found.instant_s) == 0
    assert found.offset_s.tolist() == [19800]


def test_empty_arrays_convert_to_empty_arrays():
    empty = np.zeros(0, dtype=np.int64)
    assert len(localtime.local_to_instant_us(empty, "Europe/Bucharest")) == 0
    calendar = localtime.local_calendar(empty, "Europe/Bucharest")
    assert len(calendar.local_day) == len(calendar.local_minute) == len(calendar.local_month) == 0


def test_instants_outside_the_supported_years_are_refused():
    year_2300 = np.datetime64("2300-01-01", "us").astype(np.int64)
    with pytest.raises(ValueError, match="outside the supported range"):
        localtime.local_calendar(np.array([year_2300]), "Europe/Bucharest")
    with pytest.raises(ValueError, match="outside the supported range"):
        localtime.transitions("Europe/Bucharest", 1900, 1950)


def test_unknown_zone_is_refused():
    with pytest.raises(zoneinfo.ZoneInfoNotFoundError):
        localtime.transitions("Mars/Olympus_Mons", 2025, 2025)


def test_supported_range_constants():
    assert localtime.FIRST_INSTANT_US == (dt.datetime(1970, 1, 2, tzinfo=UTC) - EPOCH) // MICROSECOND
    assert localtime.END_INSTANT_US == (dt.datetime(2199, 12, 31, tzinfo=UTC) - EPOCH) // MICROSECOND
