"""The ``fidelis`` command: every job a chain runs, over the same library functions.

Errors Fidelis raises on purpose (:class:`FidelisError`) are turned into a message and exit
status 1 here, in one place; a user never sees a traceback for bad input. This module holds
the group and the options many commands share; each command group lives in its own module:

    programs.py    program check, score (without a ledger), init
    ledger.py      load, balance, history, redeem, adjust, check, export, api-key
    month_end.py   month-end, expire
    analytics.py   report
    demo.py        generate, demo
    serve.py       serve: the one module of core/ that imports the server

Commands are thin: they parse, call one library function and print its result. Nothing here
may be imported by the rest of core/.
"""
from __future__ import annotations

from importlib.metadata import version as package_version
from pathlib import Path

import click

from ..errors import FidelisError

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


# ---- options shared by several commands ------------------------------------------------------
def file_path(**kwargs) -> click.Path:
    """A path to a file (not a folder), given to the command as a Path."""
    return click.Path(dir_okay=False, path_type=Path, **kwargs)


ledger_argument = click.argument("ledger_file", type=file_path())
program_argument = click.argument("program_file", type=file_path())
receipt_files_argument = click.argument("receipt_files", nargs=-1, required=True, type=file_path())
customers_option = click.option("--customers", "customers_file", type=file_path(),
                                help="Customers file (CSV or Parquet) with birth dates.")


def quiet_option(help: str = "No progress bar."):
    return click.option("--quiet", "-q", is_flag=True, help=help)


def as_of_option(help: str):
    """``--as-of YYYY-MM-DD``, given to the command as a date (None when absent: today)."""
    return click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), default=None, help=help,
                        callback=lambda _ctx, _param, value: value.date() if value else None)


def output_option(help: str):
    return click.option("-o", "--output", required=True, type=file_path(), help=help)


engine_option = click.option(
    "--engine",
    type=click.Choice(["compiled", "reference"]),
    default="compiled",
    show_default=True,
    help="compiled: the fast kernel; reference: the readable implementation of PROGRAM.md.",
)


def main() -> None:
    cli(prog_name="fidelis")


# The command modules register themselves on ``cli``; they import the options above, so they
# are imported last.
from . import analytics, demo, ledger, month_end, programs, serve  # noqa: E402,F401
