"""The cron entry points: thin, with exit codes a scheduler can act on."""
import subprocess
import sys
from pathlib import Path

from fidelis.core.ledger.handle import Ledger
from fidelis.core.ledger.journal import balance


SCRIPTS = Path(__file__).parent.parent / "scripts"


def run(script: str, *arguments) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS / script), *map(str, arguments)],
                          capture_output=True, text=True, timeout=120)


def test_bulk_load_exit_codes(tmp_path, verde_club):
    receipts = tmp_path / "r.csv"
    receipts.write_text("receipt_id,customer_id,store_id,ts,category,qty,amount\n"
                        "R1,C1,S1,2025-06-07T10:00,grocery,1,10.00\n")
    Ledger.create(tmp_path / "chain.db", verde_club).close()
    loaded = run("bulk_load.py", tmp_path / "chain.db", receipts, "-q")
    assert loaded.returncode == 0 and "Loaded 1 receipts" in loaded.stdout
    missing = run("bulk_load.py", tmp_path / "other.db", receipts)
    assert missing.returncode == 1 and "no ledger here" in missing.stderr
    assert run("bulk_load.py").returncode == 2


def test_month_end_exit_codes(tmp_path, verde_club):
    receipts = tmp_path / "r.csv"
    receipts.write_text("receipt_id,customer_id,store_id,ts,category,qty,amount\n"
                        "R1,C1,S1,2025-06-07T10:00,grocery,1,10.00\n")
    Ledger.create(tmp_path / "chain.db", verde_club).close()
    assert run("bulk_load.py", tmp_path / "chain.db", receipts, "-q").returncode == 0
    closed = run("month_end.py", tmp_path / "chain.db", "--as-of", "2025-08-01", "-q")
    assert closed.returncode == 0 and closed.stdout.splitlines() == [
        "2025-06: 0 points expired (0 customers), 0 tier movements",
        "2025-07: 0 points expired (0 customers), 0 tier movements"]
    again = run("month_end.py", tmp_path / "chain.db", "--as-of", "2025-08-01", "-q")
    assert again.returncode == 0 and "Nothing to close" in again.stdout
    assert run("month_end.py", tmp_path / "missing.db").returncode == 1
    assert run("month_end.py").returncode == 2


def test_expire_points_expires_what_is_due_and_lists_what_is_next(tmp_path, verde_club):
    from fidelis.core.program.model import parse_program

    receipts = tmp_path / "r.csv"
    receipts.write_text("receipt_id,customer_id,store_id,ts,category,qty,amount\n"
                        "R1,C1,S1,2025-06-07T10:00,grocery,1,10.00\n")  # 20 + 100 welcome, June's lot
    program = parse_program(verde_club.text + "\n[expiry]\nafter_months = 1\n")
    Ledger.create(tmp_path / "chain.db", program).close()
    assert run("bulk_load.py", tmp_path / "chain.db", receipts, "-q").returncode == 0
    upcoming = tmp_path / "upcoming.csv"
    first = run("expire_points.py", tmp_path / "chain.db", "--as-of", "2025-07-01", "--upcoming", upcoming, "-q")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[:2] == [
        "Expired 0 points in 1 month closes (2025-06 to 2025-06).",
        "At the close of 2025-07: 120 points of 1 customers will expire unless they earn or redeem."]
    assert upcoming.read_text().splitlines() == ['"customer_id","points"', '"C1",120']
    second = run("expire_points.py", tmp_path / "chain.db", "--as-of", "2025-08-01", "-q")
    assert second.returncode == 0 and second.stdout.startswith("Expired 120 points in 1 month closes")
    with Ledger(tmp_path / "chain.db") as ledger:
        assert balance(ledger, "C1") == 0
    assert run("expire_points.py", tmp_path / "missing.db").returncode == 1
