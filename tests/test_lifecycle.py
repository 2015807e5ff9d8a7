"""Month-end: expiry, status at month end and tier movements, on hand-computed stories."""
from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal

import pytest

import pyarrow as pa
import pyarrow.csv as pa_csv

from fidelis.core.jobs import month_end as lifecycle
from fidelis.core.analytics import month_report as reports
from fidelis.core.errors import InputError
from fidelis.core.jobs.check import check_ledger
from fidelis.core.jobs.load import load_files
from fidelis.core.ledger.handle import Ledger
from fidelis.core.errors import LedgerError
from fidelis.core.localtime import month_start_us, parse_month
from fidelis.core.jobs.month_end import replay_close
from fidelis.core.program.model import load_program, parse_program
from fidelis.core.jobs.score import score_files
from fidelis.core.synthetic import generate_chain, write_chain
from fidelis.core.ledger.closes import month_closes
from fidelis.core.ledger.journal import balance
from fidelis.core.points.adjustment import adjust
from fidelis.core.points.redemption import redeem
from fidelis.core.points.standing import standing

HEADER = ["receipt_id", "customer_id", "store_id", "ts", "category", "qty", "amount"]
# Verde Club: R1 on Saturday 7 June 2025 earns 120 (10.00 x2 summer weekend + 100 welcome),
# R2 on Monday 9 June 20, R7 on Tuesday 1 July 100 (Base: 30.00 of spend); SILVER lifts C1's
# 2025 spend to 530.00, past Silver's 500
R1 = ["R1", "C1", "S1", "2025-06-07T10:00", "grocery", 1, "10.00"]
R2 = ["R2", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "20.00"]
R7 = ["R7", "C1", "S1", "2025-07-01T10:00", "grocery", 1, "100.00"]
SILVER = ["R3", "C1", "S1", "2025-06-10T10:00", "grocery", 1, "500.00"]


#: The stories run to 2027; "today" for their closes is after all of them.
LATER = dt.date(2030, 1, 1)


def month_end(ledger: Ledger, through_month: int, **options):
    return lifecycle.month_end(ledger, through_month, today=options.pop("today", LATER), **options)


@pytest.fixture
def chain(tmp_path, verde_club):
    """A ledger for Verde Club plus ``extra`` program text, loaded with the given rows."""
    def make(*rows, extra: str = "", text: str | None = None) -> Ledger:
        path = tmp_path / "receipts.csv"
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows([HEADER, *rows])
        ledger = Ledger.create(tmp_path / "chain.db", parse_program((text or verde_club.text) + extra))
        load_files(ledger, [path], allow_future=True)  # the stories run past today
        return ledger

    return make


def expired(ledger: Ledger) -> list[tuple[str, int, str]]:
    return ledger.db.execute(
        "SELECT c.customer_id, j.points, j.reference FROM journal j JOIN customers c USING (customer_index) "
        "WHERE kind = 'expire' ORDER BY entry_id").fetchall()


def test_end_of_next_month_expiry(chain):
    ledger = chain(R1, R2, R7, extra="\n[expiry]\nafter_months = 1\n")
    assert balance(ledger, "C1") == 240
    closes = month_end(ledger, parse_month("2025-07"))
    assert [(c.label, c.expired_points) for c in closes] == [("2025-06", 0), ("2025-07", 140)]
    assert expired(ledger) == [("C1", -140, "expiry 2025-07")]
    month_end(ledger, parse_month("2025-08"))
    assert balance(ledger, "C1") == 0 and check_ledger(ledger) == []


def test_eighteen_months_without_activity_expire_everything(chain):
    ledger = chain(R1, R2, extra="\n[expiry]\ninactivity_months = 18\n")
    month_end(ledger, parse_month("2026-11"))  # June 2025 was active: 17 full months since
    assert balance(ledger, "C1") == 140 and expired(ledger) == []
    [december] = month_end(ledger, parse_month("2026-12"))  # July 2025 … December 2026: 18
    assert (december.expired_points, december.customers_expired) == (140, 1)
    assert balance(ledger, "C1") == 0 and check_ledger(ledger) == []


def test_a_redemption_across_lots_then_expiry_of_the_rest(chain):
    ledger = chain(R1, R2, R7, extra="\n[expiry]\nafter_months = 1\n")
    redeem(ledger, "C1", 150, "till-1", instant_us=1_751_900_000_000_000)  # 7 July 2025: June's 140 + 10
    month_end(ledger, parse_month("2025-08"))
    assert expired(ledger) == [("C1", -90, "expiry 2025-08")]
    assert balance(ledger, "C1") == 0 and check_ledger(ledger) == []


def test_calendar_year_status_is_held_through_the_next_year_then_lost(chain):
    ledger = chain(R1, R2, SILVER)
    month_end(ledger, parse_month("2027-01"))
    moves = ledger.db.execute("SELECT month, from_tier, to_tier FROM tier_movements ORDER BY month").fetchall()
    # Silver from 10 June 2025 (held: next_year), kept through 2026, gone on 1 January 2027
    assert moves == [(parse_month("2025-06"), 0, 1), (parse_month("2026-12"), 1, 0)]


def test_rolling_twelve_months_downgrade(chain, verde_club):
    rolling = verde_club.text.replace('period = "calendar_year"', 'period = "rolling_12_months"').replace(
        'hold = "next_year"', 'hold = "none"')
    ledger = chain(R1, R2, SILVER, text=rolling)
    month_end(ledger, parse_month("2026-06"))
    moves = ledger.db.execute("SELECT month, from_tier, to_tier FROM tier_movements ORDER BY month").fetchall()
    # Silver while June 2025 is among the 12 months counted: through May 2026's window, not June's
    assert moves == [(parse_month("2025-06"), 0, 1), (parse_month("2026-05"), 1, 0)]


def test_month_end_twice_is_once_and_agrees_with_the_next_receipt(chain, tmp_path):
    ledger = chain(R1, R2, SILVER, R7, extra="\n[expiry]\nafter_months = 1\n")
    first = month_end(ledger, parse_month("2025-12"))
    before = ledger.db.execute("SELECT * FROM journal ORDER BY entry_id").fetchall()
    assert month_end(ledger, parse_month("2025-12")) == []
    assert ledger.db.execute("SELECT * FROM journal ORDER BY entry_id").fetchall() == before
    assert [c.month for c in first] == list(range(parse_month("2025-06"), parse_month("2025-12") + 1))
    # status at the close of December == the tier of a receipt on 1 January
    status = ledger.db.execute("SELECT tier FROM customer_status").fetchall()
    assert status == [(1,)]
    assert standing(ledger, "C1", dt.date(2026, 1, 1)).tier == "Silver"


@pytest.mark.parametrize("extra", ["\n[expiry]\nafter_months = 1\n", "\n[expiry]\ninactivity_months = 2\n",
                                   '\n[expiry]\npolicy = "end_of_next_year"\n'])
def test_a_replayed_close_reproduces_it(chain, extra):
    ledger = chain(R1, R2, SILVER, R7, extra=extra)
    redeem(ledger, "C1", 100, "till-1", instant_us=1_751_900_000_000_000)
    adjust(ledger, "C1", 30, "goodwill", instant_us=1_752_000_000_000_000)
    closes = month_end(ledger, parse_month("2026-12"))
    assert sum(close.expired_points for close in closes) > 0
    for close in closes:
        assert replay_close(ledger, close.month) == [], close.label


def test_a_replay_finds_a_tampered_close(chain):
    ledger = chain(R1, R2, SILVER, R7, extra="\n[expiry]\nafter_months = 1\n")
    month_end(ledger, parse_month("2025-08"))
    ledger.db.execute("UPDATE journal SET points = points + 5 WHERE kind = 'expire'")
    ledger.db.execute("UPDATE tier_movements SET to_tier = 2")
    problems = replay_close(ledger, parse_month("2025-07")) + replay_close(ledger, parse_month("2025-06"))
    assert any("the close expired 635 points, the replay expires 640" in p for p in problems), problems
    assert any("recorded the move (0, 2), the replay gives (0, 1)" in p for p in problems), problems
    with pytest.raises(LedgerError, match="2025-09 is not closed"):
        replay_close(ledger, parse_month("2025-09"))


def test_status_at_a_close_is_the_tier_of_a_receipt_on_the_next_day(tmp_path):
    """Close a synthetic chain, then score a probe receipt per customer at the next month's first instant."""
    files = write_chain(generate_chain(1500, seed=4), tmp_path / "synthetic")
    with Ledger.create(tmp_path / "s.db", load_program(files["program"])) as ledger:
        load_files(ledger, [files["receipts"]], customers_file=files["customers"])
        closes = month_end(ledger, parse_month("2024-09"), block_customers=97)
        month = closes[-1].month
        boundary = month_start_us(month + 1, ledger.current_program().program.info.timezone)
        before = {receipt_id for receipt_id, in ledger.db.execute(
            "SELECT receipt_id FROM receipts WHERE instant_us < ?", (boundary,))}
        status = dict(ledger.db.execute(
            "SELECT customer_id, COALESCE(tier, 0) FROM customers LEFT JOIN customer_status USING (customer_index)"))
        tier_names = [tier.name for tier in ledger.current_program().program.tiers]
    rows = pa_csv.read_csv(files["receipts"], convert_options=pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in ("receipt_id", "customer_id", "amount", "ts")})).to_pylist()
    history = [row for row in rows if row["receipt_id"] in before]
    customers = sorted({row["customer_id"] for row in history if row["customer_id"]})
    at = dt.datetime.fromtimestamp(boundary / 1e6, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    probes = [{**history[0], "receipt_id": f"!probe-{c}", "customer_id": c, "ts": at, "category": "grocery",
               "qty": 1, "amount": "1.00", "sku": None} for c in customers]
    probe_file = tmp_path / "probes.csv"
    pa_csv.write_csv(pa.Table.from_pylist(history + probes), probe_file)
    scored = score_files(files["program"], [probe_file], files["customers"]).table.to_pylist()
    probed = {row["customer_id"]: row["tier"] for row in scored if row["receipt_id"].startswith("!probe-")}
    assert len(probed) == len(customers) > 100
    assert {c: tier_names[status[c]] for c in customers} == probed


JANUARY = ["J1", "C1", "S1", "2025-01-10T10:00", "grocery", 1, "10.00"]  # 10 + welcome 100
COMEBACK = ["F1", "C1", "S1", "2026-02-02T10:00", "grocery", 1, "10.00"]  # 10


@pytest.mark.parametrize("one_run", [True, False], ids=["catching-up", "month-by-month"])
def test_inactivity_is_judged_within_the_month_closed_whenever_the_close_runs(chain, one_run):
    ledger = chain(JANUARY, COMEBACK, extra="\n[expiry]\ninactivity_months = 12\n")
    adjust(ledger, "C1", 50, "goodwill", instant_us=1_770_033_600_000_000)  # 2 February 2026, before the close
    months = [parse_month("2026-02")] if one_run else range(parse_month("2025-01"), parse_month("2026-02") + 1)
    for month in months:
        month_end(ledger, month)
    # February 2025 … January 2026 without activity: January 2025's 110 expire at January's
    # close; February 2026's points (the comeback, the goodwill) are not January's to expire
    assert expired(ledger) == [("C1", -110, "expiry 2026-01")]
    assert balance(ledger, "C1") == 60 and check_ledger(ledger) == []
    assert replay_close(ledger, parse_month("2026-01")) == []


def test_receipts_in_a_closed_month_are_late(chain, tmp_path):
    ledger = chain(R1, R2)
    month_end(ledger, parse_month("2025-07"))
    late = tmp_path / "late.csv"
    with late.open("w", newline="") as handle:
        csv.writer(handle).writerows([HEADER, ["N1", "C2", "S1", "2025-07-31T10:00", "grocery", 1, "5.00"],
                                      ["N2", "C2", "S1", "2025-08-01T10:00", "grocery", 1, "5.00"]])
    with pytest.raises(InputError, match=r"'N1' .* is in a month already closed \(months up to 2025-07 are\)"):
        load_files(ledger, [late])
    summary = load_files(ledger, [late], skip_bad=True)
    assert (summary.receipts_loaded, summary.late_receipts) == (1, 1)


def test_month_end_refuses_months_that_have_not_ended(chain):
    ledger = chain(R1)
    with pytest.raises(LedgerError, match="2025-08 has not ended yet"):
        month_end(ledger, parse_month("2025-08"), today=dt.date(2025, 8, 31))
    with pytest.raises(LedgerError, match="has not ended yet"):  # today in the chain's time zone
        lifecycle.month_end(ledger, parse_month("2199-01"))
    assert month_closes(ledger) == []


@pytest.fixture
def meanwhile(monkeypatch):
    """``meanwhile(rows)``: once month-end has computed its statuses (without the write lock),
    another process loads ``rows``; returns how often statuses were computed."""
    def install(ledger: Ledger, *rows) -> list[int]:
        real, calls = lifecycle.month_end_statuses, []
        path = ledger.path.parent / "meanwhile.csv"
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows([HEADER, *rows])

        def statuses_then_a_load(*args, **kwargs):
            found = real(*args, **kwargs)
            calls.append(len(calls) + 1)
            if len(calls) == 1:
                with Ledger(ledger.path) as other:
                    load_files(other, [path])
            return found

        monkeypatch.setattr(lifecycle, "month_end_statuses", statuses_then_a_load)
        return calls

    return install


def test_a_close_is_not_concerned_by_receipts_of_later_months_written_meanwhile(chain, meanwhile):
    ledger = chain(R1, R2)
    calls = meanwhile(ledger, R7)  # a till's receipt of July while June closes
    [june] = month_end(ledger, parse_month("2025-06"))
    assert calls == [1] and june.movements == 0  # no second look: July is not June's business
    assert replay_close(ledger, june.month) == [] and check_ledger(ledger) == []


def test_a_receipt_of_the_closing_month_written_meanwhile_is_in_the_close(chain, meanwhile):
    ledger = chain(R1, R2)
    calls = meanwhile(ledger, SILVER)  # an offline till's June receipt, lifting C1 to Silver
    [june] = month_end(ledger, parse_month("2025-06"))
    assert calls == [1, 2]  # computed again under the write lock, then closed
    assert june.movements == 1 and replay_close(ledger, june.month) == [] and check_ledger(ledger) == []


def test_the_month_end_report_by_hand(chain, tmp_path):
    program = "\n[expiry]\nafter_months = 1\n[redemption]\npoint_value = \"0.01\"\n"
    anonymous = ["A1", "", "S1", "2025-07-02T10:00", "grocery", 1, "40.00"]
    ledger = chain(R1, R2, SILVER, R7, anonymous, extra=program)
    redeem(ledger, "C1", 100, "till-1", instant_us=1_751_900_000_000_000)  # 7 July 2025
    adjust(ledger, "C1", 30, "goodwill", instant_us=1_752_000_000_000_000)  # 8 July 2025
    month_end(ledger, parse_month("2025-07"))
    report = reports.month_report(ledger, parse_month("2025-07"))
    # June: 120 + 20 + 500 (Base; Silver from the next receipt) = 640; July: R7 at Silver 125.
    # The July close expires what is left of June's lot: 640 - 100 redeemed = 540.
    assert report.points == {"issued": 125, "redeemed": 100, "expired": 540, "reversed": 0, "adjusted": 30,
                             "unrecovered": 0}
    assert report.outstanding_points == 640 + 125 - 100 - 540 + 30 == balance(ledger, "C1")
    assert report.outstanding_value == Decimal("1.55")
    assert report.breakage_rate == pytest.approx(540 / 765)
    assert report.customers == {"active": 1, "new": 0, "lapsed": 0}
    assert report.identified_share == pytest.approx(100 / 140)
    assert report.moves.tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 0]]  # the move to Silver was June's
    assert reports.month_report(ledger, parse_month("2025-06")).moves[0, 1] == 1
    written = reports.write_report(report, tmp_path)
    assert [path.name for path in written] == ["report-2025-07.csv", "tier-movements-2025-07.csv", "report-2025-07.png"]
    assert written[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "outstanding: 155 points (1.55 RON)" in report.summary()


def test_an_inactivity_rule_longer_than_history_closes_like_any_other(chain):
    ledger = chain(R1, R2, extra="\n[expiry]\ninactivity_months = 1200\n")  # 100 years: valid
    [june] = month_end(ledger, parse_month("2025-06"))
    assert june.expired_points == 0 and replay_close(ledger, june.month) == []
