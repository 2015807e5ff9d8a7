"""The ledger's everyday commands: load receipts, look up and move a customer's points, check
the invariants, export, and the server's API keys."""
from __future__ import annotations

import click
import fidelis.core as core

from ..ledger import figures as ledger_figures
from . import (
    CONTEXT_SETTINGS,
    as_of_option,
    cli,
    customers_option,
    file_path,
    ledger_argument,
    output_option,
    quiet_option,
    receipt_files_argument,
)

customer_argument = click.argument("customer_id")


@cli.command()
@ledger_argument
@receipt_files_argument
@customers_option
@click.option("--skip-bad", is_flag=True, help="Load the good receipts and set bad rows aside instead of stopping.")
@click.option("--rejects", "rejects_file", type=file_path(),
              help="Where rejected rows go, with reasons (.csv or .parquet).")
@click.option("--chunk-receipts", type=click.IntRange(1), default=None,
              help="Receipts committed per transaction (default 200,000).")
@click.option("--part-rows", type=click.IntRange(1000), default=None,
              help="Input rows validated at once; bounds memory (default 1,000,000, about 0.5 GB).")
@click.option("--allow-future", is_flag=True,
              help="Take receipts dated more than 24 hours ahead of now (synthetic data only).")
@quiet_option()
def load(ledger_file, receipt_files, customers_file, skip_bad, rejects_file, chunk_receipts, part_rows,
         allow_future, quiet) -> None:
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
                             part_rows=part_rows or PART_ROWS, allow_future=allow_future, progress=not quiet)
    rate = summary.receipts_loaded / summary.seconds if summary.seconds else 0.0
    click.echo(
        f"Loaded {summary.receipts_loaded:,} receipts ({summary.new_customers:,} new customers, "
        f"{summary.points:,} points) in {summary.seconds:.1f} s ({rate:,.0f} receipts/s); skipped "
        f"{summary.duplicates_skipped:,} already loaded; rejected {summary.rejected_rows:,} rows "
        f"({summary.problem_count:,} problem{'s' if summary.problem_count != 1 else ''}: a receipt with a bad row is set aside whole), "
        f"{summary.rejected_files:,} unusable files, {summary.conflicts:,} conflicting, "
        f"{summary.late_receipts:,} late and {summary.future_receipts:,} future-dated receipts."
    )
    if summary.returns_loaded or summary.returns_refused:
        unrecovered = (f", {summary.points_unrecovered:,} of them already spent and not recovered"
                       if summary.points_unrecovered else "")
        click.echo(f"Returns: {summary.returns_loaded:,} of the receipts loaded, taking back "
                   f"{summary.points_taken_back:,} points{unrecovered}; {summary.returns_refused:,} refused.")
    click.echo("Time: " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in summary.stage_seconds.items()))
    if summary.problem_count:
        click.echo(f"Rejected rows and their reasons: {rejects_file}")
    if summary.rejected_files and summary.rejected_files >= len(set(map(str, receipt_files))):
        click.secho("Every file was refused: nothing was loaded.", fg="red", err=True)
        raise click.exceptions.Exit(1)


@cli.command()
@ledger_argument
@customer_argument
@as_of_option("Status for a receipt on this local date (default: today).")
def balance(ledger_file, customer_id, as_of) -> None:
    """Show a customer's points (the sum of their journal), tier and progress to the next tier.

    Example: fidelis balance chain.db 0000123456
    """
    from ..ledger.handle import Ledger

    with Ledger(ledger_file) as ledger:
        standing = core.standing(ledger, customer_id, as_of)
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
@ledger_argument
@customer_argument
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
@ledger_argument
@customer_argument
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
@ledger_argument
@customer_argument
@click.argument("points", type=int)
@click.option("--reason", required=True, help="Why: kept with the journal entry.")
@click.option("--reference", default=None,
              help="An id for this adjustment: running the command again with it changes nothing.")
def adjust(ledger_file, customer_id, points, reason, reference) -> None:
    """Add (or, negative, take) points by hand, with a reason in the journal.

    Example: fidelis adjust chain.db 0000123456 250 --reason "goodwill: delivery late" --reference ticket-4711
    """
    from ..ledger.handle import Ledger

    with Ledger(ledger_file) as ledger:
        balance_now = core.adjust(ledger, customer_id, points, reason, reference=reference)
    click.echo(f"{customer_id}: adjusted by {points:+,} points; {balance_now:,} points now")


@cli.command()
@ledger_argument
@click.argument("receipt_id")
@click.option("--reason", required=True, help="Why: kept with the voided receipt.")
def void(ledger_file, receipt_id, reason) -> None:
    """Take a customer's last receipt out of their history (a receipt dated years ahead).

    Its points are taken back, the receipt is kept apart with the reason, and the customer's
    scoring state is rebuilt from the receipts that remain; its id can be loaded again.

    Example: fidelis void chain.db S003-T4-004734 --reason "year typed as 2062"
    """
    from ..ledger.handle import Ledger
    from ..points.void import void_receipt

    with Ledger(ledger_file) as ledger:
        done = void_receipt(ledger, receipt_id, reason)
    whose = "anonymous" if done.customer_id is None else f"customer {done.customer_id}"
    unrecovered = (f"; {done.points_unrecovered:,} were already spent and not taken back"
                   if done.points_unrecovered else "")
    click.echo(f"Voided {receipt_id} ({whose}): {done.points_taken:,} points taken back{unrecovered}")


@cli.command()
@ledger_argument
@click.option("--allow-future", is_flag=True, help="Do not report receipts dated ahead of now (synthetic data).")
@quiet_option()
def check(ledger_file, allow_future, quiet) -> None:
    """Verify a ledger's invariants; exit status 1 naming what is wrong.

    Balance = Σ journal = Σ points left in lots; each receipt's points = its earn entries;
    replaying every receipt through the kernel gives the stored points and customer state.

    Example: fidelis check chain.db
    """
    from ..jobs.check import check_ledger
    from ..ledger.handle import Ledger

    with Ledger(ledger_file) as ledger:
        problems = check_ledger(ledger, allow_future=allow_future, progress=not quiet)
        counts = ledger_figures.counts(ledger)
    if problems:
        for problem in problems:
            click.secho(problem, fg="red", err=True)
        raise click.exceptions.Exit(1)
    click.secho(f"OK: {counts['receipts']:,} receipts, {counts['customers']:,} customers, "
                f"{counts['journal']:,} journal entries; every invariant holds", fg="green")


@cli.group(context_settings=CONTEXT_SETTINGS)
def export() -> None:
    """Export tables from a ledger."""


@export.command("balances")
@ledger_argument
@output_option("Where to write: .csv or .parquet.")
def export_balances(ledger_file, output) -> None:
    """Write every customer's balance to a file.

    Example: fidelis export balances chain.db -o balances.parquet
    """
    from ..jobs.export import export_balances as export
    from ..ledger.handle import Ledger

    with Ledger(ledger_file) as ledger:
        count = export(ledger, output)
    click.echo(f"Wrote {count:,} balances to {output}")


@cli.group("api-key", context_settings=CONTEXT_SETTINGS)
def api_key() -> None:
    """API keys of the HTTP server: create, list, revoke."""


@api_key.command("create")
@ledger_argument
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
@ledger_argument
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
@ledger_argument
@click.argument("key_id")
def api_key_revoke(ledger_file, key_id) -> None:
    """Revoke a key by its id (the part after ``fid_``); requests with it get 401 at once.

    Example: fidelis api-key revoke chain.db 3f2a9c01d4e7
    """
    from ..ledger.handle import Ledger

    with Ledger(ledger_file) as ledger:
        core.revoke_api_key(ledger, key_id)
    click.echo(f"revoked {key_id}")
