"""NER PII: the encoder's backward against finite differences (its attention is checked in
tests/nn/test_bidirectional_attention.py), the word
features and span decoding, the weights file, and the shipped tagger on a fixed held-out set
(planted names and addresses removed with recall >= 0.9; ordinary capitalised words left alone)
and on hand-labelled real sentences."""
import json
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.data import make_stage
from minillm.data.ner import (TAGS, WEIGHTS, FeatureVocab, NERConfig, NERTagger, backward,
                              bag_embedding_backward, bio_spans, forward, init_params, load_weights,
                              save_weights, split_rows, text_features, tokenize)
from minillm.data.ner_train import (PLAIN, encode_examples, feature_dropout, featurize, generate,
                                    prf, train_and_save)
from minillm.nn.embedding import embedding_backward
from tests.gradcheck import numerical_grad

REAL = pathlib.Path(__file__).parent / "fixtures" / "ner_real_sentences.jsonl"


def load_real():
    """[(text, [(start, end, type)])] from the hand-labelled file (entities given as strings)."""
    out = []
    for line in REAL.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        ents = [(d["text"].index(s), d["text"].index(s) + len(s), k) for s, k in d["entities"]]
        out.append((d["text"], ents))
    return out


# --- backward pieces ---------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 5), K=st.integers(1, 6), NB=st.integers(1, 40),
       seed=st.integers(0, 2**32 - 1))
def test_bag_embedding_backward_equals_scatter_add(B, T, K, NB, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, NB, (B, T, K))
    dx = rng.standard_normal((B, T, 3))
    ref = embedding_backward(np.broadcast_to(dx[:, :, None, :], (B, T, K, 3)), (ids, (NB, 3)))
    np.testing.assert_allclose(bag_embedding_backward(dx, ids, NB), ref, rtol=1e-12, atol=1e-12)


def test_encoder_backward_matches_finite_differences():
    cfg = NERConfig(n_features=30, n_embd=8, n_head=2, n_layer=2, max_len=6)
    rng = np.random.default_rng(0)
    params = {k: v.astype(np.float64) + rng.normal(0, 0.3, v.shape)
              for k, v in init_params(cfg, seed=1).items()}
    ids = rng.integers(0, cfg.n_features, (2, 5, 6))
    valid = np.ones((2, 5), bool)
    valid[1, 3:] = False
    w = rng.standard_normal((2, 5, cfg.n_tags))
    grads = backward(w, forward(params, cfg, ids, valid)[1], cfg)
    assert set(grads) == set(params)
    for name in ["emb", "pos", "h0.qkv.w", "h0.ln1.w", "h1.fc.w", "h1.proj.b", "lnf.b", "head.w"]:
        def loss(x_):
            return np.sum(forward({**params, name: x_}, cfg, ids, valid)[0] * w)
        np.testing.assert_allclose(grads[name], numerical_grad(loss, params[name]),
                                   rtol=1e-5, atol=1e-7, err_msg=name)


# --- text handling -----------------------------------------------------------------------------

def test_tokenize_and_bio_spans():
    text = "Dr. Anne-Marie O'Neil lives at 12-14 Rue Cler."
    words = [text[a:b] for a, b in tokenize(text)]
    assert words == ["Dr", ".", "Anne-Marie", "O'Neil", "lives", "at", "12-14", "Rue", "Cler", "."]
    t = {name: i for i, name in enumerate(TAGS)}
    tags = [t["O"], t["B-PER"], t["I-PER"], t["I-PER"], t["B-PER"], t["O"], t["I-ADDR"], t["I-LOC"]]
    assert bio_spans(tags) == [(1, 4, "PER"), (4, 5, "PER"), (6, 7, "ADDR"), (7, 8, "LOC")]


@given(st.lists(st.sampled_from(["word", ".", "Name", "!"]), max_size=200), st.integers(2, 20))
def test_split_rows_covers_every_word_once(words, T):
    text = " ".join(words)
    spans = tokenize(text)
    rows = split_rows(text, spans, T)
    assert [i for a, b in rows for i in range(a, b)] == list(range(len(spans)))
    assert all(0 < b - a <= T for a, b in rows)


def test_generated_rows_are_labelled_consistently():
    for text, ents in generate(50, seed=3, split="heldout"):
        for a, b, kind in ents:
            assert text[a:b] == text[a:b].strip() and kind in ("PER", "ADDR", "ORG", "LOC")
    rows = featurize(generate(20, seed=3), max_len=64)
    vocab = FeatureVocab.build(f for f, _ in rows)
    ids, tags, valid = encode_examples(rows, vocab)
    assert ids.shape[:2] == tags.shape == valid.shape and (tags[valid] >= 0).all()
    dropped = feature_dropout(ids, vocab, np.random.default_rng(0), p=(1, 0, 0, 0, 0, 0))
    assert (dropped[..., 0] == vocab.unk[0]).all() and (dropped[..., 1:] == ids[..., 1:]).all()


def test_unseen_features_map_to_unknown():
    vocab = FeatureVocab.build([text_features("Anna lives here.", tokenize("Anna lives here."))])
    ids = vocab.ids(text_features("Zygmunt lives here.", tokenize("Zygmunt lives here.")))
    assert ids[0, 0] == vocab.unk[0] and ids[1, 0] != vocab.unk[0]


def test_prf_counts_exact_spans_only():
    gold = [[(0, 5, "PER"), (10, 20, "ADDR")]]
    pred = [[(0, 5, "PER"), (10, 19, "ADDR"), (30, 35, "PER")]]
    s = prf(pred, gold)
    assert s["PER"]["precision"] == 0.5 and s["PER"]["recall"] == 1.0
    assert s["ADDR"]["recall"] == 0.0 and s["ORG"]["support"] == 0


# --- weights -----------------------------------------------------------------------------------

def test_shipped_weights_are_small_and_load_without_pickle():
    assert WEIGHTS.stat().st_size < 1_500_000
    params, cfg, vocab = load_weights()
    assert params["emb"].shape == (cfg.n_features, cfg.n_embd) == (len(vocab.features), cfg.n_embd)
    with np.load(WEIGHTS, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


def test_weights_round_trip_and_bad_files(tmp_path):
    vocab = FeatureVocab([f"{k}:<unk>" for k in "wspxcl"] + [f"w:{i}" for i in range(10)])
    cfg = NERConfig(n_features=16, n_embd=8, n_head=2, n_layer=1, max_len=8)
    params = init_params(cfg, seed=0)
    save_weights(tmp_path / "w.npz", params, cfg, vocab, dtype=np.float32)
    loaded, cfg2, vocab2 = load_weights(tmp_path / "w.npz")
    assert cfg2 == cfg and all(np.array_equal(loaded[k], params[k]) for k in params)
    assert vocab2.features == vocab.features
    (tmp_path / "bad.npz").write_bytes((tmp_path / "w.npz").read_bytes()[:100])
    with pytest.raises(ValueError, match="path"):
        load_weights(tmp_path / "bad.npz")


def test_retraining_command_writes_a_loadable_file(tmp_path):
    loss, scores = train_and_save(tmp_path / "w.npz", steps=3, n_examples=64, n_eval=20)
    assert np.isfinite(loss) and set(scores) == {"PER", "ADDR", "ORG", "LOC"}
    assert NERTagger.load(tmp_path / "w.npz").entities("Hello there.") is not None


# --- the shipped tagger ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stage():
    return make_stage({"type": "pii_ner"})


def _removed_share(stage, examples):
    from minillm.data.pipeline import StageStats
    planted = removed = 0
    stats = StageStats()
    for i, (text, ents) in enumerate(examples):
        out = stage.apply({"id": str(i), "text": text, "meta": {}}, stats)["text"]
        for a, b, kind in ents:
            if kind in ("PER", "ADDR"):
                planted += 1
                removed += text[a:b] not in out
    return removed / planted, planted, stats


def test_stage_removes_planted_names_and_addresses(stage):
    """A fixed held-out set: generated rows the training never drew (seed 777; training uses seed
    0), from the training lists and templates."""
    share, planted, stats = _removed_share(stage, generate(150, seed=777, split="train"))
    assert planted > 150 and share >= 0.9
    assert stats.counters["pii_person"] > 0 and stats.counters["pii_address"] > 0


def test_stage_on_unseen_names_streets_and_contexts(stage):
    """The held-out split: names, streets, cities and templates never seen in training. Measured
    0.865 (README); the floor leaves room for retraining noise."""
    share, planted, _ = _removed_share(stage, generate(150, seed=12345, split="heldout"))
    assert planted > 150 and share >= 0.8


def test_stage_leaves_ordinary_capitalised_words_alone(stage):
    """Sentences without PII: every sentence-initial word, weekday and month is left alone, and
    at least 90% of all capitalised words (measured: 113 of 121, README)."""
    import re
    from collections import Counter

    from minillm.data.pipeline import StageStats
    sentences = PLAIN + [text for text, ents in load_real() if not ents] + [
        "The Museum opens at Nine on Saturdays.", "Ask the Teacher about the Homework.",
        "The Red Line train runs every ten minutes.", "Monday, Tuesday and Friday are busy."]
    calendar = set("Monday Tuesday Wednesday Thursday Friday Saturday Sunday January March "
                   "August December Christmas".split())
    kept = total = 0
    for s in sentences:
        out = stage.apply({"id": "x", "text": s, "meta": {}}, StageStats())["text"]
        caps = Counter(re.findall(r"\b[A-Z][A-Za-z]*\b", s))
        left = Counter(re.findall(r"\b[A-Z][A-Za-z]*\b", out))
        kept, total = kept + sum((caps & left).values()), total + sum(caps.values())
        first = s.split()[0].strip(",.")
        assert out.startswith(first), (s, out)
        assert all(left[w] == caps[w] for w in calendar & set(caps)), (s, out)
    assert total > 90 and kept / total >= 0.9


def test_stage_rejects_unknown_types():
    with pytest.raises(ValueError, match="types"):
        make_stage({"type": "pii_ner", "types": ["person", "passport"]})


def test_real_sentences_scores(stage):
    """Hand-labelled real sentences (tests/data/fixtures): names and places of the real world,
    none from the generator's lists. Floors set below the measured figures in README."""
    real = load_real()
    scores = prf([stage.tagger.entities(t) for t, _ in real], [g for _, g in real])
    assert scores["PER"]["recall"] >= 0.55 and scores["PER"]["precision"] >= 0.45  # 0.684, 0.591
    addresses = [(t, [e for e in g if e[2] == "ADDR"]) for t, g in real]
    gone = [t[a:b] not in stage.tagger.redact(t)[0] for t, g in addresses for a, b, _ in g]
    assert len(gone) == 9 and sum(gone) >= 8                  # all 9 removed, if not with exact spans
