"""Stable 64-bit hashes of text columns and of whole receipts, computed column-wise.

Two uses: a bulk load splits its input by receipt id so that each part holds whole receipts
(any process, any run, puts an id in the same part), and the ledger stores a fingerprint of
each receipt's content so that a re-sent receipt (skip) can be told from a different receipt
reusing its id (conflict). Splitting hashes every input row, so nothing there loops in
Python per value: a text's hash is a polynomial over its UTF-8 bytes, evaluated for a whole
Arrow column at once. Fingerprints are stored, so their definition is fixed for good.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from ..batch import ReceiptBatch
from .columns import dictionary_codes

_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
#: Odd multiplier of the byte polynomial (the 64-bit golden ratio), so every byte moves every bit.
_BASE = np.uint64(0x9E3779B97F4A7C15)
#: The hash of a missing value; no text hashes to it except by a 2⁻⁶⁴ chance.
MISSING = np.uint64(0)


def mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the 64-bit result (wrapping)."""
    values = values.astype(np.uint64, copy=True)
    values ^= values >> np.uint64(30)
    values *= _MIX_1
    values ^= values >> np.uint64(27)
    values *= _MIX_2
    values ^= values >> np.uint64(31)
    return values


def text_hashes(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A stable uint64 hash of each string (``MISSING`` for null), the same in every process.

    Parameters
    ----------
    values : pa.Array or pa.ChunkedArray of string or large_string, shape (N,)

    Returns
    -------
    uint64, shape (N,)
    """
    # each distinct text is hashed once: ids and names repeat on every line of a receipt
    codes, distinct = dictionary_codes(values, missing=-1)
    table = np.append(_distinct_text_hashes(distinct), MISSING)  # code -1 picks MISSING
    return table[codes]


#: Strings up to this many bytes are hashed by Horner's rule, a pass per byte position over
#: every string of a length at once; longer ones (rare: a stray quote swallowing a file) by
#: the same polynomial as a sum of powers, so that no string costs a pass per byte.
_HORNER_BYTES = 64


def _distinct_text_hashes(values: pa.Array) -> np.ndarray:
    """The byte polynomial of each string, ``sum((byte + 1) * BASE ** (n - 1 - i))`` wrapping
    modulo 2⁶⁴ (Horner's rule: ``h = h * BASE + byte + 1``), then mixed with the length."""
    count = len(values)
    if count == 0:
        return np.zeros(0, dtype=np.uint64)
    offset_type = np.int64 if pa.types.is_large_string(values.type) else np.int32
    _, offset_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=offset_type)[values.offset:values.offset + count + 1].astype(np.int64)
    lengths = np.diff(offsets)
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    sums = np.zeros(count, dtype=np.uint64)
    short = np.flatnonzero((lengths > 0) & (lengths <= _HORNER_BYTES))
    by_length = short[np.argsort(lengths[short], kind="stable")]
    bounds = np.flatnonzero(np.diff(lengths[by_length])) + 1
    with np.errstate(over="ignore"):
        for same in np.split(by_length, bounds) if len(by_length) else []:
            starts = offsets[same]
            hashed = np.zeros(len(same), dtype=np.uint64)
            for position in range(int(lengths[same[0]])):  # a pass per byte position, every string at once
                hashed = hashed * _BASE + data[starts + position].astype(np.uint64) + np.uint64(1)
            sums[same] = hashed
        long = np.flatnonzero(lengths > _HORNER_BYTES)
        if len(long):
            sums[long] = _power_sums(data, offsets[long], lengths[long])
    return mix(sums ^ mix(lengths.astype(np.uint64) + np.uint64(1)))


def _power_sums(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The byte polynomial of long strings as one sum of terms over all their bytes."""
    owners = np.repeat(np.arange(len(starts)), lengths)
    first = np.zeros(len(starts), dtype=np.int64)
    np.cumsum(lengths[:-1], out=first[1:])
    within = np.arange(len(owners), dtype=np.int64) - first[owners]
    positions = starts[owners] + within
    from_end = lengths[owners] - 1 - within
    terms = (data[positions].astype(np.uint64) + np.uint64(1)) * _powers(int(lengths.max()))[from_end]
    return np.add.reduceat(terms, first)


def _powers(count: int) -> np.ndarray:
    """BASE ** 0 … BASE ** (count - 1), wrapping modulo 2⁶⁴, by doubling (log₂ count steps)."""
    powers = np.ones(1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        while len(powers) < count:
            powers = np.concatenate([powers, powers * (powers[-1] * _BASE)])
    return powers[:count]


def _blake2b_hashes(names: list[str | None]) -> np.ndarray:
    return np.array(
        [0 if name is None else int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
         for name in names],
        dtype=np.uint64,
    )


def _per_distinct_text(values: pa.Array) -> np.ndarray:
    """blake2b of each distinct text, spread over ``values`` (0 for null)."""
    codes, distinct = dictionary_codes(values, missing=-1)
    return np.append(_blake2b_hashes(distinct.to_pylist()), np.uint64(0))[codes]


def receipt_fingerprints(batch: ReceiptBatch) -> np.ndarray:
    """A 64-bit fingerprint of each receipt's content (customer, store, instant, lines).

    Compared only between receipts with the same id, to tell a re-sent receipt (skip) from a
    different receipt reusing an id (conflict); stored as a signed int64, so it must never
    change between releases: texts are hashed with blake2b, once per distinct value. A
    missing sku adds nothing, so a file without the column fingerprints like one with it
    left empty.
    """
    customer_print = _per_distinct_text(batch.customer_id)
    store_print = _blake2b_hashes(batch.store_names)[batch.store_code]
    line_count = batch.line_count
    position = np.arange(line_count, dtype=np.int64) - np.repeat(batch.line_offsets[:-1], np.diff(batch.line_offsets))
    line_print = mix(_blake2b_hashes(batch.category_names)[batch.line_category_code]
                     ^ mix(batch.line_qty.astype(np.uint64) + (position.astype(np.uint64) << np.uint64(32)))
                     ^ mix(batch.line_amount_minor.astype(np.uint64) + _BASE))
    if batch.line_sku is not None:
        sku_print = _per_distinct_text(batch.line_sku)
        line_print ^= np.where(sku_print != 0, mix(sku_print + np.uint64(7)), np.uint64(0))
    lines_print = np.zeros(len(batch), dtype=np.uint64)
    has_lines = np.diff(batch.line_offsets) > 0
    if line_count:
        lines_print[has_lines] = np.add.reduceat(line_print, batch.line_offsets[:-1][has_lines])
    receipt_print = mix(customer_print ^ mix(store_print + np.uint64(3))
                        ^ mix(batch.instant_us.astype(np.uint64)) ^ mix(lines_print + np.uint64(5)))
    return receipt_print.view(np.int64)
