#!/usr/bin/env python3
"""Cron-friendly points expiry: `fidelis expire` with exit codes a scheduler can act on.

    scripts/expire_points.py LEDGER [--as-of DATE] [--upcoming FILE] [-q]

Points expire at the close of each month, so this closes every month that has ended (the
same close as month-end: expiry, status, tier moves; never twice) and can write the
customers whose points the next close will expire, for reminder campaigns.

Exit status: 0 done (running it again expires nothing more), 1 a ledger problem (the message
says which), 2 wrong arguments.
"""
import sys

from fidelis.core import cli

if __name__ == "__main__":
    sys.exit(cli(["expire", *sys.argv[1:]], prog_name="expire_points.py"))
