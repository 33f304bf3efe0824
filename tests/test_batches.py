"""Training batches: one token file's windows, weighted mixtures, and held-out tails that stay apart."""
import numpy as np
import pytest

from minillm.batches import MixtureBatches, parse_data_spec
from minillm.io import write_tokens


def test_parse_data_spec():
    assert parse_data_spec("a/b.txt") == parse_data_spec("a/b.txt:1")
    assert parse_data_spec("a/b.txt:0.25").weight == 0.25
    with pytest.raises(ValueError, match="--data: expected PATH or PATH:WEIGHT"):
        parse_data_spec("a:b:c")
    with pytest.raises(ValueError, match="weight must be a positive number, got -1.0"):
        parse_data_spec("a.txt:-1")


def test_single_source_batches_are_the_plain_token_file_windows(tmp_path):
    ids = np.random.default_rng(0).integers(0, 50, 3000)
    write_tokens(tmp_path / "t.bin", ids, 50)
    x, y = MixtureBatches(str(tmp_path / "t.bin"), 4, 16, seed=3).batch(7)
    rng = np.random.default_rng([3, 7])                      # the documented rule: batch i <- (seed, i)
    starts = rng.integers(0, len(ids) - 17, size=4)
    assert np.array_equal(x, np.stack([ids[s:s + 16] for s in starts]))
    assert np.array_equal(y[:, :-1], x[:, 1:])


def test_mixture_follows_weights_and_held_out_tails_stay_apart(tmp_path):
    write_tokens(tmp_path / "a.bin", np.full(2000, 1), 8)              # source a: all ones
    write_tokens(tmp_path / "b.bin", np.r_[np.full(1800, 2), np.full(200, 3)], 8)  # b's tail is 3s
    spec = [f"{tmp_path / 'a.bin'}:3", f"{tmp_path / 'b.bin'}:1"]
    train = MixtureBatches(spec, 64, 8, seed=0, split="train", val_fraction=0.1)
    rows = np.concatenate([train.batch(i)[0][:, 0] for i in range(50)])
    share_a = np.mean(rows == 1)
    assert abs(share_a - 0.75) < 0.03                                  # 3200 draws: sd ~0.008
    assert not np.any(rows == 3)                                       # never a held-out token
    val = MixtureBatches(spec, 64, 8, seed=1, split="val", val_fraction=0.1)
    vrows = np.concatenate([val.batch(i)[0] for i in range(5)])
    assert set(np.unique(vrows)) <= {1, 3}                             # b's val part is its tail
    with pytest.raises(ValueError, match=r"b.bin: its val part has 20 tokens, need at least seq_len \+ 2"):
        MixtureBatches(str(tmp_path / "b.bin"), 2, 30, seed=0, split="val", val_fraction=0.01)
