"""The kernel's C types and state record agree with the numpy dtypes that stand for them."""
import numpy as np
import pytest

from fidelis.core.engine import _kernel, partition
from fidelis.core.program.tables import BASIS_CODES, HOLD_CODES, PERIOD_CODES, ROUNDING_CODES
from fidelis.core.state import CUSTOMER_STATE_DTYPE, KERNEL_DTYPES, NEVER


@pytest.mark.parametrize("name", sorted(KERNEL_DTYPES))
def test_unit_type_width_matches_numpy_dtype(name):
    assert _kernel.type_sizes()[name] == KERNEL_DTYPES[name].itemsize


def test_customer_state_record_layout_matches_dtype():
    layout = _kernel.customer_state_layout()
    assert layout.pop("itemsize") == CUSTOMER_STATE_DTYPE.itemsize
    assert layout == {name: CUSTOMER_STATE_DTYPE.fields[name][1] for name in CUSTOMER_STATE_DTYPE.names}


def test_customer_state_record_is_compact():
    assert CUSTOMER_STATE_DTYPE.itemsize <= 48


def test_never_is_smallest_int32():
    assert NEVER == np.iinfo(np.int32).min


#: The program file's words and the kernel enum members they compile to.
KERNEL_MEMBER = {
    "floor": "FLOOR", "half_up": "HALF_UP", "half_even": "HALF_EVEN",
    "spend": "SPEND", "visits": "VISITS", "points": "POINTS",
    "calendar_year": "CALENDAR_YEAR", "rolling_12_months": "ROLLING_12_MONTHS",
    "none": "HOLD_NONE", "next_year": "HOLD_NEXT_YEAR", "months": "HOLD_MONTHS",
}


@pytest.mark.parametrize(
    "codes, enum",
    [
        (ROUNDING_CODES, _kernel.Rounding),
        (BASIS_CODES, _kernel.Basis),
        (PERIOD_CODES, _kernel.Period),
        (HOLD_CODES, _kernel.Hold),
    ],
)
def test_compiled_codes_match_kernel_enums(codes, enum):
    assert len(codes) == len(enum)
    for word, code in codes.items():
        assert enum[KERNEL_MEMBER[word]] == code


def test_return_row_layout_matches_dtype():
    from fidelis.core.engine.return_arrays import RETURN_ROW_DTYPE

    layout = _kernel.return_row_layout()
    assert layout.pop("itemsize") == RETURN_ROW_DTYPE.itemsize
    assert layout == {name: RETURN_ROW_DTYPE.fields[name][1] for name in RETURN_ROW_DTYPE.names}


def test_the_customer_state_record_is_48_bytes_as_documented():
    # README and _types.pxd say 48; the prefetch in the kernel assumes at most two cache lines
    from fidelis.core.state import CUSTOMER_STATE_DTYPE

    assert CUSTOMER_STATE_DTYPE.itemsize == 48


def test_the_partition_rule_is_the_kernels():
    # engine/partition.py splits customers as the kernel's threads do, by the same block size
    assert _kernel.Partitioning.PARTITION_BLOCK_BITS == partition.PARTITION_BLOCK_BITS
