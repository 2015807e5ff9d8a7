"""Redemptions and adjustments: oldest lots first, once per reference, never overdrawn."""
import subprocess
import sys

import pytest
from fidelis.core.errors import (
    IdempotencyConflict,
    InsufficientPoints,
    LedgerError,
    RedemptionError,
)
from fidelis.core.jobs.check import check_ledger
from fidelis.core.jobs.load import load_files
from fidelis.core.ledger.figures import counts
from fidelis.core.ledger.handle import Ledger
from fidelis.core.ledger.journal import balance, history
from fidelis.core.points.adjustment import adjust
from fidelis.core.points.redemption import redeem
from fidelis.core.program.model import parse_program

from .loads import R1, R2, lots_of

JULY = ["R7", "C1", "S1", "2025-07-01T10:00", "grocery", 1, "100.00"]


@pytest.fixture
def three_lots(ledger, write_receipts):
    """C1 earns in June (R1 120, R2 20) and July (R7 100): lots of 140 and 100 points."""
    load_files(ledger, [write_receipts("a.csv", R1, R2, JULY)])
    assert lots_of(ledger) == [(665, 140), (666, 100)]
    return ledger


def test_a_redemption_takes_the_oldest_lots_first(three_lots):
    done = redeem(three_lots, "C1", 150, "till-1")
    assert (done.points, done.balance, done.existing) == (150, 90, False)
    assert lots_of(three_lots) == [(665, 0), (666, 90)]
    assert history(three_lots, "C1", limit=1)[0] | {"at": None} == {
        "entry_id": done.entry_id, "kind": "redeem", "points": -150, "at": None, "reference": "till-1"}
    assert check_ledger(three_lots) == []


def test_a_redemption_is_made_once_per_reference(three_lots):
    first = redeem(three_lots, "C1", 100, "till-1")
    again = redeem(three_lots, "C1", 100, "till-1")
    assert again.existing and (again.entry_id, again.balance) == (first.entry_id, 140)
    assert balance(three_lots, "C1") == 140
    with pytest.raises(IdempotencyConflict, match="'till-1' was already made for 100 points"):
        redeem(three_lots, "C1", 50, "till-1")


def test_a_redemption_never_overdraws_and_follows_the_programs_rules(tmp_path, write_receipts, verde_club):
    rules = verde_club.text + '\n[redemption]\npoint_value = "0.01"\nmin_points = 50\nmultiple_of = 25\n'
    with Ledger.create(tmp_path / "rules.db", parse_program(rules)) as ledger:
        load_files(ledger, [write_receipts("a.csv", R1, R2, JULY)])
        with pytest.raises(InsufficientPoints, match="has 240 points; 250 cannot be redeemed"):
            redeem(ledger, "C1", 250, "a")
        for points, why in ((25, "at least 50"), (60, "multiples of 25")):
            with pytest.raises(RedemptionError, match=why):
                redeem(ledger, "C1", points, "b")
        assert balance(ledger, "C1") == 240 and counts(ledger)["journal"] == 3
        assert redeem(ledger, "C1", 75, "c").balance == 165


def test_adjustments_add_to_this_months_lot_or_take_from_the_oldest(three_lots):
    adjust(three_lots, "C1", 30, "goodwill: late delivery", instant_us=1_752_000_000_000_000)  # 2025-07-08
    assert lots_of(three_lots) == [(665, 140), (666, 130)]
    adjust(three_lots, "C1", -150, "duplicate card merged")
    assert lots_of(three_lots) == [(665, 0), (666, 120)]
    assert three_lots.db.execute("SELECT note FROM journal WHERE kind = 'adjust' ORDER BY entry_id").fetchall() == [
        ("goodwill: late delivery",), ("duplicate card merged",)]
    with pytest.raises(LedgerError, match="cannot take 500"):
        adjust(three_lots, "C1", -500, "too much")
    assert check_ledger(three_lots) == []


def test_an_adjustment_is_bounded_and_once_per_reference(three_lots):
    from fidelis.core.errors import IdempotencyConflict

    with pytest.raises(LedgerError, match="at most 1,000,000,000,000,000 points either way"):
        adjust(three_lots, "C1", 5 * 10**18, "a slip of the keyboard")
    first = adjust(three_lots, "C1", 30, "goodwill", reference="ticket-4711")
    assert adjust(three_lots, "C1", 30, "goodwill", reference="ticket-4711") == first == 270  # a retried script
    with pytest.raises(IdempotencyConflict, match="'ticket-4711' was already used"):
        adjust(three_lots, "C1", 40, "goodwill", reference="ticket-4711")
    assert three_lots.db.execute("SELECT COUNT(*) FROM journal WHERE kind = 'adjust'").fetchone()[0] == 1
    assert check_ledger(three_lots) == []


def test_concurrent_redemptions_never_overdraw(three_lots):
    """20 processes redeem 50 points each from a balance of 240: exactly 4 succeed."""
    processes = [subprocess.Popen(
        [sys.executable, "-m", "fidelis.core.cli", "redeem", str(three_lots.path), "C1", "50", "--reference", f"r{i}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(20)]
    results = [(process.wait(timeout=120), process.stderr.read()) for process in processes]
    assert sum(code == 0 for code, _ in results) == 4
    assert all("has 40 points; 50 cannot be redeemed" in err for code, err in results if code != 0), results
    assert balance(three_lots, "C1") == 40 and min(points for _, points in lots_of(three_lots)) >= 0
    assert check_ledger(three_lots) == []
