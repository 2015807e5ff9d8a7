#!/usr/bin/env python3
"""Cron-friendly month-end: `fidelis month-end` with exit codes a scheduler can act on.

    scripts/month_end.py LEDGER [--as-of DATE] [-q]

Exit status: 0 every completed month is closed (running it again closes nothing more), 1 a
ledger problem (the message says which), 2 wrong arguments. Schedule it daily or on the 1st:
it closes whatever months have ended and were not closed yet.
"""
import sys

from fidelis.core import cli

if __name__ == "__main__":
    sys.exit(cli(["month-end", *sys.argv[1:]], prog_name="month_end.py"))
