"""Type stub of the compiled kernel (core/engine/_kernel.pyx)."""
from enum import IntEnum
from typing import Any

import numpy as np

class KernelStatus(IntEnum):
    OK = 0
    AMOUNT_OUT_OF_RANGE = 1
    POINTS_OUT_OF_RANGE = 2
    TOTAL_OUT_OF_RANGE = 3
    OUT_OF_ORDER = 4

class Rounding(IntEnum):
    FLOOR = 0
    HALF_UP = 1
    HALF_EVEN = 2

class Basis(IntEnum):
    SPEND = 0
    VISITS = 1
    POINTS = 2

class Period(IntEnum):
    CALENDAR_YEAR = 0
    ROLLING_12_MONTHS = 1

class Hold(IntEnum):
    HOLD_NONE = 0
    HOLD_NEXT_YEAR = 1
    HOLD_MONTHS = 2

def score_receipts(
    compiled: Any,
    customer_index: np.ndarray,
    store_code: np.ndarray,
    store_class_of_code: np.ndarray,
    instant_us: np.ndarray,
    local_day: np.ndarray,
    local_minute: np.ndarray,
    local_month: np.ndarray,
    line_offsets: np.ndarray,
    line_category_code: np.ndarray,
    category_class_of_code: np.ndarray,
    line_qty: np.ndarray,
    line_amount_minor: np.ndarray,
    return_index: np.ndarray,
    returns: np.ndarray,
    return_line_category_code: np.ndarray,
    return_line_qty: np.ndarray,
    return_line_amount_minor: np.ndarray,
    states: np.ndarray,
    rolling_totals: np.ndarray,
    tier_reached_month: np.ndarray,
    out_tier: np.ndarray,
    out_rate_points: np.ndarray,
    out_basket_points: np.ndarray,
    out_visit_points: np.ndarray,
    out_welcome_points: np.ndarray,
    out_cap_points: np.ndarray,
    out_points: np.ndarray,
    out_visit_rank: np.ndarray,
    out_earned_before_today: np.ndarray,
    out_birthday: np.ndarray,
    part: int = 0,
    part_count: int = 1,
    receipt_start: int = 0,
    receipt_stop: int = -1,
) -> tuple[int, int]: ...
def standing_as_of(
    compiled: Any,
    states: np.ndarray,
    rolling_totals: np.ndarray,
    tier_reached_month: np.ndarray,
    month: int,
    out_tier: np.ndarray,
    out_qualifying_total: np.ndarray,
) -> None: ...
def customer_state_layout() -> dict[str, int]: ...
def return_row_layout() -> dict[str, int]: ...
def type_sizes() -> dict[str, int]: ...
