"""Voiding a receipt: the repair for a receipt dated years ahead, which locks its customer out."""
import pytest
from click.testing import CliRunner

from fidelis.core.cli import cli
from fidelis.core.errors import InputError, LedgerError, UnknownReceipt
from fidelis.core.jobs.check import check_ledger
from fidelis.core.jobs.load import load_files
from fidelis.core.ledger.handle import Ledger
from fidelis.core.ledger.journal import balance
from fidelis.core.points.redemption import redeem
from fidelis.core.points.void import void_receipt
from fidelis.core.program.model import parse_program

from .loads import R1, R2, R3, by_customer_id

#: 2026 typed as 2062: 500.00 of spend, 500 points at Verde Club's Base rate
TYPO = ["F1", "C1", "S1", "2062-06-10T10:00", "grocery", 1, "500.00"]
FIXED = ["F1", "C1", "S1", "2025-06-10T10:00", "grocery", 1, "500.00"]


@pytest.fixture
def locked_out(ledger, write_receipts):
    """C1's history holds a receipt of 2062 (loaded when future dates were allowed)."""
    load_files(ledger, [write_receipts("typo.csv", R1, TYPO, R3)], allow_future=True)
    return ledger


def test_a_future_receipt_is_named_by_check_and_in_the_refusals_it_causes(locked_out, write_receipts):
    [problem] = check_ledger(locked_out)
    assert problem.startswith("receipt 'F1' (of customer 'C1') is dated 2062-06-10T07:00:00Z, ahead of now")
    assert "fidelis void LEDGER F1" in problem and check_ledger(locked_out, allow_future=True) == []
    with pytest.raises(InputError, match="that receipt is dated ahead of now: `fidelis void` takes it out"):
        load_files(locked_out, [write_receipts("next.csv", R2)])


def test_voiding_it_gives_the_ledger_a_load_of_the_corrected_receipt_gives(locked_out, write_receipts, tmp_path,
                                                                          verde_club):
    earned = locked_out.db.execute("SELECT points FROM receipts WHERE receipt_id = 'F1'").fetchone()[0]
    done = void_receipt(locked_out, "F1", "year typed as 2062")
    assert (done.customer_id, done.points_taken, done.points_unrecovered) == ("C1", earned, 0)
    assert check_ledger(locked_out) == []
    load_files(locked_out, [write_receipts("fixed.csv", R2, FIXED)])  # the id is free again
    assert check_ledger(locked_out) == []
    with Ledger.create(tmp_path / "right.db", verde_club) as right:
        load_files(right, [write_receipts("right.csv", R1, R2, FIXED, R3)])
        mine, theirs = by_customer_id(locked_out), by_customer_id(right)
        assert mine["state"] == theirs["state"] and mine["receipts"] == theirs["receipts"]
        assert balance(locked_out, "C1") == balance(right, "C1")
    [kept] = locked_out.db.execute("SELECT receipt_id, points, reason FROM voided_receipts").fetchall()
    assert kept == ("F1", earned, "year typed as 2062")


@pytest.mark.parametrize("policy, unrecovered", [("floor_zero", 400), ("allow", 0)])
def test_points_already_spent_follow_the_negative_balance_policy(tmp_path, write_receipts, verde_club, policy,
                                                                  unrecovered):
    program = parse_program(verde_club.text + f'\n[returns]\nnegative_balance = "{policy}"\n')
    with Ledger.create(tmp_path / "chain.db", program) as ledger:
        load_files(ledger, [write_receipts("typo.csv", R1, TYPO)], allow_future=True)
        held = balance(ledger, "C1")
        redeem(ledger, "C1", held - 100, "till-1")  # spends nearly all of it, F1's points too
        done = void_receipt(ledger, "F1", "typo")
        assert done.points_unrecovered == unrecovered
        assert balance(ledger, "C1") == 100 - done.points_taken
        assert check_ledger(ledger) == []


def test_what_cannot_be_voided_says_what_to_do(locked_out, write_receipts):
    with pytest.raises(LedgerError, match="not customer C1's last receipt; void 'F1' first"):
        void_receipt(locked_out, "R1", "wrong")
    with pytest.raises(UnknownReceipt, match="no receipt 'X9'"):
        void_receipt(locked_out, "X9", "wrong")
    with pytest.raises(LedgerError, match="needs a reason"):
        void_receipt(locked_out, "F1", " ")
    assert check_ledger(locked_out, allow_future=True) == []


def test_fidelis_void(locked_out):
    result = CliRunner().invoke(cli, ["void", str(locked_out.path), "F1", "--reason", "typo"])
    assert result.exit_code == 0, result.output
    assert result.output == "Voided F1 (customer C1): 500 points taken back\n"
    assert CliRunner().invoke(cli, ["check", str(locked_out.path)]).exit_code == 0
