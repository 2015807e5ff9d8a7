"""Compiling a program into the kernel's tables."""
import numpy as np

from fidelis.core.program.tables import compile_program
from fidelis.core.localtime import day_number
from fidelis.core.program.model import MAX_DECIMAL_VALUE, MAX_PROGRAM_POINTS, parse_program

from .test_program import MINIMAL


def test_unnamed_categories_and_stores_map_to_class_zero(verde_club):
    compiled = compile_program(verde_club)
    classes = compiled.category_classes(["grocery", "own_brand", "tobacco", "lottery"])
    assert classes[0] == 0
    assert [compiled.category_class_names[c] for c in classes[1:]] == ["own_brand", "tobacco", "lottery"]
    assert compiled.category_excluded[classes].tolist() == [0, 0, 1, 1]
    assert compiled.store_classes(["S001"]).tolist() == [0]


def test_promotions_are_split_into_date_segments_largest_first():
    program = parse_program(MINIMAL + (
        '[[promotions]]\nname = "June"\nmultiplier = "2"\nstart = 2025-06-01\nend = 2025-06-30\n'
        '[[promotions]]\nname = "Always"\nmultiplier = "1.5"\n'
        '[[promotions]]\nname = "Mid June on"\nmultiplier = "3"\nstart = 2025-06-15\n'
    ))
    compiled = compile_program(program)
    assert compiled.segment_breakpoint[: compiled.breakpoint_count].tolist() == [
        day_number(program.promotions[0].start), day_number(program.promotions[2].start),
        day_number(program.promotions[0].end) + 1,
    ]
    names = [program.promotions[level - 1].name for level in compiled.promotion_level[: compiled.promotion_count]]
    assert names == ["Mid June on", "June", "Always"]  # kernel order: largest multiplier first
    offsets = compiled.segment_offsets
    members = [[names[p] for p in compiled.segment_promotions[offsets[s]:offsets[s + 1]]] for s in range(4)]
    assert members == [["Always"], ["June", "Always"], ["Mid June on", "June", "Always"], ["Mid June on", "Always"]]


def test_the_largest_values_validation_accepts_still_compile():
    big = str(MAX_DECIMAL_VALUE)
    program = parse_program(MINIMAL + (
        f'welcome_points = {MAX_PROGRAM_POINTS}\n'
        f'[[tiers]]\nname = "A"\nthreshold = "0"\n[[tiers]]\nname = "B"\nthreshold = "{big}"\n'
        f'[[basket_bonuses]]\nmin_items = 1000000000\nmin_amount = "{big}"\npoints = {MAX_PROGRAM_POINTS}\n'
        f'[[visit_bonuses]]\nnth = 1000000\npoints = 1\n'
        f'[[promotions]]\nname = "P"\nmultiplier = "2"\nmin_basket = "{big}"\n'
        f'[caps]\nper_receipt = {MAX_PROGRAM_POINTS}\n'
    ))
    compiled = compile_program(program)
    assert compiled.tier_threshold.tolist() == [0, MAX_DECIMAL_VALUE * 100]
    assert compiled.basket_min_amount.dtype == np.int64
