#!/usr/bin/env python3
"""Cron-friendly bulk load: `fidelis load` with exit codes a scheduler can act on.

    scripts/bulk_load.py LEDGER FILES... [--customers FILE] [--skip-bad] [--rejects FILE] [-q]

Exit status: 0 loaded (rejected rows, if any, are in the rejects file), 1 nothing loaded
because of bad input or a ledger problem (the message says which), 2 wrong arguments.
Running it again after a crash or by mistake is safe: receipts already loaded are skipped.
"""
import sys

from fidelis.core import cli

if __name__ == "__main__":
    sys.exit(cli(["load", *sys.argv[1:]], prog_name="bulk_load.py"))
