"""``fidelis month-end`` and ``fidelis expire``: closing months (expiry, status, tier moves)
and replaying a close to prove it."""
from __future__ import annotations

import click

from . import as_of_option, cli, file_path, ledger_argument, quiet_option


@cli.command("month-end")
@ledger_argument
@as_of_option("Close the months that ended before this local date (default: today).")
@click.option("--replay", "replay_month", metavar="YYYY-MM", default=None,
              help="Recompute a closed month from the journal and receipts; exit 1 naming what differs.")
@quiet_option()
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
        closes = close_months(ledger, last_completed_month(timezone, as_of), progress=not quiet)
    if not closes:
        click.echo("Nothing to close: every completed month is closed.")
    for close in closes:
        click.echo(f"{close.label}: {close.expired_points:,} points expired ({close.customers_expired:,} customers), "
                   f"{close.movements:,} tier movements")


@cli.command()
@ledger_argument
@as_of_option("Expire what is due in the months that ended before this local date (default: today).")
@click.option("--upcoming", "upcoming_file", type=file_path(), default=None,
              help="Write the customers whose points the next close will expire (CSV or Parquet).")
@quiet_option()
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
        closes = close_months(ledger, last_completed_month(timezone, as_of), progress=not quiet)
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
