"""Exact dedup: normalisation collisions, and a Bloom filter's false-positive rate near its target."""
import numpy as np
import pytest

from minillm.data.exact_dedup import BloomFilter, ExactDeduplicator, normalize_text, text_hash


def test_normalisation_makes_formatting_variants_collide():
    assert normalize_text("Hello,   World!\n") == "hello world"
    assert text_hash("Ｈｅｌｌｏ world") == text_hash("hello — WORLD.")   # NFKC full-width
    assert text_hash("hello world") != text_hash("hello words")


@pytest.mark.parametrize("bloom", [None, 10_000])
def test_second_copy_is_seen(bloom):
    d = ExactDeduplicator(bloom_capacity=bloom)
    flags = [d.seen(t) for t in ["a b", "c", "A  b!", "c", "d"]]
    assert flags == [False, False, True, True, False]


def test_bloom_filter_false_positive_rate_is_near_target():
    n, p = 20_000, 0.01
    bf = BloomFilter(n, p)
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**63, size=2 * n)
    for key in keys[:n]:
        bf.add(int(key))
    assert all(int(key) in bf for key in keys[:n])          # no false negatives, ever
    fp = np.mean([int(key) in bf for key in keys[n:]])
    assert fp < 2 * p                                        # 1% target; sd of the rate ~0.0007
    with pytest.raises(ValueError, match="error_rate"):
        BloomFilter(10, 1.5)
