"""The program file: a chain's loyalty rules as TOML, validated into plain objects.

The format and every rule are in PROGRAM.md. Validation reports *all* errors at once, each
with the file name and a path such as ``tiers[2].threshold``, because a chain's analyst
fixes a program file in one sitting, not one error per run. Each top-level section is
validated on its own so that an error in one section does not hide errors in another;
checks that span sections run on whichever sections are valid.

Decimals are exact: rates and thresholds are written as strings (``"1.25"``) and held as
:class:`decimal.Decimal`; TOML floats are refused because they are binary approximations.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import tomllib
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from ..errors import ProgramError, ProgramIssue

#: Fractional digits a decimal in a program file may have, and its largest value (rates,
#: thresholds, amounts): the bounds that keep every compiled table within int64.
MAX_DECIMAL_PLACES = 6
MAX_DECIMAL_VALUE = 10**12
#: Largest eligible amount of one receipt (and of any one line), in minor units, that the
#: engine scores exactly; beyond it scoring stops with an error.
MAX_RECEIPT_AMOUNT_MINOR = 10**12
#: Largest rate points one receipt may earn; beyond it scoring stops with an error.
MAX_POINTS_PER_RECEIPT = 10**15
#: Largest common denominator / numerator of the combined rates (see :func:`combined_rates`).
MAX_RATE_TERM = 2**62
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_DECIMAL_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_HOURS_PATTERN = re.compile(r"^([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})$")


def _exact_decimal(value: Any) -> Decimal:
    """Accept a decimal string or an integer; refuse floats, which are inexact."""
    if isinstance(value, bool):
        raise ValueError("must be a decimal string such as \"1.25\"")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, float):
        raise ValueError(
            f"write {value!r} as a string (\"{value}\"): TOML floats are binary approximations"
        )
    elif not isinstance(value, str) or not _DECIMAL_PATTERN.match(value.strip()):
        raise ValueError(f"must be a non-negative decimal string such as \"1.25\", got {value!r}")
    else:
        number = Decimal(value.strip())
    if number < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    if number > MAX_DECIMAL_VALUE:
        raise ValueError(f"{value!r} is larger than the engine's bound {MAX_DECIMAL_VALUE}")
    if -number.as_tuple().exponent > MAX_DECIMAL_PLACES:
        raise ValueError(f"{value!r} has more than {MAX_DECIMAL_PLACES} fractional digits")
    return number


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _at_least_one(value: Decimal) -> Decimal:
    if value < 1:
        raise ValueError("must be at least 1 (a promotion never lowers points)")
    return value


ExactDecimal = Annotated[Decimal, BeforeValidator(_exact_decimal)]
PositiveDecimal = Annotated[Decimal, BeforeValidator(_positive), BeforeValidator(_exact_decimal)]
PromotionMultiplier = Annotated[
    Decimal, BeforeValidator(_at_least_one), BeforeValidator(_exact_decimal)
]
#: Points written in a program (bonuses, welcome, caps); the bound keeps every sum exact in int64.
MAX_PROGRAM_POINTS = 10**12
MAX_TIERS = 64
NonNegativeInt = Annotated[int, Field(ge=0, le=MAX_PROGRAM_POINTS)]
#: A category, store or tier name as the program refers to it.
Name = Annotated[str, Field(min_length=1)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ProgramInfo(_Section):
    name: str = Field(min_length=1)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    minor_units: int = Field(ge=0, le=4)
    timezone: str

    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if value == "localtime" or value.startswith("/"):  # the host's zone, not the chain's
            raise ValueError(f"{value!r} is this machine's time zone, not the chain's: name it (e.g. "
                             "\"Europe/Bucharest\")")
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. \"Europe/Bucharest\")")
        return value


class Earning(_Section):
    points_per_unit: PositiveDecimal
    rounding: Literal["floor", "half_up", "half_even"] = "floor"
    exclude_categories: list[Name] = []
    welcome_points: NonNegativeInt = 0
    birthday_multiplier: PositiveDecimal = Decimal(1)
    category_multipliers: dict[Name, PositiveDecimal] = {}


class Qualification(_Section):
    basis: Literal["spend", "visits", "points"] = "spend"
    period: Literal["calendar_year", "rolling_12_months"] = "calendar_year"
    hold: Literal["none", "next_year", "months"] = "none"
    hold_months: int | None = Field(default=None, ge=1, le=1200)


class Tier(_Section):
    name: str = Field(min_length=1)
    threshold: ExactDecimal
    multiplier: PositiveDecimal = Decimal(1)


class Promotion(_Section):
    name: str = Field(min_length=1)
    multiplier: PromotionMultiplier
    start: dt.date | None = None
    end: dt.date | None = None
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = Field(
        default=None, min_length=1
    )
    hours: str | None = None
    stores: list[Name] | None = Field(default=None, min_length=1)
    tiers: list[Name] | None = Field(default=None, min_length=1)
    categories: list[Name] | None = Field(default=None, min_length=1)
    min_basket: ExactDecimal | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "Promotion":
        if self.hours is not None:
            self.hour_window()
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self

    def hour_window(self) -> tuple[int, int] | None:
        """The local time window as minutes since midnight, start inclusive, end exclusive."""
        if self.hours is None:
            return None
        match = _HOURS_PATTERN.match(self.hours)
        if not match:
            raise ValueError(f"hours must look like \"10:00-14:00\", got {self.hours!r}")
        h1, m1, h2, m2 = (int(part) for part in match.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
            raise ValueError(f"hours {self.hours!r} is not a valid time window")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if end <= start:
            raise ValueError(
                f"hours {self.hours!r}: the end must be after the start "
                "(an overnight window is two promotions)"
            )
        return start, end


class BasketBonus(_Section):
    min_items: int | None = Field(default=None, ge=1, le=10**9)
    min_amount: ExactDecimal | None = None
    points: NonNegativeInt

    @model_validator(mode="after")
    def _has_a_condition(self) -> "BasketBonus":
        if self.min_items is None and self.min_amount is None:
            raise ValueError("a basket bonus needs min_items, min_amount or both")
        return self


class VisitBonus(_Section):
    nth: int = Field(ge=1, le=10**6)
    points: NonNegativeInt


class Caps(_Section):
    per_receipt: NonNegativeInt | None = None
    per_customer_day: NonNegativeInt | None = None


class Expiry(_Section):
    """When points expire; every rule given applies, and a lot expires at the earliest.

    ``after_months = N``: points earned in local month m expire at the end of month m + N.
    ``policy = "end_of_next_year"``: at the end of 31 December of the year after earning.
    ``inactivity_months = M``: all of a customer's points expire at the end of the month in
    which M full months have passed with no earn or redemption.
    """

    after_months: int | None = Field(default=None, ge=1, le=1200)
    policy: Literal["end_of_next_year"] | None = None
    inactivity_months: int | None = Field(default=None, ge=1, le=1200)

    def gone_from_month(self, earned_month: np.ndarray) -> np.ndarray:
        """The first local month (``(year - 1970) * 12 + month - 1``) in which points earned in
        ``earned_month`` are expired, or -1 where they never are (int32, per lot)."""
        earned_month = np.asarray(earned_month, dtype=np.int64)
        candidates = []
        if self.after_months is not None:
            candidates.append(earned_month + self.after_months + 1)
        if self.policy == "end_of_next_year":
            candidates.append((earned_month // 12 + 2) * 12)
        if not candidates:
            return np.full(len(earned_month), -1, dtype=np.int32)
        return np.minimum.reduce(candidates).astype(np.int32)


class Redemption(_Section):
    #: Currency per point, for the liability the program carries (exact decimal).
    point_value: PositiveDecimal | None = None
    min_points: int = Field(default=1, ge=1, le=MAX_PROGRAM_POINTS)
    multiple_of: int = Field(default=1, ge=1, le=MAX_PROGRAM_POINTS)


class Returns(_Section):
    #: When points to claw back were already spent: let the balance go negative (a debt that
    #: later earnings pay first), or stop at zero and record the unrecovered remainder.
    negative_balance: Literal["allow", "floor_zero"] = "allow"


DEFAULT_TIERS = (Tier(name="Base", threshold="0", multiplier="1"),)

#: Top-level sections: name -> (validator, required?)
_SECTIONS: dict[str, tuple[TypeAdapter, bool]] = {
    "program": (TypeAdapter(ProgramInfo), True),
    "earning": (TypeAdapter(Earning), True),
    "qualification": (TypeAdapter(Qualification), False),
    "tiers": (TypeAdapter(Annotated[list[Tier], Field(max_length=MAX_TIERS)]), False),
    "promotions": (TypeAdapter(list[Promotion]), False),
    "basket_bonuses": (TypeAdapter(list[BasketBonus]), False),
    "visit_bonuses": (TypeAdapter(list[VisitBonus]), False),
    "caps": (TypeAdapter(Caps), False),
    "expiry": (TypeAdapter(Expiry), False),
    "redemption": (TypeAdapter(Redemption), False),
    "returns": (TypeAdapter(Returns), False),
}


@dataclass(frozen=True)
class Program:
    """A validated program: the plain objects the reference and the compiler read."""

    info: ProgramInfo
    earning: Earning
    qualification: Qualification
    tiers: tuple[Tier, ...]
    promotions: tuple[Promotion, ...]
    basket_bonuses: tuple[BasketBonus, ...]
    visit_bonuses: tuple[VisitBonus, ...]
    caps: Caps
    expiry: Expiry = Expiry()
    redemption: Redemption = Redemption()
    returns: Returns = Returns()
    source: str = "<program>"
    text: str = ""

    @property
    def sha256(self) -> str:
        """Identifies the program version that scored a receipt."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def minor_per_major(self) -> int:
        return 10**self.info.minor_units

    def to_minor(self, major: Decimal) -> int:
        """A validated major-unit amount in minor units (exact: validation checked the digits)."""
        return int(major * self.minor_per_major)

    def tier_index(self, name: str) -> int:
        return [tier.name for tier in self.tiers].index(name)

    def threshold_in_measure_units(self, tier: Tier) -> int:
        """A tier threshold in the unit of the qualification measure (minor units for spend)."""
        if self.qualification.basis == "spend":
            return self.to_minor(tier.threshold)
        return int(tier.threshold)

    def named_categories(self) -> list[str]:
        """Every category the program mentions, in a stable order."""
        names: dict[str, None] = {}
        for name in self.earning.exclude_categories:
            names[name] = None
        for name in self.earning.category_multipliers:
            names[name] = None
        for promotion in self.promotions:
            for name in promotion.categories or ():
                names[name] = None
        return list(names)

    def named_stores(self) -> list[str]:
        names: dict[str, None] = {}
        for promotion in self.promotions:
            for name in promotion.stores or ():
                names[name] = None
        return list(names)

    def summary(self) -> str:
        """A readable account of the program, for ``fidelis program check``."""
        info, earning, qualification = self.info, self.earning, self.qualification
        lines = [
            f"{info.name}  ({info.currency}, {info.minor_units} minor digits, {info.timezone})",
            f"  earning: {earning.points_per_unit} points per 1 {info.currency}, "
            f"rounded {earning.rounding} once per receipt",
        ]
        if earning.exclude_categories:
            lines.append(f"  excluded categories: {', '.join(earning.exclude_categories)}")
        for category, multiplier in earning.category_multipliers.items():
            lines.append(f"  category {category}: x{multiplier}")
        if earning.welcome_points:
            lines.append(f"  welcome: {earning.welcome_points} points on the first receipt")
        if earning.birthday_multiplier != 1:
            lines.append(f"  birthday month: x{earning.birthday_multiplier}")
        hold = qualification.hold + (
            f" ({qualification.hold_months} months)" if qualification.hold == "months" else ""
        )
        lines.append(
            f"  tiers by {qualification.basis} over {qualification.period.replace('_', ' ')}, "
            f"hold {hold}:"
        )
        for tier in self.tiers:
            lines.append(f"    {tier.name:<12} from {tier.threshold:>10}  x{tier.multiplier}")
        for promotion in self.promotions:
            conditions = [
                f"{promotion.start or '…'} to {promotion.end or '…'}",
                *([",".join(promotion.weekdays)] if promotion.weekdays else []),
                *([promotion.hours] if promotion.hours else []),
                *([f"stores {','.join(promotion.stores)}"] if promotion.stores else []),
                *([f"tiers {','.join(promotion.tiers)}"] if promotion.tiers else []),
                *([f"categories {','.join(promotion.categories)}"] if promotion.categories else []),
                *([f"basket >= {promotion.min_basket}"] if promotion.min_basket is not None else []),
            ]
            lines.append(f"  promotion {promotion.name!r}: x{promotion.multiplier}, {'; '.join(conditions)}")
        for bonus in self.basket_bonuses:
            needs = [f"{bonus.min_items}+ items"] if bonus.min_items else []
            needs += [f"{bonus.min_amount}+ {info.currency}"] if bonus.min_amount is not None else []
            lines.append(f"  basket bonus: {bonus.points} points for {' and '.join(needs)}")
        for bonus in self.visit_bonuses:
            lines.append(f"  visit bonus: {bonus.points} points on visit #{bonus.nth} of a month")
        if self.caps.per_receipt is not None:
            lines.append(f"  cap: {self.caps.per_receipt} points per receipt")
        if self.caps.per_customer_day is not None:
            lines.append(f"  cap: {self.caps.per_customer_day} points per customer per day")
        expiry = self.expiry
        rules = ([f"{expiry.after_months} months after the month earned"] if expiry.after_months else []) + (
            ["at the end of the year after earning"] if expiry.policy == "end_of_next_year" else []) + (
            [f"all after {expiry.inactivity_months} months without activity"] if expiry.inactivity_months else [])
        lines.append(f"  expiry: {', '.join(rules) if rules else 'never'}")
        redemption = self.redemption
        value = f", 1 point = {redemption.point_value} {info.currency}" if redemption.point_value else ""
        lines.append(f"  redemption: at least {redemption.min_points} points, in multiples of "
                     f"{redemption.multiple_of}{value}")
        lines.append("  returns: balance may go negative" if self.returns.negative_balance == "allow"
                     else "  returns: clawbacks stop at a zero balance")
        return "\n".join(lines)


def load_program(path: str | Path) -> Program:
    """Read and validate a program file; raise :class:`ProgramError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ProgramError(str(path), [ProgramIssue("", f"cannot read the file: {error.strerror}")])
    except UnicodeDecodeError:
        raise ProgramError(str(path), [ProgramIssue("", "the file is not UTF-8 text")])
    return parse_program(text, source=str(path))


def parse_program(text: str, source: str = "<program>") -> Program:
    """Validate program text (TOML); raise :class:`ProgramError` listing every problem."""
    text = text.removeprefix("\ufeff")  # a byte-order mark, as some Windows editors write
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ProgramError(source, [ProgramIssue("", f"not valid TOML: {error}")])
    except RecursionError:
        raise ProgramError(source, [ProgramIssue("", "not a program: arrays or tables nested too deeply")])
    except ValueError:  # an integer of thousands of digits (beyond Python's conversion limit)
        raise ProgramError(source, [ProgramIssue("", "not a program: an integer of thousands of digits")])

    issues: list[ProgramIssue] = []
    sections: dict[str, Any] = {}
    for key in document:
        if key not in _SECTIONS:
            issues.append(ProgramIssue(key, f"unknown section (expected one of: {', '.join(_SECTIONS)})"))
    for key, (adapter, required) in _SECTIONS.items():
        if key not in document:
            if required:
                issues.append(ProgramIssue(key, f"required section [{key}] is missing"))
            continue
        try:
            sections[key] = adapter.validate_python(document[key])
        except ValidationError as error:
            issues.extend(_issues_from_pydantic(key, error))

    issues.extend(_cross_section_issues(sections))
    if issues:
        raise ProgramError(source, issues)

    program = Program(
        info=sections["program"],
        earning=sections["earning"],
        qualification=sections.get("qualification", Qualification()),
        tiers=tuple(sections.get("tiers") or DEFAULT_TIERS),
        promotions=tuple(sections.get("promotions", ())),
        basket_bonuses=tuple(sections.get("basket_bonuses", ())),
        visit_bonuses=tuple(sections.get("visit_bonuses", ())),
        caps=sections.get("caps", Caps()),
        expiry=sections.get("expiry", Expiry()),
        redemption=sections.get("redemption", Redemption()),
        returns=sections.get("returns", Returns()),
        source=source,
        text=text,
    )
    try:
        combined_rates(program)
    except OverflowError as error:
        raise ProgramError(source, [ProgramIssue("earning", str(error))])
    return program


def _format_location(section: str, location: tuple) -> str:
    path = section
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in ("function-after", "function-before"):
            path += f".{part}"
    return path


def _issues_from_pydantic(section: str, error: ValidationError) -> list[ProgramIssue]:
    issues = []
    for item in error.errors(include_url=False):
        location = tuple(part for part in item["loc"] if not str(part).startswith("function-"))
        kind = item["type"]
        if kind == "extra_forbidden":
            message = "unknown key"
        elif kind == "missing":
            message = "required"
        else:
            message = item["msg"]
            for prefix in ("Value error, ", "Assertion failed, "):
                message = message.removeprefix(prefix)
        issues.append(ProgramIssue(_format_location(section, location), message))
    return issues


def _fractional_digits(value: Decimal) -> int:
    return max(0, -value.as_tuple().exponent) if value != value.to_integral_value() else 0


def _cross_section_issues(sections: dict[str, Any]) -> list[ProgramIssue]:
    """Checks that need more than one field; run on whichever sections are valid."""
    issues: list[ProgramIssue] = []
    info: ProgramInfo | None = sections.get("program")
    earning: Earning | None = sections.get("earning")
    qualification: Qualification = sections.get("qualification", Qualification())
    tiers: list[Tier] | None = sections.get("tiers")
    promotions: list[Promotion] = sections.get("promotions", [])
    minor_units = info.minor_units if info else None

    def check_currency_digits(path: str, value: Decimal | None) -> None:
        if value is not None and minor_units is not None and _fractional_digits(value) > minor_units:
            issues.append(
                ProgramIssue(path, f"{value} has more fractional digits than the currency ({minor_units})")
            )

    if qualification.hold == "next_year" and qualification.period != "calendar_year":
        issues.append(ProgramIssue("qualification.hold", "next_year needs period = \"calendar_year\""))
    if qualification.hold == "months" and qualification.hold_months is None:
        issues.append(ProgramIssue("qualification.hold_months", "required (≥ 1) when hold = \"months\""))
    if qualification.hold != "months" and qualification.hold_months is not None:
        issues.append(ProgramIssue("qualification.hold_months", "only allowed with hold = \"months\""))

    if tiers is not None:
        if not tiers:
            issues.append(ProgramIssue("tiers", "at least one tier is needed"))
        elif tiers[0].threshold != 0:
            issues.append(ProgramIssue("tiers[0].threshold", "the first tier's threshold must be 0"))
        seen: set[str] = set()
        for index, tier in enumerate(tiers):
            if tier.name in seen:
                issues.append(ProgramIssue(f"tiers[{index}].name", f"duplicate tier name {tier.name!r}"))
            seen.add(tier.name)
            if index and tier.threshold <= tiers[index - 1].threshold:
                issues.append(
                    ProgramIssue(
                        f"tiers[{index}].threshold",
                        f"must be greater than tiers[{index - 1}].threshold ({tiers[index - 1].threshold})",
                    )
                )
            if qualification.basis == "spend":
                check_currency_digits(f"tiers[{index}].threshold", tier.threshold)
            elif tier.threshold != tier.threshold.to_integral_value():
                issues.append(
                    ProgramIssue(
                        f"tiers[{index}].threshold",
                        f"must be a whole number for basis = \"{qualification.basis}\"",
                    )
                )

    tier_names = {tier.name for tier in (tiers or DEFAULT_TIERS)}
    for index, promotion in enumerate(promotions):
        check_currency_digits(f"promotions[{index}].min_basket", promotion.min_basket)
        for name in promotion.tiers or ():
            if name not in tier_names:
                issues.append(ProgramIssue(f"promotions[{index}].tiers", f"unknown tier {name!r}"))
    for index, bonus in enumerate(sections.get("basket_bonuses", [])):
        check_currency_digits(f"basket_bonuses[{index}].min_amount", bonus.min_amount)

    if earning is not None:
        for category in earning.category_multipliers:
            if category in earning.exclude_categories:
                issues.append(
                    ProgramIssue(
                        f"earning.category_multipliers.{category}",
                        "the category is excluded, so its multiplier would never apply",
                    )
                )
    return issues


@dataclass(frozen=True)
class CombinedRates:
    """Every product of rates as an integer numerator over one common denominator, kept as
    two factors so that their number grows with what the program combines.

    A line's points before rounding are ``amount_minor × N / D`` with
    ``N / D = points_per_unit × tier × category × birthday × promotion / 10^minor_units``
    and ``N = base[(tier, category class, birthday)] × promotion[level]``: the rates without
    promotions over one denominator, the promotion multipliers over another, ``D`` their
    product. Category class 0 is any category the program does not name; level 0 is "no
    promotion" (``promotion[0]`` is the promotions' denominator). A program with a thousand
    category promotions has a thousand promotion factors, not a million products.
    """

    denominator: int
    base: dict[tuple[int, int, bool], int]
    promotion: tuple[int, ...]

    def numerator(self, tier: int, category_class: int, level: int, birthday: bool) -> int:
        return self.base[(tier, category_class, bool(birthday))] * self.promotion[level]


def combined_rates(program: Program) -> CombinedRates:
    """The program's rates as :class:`CombinedRates`.

    Raises :class:`OverflowError` when D or the largest numerator exceeds
    :data:`MAX_RATE_TERM`, the bound that keeps ``Σ amount × N`` exact in 128 bits for
    receipts up to :data:`MAX_RECEIPT_AMOUNT_MINOR`.
    """
    earning = program.earning
    base = Fraction(earning.points_per_unit) / program.minor_per_major
    categories = [None, *program.named_categories()]
    category_factors = [Fraction(earning.category_multipliers.get(name, 1)) if name else Fraction(1)
                        for name in categories]
    birthday_factors = (Fraction(1), Fraction(earning.birthday_multiplier))
    products = {
        (tier_index, category_class, bool(birthday)): base * Fraction(tier.multiplier) * category_factor * birthday_factor
        for tier_index, tier in enumerate(program.tiers)
        for category_class, category_factor in enumerate(category_factors)
        for birthday, birthday_factor in enumerate(birthday_factors)
    }
    promotions = [Fraction(1)] + [Fraction(p.multiplier) for p in program.promotions]
    base_denominator = math.lcm(*(fraction.denominator for fraction in products.values()))
    promotion_denominator = math.lcm(*(fraction.denominator for fraction in promotions))
    denominator = base_denominator * promotion_denominator
    if denominator > MAX_RATE_TERM:
        raise OverflowError(
            f"the rates cannot be combined exactly: their common denominator {denominator} "
            f"exceeds the engine's bound 2^62; use multipliers with fewer decimal places"
        )
    rates = CombinedRates(
        denominator=denominator,
        base={key: int(fraction * base_denominator) for key, fraction in products.items()},
        promotion=tuple(int(fraction * promotion_denominator) for fraction in promotions),
    )
    largest = max(rates.base.values()) * max(rates.promotion)
    if largest > MAX_RATE_TERM:
        raise OverflowError(
            f"the combined rates are too large to score exactly: a rate numerator {largest} "
            f"over denominator {denominator} exceeds the engine's bound 2^62"
        )
    return rates
