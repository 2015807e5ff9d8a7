"""The ledger as storage: one SQLite file in WAL mode, its locks and refusals, exact sums."""
import datetime as dt
import sqlite3

import pytest
from fidelis.core.errors import LedgerError
from fidelis.core.jobs.check import check_ledger
from fidelis.core.jobs.load import load_files
from fidelis.core.ledger.handle import Ledger
from fidelis.core.ledger.journal import balance
from fidelis.core.points.standing import standing
from fidelis.core.program.model import load_program, parse_program

from .conftest import CASES_DIR
from .loads import R1, R2, lots_of


def test_a_ledger_refuses_to_overwrite_or_to_change_a_program_with_history(tmp_path, verde_club, write_receipts):
    path = tmp_path / "chain.db"
    with Ledger.create(path, verde_club) as ledger:
        assert ledger.current_program().program.sha256 == verde_club.sha256
        other = parse_program(verde_club.text.replace('welcome_points = 100', 'welcome_points = 50'))
        ledger.set_program(other)  # no receipts yet: allowed
        load_files(ledger, [write_receipts("a.csv", R1)])
        with pytest.raises(LedgerError, match="changing the program of a ledger with history"):
            ledger.set_program(verde_club)
    with pytest.raises(LedgerError, match="already exists"):
        Ledger.create(path, verde_club)
    with pytest.raises(LedgerError, match="no ledger here"):
        Ledger(tmp_path / "missing.db")


def test_the_ledger_is_sqlite_in_wal_mode(ledger):
    assert ledger.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(sqlite3.IntegrityError):
        ledger.db.execute("INSERT INTO journal (customer_index, kind, points, instant_us, reference) "
                          "VALUES (0, 'gift', 1, 0, 'x')")


def test_standing_uses_the_kernels_status_function(ledger, write_receipts):
    load_files(ledger, [write_receipts("a.csv", R1, R2, ["R4", "C1", "S1", "2025-06-10T10:00", "grocery", 1, "480.00"])])
    june = standing(ledger, "C1", dt.date(2025, 6, 11))
    assert (june.tier, june.qualifying_total, june.next_tier, june.to_next_tier) == ("Silver", 51000, "Gold", 99000)
    january = standing(ledger, "C1", dt.date(2026, 1, 1))  # held by 2025 (next_year), nothing yet in 2026
    assert (january.tier, january.qualifying_total, january.to_next_tier) == ("Silver", 0, 150000)
    assert standing(ledger, "C1", dt.date(2027, 1, 1)).tier == "Base"
    assert june.points == balance(ledger, "C1")


def test_files_that_are_not_ledgers_are_refused_and_left_alone(tmp_path):
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE notes (text TEXT)").connection.close()
    before = other.read_bytes()
    with pytest.raises(LedgerError, match="not a Fidelis ledger; it was left untouched"):
        Ledger(other)
    assert other.read_bytes() == before
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="cannot open the ledger"):
        Ledger(garbage)
    with pytest.raises(LedgerError, match="does not exist"):
        Ledger.create(tmp_path / "no" / "such.db", load_program(CASES_DIR / "verde_club.toml"))


def test_lots_sum_points_exactly_past_two_to_the_53(tmp_path, write_receipts):
    """Ten receipts of ~10^15 points in one month: a float sum would round the lot."""
    program = parse_program(
        '[program]\nname = "Big"\ncurrency = "RON"\nminor_units = 2\ntimezone = "Europe/Bucharest"\n'
        '[earning]\npoints_per_unit = "100000"\nwelcome_points = 1\n')
    with Ledger.create(tmp_path / "big.db", program) as ledger:
        rows = [[f"B{i}", "C1", "S1", f"2025-06-{i + 1:02d}T10:00", "grocery", 1, "9999999999.99"] for i in range(10)]
        load_files(ledger, [write_receipts("a.csv", *rows)])
        expected = 10 * 999_999_999_999_000 + 1
        assert expected > 2**53 and balance(ledger, "C1") == expected
        assert lots_of(ledger) == [(665, expected)]
        assert check_ledger(ledger) == []


def test_writes_work_where_the_writers_lock_file_cannot_be_made(ledger, write_receipts):
    ledger.close()
    lock = ledger.path.with_name(ledger.path.name + "-writer")
    lock.unlink(missing_ok=True)
    lock.mkdir()  # not a file: writers fall back to SQLite's own lock
    with Ledger(ledger.path) as reopened:
        load_files(reopened, [write_receipts("a.csv", R1)])
        assert balance(reopened, "C1") == 120


def test_a_write_inside_a_write_on_one_handle_is_refused_plainly(ledger):
    with ledger.write():
        with pytest.raises(LedgerError, match="inside another"):
            with ledger.write():
                pass
