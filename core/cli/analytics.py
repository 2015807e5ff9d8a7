"""``fidelis report``: what the ledger says about a month, as tables and a chart."""
from __future__ import annotations

from pathlib import Path

import click

from . import cli, ledger_argument


@cli.command()
@ledger_argument
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
