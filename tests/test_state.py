"""Customer state: the id directory, growth, persistence, and refusals that protect it."""
import numpy as np
import pyarrow as pa
import pytest

from fidelis.core.engine import kernel
from fidelis.core.program.tables import compile_program
from fidelis.core.errors import ScoringError
from fidelis.core.errors import IncompatibleStateError
from fidelis.core.program.model import parse_program
from fidelis.core.state import NEVER, CustomerState

from .conftest import build_customers
from .test_program import MINIMAL


@pytest.fixture
def rolling_program():
    return parse_program(MINIMAL + '[qualification]\nperiod = "rolling_12_months"\nhold = "months"\nhold_months = 2\n'
                         '[[tiers]]\nname = "A"\nthreshold = "0"\n[[tiers]]\nname = "B"\nthreshold = "50"\n')


def test_ids_get_stable_dense_indices_and_null_is_anonymous():
    state = CustomerState(tier_count=1, rolling_months=False, reached_tiers=False, capacity=2)
    first = state.index_of(pa.array(["0007", None, "0003", "0007"]))
    assert first.tolist() == [0, -1, 1, 0]
    second = state.index_of(["0003", "0042", "0001"])
    assert second.tolist() == [1, 2, 3]
    assert state.customer_ids == ["0007", "0003", "0042", "0001"]
    assert state.lookup("0042") == 2 and state.lookup("nobody") is None


@pytest.mark.parametrize("known_unique", [False, True])
def test_a_registered_directory_answers_as_ids_registered_one_by_one(known_unique):
    directory = CustomerState(tier_count=1, rolling_months=False, reached_tiers=False)
    directory.register_directory(["c0", "c1", "c2"], known_unique=known_unique)
    copied = directory.copy()  # a copy made before any lookup answers the same
    for state in (directory, copied):
        assert len(state) == 3 and state.lookup("c2") == 2 and state.lookup("c9") is None
        assert state.index_of(pa.array(["c1", None, "c3", "c0"])).tolist() == [1, -1, 3, 0]
        assert state.customer_ids == ["c0", "c1", "c2", "c3"]
    with pytest.raises(ValueError, match="empty state"):
        directory.register_directory(["c4"], known_unique=known_unique)


def test_a_directory_that_repeats_an_id_is_refused():
    with pytest.raises(ValueError, match="repeats"):
        CustomerState(tier_count=1, rolling_months=False, reached_tiers=False).register_directory(["a", "a"])


def test_growth_keeps_existing_records_and_initialises_new_ones():
    state = CustomerState(tier_count=3, rolling_months=True, reached_tiers=True, capacity=1)
    state.index_of(["A"])
    state.records["qualifying_total"][0] = 123
    state.rolling_totals[0, 5] = 7
    state.index_of([f"C{i}" for i in range(100)])
    assert len(state.records) >= 101
    assert state.records["qualifying_total"][0] == 123 and state.rolling_totals[0, 5] == 7
    assert (state.records["last_instant_us"][1:101] == NEVER).all()
    assert (state.tier_reached_month[1:101] == NEVER).all()


def test_saved_state_restores_exactly(rolling_program, make_batch):
    compiled = compile_program(rolling_program)
    state = kernel.new_state(compiled, build_customers({"C1": "1990-06-15", "C2": None}))
    rows = [("R1", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "60.00"),
            ("R2", "C3", "S1", "2025-07-09T10:00", "grocery", 1, "5.00")]
    kernel.score(make_batch(rows), compiled, state)
    restored = CustomerState.from_bytes(state.to_bytes())
    assert restored.equals(state)
    assert restored.customer_ids == ["C1", "C2", "C3"]
    assert restored.records["birth_month"][0] == 6
    assert restored.rolling_totals[0].sum() == 6000
    assert restored.tier_reached_month[0, 1] == (2025 - 1970) * 12 + 5


def test_state_of_another_programs_rules_is_refused(rolling_program, verde_club, make_batch):
    batch = make_batch([("R1", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "60.00")])
    rolling_state = kernel.new_state(compile_program(rolling_program))
    with pytest.raises(IncompatibleStateError, match="other tiers, period or hold"):
        kernel.score(batch, compile_program(verde_club), rolling_state)


def test_batch_prepared_against_a_larger_state_is_refused(verde_club, make_batch):
    compiled = compile_program(verde_club)
    big = kernel.new_state(compiled)
    big.index_of([f"X{i}" for i in range(10)])
    prepared = kernel.prepare(make_batch([("R1", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "1.00")]), compiled, big)
    with pytest.raises(IncompatibleStateError, match="more customers"):
        kernel.score(prepared, compiled, kernel.new_state(compiled))
    with pytest.raises(IncompatibleStateError, match="another compiled program"):
        kernel.score(prepared, compile_program(verde_club), big)


def test_a_refused_receipt_leaves_the_customers_state_untouched(verde_club, make_batch):
    compiled = compile_program(verde_club)
    state = kernel.new_state(compiled)
    state.index_of(["C1"])
    before = state.records[:1].copy()
    huge = make_batch([("BIG", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "10000000000.01")])
    with pytest.raises(ScoringError):
        kernel.score(huge, compiled, state)
    assert np.array_equal(state.records[:1], before)


def test_status_in_the_past_of_the_state_is_refused(verde_club, make_batch):
    compiled = compile_program(verde_club)
    state = kernel.new_state(compiled)
    kernel.score(make_batch([("R1", "C1", "S1", "2025-06-09T10:00", "grocery", 1, "600.00")]), compiled, state)
    june_2025 = (2025 - 1970) * 12 + 5
    assert kernel.standing_of(compiled, *state.arrays(), june_2025 + 1)[0].tolist() == [1]
    with pytest.raises(ValueError, match="already holds receipts after"):
        kernel.standing_of(compiled, *state.arrays(), june_2025 - 1)
