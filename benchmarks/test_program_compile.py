"""Checking and compiling a program with many promotions: cost grows with what it combines.

A chain adding a promotion a week, each on a category of its own, reaches thousands of
promotions within years (and program versions multiply them). Each round parses, validates
and compiles a program of N category promotions; the tables' size and the peak memory of
one compile (tracemalloc) are recorded beside the time.
"""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from fidelis.core.program.model import parse_program
from fidelis.core.program.tables import compile_program

#: The example program (tests/cases/verde_club.toml), to which the weekly promotions are added.
EXAMPLE = Path(__file__).parents[1] / "tests" / "cases" / "verde_club.toml"


def program_text(promotions: int) -> str:
    return EXAMPLE.read_text() + "\n" + "".join(
        f'[[promotions]]\nname = "week {n}"\nmultiplier = "{1 + (n % 9) / 4}"\ncategories = ["category {n}"]\n'
        for n in range(promotions))


@pytest.mark.parametrize("promotions", [100, 1_000, 3_000])
def test_check_and_compile(benchmark, promotions):
    text = program_text(promotions)
    compiled = benchmark.pedantic(lambda: compile_program(parse_program(text)), rounds=3, iterations=1)
    tracemalloc.start()
    compile_program(parse_program(text))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    benchmark.extra_info.update(promotions=promotions, file_kb=round(len(text) / 1024),
                                rate_entries=int(compiled.rate_numerator.size + compiled.promotion_numerator.size),
                                peak_mb=round(peak / 2**20, 1))
