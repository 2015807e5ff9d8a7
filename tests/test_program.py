"""Program files: what validation accepts, and the message for every kind of error."""
from decimal import Decimal
from pathlib import Path

import pytest

from fidelis.core.errors import ProgramError
from fidelis.core.program.model import combined_rates, load_program, parse_program

CASES = Path(__file__).parent / "cases"

MINIMAL = """
[program]
name = "Test"
currency = "EUR"
minor_units = 2
timezone = "Europe/Paris"

[earning]
points_per_unit = "1"
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ProgramError) as caught:
        parse_program(text, source="test.toml")
    assert str(caught.value).startswith("test.toml: ")
    return [str(issue) for issue in caught.value.issues]


def test_the_documented_example_program_is_valid():
    program = load_program(CASES / "verde_club.toml")
    assert [tier.name for tier in program.tiers] == ["Base", "Silver", "Gold"]
    assert program.tiers[1].multiplier == Decimal("1.25")
    assert program.earning.exclude_categories == ["tobacco", "lottery"]
    assert program.promotions[0].weekdays == ["sat", "sun"]
    assert program.threshold_in_measure_units(program.tiers[2]) == 150_000
    assert len(program.sha256) == 64


def test_minimal_program_gets_defaults():
    program = parse_program(MINIMAL)
    assert [tier.name for tier in program.tiers] == ["Base"]
    assert program.qualification.basis == "spend"
    assert program.earning.rounding == "floor"
    assert program.caps.per_receipt is None


def test_summary_names_every_rule():
    summary = load_program(CASES / "verde_club.toml").summary()
    for expected in ("Verde Club", "Silver", "Summer weekends", "5+ items", "visit #4", "5000 points per receipt"):
        assert expected in summary


@pytest.mark.parametrize(
    "addition, expected",
    [
        ('[typo]\nx = 1', "typo: unknown section"),
        ('[caps]\nper_recipt = 5', "caps.per_recipt: unknown key"),
        ('[[tiers]]\nname = "Base"\nthreshold = "0"\nmultiplier = 1.25', "tiers[0].multiplier: write 1.25 as a string"),
        ('[[tiers]]\nname = "Base"\nthreshold = "0"\nmultiplier = "0"', "tiers[0].multiplier: must be greater than 0"),
        ('[[tiers]]\nname = "Base"\nthreshold = "0"\nmultiplier = "1.1234567"', "more than 6 fractional digits"),
        ('[[tiers]]\nname = "Base"\nthreshold = "10"', "tiers[0].threshold: the first tier's threshold must be 0"),
        ('[[tiers]]\nname = "A"\nthreshold = "0"\n[[tiers]]\nname = "B"\nthreshold = "500"\n'
         '[[tiers]]\nname = "C"\nthreshold = "500"',
         "tiers[2].threshold: must be greater than tiers[1].threshold (500)"),
        ('[[tiers]]\nname = "A"\nthreshold = "0"\n[[tiers]]\nname = "A"\nthreshold = "5"',
         "tiers[1].name: duplicate tier name 'A'"),
        ('[[tiers]]\nname = "A"\nthreshold = "0"\n[[tiers]]\nname = "B"\nthreshold = "5.001"',
         "tiers[1].threshold: 5.001 has more fractional digits than the currency (2)"),
        ('[qualification]\nbasis = "visits"\n[[tiers]]\nname = "A"\nthreshold = "0"\n[[tiers]]\nname = "B"\nthreshold = "2.5"',
         'tiers[1].threshold: must be a whole number for basis = "visits"'),
        ('[qualification]\nperiod = "rolling_12_months"\nhold = "next_year"',
         'qualification.hold: next_year needs period = "calendar_year"'),
        ('[qualification]\nhold = "months"', "qualification.hold_months: required"),
        ('[qualification]\nhold = "none"\nhold_months = 3', "qualification.hold_months: only allowed"),
        ('[[promotions]]\nname = "P"\nmultiplier = "0.5"', "promotions[0].multiplier: must be at least 1"),
        ('[[promotions]]\nname = "P"\nmultiplier = "2"\nhours = "14:00-10:00"',
         "an overnight window is two promotions"),
        ('[[promotions]]\nname = "P"\nmultiplier = "2"\nhours = "10-14"', 'hours must look like "10:00-14:00"'),
        ('[[promotions]]\nname = "P"\nmultiplier = "2"\nweekdays = ["sat", "funday"]', "promotions[0].weekdays[1]"),
        ('[[promotions]]\nname = "P"\nmultiplier = "2"\nstart = 2025-06-02\nend = 2025-06-01',
         "end 2025-06-01 is before start 2025-06-02"),
        ('[[promotions]]\nname = "P"\nmultiplier = "2"\ntiers = ["Platinum"]', "promotions[0].tiers: unknown tier 'Platinum'"),
        ('[[promotions]]\nname = "P"\nmultiplier = "2"\nmin_basket = "20.005"', "promotions[0].min_basket: 20.005 has more"),
        ('[[basket_bonuses]]\npoints = 5', "basket_bonuses[0]: a basket bonus needs min_items, min_amount or both"),
        ('[[visit_bonuses]]\nnth = 0\npoints = 5', "visit_bonuses[0].nth"),
        ('[[visit_bonuses]]\nnth = 9999999999\npoints = 5', "visit_bonuses[0].nth"),
        ('[qualification]\nhold = "months"\nhold_months = 9999999999', "qualification.hold_months"),
        ('[[tiers]]\nname = "A"\nthreshold = "0"\n[[tiers]]\nname = "B"\nthreshold = "99999999999999999999"',
         "tiers[1].threshold: '99999999999999999999' is larger than the engine's bound"),
        ('[[basket_bonuses]]\nmin_amount = -3\npoints = 5', "basket_bonuses[0].min_amount: must not be negative"),
        ('[[basket_bonuses]]\nmin_items = 99999999999\npoints = 5', "basket_bonuses[0].min_items"),
        ('[[promotions]]\nname = "P"\nmultiplier = "2"\nstores = [""]', "promotions[0].stores[0]"),
        ('[expiry]\nafter_months = 0', "expiry.after_months"),
        ('[expiry]\npolicy = "end_of_month"', "expiry.policy"),
        ('[expiry]\ninactivity_months = 18\ngrace = 2', "expiry.grace: unknown key"),
        ('[redemption]\npoint_value = 0.01', "redemption.point_value: write 0.01 as a string"),
        ('[redemption]\nmin_points = 0', "redemption.min_points"),
        ('[returns]\nnegative_balance = "forgive"', "returns.negative_balance"),
    ],
)
def test_each_kind_of_error_names_its_path(addition, expected):
    issues = errors_of(MINIMAL + addition)
    assert any(expected in issue for issue in issues), issues


def test_missing_sections_and_bad_program_fields():
    issues = errors_of('[program]\nname = "X"\ncurrency = "eur"\nminor_units = 2\ntimezone = "Mars/Base"\n')
    assert "earning: required section [earning] is missing" in issues
    assert any(issue.startswith("program.currency") for issue in issues)
    assert any("unknown IANA time zone 'Mars/Base'" in issue for issue in issues)


def test_empty_category_names_are_refused():
    assert any(issue.startswith("earning.exclude_categories[0]") for issue in errors_of(MINIMAL + 'exclude_categories = [""]\n'))


def test_excluded_category_with_a_multiplier_is_a_contradiction():
    text = MINIMAL + 'exclude_categories = ["tobacco"]\n[earning.category_multipliers]\ntobacco = "2"\n'
    assert any("earning.category_multipliers.tobacco" in issue for issue in errors_of(text))


def test_all_errors_are_reported_at_once():
    text = MINIMAL.replace('points_per_unit = "1"', 'points_per_unit = 1.5\nrounding = "up"') + (
        '[caps]\nper_day = 5\n'
        '[[tiers]]\nname = "A"\nthreshold = "10"\n'
        '[[basket_bonuses]]\npoints = 1\n'
        '[qualification]\nhold = "months"\n'
    )
    issues = errors_of(text)
    paths = {issue.split(":")[0] for issue in issues}
    assert {"earning.points_per_unit", "earning.rounding", "caps.per_day", "tiers[0].threshold",
            "basket_bonuses[0]", "qualification.hold_months"} <= paths


def test_not_toml_and_unreadable_file(tmp_path):
    assert any("not valid TOML" in issue for issue in errors_of("[program\n"))
    with pytest.raises(ProgramError, match="cannot read the file"):
        load_program(tmp_path / "missing.toml")
    (tmp_path / "latin1.toml").write_bytes("name = 'Caf\xe9'".encode("latin-1"))
    with pytest.raises(ProgramError, match="not UTF-8"):
        load_program(tmp_path / "latin1.toml")


def test_combined_rates_are_exact_integers_over_one_denominator():
    program = load_program(CASES / "verde_club.toml")
    rates = combined_rates(program)
    # 1 point per RON = 1/100 per ban; Silver 1.25 × own_brand 2 × promotion 2 × birthday 2
    silver, own_brand = 1, 1 + program.named_categories().index("own_brand")
    assert rates.numerator(silver, own_brand, 1, True) * 100 == rates.denominator * Decimal("10")


def test_a_program_with_thousands_of_promotions_has_tables_linear_in_them():
    """A promotion a week for years, each on its own category: the tables grow with tiers +
    categories + promotions (every product stored, 3,000 took over 40 s and 1.4 GB to compile;
    benchmarks/test_program_compile.py measures it now)."""
    from fidelis.core.program.tables import compile_program

    promotions = "".join(f'[[promotions]]\nname = "P{n}"\nmultiplier = "{1 + (n % 9) / 4}"\n'
                         f'categories = ["c{n}"]\n' for n in range(3000))
    program = parse_program(MINIMAL + '[[tiers]]\nname = "A"\nthreshold = "0"\nmultiplier = "1"\n' + promotions)
    compiled = compile_program(program)
    assert compiled.rate_numerator.size == 2 * 1 * 3001 and compiled.promotion_numerator.size == 3001


def test_rates_beyond_the_exact_bound_are_rejected():
    text = MINIMAL.replace('points_per_unit = "1"', 'points_per_unit = "0.000007"') + (
        '[[tiers]]\nname = "A"\nthreshold = "0"\nmultiplier = "1.000003"\n'
        '[[tiers]]\nname = "B"\nthreshold = "1"\nmultiplier = "1.000009"\n'
        '[[promotions]]\nname = "P"\nmultiplier = "1.000007"\n'
        '[[promotions]]\nname = "Q"\nmultiplier = "1.000011"\n'
        '[earning.category_multipliers]\na = "0.000013"\nb = "0.000017"\n'
    ).replace("[earning.category_multipliers]", "[earning.category_multipliers]", 1)
    text = text.replace('points_per_unit = "0.000007"', 'points_per_unit = "0.000007"\nbirthday_multiplier = "1.000019"')
    issues = errors_of(text)
    assert any("bound 2^62" in issue for issue in issues), issues


def test_lifecycle_sections_default_to_never_expiring_and_any_redemption():
    program = parse_program(MINIMAL)
    assert (program.expiry.after_months, program.expiry.policy, program.expiry.inactivity_months) == (None, None, None)
    assert (program.redemption.min_points, program.redemption.multiple_of) == (1, 1)
    assert program.returns.negative_balance == "allow"
    assert program.expiry.gone_from_month([5]).tolist() == [-1]


@pytest.mark.parametrize("expiry, earned, gone", [
    ("after_months = 1", "2025-06", "2025-08"),           # end of next month: gone on 1 August
    ("after_months = 12", "2025-12", "2027-01"),
    ('policy = "end_of_next_year"', "2025-01", "2027-01"),
    ('policy = "end_of_next_year"', "2025-12", "2027-01"),
    ('after_months = 3\npolicy = "end_of_next_year"', "2025-12", "2026-04"),  # the earlier of the two
    ('after_months = 30\npolicy = "end_of_next_year"', "2025-01", "2027-01"),
])
def test_a_lots_expiry_month(expiry, earned, gone):
    def month(text):
        year, number = map(int, text.split("-"))
        return (year - 1970) * 12 + number - 1

    program = parse_program(MINIMAL + "[expiry]\n" + expiry)
    assert program.expiry.gone_from_month([month(earned)]).tolist() == [month(gone)]


@pytest.mark.parametrize("text, reason", [
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("x = " + "9" * 5000 + "\n", "an integer of thousands of digits"),
])
def test_hostile_toml_is_a_program_error_not_a_crash(text, reason):
    assert any(reason in error for error in errors_of(text + MINIMAL))


def test_a_time_zone_that_follows_the_host_is_refused():
    text = MINIMAL.replace("Europe/Paris", "localtime")
    assert any("this machine's time zone, not the chain's" in error for error in errors_of(text))


def test_a_program_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "program.toml"
    path.write_bytes(b"\xef\xbb\xbf" + (MINIMAL + '[[tiers]]\nname = "A"\nthreshold = "0"\nmultiplier = "1"\n').encode())
    assert load_program(path).info.name == "Test"
