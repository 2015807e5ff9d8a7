"""Stable text hashes and receipt fingerprints: the same in every process, for every layout."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from fidelis.core.ingest.fingerprints import MISSING, receipt_fingerprints, text_hashes


#: Pinned: the part a receipt id hashes to must not change between releases, or a rerun of
#: an interrupted load would split its input differently from the run it finishes.
PINNED = {"R1": 7981604660554625523, "": 8841707400507832957, "0000123": 10955193595398212911}


def test_text_hashes_are_pinned():
    assert text_hashes(pa.array(list(PINNED))).tolist() == list(PINNED.values())


def test_text_hashes_are_the_same_in_a_fresh_process():
    out = subprocess.run(
        [sys.executable, "-c", "import pyarrow as pa; from fidelis.core.ingest.fingerprints import text_hashes; "
                               "print(text_hashes(pa.array(['R1', '', '0000123'])).tolist())"],
        capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(list(PINNED.values()))


def test_text_hashes_do_not_depend_on_layout():
    values = [f"card-{i:06d}" for i in range(1000)] + ["", "é€𝄞", None]
    whole = text_hashes(pa.array(values, pa.string()))
    assert np.array_equal(whole, text_hashes(pa.array(values, pa.large_string())))
    assert np.array_equal(whole, text_hashes(pa.chunked_array([pa.array(values[:300]), pa.array(values[300:])])))
    assert np.array_equal(whole[500:700], text_hashes(pa.array(values, pa.string()).slice(500, 200)))
    assert whole[-1] == MISSING
    assert len(set(whole[:-1].tolist())) == len(values) - 1  # distinct texts, distinct hashes


@pytest.mark.parametrize("pair", [("ab", "ba"), ("a", "a\x00"), ("", "\x00"), ("abc", "abd")])
def test_close_texts_hash_apart(pair):
    left, right = text_hashes(pa.array(list(pair)))
    assert left != right


def test_fingerprints_see_every_fact_of_a_receipt(make_batch):
    base = ("R1", "C1", "S1", "2025-06-07T10:00", "grocery", 1, "10.00")
    variants = [
        base,
        ("R1", "C2", *base[2:]),
        ("R1", "C1", "S2", *base[3:]),
        ("R1", "C1", "S1", "2025-06-07T10:01", *base[4:]),
        ("R1", "C1", "S1", "2025-06-07T10:00", "baby", 1, "10.00"),
        ("R1", "C1", "S1", "2025-06-07T10:00", "grocery", 2, "10.00"),
        ("R1", "C1", "S1", "2025-06-07T10:00", "grocery", 1, "10.01"),
        ("R1", None, "S1", "2025-06-07T10:00", "grocery", 1, "10.00"),
    ]
    prints = [int(receipt_fingerprints(make_batch([row]))[0]) for row in variants]
    assert len(set(prints)) == len(variants)
    # and the order of lines matters: a receipt is its lines in order
    two = [base, ("R1", "C1", "S1", "2025-06-07T10:00", "baby", 2, "3.00")]
    assert receipt_fingerprints(make_batch(two))[0] != receipt_fingerprints(make_batch(two[::-1]))[0]
    assert receipt_fingerprints(make_batch([base]))[0] == receipt_fingerprints(make_batch([base]))[0]


def test_receipt_fingerprints_are_pinned(make_batch):
    """Ledgers store them: a release that changed them would turn every re-sent receipt into a conflict."""
    batch = make_batch([("R1", "C1", "S1", "2025-06-07T10:00", "grocery", 1, "10.00"),
                        ("R1", "C1", "S1", "2025-06-07T10:00", "baby", 2, "3.00"),
                        ("R2", None, "S2", "2025-06-08T10:00", "fuel", 1, "50.00")])
    assert receipt_fingerprints(batch).tolist() == [4786257829567632394, -8225751078337332097]
    batch.line_sku = pa.array(["A", None, "Z"])
    assert receipt_fingerprints(batch).tolist() == [7238265616124412493, 2810599202919384948]


def test_text_hashes_of_long_and_short_strings_follow_the_byte_polynomial():
    """Horner's rule for short strings and the sum of powers for long ones give one polynomial."""
    from fidelis.core.ingest.fingerprints import mix

    def polynomial(text: str) -> int:
        value = 0
        for byte in text.encode():
            value = (value * 0x9E3779B97F4A7C15 + byte + 1) % 2**64
        return value

    values = ["", "a", "x" * 63, "y" * 64, "z" * 65, "é" * 200, "q" * 5000, "abc" * 1000]
    lengths = np.array([len(value.encode()) for value in values], dtype=np.uint64)
    expected = mix(np.array([polynomial(value) for value in values], dtype=np.uint64) ^ mix(lengths + np.uint64(1)))
    assert np.array_equal(text_hashes(pa.array(values)), expected)
