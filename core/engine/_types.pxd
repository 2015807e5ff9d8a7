# Shared C types of the compiled kernels, each with its unit.
#
# tests/test_types.py checks every type and the customer state record against the numpy
# dtypes in fidelis.core.state that stand for them, so Python and C never disagree on a
# width or a field offset.
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint64_t

ctypedef int64_t amount_minor_t     # money in minor currency units (cents, bani)
ctypedef int64_t points_t           # loyalty points
ctypedef int64_t measure_t          # qualification measure: minor units (spend), receipts (visits) or points
ctypedef int64_t instant_us_t       # an instant, microseconds since 1970-01-01T00:00Z
ctypedef int32_t customer_index_t   # dense internal customer index; -1 = anonymous receipt
ctypedef int32_t day_t              # local date as days since 1970-01-01
ctypedef int32_t month_t            # local month as (year - 1970) * 12 + (month - 1)
ctypedef int16_t minute_t           # minutes since local midnight, 0..1439
ctypedef int8_t tier_index_t        # index into the program's tiers; -1 = no tier (anonymous)

# "Never happened": the smallest int32, so any real day or month compares greater.
cdef enum:
    NEVER = -2147483648

# Flag bits of customer_state_t.flags
cdef enum:
    WELCOMED = 1                    # the customer's first sale receipt has been scored

# One customer's scoring state: everything the rules need from the customer's past.
# One compact record per customer (48 bytes) so scoring a receipt touches at most two cache lines.
# Programs with a rolling 12-month period or a months hold keep two more per-customer
# arrays beside it (see fidelis.core.state.CustomerState).
ctypedef struct customer_state_t:
    measure_t qualifying_total      # measure summed over the local calendar year of last_visit_month
    measure_t previous_year_total   # measure summed over the calendar year before that one
    points_t day_earned_points      # points earned on last_visit_day, after caps, without welcome points
    instant_us_t last_instant_us    # instant of the last sale receipt; NEVER if none
    day_t last_visit_day            # local day of the last sale receipt; NEVER if none
    month_t last_visit_month        # local month of the last sale receipt; NEVER if none
    int32_t month_visit_count       # sale receipts in last_visit_month
    int8_t birth_month              # 1..12; 0 = unknown
    uint8_t flags                   # WELCOMED
    int16_t reserved                # always 0: names the padding, so every stored byte is defined

# One return, as the kernel re-scores it (PROGRAM.md §1 returns; fidelis.core.engine.return_arrays.RETURN_ROW_DTYPE).
# The original receipt is re-scored twice in its original context: with the lines left before
# this return and with the lines left after it; the difference is what the return claws back.
ctypedef struct return_row_t:
    int64_t original_position       # batch index of the original receipt; -1 = context below
    int64_t before_start            # lines left before this return: [before_start, after_start)
    int64_t after_start             # lines left after it: [after_start, after_end)
    int64_t after_end               #   (indices into the return line arrays)
    points_t context_earned_before_today  # the original's context, when it is not in the batch
    int32_t original_store_class
    day_t original_day
    month_t original_month
    int32_t context_visit_rank
    minute_t original_minute
    tier_index_t context_tier
    int8_t context_birthday
    int32_t reserved                # always 0
