"""Analytics: what the ledger tells about customers and the program — read, never written.

- ``month_report.py``  one month's figures: members, activity, points flows, sales split
- ``plots.py``         the report's charts (matplotlib, Agg)

Reads the ledger and replays through ``points/``; never writes the journal; imports no jobs.
"""
