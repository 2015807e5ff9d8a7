"""Golden cases: hand-computed points for every rule family, checked against every engine.

Each ``tests/cases/<name>.toml`` (except the program files it may name) is one case::

    description = "what the case pins and why"
    program_file = "verde_club.toml"   # a program file in tests/cases, or instead
    program = '''[program] … '''       # the program text inline
    customers = [["C1", "1990-06-15"], ["C2", ""]]   # optional: id, birth date ("" = unknown)
    receipts = [
      # receipt customer store ts category qty amount     (one row per line item)
      ["R1", "C1", "S001", "2025-06-07T10:00", "grocery", 1, "10.00"],
    ]
    expected = [
      # receipt tier rate basket visit welcome cap points  (one row per receipt)
      ["R1", "Base", 10, 0, 0, 0, 0, 10],   # the hand arithmetic
    ]
    status_as_of = [["C1", "2026-01-01", "Base"]]   # optional: customer, local date, tier

An empty customer is an anonymous receipt and its expected tier is "". Timestamps without
an offset are the program's local time (PROGRAM.md §1). ``expected`` lists the receipts in
processing order, which the test also checks, so a case states the order it relies on.
"""
from __future__ import annotations

from fidelis.core.engine import reference
from fidelis.core.scores import POINT_COLUMNS
from fidelis.core.engine.engines import score_batch


def test_golden_case(golden_case, engine):
    case = golden_case
    scores = score_batch(case.program, case.batch, case.customers, engine=engine)
    receipt_ids = case.batch.receipt_id.to_pylist()
    assert receipt_ids == [row.receipt_id for row in case.expected], (
        f"case {case.name}: processing order {receipt_ids} differs from the order of `expected`"
    )
    mismatches = []
    for index, row in enumerate(case.expected):
        actual = {"tier": int(scores.tier[index])} | {name: int(getattr(scores, name)[index]) for name in POINT_COLUMNS}
        wanted = {"tier": case.tier_index(row.tier)} | {name: getattr(row, name) for name in POINT_COLUMNS}
        for column in wanted:
            if actual[column] != wanted[column]:
                mismatches.append(
                    f"case {case.name}, receipt {row.receipt_id}: {column} is {actual[column]}, "
                    f"expected {wanted[column]}"
                )
    assert not mismatches, f"{engine} engine:\n" + "\n".join(mismatches)


def test_golden_status_as_of_by_reference(golden_case):
    case = golden_case
    history = reference.ReferenceHistory()
    reference.score_batch(case.program, case.batch, case.customers, history)
    mismatches = [
        f"case {case.name}: status of {check.customer_id} as of {check.local_date} is "
        f"{case.program.tiers[actual].name}, expected {check.tier}"
        for check in case.expected_status
        if (actual := reference.status_as_of(case.program, history, check.customer_id, check.local_date))
        != case.tier_index(check.tier)
    ]
    assert not mismatches, "\n".join(mismatches)
