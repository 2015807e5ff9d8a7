"""The ``fidelis`` command line, end to end on files."""
import csv
import tomllib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from fidelis.core.cli import cli

from .conftest import CASES_DIR, load_case

ROOT = Path(__file__).parent.parent
HEADER = ["receipt_id", "customer_id", "store_id", "ts", "category", "qty", "amount"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def worked_example(tmp_path):
    """PROGRAM.md §5 as the files a chain would hand over."""
    path = CASES_DIR / "worked_example.toml"
    case = load_case(path)
    receipts = tmp_path / "receipts.csv"
    with receipts.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(tomllib.loads(path.read_text())["receipts"])
    return case, receipts


@pytest.mark.parametrize("engine", ["compiled", "reference"])
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_score_reproduces_the_worked_example(runner, worked_example, tmp_path, engine, suffix):
    case, receipts = worked_example
    output = tmp_path / f"scores{suffix}"
    result = runner.invoke(cli, ["score", str(CASES_DIR / "verde_club.toml"), str(receipts), "-o", str(output),
                                 "--engine", engine])
    assert result.exit_code == 0, result.output
    if suffix == ".csv":
        with output.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    else:
        rows = pq.read_table(output).to_pylist()
    assert [row["receipt_id"] for row in rows] == [row.receipt_id for row in case.expected]
    for row, expected in zip(rows, case.expected):
        assert row["tier"] == expected.tier
        for column in ("rate_points", "basket_points", "visit_points", "welcome_points", "cap_points", "points"):
            assert int(row[column]) == getattr(expected, column), (row["receipt_id"], column)
    assert "Scored 5 receipts" in result.output


def assert_clean_failure(result, *expected: str) -> None:
    """Exit status 1 with a message, and no exception escaped (which would be a traceback)."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    for text in expected:
        assert text in result.output, result.output


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["{receipts}", "-o", "{tmp}/out.csv"], ["bad.csv", "row 1", "qty"]),
        (["{tmp}/missing.csv", "-o", "{tmp}/out.csv"], ["missing.csv", "file not found"]),
        (["{tmp}/receipts.txt", "-o", "{tmp}/out.csv"], ["receipts.txt", "unsupported file type"]),
        (["{receipts}", "-o", "{tmp}/no/such/folder/out.csv"], ["the folder", "does not exist"]),
        (["{receipts}", "-o", "{tmp}/out.txt"], ["out.txt", "unsupported file type"]),
        (["{receipts}", "-o", "{receipts}"], ["bad.csv", "this is also an input file"]),
    ],
)
def test_score_failures_are_messages_not_tracebacks(runner, tmp_path, arguments, expected):
    receipts = tmp_path / "bad.csv"
    receipts.write_text(",".join(HEADER) + "\nR1,C1,S1,2025-06-07T10:00,grocery,0,10.00\n")
    (tmp_path / "receipts.txt").write_text("x")
    filled = [a.format(receipts=receipts, tmp=tmp_path) for a in arguments]
    result = runner.invoke(cli, ["score", str(CASES_DIR / "verde_club.toml"), *filled])
    assert_clean_failure(result, *expected)
    assert not (tmp_path / "out.csv").exists()


def test_program_check_prints_summary_or_every_error(runner, tmp_path):
    good = runner.invoke(cli, ["program", "check", str(CASES_DIR / "verde_club.toml")])
    assert good.exit_code == 0
    assert "Verde Club" in good.output and "OK" in good.output

    bad = tmp_path / "bad.toml"
    bad.write_text('[program]\nname = "X"\ncurrency = "EUR"\nminor_units = 2\ntimezone = "UTC"\n'
                   '[earning]\npoints_per_unit = 1.5\nrounding = "up"\n')
    result = runner.invoke(cli, ["program", "check", str(bad)])
    assert_clean_failure(result, "bad.toml: 2 errors", "earning.points_per_unit", "earning.rounding")


def test_generate_writes_a_chain_that_scores(runner, tmp_path):
    chain = tmp_path / "chain"
    result = runner.invoke(cli, ["generate", "--receipts", "3000", "-o", str(chain), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in chain.iterdir()} >= {"receipts.csv", "customers.csv", "program.toml"}
    scored = runner.invoke(cli, ["score", str(chain / "program.toml"), str(chain / "receipts.csv"),
                                 "--customers", str(chain / "customers.csv"), "-o", str(tmp_path / "s.parquet"), "-q"])
    assert scored.exit_code == 0, scored.output
    assert pq.read_table(tmp_path / "s.parquet").num_rows == 3000


def test_engines_agree_on_a_synthetic_chain(runner, tmp_path):
    chain = tmp_path / "chain"
    runner.invoke(cli, ["generate", "--receipts", "4000", "-o", str(chain)])
    tables = []
    for engine in ("compiled", "reference"):
        output = tmp_path / f"{engine}.parquet"
        result = runner.invoke(cli, ["score", str(chain / "program.toml"), str(chain / "receipts.csv"),
                                     "--customers", str(chain / "customers.csv"), "-o", str(output),
                                     "--engine", engine, "-q"])
        assert result.exit_code == 0, result.output
        tables.append(pq.read_table(output))
    assert tables[0].equals(tables[1])


def test_demo_runs_and_tours(runner, tmp_path):
    result = runner.invoke(cli, ["demo", "--receipts", "3000", "--dir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    for expected in ("3,000 receipts", "Receipts by status tier", "Points by rule", "Try next"):
        assert expected in result.output
    assert (tmp_path / "demo" / "chain.db").exists()


def test_ledger_commands_end_to_end(runner, worked_example, tmp_path):
    _, receipts = worked_example
    db = str(tmp_path / "chain.db")
    assert runner.invoke(cli, ["init", db, "--program", str(CASES_DIR / "verde_club.toml")]).exit_code == 0
    loaded = runner.invoke(cli, ["load", db, str(receipts), "-q"])
    assert loaded.exit_code == 0 and "Loaded 5 receipts" in loaded.output
    again = runner.invoke(cli, ["load", db, str(receipts), "-q"])
    assert "Loaded 0 receipts" in again.output and "skipped 5 already loaded" in again.output
    balance = runner.invoke(cli, ["balance", db, "C1", "--as-of", "2026-02-01"])
    # 281 + 460 + 125 + 108 + 25 points; Silver held by 2025; 2026 spend 20.00 of Gold's 1500
    assert balance.output.strip() == "C1: 999 points; Silver, 1,480.00 RON of spend to Gold"
    history = runner.invoke(cli, ["history", db, "C1", "--limit", "2"])
    assert history.output.splitlines()[0].startswith("2026-01-05T12:00:00+02:00  earn")
    assert runner.invoke(cli, ["check", db]).exit_code == 0
    exported = runner.invoke(cli, ["export", "balances", db, "-o", str(tmp_path / "b.csv")])
    assert exported.exit_code == 0 and (tmp_path / "b.csv").read_text().splitlines()[1] == '"C1",999'
    assert_clean_failure(runner.invoke(cli, ["balance", db, "nobody"]), "unknown customer 'nobody'")
    refused = runner.invoke(cli, ["load", db, str(receipts), "--skip-bad"])
    assert refused.exit_code == 2 and "--skip-bad needs --rejects FILE" in refused.output
    (tmp_path / "empty.csv").write_text(",".join(HEADER) + "\n")
    nothing = runner.invoke(cli, ["load", db, str(tmp_path / "empty.csv"), "--skip-bad", "--rejects",
                                  str(tmp_path / "rejects.csv"), "-q"])
    assert nothing.exit_code == 1 and "Every file was refused: nothing was loaded." in nothing.output
    assert_clean_failure(runner.invoke(cli, ["init", db, "--program", str(CASES_DIR / "verde_club.toml")]),
                         "already exists")


def commands(group, prefix=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from commands(command, prefix + (name,))
        else:
            yield prefix + (name,)


@pytest.mark.parametrize("command", list(commands(cli)), ids=" ".join)
def test_every_command_has_help_and_is_in_the_readme(runner, command):
    result = runner.invoke(cli, [*command, "-h"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert f"fidelis {' '.join(command)}" in (ROOT / "README.md").read_text()


def test_version(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and "fidelis" in result.output
