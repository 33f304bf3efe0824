"""examples/decoding_strategies.py --run RUN: the draft model learns the target's vocabulary (a
byte-level draft under a BPE target proposed ids that meant other things: acceptance 0.01)."""
import argparse
import os
import sys

import numpy as np

from minillm import ModelConfig, Transformer
from minillm.checkpoint import save_checkpoint
from minillm.optim import AdamW
from minillm.run_folder import checkpoint_dir, tokenizer_path
from minillm.tokenizer import BPETokenizer

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
import decoding_strategies  # noqa: E402


def test_draft_trains_on_the_run_tokenizers_ids(tmp_path, monkeypatch):
    text = "the for statement and the while statement " * 40
    tok = BPETokenizer.train(text, vocab_size=300)
    tok.save(tokenizer_path(tmp_path))
    target = Transformer(ModelConfig.preset("llama-tiny", vocab_size=300, max_seq_len=32), seed=0)
    save_checkpoint(checkpoint_dir(tmp_path), target, AdamW(target.params), {"step": 1})
    seen = {}

    def fake_train(cfg, steps, seed=0, data=None, **kw):
        seen["data"], seen["vocab"] = data, cfg.vocab_size
        return Transformer(cfg, seed=seed)
    monkeypatch.setattr(decoding_strategies, "train_byte_model", fake_train)
    args = argparse.Namespace(model=None, run=str(tmp_path), steps=1, draft_steps=1)
    _, draft, back = decoding_strategies.load_or_train(args)
    assert seen["vocab"] == 300 and seen["data"] is not None
    np.testing.assert_array_equal(seen["data"], back.encode(decoding_strategies.corpus_text()))
    assert seen["data"].max() >= 256          # merged BPE ids, not bytes
    assert draft.config.vocab_size == 300
