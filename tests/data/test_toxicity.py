"""Blocklist normalisation (case, accents, leetspeak, separators, stretched letters) without the
Scunthorpe problem; the hashed n-gram classifier learns a separable task and round-trips."""
import numpy as np
import pytest

from minillm.data.toxicity import Blocklist, BlocklistFilter, HashedNgramClassifier


@pytest.mark.parametrize("text", ["what the FUCK", "sh1t happens", "$h!t happens", "f.u.c.k this",
                                  "you b i t c h", "fuuuuuck", "Fück", "a b-a-s-t-a-r-d", "jerk   off now"])
def test_blocklist_catches_evasions(text):
    assert BlocklistFilter().check(text) == "blocklist"


@pytest.mark.parametrize("text", ["Scunthorpe is a town", "a fair assessment of the class", "as is",
                                  "the cockpit of the plane", "I shall see", "a b c d", "Hello!"])
def test_blocklist_leaves_innocent_words(text):
    assert BlocklistFilter().check(text) is None


def test_custom_word_lists_and_thresholds(tmp_path):
    f = tmp_path / "words.txt"
    f.write_text("# comment\nbanana split\nkiwi\n")
    flt = BlocklistFilter(word_files=[f], min_matches=2)
    assert flt.check("a banana split please") is None            # one match, two required
    assert flt.check("a banana split and a k1w1") == "blocklist"
    assert Blocklist(["kiwi"]).matches("KIWI and kiwi") == ["kiwi", "kiwi"]
    with pytest.raises(ValueError, match="words"):
        Blocklist(["..."])


def _synthetic(rng, n):
    good = "weather garden river music friendly helpful thanks lovely book science".split()
    bad = "idiot stupid hate moron loser trash disgusting worthless shut pathetic".split()
    filler = "the a you and is are this that very so really".split()
    texts, labels = [], []
    for i in range(n):
        y = int(rng.integers(2))
        pool = bad if y else good
        words = list(rng.choice(filler, 6)) + list(rng.choice(pool, 2)) + list(rng.choice(good + bad, 1))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(y)
    return texts, np.array(labels)


def test_classifier_learns_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    train, y_train = _synthetic(rng, 600)
    test, y_test = _synthetic(rng, 300)
    clf = HashedNgramClassifier(n_bits=14).fit(train, y_train, epochs=150)
    acc = np.mean((clf.predict_proba(test) >= 0.5) == y_test)
    assert acc >= 0.95                      # each label has 2 of 3 content words from its pool
    path = tmp_path / "clf.npz"
    clf.save(path)
    again = HashedNgramClassifier.load(path)
    np.testing.assert_array_equal(again.predict_proba(test), clf.predict_proba(test))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        HashedNgramClassifier.load(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="labels"):
        clf.fit(["a", "b"], [0, 2])
