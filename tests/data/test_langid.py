"""Language id: accuracy on held-out sentences (never used to build the profiles) in all 26
supported languages, script routing, and argument errors."""
import os
import sys

import pytest

from minillm.data import detect_language
from minillm.data.lang_samples import HELD_OUT, TRAIN
from minillm.data.langid import LANGUAGES

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
from langid_by_length import by_length, held_out_first_words, pydoc_paragraphs  # noqa: E402


def test_at_least_twenty_languages_with_separate_held_out_sentences():
    assert len(LANGUAGES) >= 20 and set(LANGUAGES) == set(TRAIN) == set(HELD_OUT)
    for lang, sentences in HELD_OUT.items():
        assert len(sentences) >= 4
        for s in sentences:
            assert s not in TRAIN[lang]


def test_held_out_accuracy():
    per_lang = {}
    for lang, sentences in HELD_OUT.items():
        per_lang[lang] = sum(detect_language(s)[0] == lang for s in sentences) / len(sentences)
    total = sum(len(s) for s in HELD_OUT.values())
    overall = sum(per_lang[l] * len(HELD_OUT[l]) for l in HELD_OUT) / total
    # README states: 140/140 held-out sentences correct when this was written; the test allows a
    # little slack (>= 97% overall, no language below 75%) so profile tweaks stay honest but free
    assert overall >= 0.97, per_lang
    assert min(per_lang.values()) >= 0.75, per_lang


def test_script_routing_and_confidence():
    assert detect_language("これは日本語の文です。")[0] == "ja"          # kana present
    assert detect_language("这是一个中文句子。")[0] == "zh"              # Han only
    code, conf = detect_language("Это русское предложение о погоде.")
    assert code == "ru" and 0.5 < conf <= 1.0
    assert detect_language("Це українське речення про погоду і світ.")[0] == "uk"
    assert detect_language("2024-01-01 12:00 $$$") == ("und", 0.0)
    # a mixed text is attributed to its majority script, with lower confidence
    code, conf = detect_language("The weather is cold today and we stay home. Σήμερα")
    assert code == "en" and conf < 0.9
    assert detect_language("Der Hund schläft.") == detect_language("Der Hund schläft.")


def test_backend_errors_are_named():
    with pytest.raises(ValueError, match="backend"):
        detect_language("text", backend="cld3")
    with pytest.raises(TypeError, match="text"):
        detect_language(None)


def test_short_text_accuracy_by_length():
    """Short texts (measured by examples/langid_by_length.py): whole-word features make 3-word
    snippets of the held-out sentences >= 0.92 correct (0.893 with character n-grams alone) and
    CPython's English doc paragraphs over 40 characters >= 0.92 (0.915 before)."""
    ok, total = held_out_first_words(3)
    assert ok / total >= 0.92
    assert held_out_first_words(5)[0] >= 0.99 * held_out_first_words(5)[1]
    rows, _ = by_length(pydoc_paragraphs())
    ok, n = sum(r[2] for r in rows if r[0] > 40), sum(r[3] for r in rows if r[0] > 40)
    assert ok / n >= 0.92
    # the sentence the paragraph-level filter used to drop as French (fr 0.69)
    code, conf = detect_language("Assignment statements are used to bind names to values.")
    assert code == "en" and conf > 0.9
