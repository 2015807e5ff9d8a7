"""``fidelis generate`` and ``fidelis demo``: a synthetic chain to try everything on, and a tour
of what a load of it gives."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import click
import fidelis.core as core

from ..ledger import figures as ledger_figures
from . import cli

receipt_count_option = click.option("--receipts", "receipt_count", type=click.IntRange(1), default=200_000,
                                    show_default=True, help="How many receipts to generate.")
seed_option = click.option("--seed", type=int, default=7, show_default=True,
                           help="The same seed always gives the same chain.")


@cli.command()
@receipt_count_option
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for receipts, customers and program.toml.")
@seed_option
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


@cli.command()
@receipt_count_option
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("fidelis-demo"), show_default=True, help="Where the demo files and ledger go.")
@seed_option
def demo(receipt_count, directory, seed) -> None:
    """Generate a synthetic chain, load it into a ledger, and show what came out.

    Example: fidelis demo --receipts 100000
    """
    from ..jobs.load import load_files
    from ..ledger.handle import Ledger
    from ..program.model import load_program
    from ..ledger.chunk_files import directory_of
    from ..synthetic import generate_chain, write_chain

    click.secho(f"Generating a synthetic chain of {receipt_count:,} receipts in {directory}/ …", bold=True)
    started = time.perf_counter()
    paths = write_chain(generate_chain(receipt_count, seed=seed), directory, receipts_format="csv")
    click.echo(f"  done in {time.perf_counter() - started:.1f} s")

    ledger_file = directory / "chain.db"
    for name in ("chain.db", "chain.db-wal", "chain.db-shm"):
        (directory / name).unlink(missing_ok=True)
    shutil.rmtree(directory_of(ledger_file), ignore_errors=True)  # the last demo's chunk files
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
