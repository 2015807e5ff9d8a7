"""The compiled scoring kernel: PROGRAM.md §3–§4 over a columnar batch in one pass.

Invariants (the Python wrapper in kernel.py establishes them; the kernel trusts them):
- receipts are in processing order (instant, then receipt id); each customer's receipts are
  therefore in order, and a receipt older (by instant) than the customer's last one stops
  the kernel with OUT_OF_ORDER instead of rewriting history;
- local days and months are ≥ 0 (the readers accept no local date before 1970);
- every index (customer, store class, category class) is within its table;
- all arithmetic is exact: line amounts and a receipt's eligible amount are at most
  the program's amount bound (10^12, fidelis.core.program.MAX_RECEIPT_AMOUNT_MINOR), rate
  numerators and the common denominator at most 2^62 (program validation), so
  Σ amount × numerator fits int64 when the program's largest numerator allows it
  (``wide = False``) and __int128 otherwise; rate points per receipt are at most the points
  bound and running totals are overflow-checked. Anything beyond a bound returns a status
  code, before the customer's state is touched; nothing wraps.
- with ``part_count > 1`` each call scores only customers with
  ``(index >> PARTITION_BLOCK_BITS) % part_count == part`` (partition.customer_partition);
  calls on different parts touch disjoint state and output slots, so they run concurrently
  without locks (anonymous receipts belong to part 0).
"""
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint64_t, INT64_MAX
from libc.stdlib cimport malloc, free

import numpy

from _types cimport (
    amount_minor_t, points_t, measure_t, instant_us_t, customer_index_t, day_t, month_t, minute_t,
    tier_index_t, customer_state_t, return_row_t, NEVER, WELCOMED,
)

cdef extern from *:
    """
    typedef __int128 fidelis_wide_t;
    #define FIDELIS_PREFETCH(address) __builtin_prefetch((const void *)(address), 1, 1)
    static inline int fidelis_add_overflows(long long a, long long b, long long *result) {
        return __builtin_add_overflow(a, b, result);
    }
    """
    ctypedef long long wide_t "fidelis_wide_t"
    void prefetch "FIDELIS_PREFETCH"(const void *address) noexcept nogil
    bint add_overflows "fidelis_add_overflows"(long long a, long long b, long long *result) noexcept nogil


cpdef enum KernelStatus:
    OK = 0
    AMOUNT_OUT_OF_RANGE = 1
    POINTS_OUT_OF_RANGE = 2
    TOTAL_OUT_OF_RANGE = 3
    OUT_OF_ORDER = 4

cpdef enum Rounding:
    FLOOR = 0
    HALF_UP = 1
    HALF_EVEN = 2

cpdef enum Basis:
    SPEND = 0
    VISITS = 1
    POINTS = 2

cpdef enum Period:
    CALENDAR_YEAR = 0
    ROLLING_12_MONTHS = 1

cpdef enum Hold:
    HOLD_NONE = 0
    HOLD_NEXT_YEAR = 1
    HOLD_MONTHS = 2

cdef enum:
    PREFETCH_DISTANCE = 16  # receipts ahead whose customer state is prefetched

cpdef enum Partitioning:
    PARTITION_BLOCK_BITS = 2  # parts own blocks of 4 consecutive customers, so no two parts write
                              # to the same cache line of the state records (engine/partition.py)


ctypedef struct program_tables_t:
    # scalars
    int rounding, basis, period, hold
    int32_t hold_months
    int32_t tier_count, category_class_count, promotion_level_count, store_class_count
    int64_t denominator
    amount_minor_t amount_bound         # largest line or eligible amount scored exactly
    points_t points_bound               # largest rate points of one receipt
    bint wide
    bint promotions_need_basket         # some promotion has a min_basket condition
    int8_t has_birthday
    points_t welcome_points
    points_t cap_per_receipt            # -1 = no cap
    points_t cap_per_customer_day       # -1 = no cap
    # tiers
    const measure_t *tier_threshold     # [tier]
    # rates: rate_numerator[(birthday * T + tier) * K + category_class] × promotion_numerator[level]
    const int64_t *rate_numerator
    const int64_t *promotion_numerator  # [level]; level 0 = no promotion
    const uint8_t *category_excluded    # [category_class]
    # promotions, in order of decreasing multiplier
    int32_t promotion_count
    const int32_t *promotion_level      # [p] -> level in the rate table (1 + program index)
    const uint8_t *promotion_weekdays   # [p] bit d set = weekday d (0 = Monday) allowed
    const minute_t *promotion_minute_start  # [p] inclusive
    const minute_t *promotion_minute_end    # [p] exclusive
    const uint64_t *promotion_tiers     # [p] bit t set = tier t allowed
    const uint8_t *promotion_any_store  # [p]
    const uint8_t *promotion_store      # [p * S + store_class]
    const uint8_t *promotion_category   # [p * K + category_class]
    const amount_minor_t *promotion_min_basket  # [p]
    # promotions active by date: segment s covers days [breakpoint[s-1], breakpoint[s])
    int32_t breakpoint_count
    const day_t *segment_breakpoint
    const int64_t *segment_offsets      # CSR into segment_promotions
    const int32_t *segment_promotions   # promotion indices, decreasing multiplier
    # bonuses
    int32_t basket_bonus_count
    const int64_t *basket_min_items
    const amount_minor_t *basket_min_amount
    const points_t *basket_points
    int32_t visit_bonus_count
    const int32_t *visit_nth
    const points_t *visit_points


ctypedef struct customer_history_t:
    customer_state_t *record
    measure_t *rolling_totals           # 12 slots (month % 12) or NULL
    month_t *tier_reached_month         # [tier] or NULL


ctypedef struct rate_rows_t:
    # per batch: the batch's category codes mapped to rate numerators (see score_receipts)
    int32_t code_count
    const int32_t *category_class_of_code
    const int64_t *base_rows            # [(birthday * T + tier) * code_count + code]
    const int64_t *eligible_by_code     # 1 unless the code's category is excluded
    int64_t *promotion_row              # scratch: a receipt's row when promotions apply
    int32_t *applying                   # scratch: promotions that apply to a receipt
    int32_t segment                     # the last promotion date segment (a search hint)


ctypedef struct receipt_points_t:
    amount_minor_t eligible_amount
    int64_t eligible_items
    points_t rate, basket, visit
    points_t uncapped                   # rate + basket + visit
    points_t earned                     # after caps, without welcome points


# ---------------------------------------------------------------------------------------
# Status (PROGRAM.md §4): a pure function of the customer's state and a local month.

cdef inline tier_index_t tier_of(const program_tables_t *tables, measure_t total) noexcept nogil:
    cdef tier_index_t tier = <tier_index_t>(tables.tier_count - 1)
    while tier > 0 and tables.tier_threshold[tier] > total:
        tier -= 1
    return tier


cdef inline measure_t qualifying_total_at(
    const program_tables_t *tables, const customer_history_t *history, month_t month
) noexcept nogil:
    """Measures of the customer's receipts so far that count towards status in ``month``."""
    cdef const customer_state_t *record = history.record
    cdef month_t last = record.last_visit_month
    cdef measure_t total = 0
    cdef month_t m
    if last == NEVER:
        return 0
    if tables.period == CALENDAR_YEAR:
        return record.qualifying_total if month // 12 == last // 12 else 0
    m = last
    while m > last - 12 and m > month - 12:
        total += history.rolling_totals[m % 12]
        m -= 1
    return total


cdef inline measure_t previous_year_total_at(const customer_state_t *record, month_t month) noexcept nogil:
    cdef month_t last = record.last_visit_month
    if last == NEVER:
        return 0
    if month // 12 == last // 12:
        return record.previous_year_total
    if month // 12 == last // 12 + 1:
        return record.qualifying_total
    return 0


cdef inline tier_index_t status_at(
    const program_tables_t *tables, const customer_history_t *history, month_t month
) noexcept nogil:
    cdef tier_index_t status = tier_of(tables, qualifying_total_at(tables, history, month))
    cdef tier_index_t held, tier
    if tables.hold == HOLD_NEXT_YEAR:
        held = tier_of(tables, previous_year_total_at(history.record, month))
        if held > status:
            status = held
    elif tables.hold == HOLD_MONTHS:
        tier = <tier_index_t>(tables.tier_count - 1)
        while tier > status:
            if history.tier_reached_month[tier] != NEVER and history.tier_reached_month[tier] >= month - tables.hold_months:
                return tier
            tier -= 1
    return status


cdef inline int record_visit(
    const program_tables_t *tables, customer_history_t *history, instant_us_t instant_us,
    day_t day, month_t month, measure_t measure, points_t earned_points
) noexcept nogil:
    """Fold a scored sale receipt into the customer's state; returns a KernelStatus.

    Every sum is computed and overflow-checked before anything is written, so a receipt
    the kernel refuses leaves the customer's state as it was.
    """
    cdef customer_state_t *record = history.record
    cdef month_t last = record.last_visit_month
    cdef month_t m
    cdef tier_index_t reached, tier
    cdef long long qualifying_total, previous_year_total = record.previous_year_total
    cdef long long month_total = 0, day_earned
    # the measure joins this month's (rolling) or this year's (calendar) total
    if tables.period == CALENDAR_YEAR:
        qualifying_total = record.qualifying_total
        if last == NEVER or month // 12 > last // 12 + 1:
            previous_year_total = 0
            qualifying_total = 0
        elif month // 12 == last // 12 + 1:
            previous_year_total = qualifying_total
            qualifying_total = 0
        if add_overflows(qualifying_total, measure, &qualifying_total):
            return TOTAL_OUT_OF_RANGE
    else:
        if last == month:
            month_total = history.rolling_totals[month % 12]
        if add_overflows(month_total, measure, &month_total):
            return TOTAL_OUT_OF_RANGE
    day_earned = earned_points
    if record.last_visit_day == day and add_overflows(record.day_earned_points, earned_points, &day_earned):
        return TOTAL_OUT_OF_RANGE

    # nothing can fail from here on
    if tables.period == CALENDAR_YEAR:
        record.qualifying_total = qualifying_total
        record.previous_year_total = previous_year_total
    else:
        # clear the slots of months without receipts since the last one (a full year: all)
        if last == NEVER or month - last >= 12:
            for m in range(12):
                history.rolling_totals[m] = 0
        else:
            m = last + 1
            while m < month:
                history.rolling_totals[m % 12] = 0
                m += 1
        history.rolling_totals[month % 12] = month_total
    record.month_visit_count = record.month_visit_count + 1 if last == month else 1
    record.day_earned_points = day_earned
    record.last_instant_us = instant_us
    record.last_visit_day = day
    record.last_visit_month = month
    record.flags |= WELCOMED
    # the tier reached with this receipt (never a held status, so holds do not renew themselves)
    if tables.hold == HOLD_MONTHS:
        reached = tier_of(tables, qualifying_total_at(tables, history, month))
        for tier in range(1, reached + 1):
            history.tier_reached_month[tier] = month
    return OK


cdef inline void record_return(
    const program_tables_t *tables, customer_history_t *history, month_t original_month, measure_t returned
) noexcept nogil:
    """Take a return's measure out of the total its original receipt counted in.

    Only totals the state still holds change: the original's year (calendar) or month slot
    (rolling), if still within the state's window; older ones no longer count for status.
    The day's cap usage, visit counts and tiers already reached stand.
    """
    cdef customer_state_t *record = history.record
    cdef month_t last = record.last_visit_month
    if last == NEVER or returned == 0:
        return
    if tables.period == CALENDAR_YEAR:
        if original_month // 12 == last // 12:
            record.qualifying_total -= returned
        elif original_month // 12 == last // 12 - 1:
            record.previous_year_total -= returned
    elif last - 12 < original_month <= last:
        history.rolling_totals[original_month % 12] -= returned


# ---------------------------------------------------------------------------------------
# Points of one receipt (PROGRAM.md §3)

cdef inline int32_t promotion_segment(const program_tables_t *tables, day_t day, int32_t guess) noexcept nogil:
    """Index of the date segment holding ``day`` (number of breakpoints ≤ day)."""
    cdef int32_t low = 0, high = tables.breakpoint_count, middle
    if (guess == 0 or tables.segment_breakpoint[guess - 1] <= day) and (
        guess == tables.breakpoint_count or day < tables.segment_breakpoint[guess]
    ):
        return guess
    while low < high:
        middle = (low + high) >> 1
        if tables.segment_breakpoint[middle] <= day:
            low = middle + 1
        else:
            high = middle
    return low


cdef inline int64_t round_narrow(int64_t numerator, int64_t denominator, int rounding, points_t bound) noexcept nogil:
    """``numerator / denominator`` (both ≥ 0) rounded once by the program's rule; -1 past the bound."""
    cdef int64_t quotient = numerator // denominator
    cdef int64_t remainder = numerator - quotient * denominator
    if rounding == HALF_UP:
        if 2 * remainder >= denominator:
            quotient += 1
    elif rounding == HALF_EVEN:
        if 2 * remainder > denominator or (2 * remainder == denominator and (quotient & 1)):
            quotient += 1
    return quotient if quotient <= bound else -1


cdef inline int64_t round_wide(wide_t numerator, int64_t denominator, int rounding, points_t bound) noexcept nogil:
    """The same rounding for sums that need 128 bits."""
    cdef wide_t quotient = numerator / denominator
    cdef int64_t remainder = <int64_t>(numerator - quotient * denominator)
    if rounding == HALF_UP:
        if 2 * remainder >= denominator:
            quotient += 1
    elif rounding == HALF_EVEN:
        if 2 * remainder > denominator or (2 * remainder == denominator and (quotient & 1)):
            quotient += 1
    return <int64_t>quotient if quotient <= bound else -1


cdef int load_tables(program_tables_t *tables, object compiled) except -1:
    """Point ``tables`` at a CompiledProgram's arrays (which ``compiled`` keeps alive)."""
    cdef const measure_t[::1] tier_threshold = compiled.tier_threshold
    cdef const int64_t[::1] rate_numerator = compiled.rate_numerator
    cdef const int64_t[::1] promotion_numerator = compiled.promotion_numerator
    cdef const uint8_t[::1] category_excluded = compiled.category_excluded
    cdef const int32_t[::1] promotion_level = compiled.promotion_level
    cdef const uint8_t[::1] promotion_weekdays = compiled.promotion_weekdays
    cdef const minute_t[::1] promotion_minute_start = compiled.promotion_minute_start
    cdef const minute_t[::1] promotion_minute_end = compiled.promotion_minute_end
    cdef const uint64_t[::1] promotion_tiers = compiled.promotion_tiers
    cdef const uint8_t[::1] promotion_any_store = compiled.promotion_any_store
    cdef const uint8_t[::1] promotion_store = compiled.promotion_store
    cdef const uint8_t[::1] promotion_category = compiled.promotion_category
    cdef const amount_minor_t[::1] promotion_min_basket = compiled.promotion_min_basket
    cdef const day_t[::1] segment_breakpoint = compiled.segment_breakpoint
    cdef const int64_t[::1] segment_offsets = compiled.segment_offsets
    cdef const int32_t[::1] segment_promotions = compiled.segment_promotions
    cdef const int64_t[::1] basket_min_items = compiled.basket_min_items
    cdef const amount_minor_t[::1] basket_min_amount = compiled.basket_min_amount
    cdef const points_t[::1] basket_points = compiled.basket_points
    cdef const int32_t[::1] visit_nth = compiled.visit_nth
    cdef const points_t[::1] visit_points = compiled.visit_points

    tables[0].rounding = compiled.rounding
    tables[0].basis = compiled.basis
    tables[0].period = compiled.period
    tables[0].hold = compiled.hold
    tables[0].hold_months = compiled.hold_months
    tables[0].tier_count = compiled.tier_count
    tables[0].category_class_count = compiled.category_class_count
    tables[0].promotion_level_count = compiled.promotion_level_count
    tables[0].store_class_count = compiled.store_class_count
    tables[0].denominator = compiled.denominator
    tables[0].amount_bound = compiled.amount_bound_minor
    tables[0].points_bound = compiled.points_bound
    tables[0].wide = compiled.wide
    tables[0].promotions_need_basket = compiled.promotions_need_basket
    tables[0].has_birthday = compiled.has_birthday
    tables[0].welcome_points = compiled.welcome_points
    tables[0].cap_per_receipt = compiled.cap_per_receipt
    tables[0].cap_per_customer_day = compiled.cap_per_customer_day
    tables[0].tier_threshold = &tier_threshold[0]
    tables[0].rate_numerator = &rate_numerator[0]
    tables[0].promotion_numerator = &promotion_numerator[0]
    tables[0].category_excluded = &category_excluded[0]
    tables[0].promotion_count = compiled.promotion_count
    tables[0].promotion_level = &promotion_level[0]
    tables[0].promotion_weekdays = &promotion_weekdays[0]
    tables[0].promotion_minute_start = &promotion_minute_start[0]
    tables[0].promotion_minute_end = &promotion_minute_end[0]
    tables[0].promotion_tiers = &promotion_tiers[0]
    tables[0].promotion_any_store = &promotion_any_store[0]
    tables[0].promotion_store = &promotion_store[0]
    tables[0].promotion_category = &promotion_category[0]
    tables[0].promotion_min_basket = &promotion_min_basket[0]
    tables[0].breakpoint_count = compiled.breakpoint_count
    tables[0].segment_breakpoint = &segment_breakpoint[0]
    tables[0].segment_offsets = &segment_offsets[0]
    tables[0].segment_promotions = &segment_promotions[0]
    tables[0].basket_bonus_count = compiled.basket_bonus_count
    tables[0].basket_min_items = &basket_min_items[0]
    tables[0].basket_min_amount = &basket_min_amount[0]
    tables[0].basket_points = &basket_points[0]
    tables[0].visit_bonus_count = compiled.visit_bonus_count
    tables[0].visit_nth = &visit_nth[0]
    tables[0].visit_points = &visit_points[0]
    return 0


cdef inline int points_in_context(
    const program_tables_t *tables, rate_rows_t *rows, int32_t store_class, day_t day, minute_t minute,
    tier_index_t status, bint birthday, int32_t rank, points_t earned_before_today,
    Py_ssize_t line_start, Py_ssize_t line_end, const int32_t *line_category_code,
    const int32_t *line_qty, const amount_minor_t *line_amount_minor, receipt_points_t *out,
) noexcept nogil:
    """A sale receipt's points (§3 steps 2–4) in an explicitly given context; a KernelStatus.

    Scoring takes the context from the customer's state; re-scoring a receipt for a return
    passes the context it was first scored in. Welcome points are the caller's.
    """
    cdef int32_t T = tables.tier_count, K = tables.category_class_count
    cdef int32_t S = tables.store_class_count
    cdef int32_t code_count = rows.code_count
    cdef int32_t p, i, applying_count, level, category_class, weekday, code
    cdef Py_ssize_t line
    cdef int64_t eligible_items = 0, eligible, narrow_sum = 0
    cdef amount_minor_t eligible_amount = 0, amount
    cdef wide_t wide_sum = 0
    cdef const int64_t *numerators
    cdef const int64_t *row
    cdef points_t rate_points, basket, visit, earned, uncapped, room

    # The rate row maps each category code to its numerator at this status and birthday;
    # promotions that apply to the receipt replace it with a row of their own.
    birthday = birthday and tables.has_birthday
    row = rows.base_rows + (birthday * T + status) * code_count
    if tables.promotions_need_basket:
        # min_basket conditions need the eligible amount before promotions are known
        for line in range(line_start, line_end):
            amount = line_amount_minor[line]
            eligible = rows.eligible_by_code[line_category_code[line]]
            if amount > tables.amount_bound:
                return AMOUNT_OUT_OF_RANGE
            eligible_amount += amount * eligible
            eligible_items += line_qty[line] * eligible
            if eligible_amount > tables.amount_bound:
                return AMOUNT_OUT_OF_RANGE

    # promotions that apply to the receipt, largest multiplier first
    applying_count = 0
    if tables.promotion_count:
        rows.segment = promotion_segment(tables, day, rows.segment)
        weekday = (day + 3) % 7
        if weekday < 0:
            weekday += 7
        for i in range(tables.segment_offsets[rows.segment], tables.segment_offsets[rows.segment + 1]):
            p = tables.segment_promotions[i]
            if (
                (tables.promotion_weekdays[p] >> weekday) & 1
                and tables.promotion_minute_start[p] <= minute < tables.promotion_minute_end[p]
                and (tables.promotion_tiers[p] >> status) & 1
                and eligible_amount >= tables.promotion_min_basket[p]
                and (tables.promotion_any_store[p] or tables.promotion_store[p * S + store_class])
            ):
                rows.applying[applying_count] = p
                applying_count += 1
        if applying_count:
            numerators = tables.rate_numerator + (birthday * T + status) * K
            for code in range(code_count):
                category_class = rows.category_class_of_code[code]
                level = 0
                for i in range(applying_count):
                    p = rows.applying[i]
                    if tables.promotion_category[p * K + category_class]:
                        level = tables.promotion_level[p]
                        break
                rows.promotion_row[code] = (numerators[category_class] * tables.promotion_numerator[level]
                                            * rows.eligible_by_code[code])
            row = rows.promotion_row

    # rate points: Σ amount × numerator over eligible lines, rounded once (the eligible
    # amount and items are summed in the same pass unless min_basket needed them earlier)
    for line in range(line_start, line_end):
        amount = line_amount_minor[line]
        code = line_category_code[line]
        if amount > tables.amount_bound:
            return AMOUNT_OUT_OF_RANGE
        if not tables.promotions_need_basket:
            eligible = rows.eligible_by_code[code]
            eligible_amount += amount * eligible
            eligible_items += line_qty[line] * eligible
            if eligible_amount > tables.amount_bound:
                return AMOUNT_OUT_OF_RANGE
        if tables.wide:
            wide_sum += <wide_t>amount * row[code]
        else:
            narrow_sum += amount * row[code]
    if tables.wide:
        rate_points = round_wide(wide_sum, tables.denominator, tables.rounding, tables.points_bound)
    else:
        rate_points = round_narrow(narrow_sum, tables.denominator, tables.rounding, tables.points_bound)
    if rate_points < 0:
        return POINTS_OUT_OF_RANGE

    # bonuses
    basket = 0
    for i in range(tables.basket_bonus_count):
        if eligible_items >= tables.basket_min_items[i] and eligible_amount >= tables.basket_min_amount[i]:
            basket += tables.basket_points[i]
    visit = 0
    for i in range(tables.visit_bonus_count):
        if tables.visit_nth[i] == rank:
            visit += tables.visit_points[i]

    # caps
    uncapped = rate_points + basket + visit
    earned = uncapped
    if tables.cap_per_receipt >= 0 and earned > tables.cap_per_receipt:
        earned = tables.cap_per_receipt
    if tables.cap_per_customer_day >= 0:
        room = tables.cap_per_customer_day - earned_before_today
        if room < 0:
            room = 0
        if earned > room:
            earned = room

    out.eligible_amount = eligible_amount
    out.eligible_items = eligible_items
    out.rate = rate_points
    out.basket = basket
    out.visit = visit
    out.uncapped = uncapped
    out.earned = earned
    return OK


cdef inline measure_t measure_of(const program_tables_t *tables, const receipt_points_t *points) noexcept nogil:
    if tables.basis == SPEND:
        return points.eligible_amount
    if tables.basis == VISITS:
        return 1
    return points.earned


def score_receipts(
    object compiled,
    const customer_index_t[::1] customer_index,
    const int32_t[::1] store_code,
    const int32_t[::1] store_class_of_code,
    const instant_us_t[::1] instant_us,
    const day_t[::1] local_day,
    const minute_t[::1] local_minute,
    const month_t[::1] local_month,
    const int64_t[::1] line_offsets,
    const int32_t[::1] line_category_code,
    const int32_t[::1] category_class_of_code,
    const int32_t[::1] line_qty,
    const amount_minor_t[::1] line_amount_minor,
    const int32_t[::1] return_index,
    const return_row_t[::1] returns,
    const int32_t[::1] return_line_category_code,
    const int32_t[::1] return_line_qty,
    const amount_minor_t[::1] return_line_amount_minor,
    customer_state_t[::1] states,
    measure_t[:, ::1] rolling_totals,
    month_t[:, ::1] tier_reached_month,
    tier_index_t[::1] out_tier,
    points_t[::1] out_rate_points,
    points_t[::1] out_basket_points,
    points_t[::1] out_visit_points,
    points_t[::1] out_welcome_points,
    points_t[::1] out_cap_points,
    points_t[::1] out_points,
    int32_t[::1] out_visit_rank,
    points_t[::1] out_earned_before_today,
    int8_t[::1] out_birthday,
    int part=0,
    int part_count=1,
    Py_ssize_t receipt_start=0,
    Py_ssize_t receipt_stop=-1,
):
    """Score receipts ``receipt_start:receipt_stop`` in order, updating customer state in place.

    Returns ``(status, receipt)``.

    ``status`` is a KernelStatus; on anything but OK, ``receipt`` is the index of the
    receipt the kernel stopped at (state reflects the receipts before it in this part).
    ``return_index[r]`` is receipt ``r``'s row in ``returns`` or -1 for a sale (a length-1
    array of -1 when the batch has no returns); a return's outputs are the points it takes
    back (≤ 0) rule by rule, and the context columns are its original's.
    """
    cdef program_tables_t tables
    load_tables(&tables, compiled)

    cdef Py_ssize_t receipt_count = customer_index.shape[0]
    if receipt_stop < 0 or receipt_stop > receipt_count:
        receipt_stop = receipt_count
    cdef int status = OK
    cdef Py_ssize_t stopped_at = -1
    # Rate rows by the batch's category codes: one per (birthday, tier) at promotion level 0,
    # plus a scratch row for receipts that promotions apply to. Excluded categories get 0.
    cdef int32_t code_count = category_class_of_code.shape[0]
    cdef int32_t T = tables.tier_count, K = tables.category_class_count
    cdef int32_t code, tier, birthday
    cdef int64_t[::1] base_rows = numpy.zeros(2 * T * code_count, dtype=numpy.int64)
    cdef int64_t[::1] eligible_by_code = numpy.zeros(code_count, dtype=numpy.int64)
    cdef int64_t[::1] promotion_row = numpy.zeros(code_count, dtype=numpy.int64)
    for code in range(code_count):
        eligible_by_code[code] = 0 if tables.category_excluded[category_class_of_code[code]] else 1
        for birthday in range(2):
            for tier in range(T):
                base_rows[(birthday * T + tier) * code_count + code] = eligible_by_code[code] * tables.rate_numerator[
                    (birthday * T + tier) * K + category_class_of_code[code]] * tables.promotion_numerator[0]
    cdef rate_rows_t rows
    rows.code_count = code_count
    rows.category_class_of_code = &category_class_of_code[0]
    rows.base_rows = &base_rows[0]
    rows.eligible_by_code = &eligible_by_code[0]
    rows.promotion_row = &promotion_row[0]
    rows.segment = 0
    rows.applying = <int32_t *> malloc((tables.promotion_count + 1) * sizeof(int32_t))
    if rows.applying == NULL:
        raise MemoryError()
    cdef bint has_returns = return_index.shape[0] == receipt_count and returns.shape[0] > 0
    with nogil:
        status = _score_loop(
            &tables, &rows, receipt_start, receipt_stop, &customer_index[0], &store_code[0], &store_class_of_code[0],
            &instant_us[0], &local_day[0], &local_minute[0], &local_month[0], &line_offsets[0],
            &line_category_code[0], &line_qty[0], &line_amount_minor[0],
            &return_index[0] if has_returns else NULL, &returns[0] if has_returns else NULL,
            &return_line_category_code[0], &return_line_qty[0], &return_line_amount_minor[0],
            &states[0], &rolling_totals[0, 0],
            rolling_totals.shape[1] != 0, &tier_reached_month[0, 0], tier_reached_month.shape[1] != 0,
            &out_tier[0], &out_rate_points[0], &out_basket_points[0], &out_visit_points[0],
            &out_welcome_points[0], &out_cap_points[0], &out_points[0],
            &out_visit_rank[0], &out_earned_before_today[0], &out_birthday[0],
            part, part_count, &stopped_at,
        )
    free(rows.applying)
    return status, stopped_at


cdef int _score_loop(
    const program_tables_t *tables, rate_rows_t *rows, Py_ssize_t receipt_start, Py_ssize_t receipt_stop,
    const customer_index_t *customer_index, const int32_t *store_code, const int32_t *store_class_of_code,
    const instant_us_t *instant_us, const day_t *local_day, const minute_t *local_minute, const month_t *local_month,
    const int64_t *line_offsets, const int32_t *line_category_code,
    const int32_t *line_qty, const amount_minor_t *line_amount_minor,
    const int32_t *return_index, const return_row_t *returns,
    const int32_t *return_line_category_code, const int32_t *return_line_qty,
    const amount_minor_t *return_line_amount_minor,
    customer_state_t *states, measure_t *rolling_totals, bint has_rolling,
    month_t *tier_reached_month, bint has_reached,
    tier_index_t *out_tier, points_t *out_rate_points, points_t *out_basket_points,
    points_t *out_visit_points, points_t *out_welcome_points, points_t *out_cap_points,
    points_t *out_points, int32_t *out_visit_rank, points_t *out_earned_before_today, int8_t *out_birthday,
    int part, int part_count, Py_ssize_t *stopped_at,
) noexcept nogil:
    cdef Py_ssize_t r, ahead, original
    cdef customer_index_t customer, upcoming
    cdef customer_history_t history
    cdef customer_state_t *record
    cdef const return_row_t *returned
    cdef int32_t T = tables.tier_count, rank
    cdef day_t day
    cdef month_t month
    cdef tier_index_t status
    cdef bint birthday
    cdef points_t welcome, earned_before_today
    cdef receipt_points_t points, before, after
    cdef int result

    for r in range(receipt_start, receipt_stop):
        # prefetch the state of a customer a few receipts ahead (random access into a large array)
        ahead = r + PREFETCH_DISTANCE
        if ahead < receipt_stop:
            upcoming = customer_index[ahead]
            if upcoming >= 0:
                # a 48-byte record may straddle two cache lines: fetch both ends
                prefetch(&states[upcoming])
                prefetch(<char *> &states[upcoming] + sizeof(customer_state_t) - 1)
                if has_rolling:
                    prefetch(&rolling_totals[upcoming * 12])
                    prefetch(&rolling_totals[upcoming * 12 + 11])
                if has_reached:
                    prefetch(&tier_reached_month[upcoming * T])

        customer = customer_index[r]
        if customer < 0:
            if part == 0:
                out_tier[r] = -1
                out_rate_points[r] = 0
                out_basket_points[r] = 0
                out_visit_points[r] = 0
                out_welcome_points[r] = 0
                out_cap_points[r] = 0
                out_points[r] = 0
                out_visit_rank[r] = 0
                out_earned_before_today[r] = 0
                out_birthday[r] = 0
            continue
        if part_count > 1 and (customer >> PARTITION_BLOCK_BITS) % part_count != part:
            continue

        record = &states[customer]
        history.record = record
        history.rolling_totals = &rolling_totals[customer * 12] if has_rolling else NULL
        history.tier_reached_month = &tier_reached_month[customer * T] if has_reached else NULL
        if instant_us[r] < record.last_instant_us:
            stopped_at[0] = r
            return OUT_OF_ORDER

        if return_index != NULL and return_index[r] >= 0:
            # A return: re-score the original with the lines left before and after it, in
            # the original's context; the difference is taken back, the returned measure
            # leaves the original's qualifying total.
            returned = &returns[return_index[r]]
            original = returned.original_position
            if original >= 0:
                status = out_tier[original]
                rank = out_visit_rank[original]
                earned_before_today = out_earned_before_today[original]
                birthday = out_birthday[original]
            else:
                status = returned.context_tier
                rank = returned.context_visit_rank
                earned_before_today = returned.context_earned_before_today
                birthday = returned.context_birthday
            result = points_in_context(
                tables, rows, returned.original_store_class, returned.original_day, returned.original_minute,
                status, birthday, rank, earned_before_today, returned.before_start, returned.after_start,
                return_line_category_code, return_line_qty, return_line_amount_minor, &before)
            if result == OK:
                result = points_in_context(
                    tables, rows, returned.original_store_class, returned.original_day, returned.original_minute,
                    status, birthday, rank, earned_before_today, returned.after_start, returned.after_end,
                    return_line_category_code, return_line_qty, return_line_amount_minor, &after)
            if result != OK:
                stopped_at[0] = r
                return result
            record_return(tables, &history, returned.original_month,
                          measure_of(tables, &before) - measure_of(tables, &after))
            record.last_instant_us = instant_us[r]
            out_tier[r] = status
            out_rate_points[r] = after.rate - before.rate
            out_basket_points[r] = after.basket - before.basket
            out_visit_points[r] = after.visit - before.visit
            out_welcome_points[r] = 0
            out_cap_points[r] = (after.earned - after.uncapped) - (before.earned - before.uncapped)
            out_points[r] = after.earned - before.earned
            out_visit_rank[r] = rank
            out_earned_before_today[r] = earned_before_today
            out_birthday[r] = birthday
            continue

        day = local_day[r]
        month = local_month[r]
        status = status_at(tables, &history, month)
        birthday = record.birth_month == month % 12 + 1
        rank = record.month_visit_count + 1 if record.last_visit_month == month else 1
        earned_before_today = record.day_earned_points if record.last_visit_day == day else 0
        result = points_in_context(
            tables, rows, store_class_of_code[store_code[r]], day, local_minute[r], status, birthday, rank,
            earned_before_today, line_offsets[r], line_offsets[r + 1], line_category_code, line_qty,
            line_amount_minor, &points)
        if result != OK:
            stopped_at[0] = r
            return result
        welcome = 0 if record.flags & WELCOMED else tables.welcome_points
        result = record_visit(tables, &history, instant_us[r], day, month, measure_of(tables, &points), points.earned)
        if result != OK:
            stopped_at[0] = r
            return result

        out_tier[r] = status
        out_rate_points[r] = points.rate
        out_basket_points[r] = points.basket
        out_visit_points[r] = points.visit
        out_welcome_points[r] = welcome
        out_cap_points[r] = points.earned - points.uncapped
        out_points[r] = points.earned + welcome
        out_visit_rank[r] = rank
        out_earned_before_today[r] = earned_before_today
        out_birthday[r] = birthday
    return OK


def standing_as_of(
    object compiled,
    const customer_state_t[::1] states,
    const measure_t[:, ::1] rolling_totals,
    const month_t[:, ::1] tier_reached_month,
    month_t month,
    tier_index_t[::1] out_tier,
    measure_t[::1] out_qualifying_total,
):
    """Every customer's status and qualifying total for a receipt in local ``month``.

    PROGRAM.md §4, "status as of"; the qualifying total is what counts towards the next tier.
    """
    cdef program_tables_t tables
    load_tables(&tables, compiled)
    cdef customer_history_t history
    cdef Py_ssize_t customer, customer_count = out_tier.shape[0]
    cdef int32_t T = tables.tier_count
    cdef bint has_rolling = rolling_totals.shape[1] != 0, has_reached = tier_reached_month.shape[1] != 0
    with nogil:
        for customer in range(customer_count):
            # (read only: status_at takes the history as const)
            history.record = <customer_state_t *> &states[customer]
            history.rolling_totals = <measure_t *> &rolling_totals[customer, 0] if has_rolling else NULL
            history.tier_reached_month = <month_t *> &tier_reached_month[customer, 0] if has_reached else NULL
            out_tier[customer] = status_at(&tables, &history, month)
            out_qualifying_total[customer] = qualifying_total_at(&tables, &history, month)


def customer_state_layout():
    """Size and field offsets of customer_state_t as the C compiler laid it out."""
    cdef customer_state_t record
    cdef char *base = <char *> &record
    return {
        "itemsize": sizeof(customer_state_t),
        "qualifying_total": <char *> &record.qualifying_total - base,
        "previous_year_total": <char *> &record.previous_year_total - base,
        "day_earned_points": <char *> &record.day_earned_points - base,
        "last_instant_us": <char *> &record.last_instant_us - base,
        "last_visit_day": <char *> &record.last_visit_day - base,
        "last_visit_month": <char *> &record.last_visit_month - base,
        "month_visit_count": <char *> &record.month_visit_count - base,
        "birth_month": <char *> &record.birth_month - base,
        "flags": <char *> &record.flags - base,
        "reserved": <char *> &record.reserved - base,
    }


def return_row_layout():
    """Size and field offsets of return_row_t as the C compiler laid it out."""
    cdef return_row_t row
    cdef char *base = <char *> &row
    return {
        "itemsize": sizeof(return_row_t),
        "original_position": <char *> &row.original_position - base,
        "before_start": <char *> &row.before_start - base,
        "after_start": <char *> &row.after_start - base,
        "after_end": <char *> &row.after_end - base,
        "context_earned_before_today": <char *> &row.context_earned_before_today - base,
        "original_store_class": <char *> &row.original_store_class - base,
        "original_day": <char *> &row.original_day - base,
        "original_month": <char *> &row.original_month - base,
        "context_visit_rank": <char *> &row.context_visit_rank - base,
        "original_minute": <char *> &row.original_minute - base,
        "context_tier": <char *> &row.context_tier - base,
        "context_birthday": <char *> &row.context_birthday - base,
        "reserved": <char *> &row.reserved - base,
    }


def type_sizes():
    """Widths in bytes of the kernel's unit types, checked against their numpy dtypes."""
    return {
        "amount_minor_t": sizeof(amount_minor_t),
        "points_t": sizeof(points_t),
        "measure_t": sizeof(measure_t),
        "instant_us_t": sizeof(instant_us_t),
        "customer_index_t": sizeof(customer_index_t),
        "day_t": sizeof(day_t),
        "month_t": sizeof(month_t),
        "minute_t": sizeof(minute_t),
        "tier_index_t": sizeof(tier_index_t),
    }
