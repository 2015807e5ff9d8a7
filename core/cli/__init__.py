"""The ``fidelis`` command: every job a chain runs, over the same library functions.

Errors Fidelis raises on purpose (:class:`FidelisError`) are turned into a message and exit
status 1 here, in one place; a user never sees a traceback for bad input.
"""
from __future__ import annotations

import time
from importlib.metadata import version as package_version
from pathlib import Path

import click
import fidelis.core as core

from ..errors import FidelisError
from ..ledger import figures as ledger_figures

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class FidelisGroup(click.Group):
    """Translates FidelisError into a clear message and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FidelisError as error:
            click.secho(f"Error: {error}", fg="red", err=True)
            ctx.exit(1)


@click.group(cls=FidelisGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_version("fidelis"), "--version", prog_name="fidelis")
def cli() -> None:
    """Fidelis: a loyalty engine for retail chains.

    Points, tiers and promotions scored exactly from a program file, at millions of
    receipts per second.
    """


def engine_option(function):
    return click.option(
        "--engine",
        type=click.Choice(["compiled", "reference"]),
        default="compiled",
        show_default=True,
        help="compiled: the fast kernel; reference: the readable implementation of PROGRAM.md.",
    )(function)


# ---- program ---------------------------------------------------------------------------
@cli.group(context_settings=CONTEXT_SETTINGS)
def program() -> None:
    """Work with program files."""


@program.command("check")
@click.argument("program_file", type=click.Path(dir_okay=False, path_type=Path))
def program_check(program_file: Path) -> None:
    """Validate a program file and print a summary of its rules.

    Every error is listed at once with its path; the exit status is 1 if there are any.

    Example: fidelis program check program.toml
    """
    from ..program.model import load_program

    click.echo(load_program(program_file).summary())
    click.secho("OK: the program is valid", fg="green")


# ---- score -----------------------------------------------------------------------------
@cli.command()
@click.argument("program_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("receipt_files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--customers", "customers_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Customers file (CSV or Parquet) with birth dates.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the scores: .csv or .parquet.")
@engine_option
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Kernel threads (customers are split between them).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
def score(program_file, receipt_files, customers_file, output, engine, threads, quiet) -> None:
    """Score receipt files against a program, without a ledger.

    Writes one row per receipt in processing order: receipt_id, customer_id, tier and the
    points of each rule. Reads CSV and Parquet; files may be given in any order.

    Example: fidelis score program.toml receipts.csv --customers customers.csv -o scores.csv
    """
    from ..ingest.files import check_writable, write_table
    from ..jobs.score import score_files

    check_writable(output)
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


# ---- ledger ----------------------------------------------------------------------------
@cli.command()
@click.argument("ledger_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--program", "program_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
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


@cli.command()
@click.argument("ledger_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("receipt_files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--customers", "customers_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Customers file (CSV or Parquet) with birth dates.")
@click.option("--skip-bad", is_flag=True, help="Load the good receipts and set bad rows aside instead of stopping.")
@click.option("--rejects", "rejects_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Where rejected rows go, with reasons (.csv or .parquet).")
@click.option("--chunk-receipts", type=click.IntRange(1), default=None,
              help="Receipts committed per transaction (default 200,000).")
@click.option("--part-rows", type=click.IntRange(1000), default=None,
              help="Input rows validated at once; bounds memory (default 1,000,000, about 0.5 GB).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def load(ledger_file, receipt_files, customers_file, skip_bad, rejects_file, chunk_receipts, part_rows,
         quiet) -> None:
    """Load receipt files into a ledger, exactly once.

    Receipts already in the ledger are skipped; loading the same files again changes nothing.

    Example: fidelis load chain.db receipts.csv --customers customers.csv --skip-bad --rejects rejects.csv
    """
    from ..ingest.staging import PART_ROWS
    from ..jobs.load import CHUNK_RECEIPTS, load_files
    from ..ledger.handle import Ledger

    if skip_bad and rejects_file is None:
        raise click.UsageError("--skip-bad needs --rejects FILE: rows set aside must go somewhere")
    with Ledger(ledger_file) as ledger:
        summary = load_files(ledger, receipt_files, customers_file=customers_file, skip_bad=skip_bad,
                             rejects_file=rejects_file, chunk_receipts=chunk_receipts or CHUNK_RECEIPTS,
                             part_rows=part_rows or PART_ROWS, progress=not quiet)
    rate = summary.receipts_loaded / summary.seconds if summary.seconds else 0.0
    click.echo(
        f"Loaded {summary.receipts_loaded:,} receipts ({summary.new_customers:,} new customers, "
        f"{summary.points:,} points) in {summary.seconds:.1f} s ({rate:,.0f} receipts/s); skipped "
        f"{summary.duplicates_skipped:,} already loaded; rejected {summary.rejected_rows:,} bad rows, "
        f"{summary.rejected_files:,} unusable files, {summary.conflicts:,} conflicting and "
        f"{summary.late_receipts:,} late receipts."
    )
    if summary.returns_loaded or summary.returns_refused:
        unrecovered = (f", {summary.points_unrecovered:,} of them already spent and not recovered"
                       if summary.points_unrecovered else "")
        click.echo(f"Returns: {summary.returns_loaded:,} of the receipts loaded, taking back "
                   f"{summary.points_taken_back:,} points{unrecovered}; {summary.returns_refused:,} refused.")
    click.echo("Time: " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in summary.stage_seconds.items()))
    if summary.problem_count:
        click.echo(f"Rejected rows and their reasons: {rejects_file}")


@cli.command()
@click.argument("ledger_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("customer_id")
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Status for a receipt on this local date (default: today).")
def balance(ledger_file, customer_id, as_of) -> None:
    """Show a customer's points (the sum of their journal), tier and progress to the next tier.

    Example: fidelis balance chain.db 0000123456
    """
    from ..ledger.handle import Ledger

    with Ledger(ledger_file) as ledger:
        standing = core.standing(ledger, customer_id, as_of.date() if as_of else None)
        program = ledger.current_program().program
    line = f"{customer_id}: {standing.points:,} points; {standing.tier}"
    if standing.next_tier is not None:
        line += f", {_measure_text(program, standing.to_next_tier)} to {standing.next_tier}"
    click.echo(line)


def _measure_text(program, amount: int) -> str:
    """An amount of the qualification measure as a person reads it."""
    basis = program.qualification.basis
    if basis == "spend":
        return f"{amount / program.minor_per_major:,.{program.info.minor_units}f} {program.info.currency} of spend"
    return f"{amount:,} {'visits' if basis == 'visits' else 'points'}"


@cli.command()
@click.argument("ledger_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("customer_id")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
def history(ledger_file, customer_id, limit) -> None:
    """Show a customer's journal, newest first.

    Example: fidelis history chain.db 0000123456 --limit 50
    """
    from ..ledger.handle import Ledger

    with Ledger(ledger_file) as ledger:
        entries = core.history(ledger, customer_id, limit=limit)
    for entry in entries:
        click.echo(f"{entry['at']}  {entry['kind']:<7} {entry['points']:>+10,}  {entry['reference']}")


@cli.command()
@click.argument("ledger_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("customer_id")
@click.argument("points", type=click.IntRange(1))
@click.option("--reference", required=True, help="Idempotency key: the same reference again redeems nothing more.")
def redeem(ledger_file, customer_id, points, reference) -> None:
    """Redeem a customer's points, oldest first; never more than their balance.

    Example: fidelis redeem chain.db 0000123456 500 --reference till-17-000381
    """
    from ..ledger.handle import Ledger

    with Ledger(ledger_file) as ledger:
        done = core.redeem(ledger, customer_id, points, reference)
    again = " (already redeemed under this reference; nothing more was taken)" if done.existing else ""
    click.echo(f"{customer_id}: redeemed {done.points:,} points{again}; {done.balance:,} points left")


@cli.command(context_settings={"ignore_unknown_options": True})  # so that -250 is points, not an option
@click.argument("ledger_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("customer_id")
@click.argument("points", type=int)
@click.option("--reason", required=True, help="Why: kept with the journal entry.")
def adjust(ledger_file, customer_id, points, reason) -> None:
    """Add (or, negative, take) points by hand, with a reason in the journal.

    Example: fidelis adjust chain.db 0000123456 250 --reason "goodwill: delivery late"
    """
    from ..ledger.handle import Ledger

    with Ledger(ledger_file) as ledger:
        balance_now = core.adjust(ledger, customer_id, points, reason)
    click.echo(f"{customer_id}: adjusted by {points:+,} points; {balance_now:,} points now")


@cli.command("month-end")
@click.argument("ledger_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Close the months that ended before this local date (default: today).")
@click.option("--replay", "replay_month", metavar="YYYY-MM", default=None,
              help="Recompute a closed month from the journal and receipts; exit 1 naming what differs.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def month_end(ledger_file, as_of, replay_month, quiet) -> None:
    """Close every month not yet closed: expire points, recalculate status, record tier moves.

    Closing a closed month changes nothing; years of months after a bulk load are one run.

    Example: fidelis month-end chain.db --as-of 2026-01-01
    """
    from ..jobs.month_end import month_end as close_months
    from ..jobs.month_end import replay_close
    from ..ledger.handle import Ledger
    from ..localtime import last_completed_month, parse_month

    if replay_month is not None:
        with Ledger(ledger_file) as ledger:
            problems = replay_close(ledger, parse_month(replay_month))
        for problem in problems:
            click.secho(problem, fg="red", err=True)
        if problems:
            raise click.exceptions.Exit(1)
        click.secho(f"{replay_month}: the replay reproduces the close exactly", fg="green")
        return
    with Ledger(ledger_file) as ledger:
        timezone = ledger.current_program().program.info.timezone
        through = last_completed_month(timezone, as_of.date() if as_of else None)
        closes = close_months(ledger, through, progress=not quiet)
    if not closes:
        click.echo("Nothing to close: every completed month is closed.")
    for close in closes:
        click.echo(f"{close.label}: {close.expired_points:,} points expired ({close.customers_expired:,} customers), "
                   f"{close.movements:,} tier movements")


@cli.command()
@click.argument("ledger_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Expire what is due in the months that ended before this local date (default: today).")
@click.option("--upcoming", "upcoming_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the customers whose points the next close will expire (CSV or Parquet).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def expire(ledger_file, as_of, upcoming_file, quiet) -> None:
    """Expire points that are due, and list the points the next close will expire.

    Points expire at the close of a month, together with its status recalculation, so this
    closes every month that has ended and was not closed (as month-end does); closed months
    are never expired twice.

    Example: fidelis expire chain.db --upcoming expiring-next.csv
    """
    import pyarrow as pa

    from ..ingest.files import TableWriter
    from ..jobs.month_end import month_end as close_months
    from ..ledger.handle import Ledger
    from ..localtime import last_completed_month, month_label
    from ..points.expiry import upcoming_expiry

    if upcoming_file is not None:
        TableWriter.check(upcoming_file)
    with Ledger(ledger_file) as ledger:
        timezone = ledger.current_program().program.info.timezone
        closes = close_months(ledger, last_completed_month(timezone, as_of.date() if as_of else None),
                              progress=not quiet)
        month, expiring = upcoming_expiry(ledger)
    expired = sum(close.expired_points for close in closes)
    click.echo(f"Expired {expired:,} points in {len(closes):,} month closes"
               + (f" ({closes[0].label} to {closes[-1].label})." if closes else "."))
    if month:
        click.echo(f"At the close of {month_label(month)}: {sum(p for _, p in expiring):,} points of "
                   f"{len(expiring):,} customers will expire unless they earn or redeem.")
    if upcoming_file is not None:
        with TableWriter(upcoming_file, pa.schema([("customer_id", pa.string()), ("points", pa.int64())])) as writer:
            writer.write(pa.table({"customer_id": pa.array([c for c, _ in expiring], pa.string()),
                                   "points": pa.array([p for _, p in expiring], pa.int64())}))
        click.echo(f"wrote {upcoming_file}")


@cli.command()
@click.argument("ledger_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--month", required=True, metavar="YYYY-MM", help="The local month to report.")
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the CSV files and the PNG plot (default: print the summary only).")
def report(ledger_file, month, output_dir) -> None:
    """The month-end report: points issued, redeemed, expired; liability; customers; tier moves.

    Example: fidelis report chain.db --month 2025-12 -o reports/
    """
    from ..analytics.month_report import month_report, write_report
    from ..ledger.handle import Ledger
    from ..localtime import parse_month

    with Ledger(ledger_file) as ledger:
        figures = month_report(ledger, parse_month(month))
    click.echo(figures.summary())
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        for path in write_report(figures, output_dir):
            click.echo(f"wrote {path}")


@cli.command()
@click.argument("ledger_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--bind", default="127.0.0.1:8000", show_default=True, help="HOST:PORT to listen on.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (about one per core).")
@click.option("--threads", default=16, show_default=True, type=click.IntRange(1, 64), help="Threads per worker.")
@click.option("--access-log", is_flag=True, help="Log each request line and status to stdout (never headers).")
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
def serve(ledger_file, bind, workers, threads, access_log, dev) -> None:
    """Serve the HTTP API (balance, history, accrual, redemption, returns) for a ledger.

    Every route but /v1/health and /openapi.json needs a key from `fidelis api-key create`.

    Example: fidelis serve chain.db --bind 0.0.0.0:8000 --workers 2
    """
    from fidelis.server.serve import serve as run

    run(str(ledger_file), bind=bind, workers=workers, threads=threads, access_log=access_log, dev=dev)


@cli.group("api-key", context_settings=CONTEXT_SETTINGS)
def api_key() -> None:
    """API keys of the HTTP server: create, list, revoke."""


@api_key.command("create")
@click.argument("ledger_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--role", required=True, type=click.Choice(["read", "write"]),
              help="read: balances and history; write: also accrual, redemption, returns.")
@click.option("--name", default=None, help="Who or what the key is for (shown by list).")
def api_key_create(ledger_file, role, name) -> None:
    """Create a key and print it once; only a hash of it is kept.

    Example: fidelis api-key create chain.db --role write --name "tills, store 12"
    """
    from ..ledger.handle import Ledger

    with Ledger(ledger_file) as ledger:
        key = core.create_api_key(ledger, role, name)
    click.echo(key)
    click.echo(f"A {role} key. Store it now: it is not shown again (revoke with `fidelis api-key revoke "
               f"{ledger_file} {key.split('_')[1]}`).", err=True)


@api_key.command("list")
@click.argument("ledger_file", type=click.Path(dir_okay=False, path_type=Path))
def api_key_list(ledger_file) -> None:
    """Every key's id, role, name and dates (never a secret).

    Example: fidelis api-key list chain.db
    """
    from ..ledger.handle import Ledger

    with Ledger(ledger_file) as ledger:
        for key_id, role, name, created, revoked in core.api_keys(ledger):
            state = f"revoked {revoked}" if revoked else "active"
            click.echo(f"{key_id}  {role:<5}  {state:<28}  created {created}  {name or ''}")


@api_key.command("revoke")
@click.argument("ledger_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("key_id")
def api_key_revoke(ledger_file, key_id) -> None:
    """Revoke a key by its id (the part after ``fid_``); requests with it get 401 at once.

    Example: fidelis api-key revoke chain.db 3f2a9c01d4e7
    """
    from ..ledger.handle import Ledger

    with Ledger(ledger_file) as ledger:
        core.revoke_api_key(ledger, key_id)
    click.echo(f"revoked {key_id}")


@cli.group(context_settings=CONTEXT_SETTINGS)
def export() -> None:
    """Export tables from a ledger."""


@export.command("balances")
@click.argument("ledger_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write: .csv or .parquet.")
def export_balances(ledger_file, output) -> None:
    """Write every customer's balance to a file.

    Example: fidelis export balances chain.db -o balances.parquet
    """
    from ..jobs.export import export_balances as export
    from ..ledger.handle import Ledger

    with Ledger(ledger_file) as ledger:
        count = export(ledger, output)
    click.echo(f"Wrote {count:,} balances to {output}")


@cli.command()
@click.argument("ledger_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def check(ledger_file, quiet) -> None:
    """Verify a ledger's invariants; exit status 1 naming what is wrong.

    Balance = Σ journal = Σ points left in lots; each receipt's points = its earn entries;
    replaying every receipt through the kernel gives the stored points and customer state.

    Example: fidelis check chain.db
    """
    from ..jobs.check import check_ledger
    from ..ledger.handle import Ledger

    with Ledger(ledger_file) as ledger:
        problems = check_ledger(ledger, progress=not quiet)
        counts = ledger_figures.counts(ledger)
    if problems:
        for problem in problems:
            click.secho(problem, fg="red", err=True)
        raise click.exceptions.Exit(1)
    click.secho(f"OK: {counts['receipts']:,} receipts, {counts['customers']:,} customers, "
                f"{counts['journal']:,} journal entries; every invariant holds", fg="green")


# ---- synthetic data --------------------------------------------------------------------
@cli.command()
@click.option("--receipts", "receipt_count", type=click.IntRange(1), default=200_000, show_default=True,
              help="How many receipts to generate.")
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for receipts, customers and program.toml.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--format", "receipts_format", type=click.Choice(["csv", "parquet"]), default="csv",
              show_default=True, help="File format of the receipts.")
def generate(receipt_count, output_dir, seed, receipts_format) -> None:
    """Generate a synthetic chain: receipts, customers and a sample program.

    The same seed always gives the same chain.

    Example: fidelis generate --receipts 1000000 -o chain/
    """
    from ..synthetic import generate_chain, write_chain

    chain = generate_chain(receipt_count, seed=seed)
    paths = write_chain(chain, output_dir, receipts_format=receipts_format)
    for name, path in paths.items():
        click.echo(f"{name:>10}: {path}")


# ---- demo ------------------------------------------------------------------------------
@cli.command()
@click.option("--receipts", "receipt_count", type=click.IntRange(1), default=200_000, show_default=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("fidelis-demo"), show_default=True, help="Where the demo files and ledger go.")
@click.option("--seed", type=int, default=7, show_default=True)
def demo(receipt_count, directory, seed) -> None:
    """Generate a synthetic chain, load it into a ledger, and show what came out.

    Example: fidelis demo --receipts 100000
    """
    from ..jobs.load import load_files
    from ..ledger.handle import Ledger
    from ..program.model import load_program
    from ..synthetic import generate_chain, write_chain

    click.secho(f"Generating a synthetic chain of {receipt_count:,} receipts in {directory}/ …", bold=True)
    started = time.perf_counter()
    paths = write_chain(generate_chain(receipt_count, seed=seed), directory, receipts_format="csv")
    click.echo(f"  done in {time.perf_counter() - started:.1f} s")

    ledger_file = directory / "chain.db"
    for name in ("chain.db", "chain.db-wal", "chain.db-shm"):
        (directory / name).unlink(missing_ok=True)
    click.secho(f"Loading it into the ledger {ledger_file} …", bold=True)
    with Ledger.create(ledger_file, load_program(paths["program"])) as ledger:
        summary = load_files(ledger, [paths["receipts"]], customers_file=paths["customers"], progress=True)
        click.echo(f"  {summary.receipts_loaded:,} receipts, {summary.new_customers:,} customers, "
                   f"{summary.points:,} points in {summary.seconds:.1f} s")
        _print_tour(ledger, ledger_file, paths)


def _print_tour(ledger, ledger_file: Path, paths) -> None:
    program = ledger.current_program().program
    click.secho("\nReceipts by status tier at purchase", bold=True)
    by_tier = ledger_figures.receipts_by_tier(ledger)
    total = sum(by_tier.values()) or 1
    for index, tier in enumerate(program.tiers):
        count = by_tier.get(index, 0)
        click.echo(f"  {tier.name:<10} {count:>10,}  {count / total:6.1%}")
    click.secho("\nPoints by rule", bold=True)
    for name, value in ledger_figures.points_by_rule(ledger).items():
        click.echo(f"  {name.removesuffix('_points'):<15} {value:>14,}")
    customer_id = ledger_figures.top_customer(ledger)
    if customer_id is not None:
        click.secho(f"\nCustomer {customer_id}: {core.balance(ledger, customer_id):,} points; latest entries", bold=True)
        for entry in core.history(ledger, customer_id, limit=5):
            click.echo(f"  {entry['at']}  {entry['kind']:<7} {entry['points']:>+8,}  {entry['reference']}")
        click.secho("\nTry next", bold=True)
        click.echo(f"  fidelis balance {ledger_file} {customer_id}")
        click.echo(f"  fidelis history {ledger_file} {customer_id}")
        click.echo(f"  fidelis redeem {ledger_file} {customer_id} 100 --reference demo-1   # twice: redeemed once")
    click.echo(f"  fidelis month-end {ledger_file}                  # close the months: expiry, tiers")
    click.echo(f"  fidelis report {ledger_file} --month 2025-12 -o reports")
    click.echo(f"  fidelis check {ledger_file}")
    click.echo(f"  fidelis export balances {ledger_file} -o balances.csv")
    click.echo(f"  fidelis load {ledger_file} {paths['receipts']}      # again: nothing changes")
    click.echo(f"  fidelis score {paths['program']} {paths['receipts']} --customers {paths['customers']} -o scores.parquet")
    click.echo(f"  fidelis api-key create {ledger_file} --role read        # then, with the key it prints:")
    click.echo(f"  fidelis serve {ledger_file} &  curl -H \"X-API-Key: $KEY\" localhost:8000/v1/customers/"
               f"{customer_id or 'CUSTOMER'}/balance")


def main() -> None:
    cli(prog_name="fidelis")


