"""The compiled kernel agrees with the reference, and its state carries across batches exactly."""
import datetime as dt

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fidelis.core.engine import _kernel, kernel, reference
from fidelis.core.engine.partition import PARTITION_BLOCK_BITS, customer_partition, partition
from fidelis.core.program.tables import compile_program
from fidelis.core.errors import ScoringError
from fidelis.core.program.model import parse_program
from fidelis.core.scores import Scores
from fidelis.core.engine.engines import score_batch
from fidelis.core.state import CustomerState

from .strategies import histories, histories_with_returns

equivalence = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def describe(program, rows, receipt_ids, compiled: Scores, expected: Scores) -> str:
    differing = [
        i for i in range(len(expected))
        if any(getattr(compiled, name)[i] != getattr(expected, name)[i] for name in ("tier", "points", "rate_points",
                                                                                       "basket_points", "visit_points",
                                                                                       "welcome_points", "cap_points"))
    ]
    first = differing[0]
    return (
        f"receipt {receipt_ids[first]}: kernel {compiled[first:first + 1]} != reference {expected[first:first + 1]}\n"
        f"program:\n{program.text}\nrows: {rows}"
    )


@pytest.mark.parametrize("drawn", [histories, histories_with_returns], ids=["sales", "with-returns"])
@equivalence
@given(data=st.data())
def test_kernel_equals_reference_on_random_programs_and_receipts(drawn, data):
    program, rows, customers, batch = data.draw(drawn())
    expected = reference.score_batch(program, batch, customers)
    compiled = score_batch(program, batch, customers, engine="compiled")
    assert compiled.equals(expected), describe(program, rows, batch.receipt_id.to_pylist(), compiled, expected)
    assert (compiled.points[batch.is_return] <= 0).all()  # a return only takes back


@equivalence
@given(data=st.data())
def test_chunked_threaded_and_restored_state_equal_one_pass(data):
    program, _, customers, batch = data.draw(histories())
    compiled = compile_program(program)
    whole = kernel.score(batch, compiled, kernel.new_state(compiled, customers))

    cuts = sorted(data.draw(st.lists(st.integers(0, len(batch)), max_size=4)))
    threads = data.draw(st.sampled_from([1, 2]))
    state = kernel.new_state(compiled, customers)
    parts = []
    for start, stop in zip([0, *cuts], [*cuts, len(batch)]):
        parts.append(kernel.score(batch.slice(start, stop), compiled, state, threads=threads))
        state = CustomerState.from_bytes(state.to_bytes())  # as if the process restarted here
    assert Scores.concatenate(parts).equals(whole)


@pytest.mark.parametrize("drawn", [histories, histories_with_returns], ids=["sales", "with-returns"])
@equivalence
@given(data=st.data())
def test_two_threads_equal_one(drawn, data):
    program, _, _, batch = data.draw(drawn())
    compiled = compile_program(program)
    one = kernel.score(batch, compiled, kernel.new_state(compiled))
    two = kernel.score(batch, compiled, kernel.new_state(compiled), threads=2)
    assert two.equals(one)


@equivalence
@given(data=st.data())
def test_status_as_of_equals_reference(data):
    program, _, _, batch = data.draw(histories())
    compiled = compile_program(program)
    state = kernel.new_state(compiled)
    kernel.score(batch, compiled, state)
    history = reference.ReferenceHistory()
    reference.score_batch(program, batch, None, history)

    # the first day of a month after the whole history, as a month-end close would ask
    month = int(batch.local_month.max()) + data.draw(st.integers(1, 26))
    as_of = dt.date(1970 + month // 12, month % 12 + 1, 1)
    statuses = kernel.standing_of(compiled, *state.arrays(), month)[0]
    for customer_id in state.customer_ids:
        expected = reference.status_as_of(program, history, customer_id, as_of)
        assert statuses[state.lookup(customer_id)] == expected, (customer_id, as_of)


def test_reused_output_buffers_are_overwritten(verde_club, make_batch):
    rows = [("A", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "10.00"),
            ("B", None, "S1", "2025-06-09T11:00", "grocery", 1, "10.00")]
    batch = make_batch(rows)
    compiled = compile_program(verde_club)
    out = Scores.empty(5)
    for array in (out.points, out.rate_points):
        array[:] = 999
    result = kernel.score(batch, compiled, kernel.new_state(compiled), out=out)
    assert result.points.tolist() == [110, 0]
    assert result.tier.tolist() == [0, -1]
    with pytest.raises(ValueError, match="hold 1 receipts, the batch has 2"):
        kernel.score(batch, compiled, kernel.new_state(compiled), out=Scores.empty(1))


def test_receipt_older_than_the_customers_history_is_refused(verde_club, make_batch):
    compiled = compile_program(verde_club)
    state = kernel.new_state(compiled)
    kernel.score(make_batch([("A", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "10.00")]), compiled, state)
    late = make_batch([("B", "C1", "S1", "2025-06-08T10:00", "grocery", 1, "10.00")])
    with pytest.raises(ScoringError, match="receipt 'B': the receipt is older"):
        kernel.score(late, compiled, state)


@pytest.mark.parametrize("engine", ["compiled", "reference"])
def test_amount_beyond_the_exact_bound_is_refused_by_both_engines(verde_club, make_batch, engine):
    huge = make_batch([("BIG", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "10000000000.01")])
    with pytest.raises(ScoringError, match="receipt 'BIG': the eligible amount exceeds"):
        score_batch(verde_club, huge, engine=engine)


def test_wide_arithmetic_is_exact_at_the_bound(make_batch):
    """A program whose numerators need 128-bit sums, scored at the largest allowed amount."""
    program = parse_program(
        '[program]\nname = "W"\ncurrency = "EUR"\nminor_units = 2\ntimezone = "UTC"\n'
        '[earning]\npoints_per_unit = "1.000001"\nrounding = "half_even"\n'
        '[[tiers]]\nname = "A"\nthreshold = "0"\nmultiplier = "1.000003"\n'
    )
    compiled = compile_program(program)
    assert compiled.wide
    rows = [("W1", "C1", "S1", "2025-01-01T10:00:00", "x", 1, "9999999999.99")]
    batch = make_batch(rows, "UTC")
    scores = kernel.score(batch, compiled, kernel.new_state(compiled))
    expected = reference.score_batch(program, batch)
    assert scores.equals(expected)
    assert int(scores.rate_points[0]) == round(999999999999 * 1000001 * 1000003 // 10**12 // 100)


def test_threads_split_customers_without_changing_results(verde_club, make_batch):
    rows = [(f"R{i:03d}", f"C{i % 7}", "S1", f"2025-06-{1 + i % 28:02d}T{8 + i % 12:02d}:00", "grocery", 1 + i % 3, "12.50")
            for i in range(200)]
    batch = make_batch(rows)
    compiled = compile_program(verde_club)
    one = kernel.score(batch, compiled, kernel.new_state(compiled))
    for threads in (2, 3, 8):
        assert kernel.score(batch, compiled, kernel.new_state(compiled), threads=threads).equals(one)
    assert np.all(one.points > 0)


@equivalence
@given(data=st.data(), part_count=st.integers(1, 3))
def test_customer_partitions_scored_concurrently_equal_one_pass(data, part_count):
    program, _, customers, batch = data.draw(histories())
    compiled = compile_program(program)
    state = kernel.new_state(compiled, customers)
    whole = kernel.score(batch, compiled, state.copy())
    prepared = kernel.prepare(batch, compiled, state)
    parts = partition(prepared, part_count)
    assert sum(len(part.batch) for part in parts) == len(batch)
    by_receipt = {}
    for part, scores in zip(parts, kernel.score_partitions(parts, compiled, state)):
        for position, receipt_id in enumerate(part.batch.receipt_id.to_pylist()):
            by_receipt[receipt_id] = scores[position:position + 1]
    assert Scores.concatenate([by_receipt[r] for r in batch.receipt_id.to_pylist()]).equals(whole)


@pytest.mark.parametrize("part_count", [2, 3, 5])
def test_the_kernel_scores_in_a_part_exactly_the_customers_partition_gives_it(verde_club, make_batch, part_count):
    """The kernel's threads and the partition module split customers by one rule, so a load's
    scratch partitions, Dask partitions and kernel threads never disagree on who goes where."""
    rows = [(f"R{i:03d}", None if i % 9 == 0 else f"C{i % 23}", "S1", f"2025-06-{1 + i % 28:02d}T10:00", "grocery",
             1, "12.50") for i in range(300)]
    compiled = compile_program(verde_club)
    state = kernel.new_state(compiled)
    prepared = kernel.prepare(make_batch(rows), compiled, state)
    part_of = customer_partition(prepared.customer_index, part_count)
    for part in range(part_count):
        out = Scores.empty(len(prepared.batch))
        out.tier[:] = -2  # never written by the kernel: marks the receipts this part left alone
        status, _ = _kernel.score_receipts(*kernel.kernel_arguments(prepared, compiled, state, out),
                                           part, part_count)
        assert status == _kernel.KernelStatus.OK
        np.testing.assert_array_equal(out.tier != -2, part_of == part)
    assert set(np.unique(part_of[prepared.customer_index >= 0])) == set(range(part_count))
    assert np.all(part_of[prepared.customer_index < 0] == 0)


def test_partitions_own_blocks_of_consecutive_customers():
    index = np.arange(24)
    np.testing.assert_array_equal(customer_partition(index, 3), (index // 2 ** PARTITION_BLOCK_BITS) % 3)
    np.testing.assert_array_equal(customer_partition(np.array([-1, -1]), 3), [0, 0])
    with pytest.raises(ValueError, match="part_count"):
        customer_partition(index, 0)
