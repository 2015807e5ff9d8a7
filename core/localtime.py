"""Chain-local time: exact, vectorised conversion between instants and a zone's wall clock.

A receipt's local date, minute, weekday and month decide promotions, caps and qualification
periods, so they must agree with :mod:`zoneinfo` on every instant, including the hours around
daylight-saving changes. Converting millions of timestamps one ``datetime`` at a time is too
slow, so this module asks :mod:`zoneinfo` once for the zone's offset transitions over the years
in play and then converts whole arrays with :func:`numpy.searchsorted`.

Transitions are found by probing ``utcoffset`` on a six-hour UTC grid and bisecting each change
to the second. That makes :mod:`zoneinfo` (and the tzdata it reads) the single source of truth,
including the rule strings that govern years after the last explicit transition. Two changes
closer together than the grid step would be missed; checked against every zone's explicit
transitions from 1970 to 2036, none is.

Naive local times follow PROGRAM.md §1, which is ``zoneinfo``'s ``fold=0``: a time in a gap is
read with the offset in force before the gap (03:30 in a 03:00→04:00 gap becomes 04:30), and an
ambiguous time takes its first occurrence.

All values are int64 microseconds: instants since 1970-01-01T00:00Z, local wall-clock times
since 1970-01-01T00:00 as if they were UTC.
"""
from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from dataclasses import dataclass

import numpy as np

from .errors import MonthError

#: Receipts are supported from the start of this year (UTC) …
FIRST_YEAR = 1970
#: … up to, not including, the start of this year (UTC).
END_YEAR = 2200
MICROS_PER_SECOND = 1_000_000
MICROS_PER_MINUTE = 60 * MICROS_PER_SECOND
MICROS_PER_DAY = 86_400 * MICROS_PER_SECOND
#: First supported instant and the first instant past the supported range: a day inside the
#: years above, so that every instant's local date falls within them in every zone (UTC
#: offsets run from -12:00 to +14:00). The kernel's month and day arithmetic relies on it.
FIRST_INSTANT_US = MICROS_PER_DAY
END_INSTANT_US = int(np.datetime64(f"{END_YEAR - 1}-12-31", "us").astype(np.int64))

# Transitions are known one year either side of the supported range, so that local times near
# its edges (a naive 1970-01-01 00:30 is a 1969 instant east of Greenwich) convert exactly.
_PROBE_FIRST_YEAR = FIRST_YEAR - 1
_PROBE_END_YEAR = END_YEAR + 1
_PROBE_STEP_S = 6 * 3600
_UTC = dt.timezone.utc
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class Transitions:
    """A zone's UTC offset changes over a span of years.

    Parameters
    ----------
    instant_s : int64, shape (T,); each change's instant, seconds since 1970-01-01T00:00Z
    offset_s : int64, shape (T + 1,); ``offset_s[0]`` is in force before the first change and
        ``offset_s[i + 1]`` from change ``i`` on
    """

    instant_s: np.ndarray
    offset_s: np.ndarray

    def local_boundaries_us(self) -> np.ndarray:
        """Local times from which each change's later offset applies to a naive time.

        With change instant T, offset before b and after a, a naive local time L keeps b while
        ``L < T + max(a, b)``: the gap's missing times keep the earlier offset (and so move
        forward), and the repeated times of an overlap take their first occurrence.
        """
        before = self.offset_s[:-1]
        after = self.offset_s[1:]
        return (self.instant_s + np.maximum(before, after)) * MICROS_PER_SECOND


def day_number(date: dt.date) -> int:
    """A local date as days since 1970-01-01 (the kernel's ``day_t``)."""
    return date.toordinal() - _EPOCH_ORDINAL


def _year_start_s(year: int) -> int:
    return int(dt.datetime(year, 1, 1, tzinfo=_UTC).timestamp())


def _offset_s(zone: zoneinfo.ZoneInfo, instant_s: int) -> int:
    offset = dt.datetime.fromtimestamp(instant_s, zone).utcoffset()
    return int(offset.total_seconds())


@functools.lru_cache(maxsize=8192)
def _year_transitions(timezone: str, year: int) -> tuple[int, tuple[tuple[int, int], ...]]:
    """The offset at the start of ``year`` (UTC) and the changes (instant_s, new offset) in it."""
    zone = zoneinfo.ZoneInfo(timezone)
    start, end = _year_start_s(year), _year_start_s(year + 1)
    first_offset = _offset_s(zone, start)
    changes = []
    previous_t, previous_offset = start, first_offset
    grid = list(range(start + _PROBE_STEP_S, end, _PROBE_STEP_S)) + [end - 1]
    for t in grid:
        offset = _offset_s(zone, t)
        if offset == previous_offset:
            previous_t = t
            continue
        # Bisect to the first second with the new offset: lo keeps the old one, hi has the new.
        lo, hi = previous_t, t
        while hi - lo > 1:
            middle = (lo + hi) // 2
            if _offset_s(zone, middle) == previous_offset:
                lo = middle
            else:
                hi = middle
        changes.append((hi, offset))
        previous_t, previous_offset = t, offset
    return first_offset, tuple(changes)


def transitions(timezone: str, first_year: int, last_year: int) -> Transitions:
    """The zone's offset changes from the start of ``first_year`` to the end of ``last_year``.

    Cached per zone and year: a scoring run pays for its years once.
    """
    if first_year < _PROBE_FIRST_YEAR or last_year >= _PROBE_END_YEAR:
        raise ValueError(
            f"years {first_year}..{last_year} are outside the supported range "
            f"{FIRST_YEAR}..{END_YEAR - 1}"
        )
    zoneinfo.ZoneInfo(timezone)  # raises for an unknown zone before anything is cached
    first_offset, _ = _year_transitions(timezone, first_year)
    instants: list[int] = []
    offsets = [first_offset]
    for year in range(first_year, last_year + 1):
        year_offset, changes = _year_transitions(timezone, year)
        if year_offset != offsets[-1]:
            # A change at exactly 00:00 UTC on 1 January: the previous year's last probe
            # (one second earlier) still had the old offset.
            instants.append(_year_start_s(year))
            offsets.append(year_offset)
        for instant_s, offset in changes:
            instants.append(instant_s)
            offsets.append(offset)
    return Transitions(np.array(instants, dtype=np.int64), np.array(offsets, dtype=np.int64))


def _year_of_us(value_us: int) -> int:
    return int(np.datetime64(int(value_us), "us").astype("datetime64[Y]").astype(np.int64)) + 1970


def _span_transitions(values_us: np.ndarray, timezone: str, what: str) -> Transitions:
    """Transitions covering ``values_us`` with a year's margin either side."""
    if len(values_us) == 0:
        return Transitions(np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64))
    low, high = int(values_us.min()), int(values_us.max())
    first_year, last_year = _year_of_us(low), _year_of_us(high)
    if first_year < FIRST_YEAR - 1 or last_year > END_YEAR:
        raise ValueError(
            f"{what} from year {first_year} to {last_year}: outside the supported range "
            f"{FIRST_YEAR}..{END_YEAR - 1}"
        )
    return transitions(
        timezone, max(first_year - 1, _PROBE_FIRST_YEAR), min(last_year + 1, _PROBE_END_YEAR - 1)
    )


def utc_offset_us(instant_us: np.ndarray, timezone: str) -> np.ndarray:
    """The zone's UTC offset at each instant, in microseconds (local = instant + offset)."""
    instant_us = np.asarray(instant_us, dtype=np.int64)
    found = _span_transitions(instant_us, timezone, "instants")
    index = np.searchsorted(found.instant_s * MICROS_PER_SECOND, instant_us, side="right")
    return found.offset_s[index] * MICROS_PER_SECOND


def instant_to_local_us(instant_us: np.ndarray, timezone: str) -> np.ndarray:
    """Wall-clock time in the zone at each instant (µs since local 1970-01-01T00:00)."""
    instant_us = np.asarray(instant_us, dtype=np.int64)
    return instant_us + utc_offset_us(instant_us, timezone)


def local_to_instant_us(local_us: np.ndarray, timezone: str) -> np.ndarray:
    """The instant of each naive local time: gaps move forward, overlaps take the first.

    Matches ``datetime(..., fold=0, tzinfo=ZoneInfo(timezone)).timestamp()`` exactly.
    """
    local_us = np.asarray(local_us, dtype=np.int64)
    found = _span_transitions(local_us, timezone, "local times")
    index = np.searchsorted(found.local_boundaries_us(), local_us, side="right")
    return local_us - found.offset_s[index] * MICROS_PER_SECOND


@dataclass(frozen=True)
class LocalCalendar:
    """The local calendar fields a batch carries for each receipt.

    Parameters
    ----------
    local_day : int32, shape (R,); local date as days since 1970-01-01
    local_minute : int16, shape (R,); minutes since local midnight, 0..1439
    local_month : int32, shape (R,); ``(year - 1970) * 12 + month - 1`` of the local date
    """

    local_day: np.ndarray
    local_minute: np.ndarray
    local_month: np.ndarray


def local_calendar(instant_us: np.ndarray, timezone: str) -> LocalCalendar:
    """Local day, minute of day and month of each instant in the zone."""
    local_us = instant_to_local_us(instant_us, timezone)
    day, within_day_us = np.divmod(local_us, MICROS_PER_DAY)
    month = day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    return LocalCalendar(
        local_day=day.astype(np.int32),
        local_minute=(within_day_us // MICROS_PER_MINUTE).astype(np.int16),
        local_month=month.astype(np.int32),
    )


def month_first_day(month: np.ndarray) -> np.ndarray:
    """The day number of each local month's first day (object array; None where month < 0).

    Months are ``(year - 1970) * 12 + month - 1``, days are days since 1970-01-01: the units
    of the ledger's lots (earned month, expiry day).
    """
    month = np.asarray(month, dtype=np.int64)
    days = (np.datetime64("1970-01", "M") + month.clip(0)).astype("datetime64[D]").astype(np.int64)
    return np.where(month >= 0, days.astype(object), None)


def month_label(month: int) -> str:
    """``YYYY-MM`` of a local month number."""
    return f"{1970 + month // 12:04d}-{month % 12 + 1:02d}"


def month_of(date: dt.date) -> int:
    """The local month number of a date: ``(year - 1970) * 12 + month - 1``, the one formula."""
    return (date.year - 1970) * 12 + date.month - 1


def instant_month(instant_us: int, zone: zoneinfo.ZoneInfo) -> int:
    """The local month of one instant in ``zone``."""
    return month_of(dt.datetime.fromtimestamp(instant_us // 1_000_000, zone))


def parse_month(text: str) -> int:
    """A ``YYYY-MM`` string as a local month number."""
    try:
        year, month = (int(part) for part in text.split("-"))
        if not (1970 <= year <= 2199 and 1 <= month <= 12):
            raise ValueError
    except ValueError:
        raise MonthError(f"{text!r} is not a month (YYYY-MM between 1970-01 and 2199-12)") from None
    return month_of(dt.date(year, month, 1))


def month_start_us(month: int, timezone: str) -> int:
    """The first local instant of a month (local midnight of its first day)."""
    day = int(month_first_day(np.array([month]))[0])
    return int(local_to_instant_us(np.array([day * MICROS_PER_DAY]), timezone)[0])


#: :func:`month_start_us`, remembered: balance lookups ask for the next close's bounds on every request.
cached_month_start_us = functools.lru_cache(maxsize=256)(month_start_us)


def last_completed_month(timezone: str, today: dt.date | None = None) -> int:
    """The month before ``today``'s local month (default: today in the chain's time zone)."""
    today = today or dt.datetime.now(zoneinfo.ZoneInfo(timezone)).date()
    return month_of(today) - 1


def local_months(instant_us: np.ndarray, timezone: str) -> np.ndarray:
    """The local month of each instant."""
    return local_calendar(np.asarray(instant_us, dtype=np.int64), timezone).local_month
