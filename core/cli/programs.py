"""``fidelis program check``, ``fidelis score`` and ``fidelis init``: program files, scoring
without a ledger, and the ledger a program starts."""
from __future__ import annotations

import time
from pathlib import Path

import click

from . import (
    CONTEXT_SETTINGS,
    cli,
    customers_option,
    engine_option,
    file_path,
    ledger_argument,
    output_option,
    program_argument,
    quiet_option,
    receipt_files_argument,
)


@cli.group(context_settings=CONTEXT_SETTINGS)
def program() -> None:
    """Work with program files."""


@program.command("check")
@program_argument
def program_check(program_file: Path) -> None:
    """Validate a program file and print a summary of its rules.

    Every error is listed at once with its path; the exit status is 1 if there are any.

    Example: fidelis program check program.toml
    """
    from ..program.model import load_program

    click.echo(load_program(program_file).summary())
    click.secho("OK: the program is valid", fg="green")


@cli.command()
@program_argument
@receipt_files_argument
@customers_option
@output_option("Where to write the scores: .csv or .parquet.")
@engine_option
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Kernel threads (customers are split between them).")
@quiet_option("No progress bar or summary.")
def score(program_file, receipt_files, customers_file, output, engine, threads, quiet) -> None:
    """Score receipt files against a program, without a ledger.

    Writes one row per receipt in processing order: receipt_id, customer_id, tier and the
    points of each rule. Reads CSV and Parquet; files may be given in any order.

    Example: fidelis score program.toml receipts.csv --customers customers.csv -o scores.csv
    """
    from ..ingest.files import check_writable, write_table
    from ..jobs.score import score_files

    check_writable(output, [program_file, *receipt_files, *([customers_file] if customers_file else [])])
    started = time.perf_counter()
    result = score_files(
        program_file, receipt_files, customers_file, engine=engine, threads=threads, progress=not quiet
    )
    write_table(result.table, output)
    if not quiet:
        elapsed = time.perf_counter() - started
        _print_score_summary(result, output, elapsed)


def _print_score_summary(result, output: Path, elapsed: float) -> None:
    table = result.table
    points = table.column("points").to_numpy()
    anonymous = table.column("customer_id").null_count
    click.echo(
        f"Scored {table.num_rows:,} receipts ({anonymous:,} anonymous) for "
        f"{result.customer_count:,} customers: {int(points.sum()):,} points, "
        f"in {elapsed:.1f} s ({table.num_rows / max(elapsed, 1e-9):,.0f} receipts/s end to end)."
    )
    click.echo(f"Wrote {output}")


@cli.command()
@ledger_argument
@click.option("--program", "program_file", required=True, type=file_path(),
              help="The program file the ledger scores with.")
def init(ledger_file, program_file) -> None:
    """Create a ledger (SQLite) that scores receipts with a program.

    Example: fidelis init chain.db --program program.toml
    """
    from ..ledger.handle import Ledger
    from ..program.model import load_program

    program = load_program(program_file)
    with Ledger.create(ledger_file, program):
        pass
    click.echo(f"Created {ledger_file} for {program.info.name} (program {program.sha256[:12]})")
