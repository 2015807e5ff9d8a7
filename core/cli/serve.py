"""``fidelis serve``: the HTTP API for tills and apps. The one module of core/ that imports
the server (and only when the command runs, so the rest of the CLI starts without Flask)."""
from __future__ import annotations

import click

from . import cli, file_path


@cli.command()
@click.argument("ledger_file", type=file_path(exists=True))
@click.option("--bind", default="127.0.0.1:8000", show_default=True, help="HOST:PORT to listen on.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (about one per core).")
@click.option("--threads", default=16, show_default=True, type=click.IntRange(1, 64), help="Threads per worker.")
@click.option("--access-log", is_flag=True,
              help="Log each request's method, path, status and time to stdout (never query strings or headers).")
@click.option("--read-timeout", "read_seconds", default=10.0, show_default=True, type=click.FloatRange(0.1, 600),
              help="Seconds a client has to send one whole request; slower ones get 408 and are disconnected.")
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
def serve(ledger_file, bind, workers, threads, access_log, read_seconds, dev) -> None:
    """Serve the HTTP API (balance, history, accrual, redemption, returns) for a ledger.

    Every route but /v1/health and /openapi.json needs a key from `fidelis api-key create`.

    Example: fidelis serve chain.db --bind 0.0.0.0:8000 --workers 2
    """
    from fidelis.server.serve import serve as run

    run(str(ledger_file), bind=bind, workers=workers, threads=threads, access_log=access_log,
        read_seconds=read_seconds, dev=dev)
