"""Training loop: bit-exact resume, spike and NaN rollback, gradient accumulation, and checkpoints
that survive interruption and refuse to load when damaged."""
import json
import os

import numpy as np
import pytest

from minillm import ModelConfig, Transformer
from minillm import checkpoint as ckpt_mod
from minillm.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from minillm.io import read_tokens, write_tokens
from minillm.optim import AdamW
from minillm.train import SpikeDetector, TrainConfig, train


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    # a learnable stream: mostly a repeating pattern, some noise
    ids = np.tile(np.arange(40), 200) + (rng.random(8000) < 0.05) * rng.integers(0, 50, 8000)
    write_tokens(tmp_path / "train.bin", ids % 64, 64)
    write_tokens(tmp_path / "val.bin", np.tile(np.arange(40), 20), 64)
    return tmp_path


def cfg():
    return ModelConfig.preset("llama-tiny", vocab_size=64, max_seq_len=32, n_layer=1)


def tc(data, out, **kw):
    base = dict(train_data=str(data / "train.bin"), val_data=str(data / "val.bin"), out_dir=str(out),
                batch_size=4, seq_len=16, max_steps=12, lr=1e-2, warmup_steps=2, eval_interval=6,
                eval_batches=2, ckpt_interval=4, log_interval=100)
    return TrainConfig(**{**base, **kw})


def test_loss_falls(data):
    _, hist = train(Transformer(cfg(), seed=0), tc(data, data / "run", max_steps=40), log=lambda s: None)
    losses = [h["loss"] for h in hist if "loss" in h]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_resume_reproduces_uninterrupted_run_bit_for_bit(data):
    full, _ = train(Transformer(cfg(), seed=0), tc(data, data / "a"), log=lambda s: None)
    def kill(step, grads):
        if step == 10:  # dies mid-run; the last checkpoint is from step 8
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(Transformer(cfg(), seed=0), tc(data, data / "b"), log=lambda s: None, fault=kill)
    resumed, hist = train(Transformer(cfg(), seed=99), tc(data, data / "b"), log=lambda s: None)
    assert hist[0]["step"] == 9
    assert all(np.array_equal(full.params[k], resumed.params[k]) for k in full.params)


def test_spike_rolls_back_and_skips_batches(data):
    logs = []

    def fault(step, grads):  # blow up the gradients once, at step 10
        if step == 10 and not logs:
            for g in grads.values():
                g *= 1e4

    def log(s):
        if "Rolled back" in s:
            logs.append(s)

    model, hist = train(Transformer(cfg(), seed=0), tc(data, data / "r", max_steps=14, spike_min_history=5),
                        log=log, fault=fault)
    events = [h for h in hist if h.get("event") == "rollback"]
    assert len(events) == 1 and "grad norm spike" in events[0]["reason"]
    # the failed step is named as such, then the checkpoint it went back to (not "step 8 ... step 8")
    assert logs[0].startswith("step 11 not taken: grad norm spike")
    assert "Rolled back to the checkpoint of step 8; steps 9-11 will run again" in logs[0]
    assert events[0]["step"] == 8 and events[0]["failed_step"] == 11
    assert [h["step"] for h in hist if "loss" in h][-1] == 14
    assert all(np.all(np.isfinite(p)) for p in model.params.values())


def test_nan_rolls_back(data):
    seen = []

    def fault(step, grads):
        if step == 5 and not seen:
            seen.append(step)
            next(iter(grads.values()))[0] = np.nan

    _, hist = train(Transformer(cfg(), seed=0), tc(data, data / "n", max_steps=8), log=lambda s: None, fault=fault)
    assert [h["reason"] for h in hist if h.get("event")][0].startswith("non-finite")


def test_gives_up_after_max_rollbacks(data):
    def fault(step, grads):
        next(iter(grads.values()))[0] = np.inf

    with pytest.raises(RuntimeError, match="rollbacks"):
        train(Transformer(cfg(), seed=0), tc(data, data / "g", max_rollbacks=2), log=lambda s: None, fault=fault)


def test_grad_accumulation_equals_larger_batch(data):
    m = Transformer(cfg(), seed=0)
    x = np.random.default_rng(0).integers(0, 64, (4, 16))
    _, g_full = m.loss_and_grads(x, x)
    g = [m.loss_and_grads(x[i:i + 2], x[i:i + 2])[1] for i in (0, 2)]
    for k in g_full:
        np.testing.assert_allclose((g[0][k] + g[1][k]) / 2, g_full[k], atol=1e-6)


def test_spike_detector():
    d = SpikeDetector(window=10, z=4.0, min_history=5)
    for v in [1.0, 1.1, 0.9, 1.05, 0.95]:
        assert d.check(v, v) is None
        d.accept(v, v)
    assert d.check(1.02, 1.0) is None
    assert "loss spike" in d.check(5.0, 1.0)
    assert "non-finite" in d.check(float("nan"), 1.0)


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    m = Transformer(cfg(), seed=0)
    opt = AdamW(m.params)
    first = save_checkpoint(tmp_path, m, opt, {"step": 1})
    before = {k: v.copy() for k, v in m.params.items()}
    for v in m.params.values():
        v += 1.0

    def crash(*a, **k):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(ckpt_mod, "_sha256", crash)  # dies after the tensor files were written
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, m, opt, {"step": 2})
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path) == first
    assert sorted(os.listdir(tmp_path)) == ["latest", "step_0000001"]
    loaded = load_checkpoint(first)[0]
    assert all(np.array_equal(loaded.params[k], before[k]) for k in before)


def test_damaged_checkpoints_raise(tmp_path):
    m = Transformer(cfg(), seed=0)
    path = save_checkpoint(tmp_path, m, AdamW(m.params), {"step": 3})
    f = os.path.join(path, "model.safetensors")
    raw = open(f, "rb").read()
    with open(f, "r+b") as fh:  # flip one byte of tensor data
        fh.seek(len(raw) - 3)
        fh.write(bytes([raw[-3] ^ 0xFF]))
    with pytest.raises(ValueError, match="corrupted"):
        load_checkpoint(path)
    with open(f, "wb") as fh:
        fh.write(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="corrupted or truncated"):
        load_checkpoint(path)
    os.remove(os.path.join(path, "state.json"))
    with pytest.raises(ValueError, match="not a checkpoint"):
        load_checkpoint(path)


def test_token_files(tmp_path):
    write_tokens(tmp_path / "t.bin", np.arange(70000) % 70000, 70000)  # > 65536: uint32
    toks, vocab = read_tokens(tmp_path / "t.bin")
    assert toks.dtype == np.uint32 and vocab == 70000 and toks[-1] == 69999
    raw = (tmp_path / "t.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(raw[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_tokens(tmp_path / "cut.bin")
    with pytest.raises(ValueError, match="ids"):
        write_tokens(tmp_path / "x.bin", [0, 5], 5)
    with pytest.raises(ValueError, match="train_data"):
        write_tokens(tmp_path / "big.bin", [0, 100, 3, 4], 101)
        train(Transformer(cfg(), seed=0), TrainConfig(train_data=str(tmp_path / "big.bin"), seq_len=1,
                                                      out_dir=str(tmp_path / "o")), log=lambda s: None)


# ---------------------------------------------------------------- no lost data (issue: hardening)
def _save(out, m, step, keep=2):
    return save_checkpoint(out, m, AdamW(m.params), {"step": step}, keep=keep)


def test_cleanup_orders_by_step_and_never_deletes_latest(tmp_path):
    m = Transformer(cfg(), seed=0)
    for step in (450, 500):            # an earlier run's checkpoints in the same folder
        _save(tmp_path, m, step)
    for step in (0, 50):               # a new run (resume=False) starts over at step 0
        _save(tmp_path, m, step)
        assert latest_checkpoint(tmp_path).endswith(f"step_{step:07d}")
    # by name, step_0000450 and step_0000500 would have survived and the new run's folders gone
    assert sorted(d for d in os.listdir(tmp_path) if d.startswith("step_")) == ["step_0000000", "step_0000050"]
    assert load_checkpoint(latest_checkpoint(tmp_path))[3]["step"] == 50
    _save(tmp_path, m, 10_000_000)     # eight digits sort before seven by name, not by number
    _save(tmp_path, m, 10_000_001, keep=1)
    assert sorted(d for d in os.listdir(tmp_path) if d.startswith("step_")) == ["step_10000001"]


def test_fresh_training_into_a_used_folder_keeps_its_rollback_target(data):
    train(Transformer(cfg(), seed=0), tc(data, data / "u", max_steps=12), log=lambda s: None)
    seen = []

    def fault(step, grads):          # a NaN at step 6 of the second run: it must roll back to step 4
        if step == 5 and not seen:
            seen.append(step)
            next(iter(grads.values()))[0] = np.nan
    _, hist = train(Transformer(cfg(), seed=1), tc(data, data / "u", max_steps=8), log=lambda s: None,
                    resume=False, fault=fault)
    assert [h["step"] for h in hist if h.get("event")] == [4]
    assert latest_checkpoint(data / "u").endswith("step_0000008")


@pytest.mark.parametrize("edit", [
    lambda m: m["model_config"].update(rope_theta=-1.0),
    lambda m: m["model_config"].update(n_layer=100_000_000),
    lambda m: m["state"].update(step=7),
    lambda m: m["state"]["train_config"].update(z_loss=float("nan")),
    lambda m: m.update(optimizer_step=5),
    lambda m: m["sha256"].update({"model.safetensors": "0" * 64}),
])
def test_edited_state_json_is_refused(tmp_path, edit):
    m = Transformer(cfg(), seed=0)
    path = save_checkpoint(tmp_path, m, AdamW(m.params), {"step": 3, "train_config": {"z_loss": 0.0}})
    meta_path = os.path.join(path, "state.json")
    meta = json.load(open(meta_path))
    edit(meta)
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(ValueError, match="altered"):
        load_checkpoint(path)
    meta["meta_sha256"] = "0" * 64           # the digest itself edited
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(ValueError, match="altered"):
        load_checkpoint(path)


def test_checkpoints_from_before_the_state_digest_still_load(tmp_path):
    m = Transformer(cfg(), seed=0)
    path = _save(tmp_path, m, 3)
    meta_path = os.path.join(path, "state.json")
    meta = json.load(open(meta_path))
    del meta["meta_sha256"]
    json.dump(meta, open(meta_path, "w"))
    assert load_checkpoint(path)[3]["step"] == 3
    meta["sha256"] = "x"
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(ValueError, match="no sha256 table"):
        load_checkpoint(path)


@pytest.mark.parametrize("pointer", ["../outside", "/tmp", "step_0000003/../../outside", "", "step_3",
                                     "step_0000003/", "..", "x" * 5000])
def test_latest_must_name_a_checkpoint_of_its_own_folder(tmp_path, pointer):
    run = tmp_path / "run"
    m = Transformer(cfg(), seed=0)
    _save(run, m, 3)
    outside = tmp_path / "outside"
    _save(outside, m, 3)                  # a valid checkpoint one level up
    (run / "latest").write_text(pointer)
    with pytest.raises(ValueError, match="latest"):
        latest_checkpoint(run)


def test_leftovers_of_a_killed_save_are_removed(tmp_path):
    m = Transformer(cfg(), seed=0)
    _save(tmp_path, m, 1)
    (tmp_path / ".step_tmp_abc123").mkdir()
    (tmp_path / ".step_tmp_abc123" / "model.safetensors").write_bytes(b"x" * 100)
    (tmp_path / ".latest.k2j3.tmp").write_text("step_0000002")
    (tmp_path / "notes.txt").write_text("mine")
    _save(tmp_path, m, 2)
    assert sorted(os.listdir(tmp_path)) == ["latest", "notes.txt", "step_0000001", "step_0000002"]


def test_resuming_removes_a_killed_saves_leftovers_at_once(data):
    out = data / "k"
    train(Transformer(cfg(), seed=0), tc(data, out, max_steps=4), log=lambda s: None)
    (out / ".step_tmp_x1").mkdir()
    (out / ".latest.q.tmp").write_text("step_0000009")
    seen = []
    train(Transformer(cfg(), seed=0), tc(data, out, max_steps=5, ckpt_interval=100),
          log=lambda s: seen.append(sorted(os.listdir(out))))
    assert ".step_tmp_x1" not in seen[0] and ".latest.q.tmp" not in seen[0]


def test_spaced_rollbacks_do_not_abort_a_healthy_run(data):
    hits = []

    def fault(step, grads):   # one bad step every 8 steps: 5 rollbacks in all, never 2 in a row
        if step % 8 == 7 and step not in hits:
            hits.append(step)
            next(iter(grads.values()))[0] = np.nan
    _, hist = train(Transformer(cfg(), seed=0),
                    tc(data, data / "s", max_steps=40, max_rollbacks=1, rollback_reset=3, ckpt_interval=2),
                    log=lambda s: None, fault=fault)
    assert len([h for h in hist if h.get("event")]) == 5
    assert [h["step"] for h in hist if "loss" in h][-1] == 40
