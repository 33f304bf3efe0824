"""SFT: data formats, template rendering with response-only masks, packing that equals padding
(loss and gradients), a short training run, and the `minillm sft` command end to end."""
import json

import numpy as np
import pytest

from minillm import ModelConfig, Transformer
from minillm.align.sft import (SFTConfig, load_jsonl, pack_examples, pad_batch, record_to_messages,
                               render_segments, sft_eval_loss, sft_loss_and_grads, sft_train,
                               targets_from_mask, tokenize_conversation)
from minillm.tokenizer import BPETokenizer, templates
from minillm.tokenizer import ByteTokenizer

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"}]


def test_record_formats():
    inst = record_to_messages({"instruction": "Add", "input": "2 and 3", "output": "5"})
    assert inst == [{"role": "user", "content": "Add\n\n2 and 3"}, {"role": "assistant", "content": "5"}]
    assert record_to_messages({"instruction": "Hi", "input": "", "output": "Yo"})[0]["content"] == "Hi"
    assert record_to_messages({"messages": CHAT}) == CHAT
    with pytest.raises(ValueError, match="expected keys"):
        record_to_messages({"prompt": "x"})
    with pytest.raises(ValueError, match="assistant"):
        record_to_messages({"messages": [{"role": "user", "content": "x"}]})


@pytest.mark.parametrize("template", ["chatml", "llama2"])
def test_segments_render_the_template_and_mask_only_responses(template):
    segs = render_segments(CHAT, template)
    assert "".join(t for t, _ in segs) == templates.render(CHAT, template)
    responses = [t for t, r in segs if r]
    end = {"chatml": "<|im_end|>\n", "llama2": " </s>"}[template]
    lead = {"chatml": "", "llama2": " "}[template]
    assert responses == [lead + "Hello." + end, lead + "4" + end]
    ids, mask = tokenize_conversation(ByteTokenizer(), CHAT, template)
    text = bytes(ids.tolist()).decode()
    assert text == templates.render(CHAT, template)
    assert bytes(ids[mask > 0].tolist()).decode() == "".join(responses)


def test_bpe_tokenizer_gets_special_tokens_as_single_ids():
    tok = BPETokenizer.train("hello world " * 50, 300, special_tokens=templates.special_tokens("chatml"))
    ids, mask = tokenize_conversation(tok, CHAT, "chatml")
    assert tok.decode(ids.tolist()) == templates.render(CHAT, "chatml")
    end_id = tok.special_tokens["<|im_end|>"]
    # each assistant turn's <|im_end|> is a target (the model learns to stop); the user's is not
    flags = [m for i, m in zip(ids, mask) if i == end_id]
    assert flags == [0.0, 0.0, 1.0, 0.0, 1.0]


def test_targets_never_cross_a_document_and_packing_restarts_positions():
    ids, mask = np.array([5, 6, 7, 8]), np.array([0, 0, 1, 1], dtype=np.float32)
    assert targets_from_mask(ids, mask).tolist() == [-1, 7, 8, -1]
    ex = [(np.array([1, 2, 3]), np.array([0, 1, 1], np.float32)), (np.array([4, 5]), np.array([0, 1], np.float32)),
          (np.array([6, 7, 8, 9]), np.array([0, 0, 1, 1], np.float32))]
    b = pack_examples(ex, seq_len=6)
    assert b.tokens.tolist() == [[1, 2, 3, 4, 5, 0, 6, 7, 8, 9, 0, 0]]
    assert b.targets.tolist() == [[2, 3, -1, 5, -1, -1, -1, 8, 9, -1, -1, -1]]
    assert b.positions.tolist() == [0, 1, 2, 0, 1, 0, 0, 1, 2, 3, 0, 1]
    assert b.segments.tolist() == [0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4, 4]
    assert b.n_target_tokens == pad_batch(ex).n_target_tokens == 5


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_packed_batch_gives_the_padded_batch_loss_and_gradients(arch):
    m = Transformer(ModelConfig.preset(f"{arch}-tiny", max_seq_len=32), seed=2)
    m.params = {k: v.astype(np.float64) for k, v in m.params.items()}   # exact comparison, no float32 noise
    rng = np.random.default_rng(2)
    ex = []
    for n in (7, 3, 11, 5, 9, 2):
        mask = np.zeros(n, np.float32)
        mask[rng.integers(1, n):] = 1.0
        ex.append((rng.integers(0, 256, n), mask))
    l1, g1 = sft_loss_and_grads(m, pad_batch(ex))
    l2, g2 = sft_loss_and_grads(m, pack_examples(ex, seq_len=16))
    assert l1 == pytest.approx(l2, rel=1e-12)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-9, atol=1e-13, err_msg=k)


def _toy_examples(n, rng):
    """'<a>=' -> 'b' where b is the next letter: learnable, response-only."""
    tok = ByteTokenizer()
    out = []
    for c in rng.integers(0, 25, n):
        a = chr(97 + c)
        msgs = [{"role": "user", "content": a}, {"role": "assistant", "content": chr(98 + c)}]
        out.append(tokenize_conversation(tok, msgs, "chatml"))
    return out


@pytest.mark.slow  # a few seconds on an idle machine; minutes when 2 cores are oversubscribed
def test_sft_training_lowers_held_out_response_loss():
    rng = np.random.default_rng(0)
    train, val = _toy_examples(256, rng), _toy_examples(32, rng)
    m = Transformer(ModelConfig.preset("llama-tiny"), seed=0)
    before = sft_eval_loss(m, val)
    hist = sft_train(m, train, SFTConfig(lr=3e-3, steps=40, batch_size=16, pack=True, seq_len=128),
                     eval_fn=lambda mm: {"val": sft_eval_loss(mm, val)}, eval_every=20)
    assert hist[-1]["val"] < 0.5 * before
    assert all(h["target_tokens"] < h["tokens"] for h in hist)


def test_sft_cli_end_to_end(tmp_path, capsys):
    from minillm.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
    from minillm.cli import main
    from minillm.optim import AdamW
    run = tmp_path / "run"
    m = Transformer(ModelConfig.preset("llama-tiny"), seed=0)
    save_checkpoint(str(run / "ckpt"), m, AdamW(m.params), {"step": 0})
    ByteTokenizer().save(str(run / "tokenizer.model"))
    data = tmp_path / "d.jsonl"
    rows = [{"instruction": "Say hi", "input": "", "output": "hi"},
            {"messages": [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "pong"}]}] * 10
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert len(load_jsonl(str(data))) == 20
    out = tmp_path / "sft"
    rc = main(["sft", "--run", str(run), "--data", str(data), "--out", str(out), "--steps", "4",
               "--batch-size", "4", "--pack", "--seq-len", "64"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "held-out response loss before" in text and "saved" in text
    tuned = load_checkpoint(latest_checkpoint(str(out / "ckpt")))[0]
    assert not np.array_equal(tuned.params["lm_head.weight"], m.params["lm_head.weight"])
    assert (out / "tokenizer.model").exists()
    assert main(["sft", "--run", str(tmp_path / "none"), "--data", str(data)]) == 2   # no such folder
    assert "step     4/4" in text and "ETA" in text
