"""Quality filters against a golden fixture: every rule has a case that trips exactly it (and the
clean text trips nothing); thresholds are configurable; results are deterministic."""
import json
import pathlib

import pytest

from minillm.data.filters import (C4Filter, FineWebFilter, GopherQuality, GopherRepetition,
                                  LengthFilter, SymbolRatioFilter, duplicate_ngram_char_fraction,
                                  top_ngram_char_fraction)

FIXTURE = json.loads((pathlib.Path(__file__).parent / "fixtures" / "filters_golden.json").read_text())
FILTERS = {"gopher_quality": GopherQuality, "gopher_repetition": GopherRepetition, "c4": C4Filter,
           "fineweb": FineWebFilter}


@pytest.mark.parametrize("case", FIXTURE, ids=[f"{c['filter']}-{c['case']}" for c in FIXTURE])
def test_golden_fixture(case):
    f = FILTERS[case["filter"]](**case["params"])
    assert f.check(case["text"]) == case["expected"]
    assert f.check(case["text"]) == f.check(case["text"])     # deterministic


def test_every_filter_rule_is_covered_by_the_fixture():
    expected = {c["expected"] for c in FIXTURE}
    for reason in ["gopher_too_few_words", "gopher_mean_word_length", "gopher_symbol_word_ratio",
                   "gopher_bullet_lines", "gopher_ellipsis_lines", "gopher_non_alpha_words",
                   "gopher_stop_words", "gopher_dup_line_frac", "gopher_dup_line_char_frac",
                   "gopher_dup_para_frac", "gopher_top_2gram", "gopher_dup_5gram",
                   "c4_lorem_ipsum", "c4_curly_bracket", "c4_too_few_sentences",
                   "fineweb_line_punct_ratio", "fineweb_short_line_ratio", "fineweb_char_dup_ratio",
                   "fineweb_list_ratio"]:
        assert reason in expected


def test_c4_rewrites_lines():
    text = ("Intro without punctuation\nThis is a proper sentence here.\nShort.\n"
            "Please enable JavaScript in your browser now.\nWe use cookies on this site okay.\n"
            "It has a citation[1] in it.\nA third sentence stays in.\nThe fourth one stays too.\n"
            "And here is the fifth sentence.")
    kept, reason = C4Filter().apply(text)
    assert reason is None
    assert kept.split("\n") == ["This is a proper sentence here.", "It has a citation in it.",
                                "A third sentence stays in.", "The fourth one stays too.",
                                "And here is the fifth sentence."]


def test_ngram_statistics_by_hand():
    ws = "a b a b a b c".split()             # 'a b' occurs 3 times: 2 chars x 3 / 7 chars
    assert top_ngram_char_fraction(ws, 2) == pytest.approx(6 / 7)
    ws = "x y z w v x y z w v q".split()      # the 5-gram 'x y z w v' repeats: 10 of 11 chars
    assert duplicate_ngram_char_fraction(ws, 5) == pytest.approx(10 / 11)
    assert duplicate_ngram_char_fraction("a b c d e f".split(), 5) == 0.0


def test_length_and_symbol_filters_are_configurable():
    class Chars:                              # any object with .encode works as the tokenizer
        def encode(self, text):
            return list(text.encode())
    assert LengthFilter(min_length=3).check("one two") == "too_short"
    assert LengthFilter(max_length=1).check("one two") == "too_long"
    assert LengthFilter(min_length=5, tokenizer=Chars()).check("one two") is None
    assert SymbolRatioFilter(0.1).check("#a #b words here") == "symbol_word_ratio"
    assert SymbolRatioFilter(0.6).check("#a #b words here") is None
