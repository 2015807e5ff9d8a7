"""Programs: the rules a chain writes in TOML, validated, and flattened for the kernel.

- ``model.py``   TOML → :class:`Program` (every rule of PROGRAM.md checked, all issues at once)
- ``tables.py``  Program → the flat integer tables the engines index (:class:`ProgramTables`)

May import only the vocabulary modules at the top of ``fidelis.core``.
"""
from .model import (
    MAX_POINTS_PER_RECEIPT,
    MAX_RECEIPT_AMOUNT_MINOR,
    WEEKDAYS,
    Program,
    Promotion,
    Tier,
    combined_rates,
    load_program,
    parse_program,
)

__all__ = [
    "MAX_POINTS_PER_RECEIPT",
    "MAX_RECEIPT_AMOUNT_MINOR",
    "WEEKDAYS",
    "Program",
    "Promotion",
    "Tier",
    "combined_rates",
    "load_program",
    "parse_program",
]
