"""Language-id accuracy by text length, on text the built-in profiles never saw:
CPython's documentation paragraphs (pydoc_data.topics, English) by length in characters, and the
held-out sentences of 26 languages (minillm.data.lang_samples.HELD_OUT) cut to their first N words.

    python examples/langid_by_length.py
"""
import re
from collections import Counter

from pydoc_data.topics import topics

from minillm.data.langid import detect_language
from minillm.data.lang_samples import HELD_OUT

BUCKETS = ((0, 40), (41, 80), (81, 160), (161, 320), (321, 10**9))


def pydoc_paragraphs():
    """The English paragraphs of CPython's topic help (blank-line separated; doctest lines left out)."""
    out = []
    for key in sorted(topics):
        for p in topics[key].split("\n\n"):
            p = " ".join(p.split())
            if re.search(r"[A-Za-z]{3}", p) and not p.startswith((">>>", "...")):
                out.append(p)
    return out


def by_length(paragraphs):
    """-> [(lo, hi, correct, total)] and the Counter of wrong answers."""
    rows, wrong = [], Counter()
    for lo, hi in BUCKETS:
        part = [p for p in paragraphs if lo <= len(p) <= hi]
        codes = [detect_language(p)[0] for p in part]
        wrong.update(c for c in codes if c != "en")
        rows.append((lo, hi, sum(c == "en" for c in codes), len(part)))
    return rows, wrong


def held_out_first_words(n_words):
    """-> (correct, total) over HELD_OUT sentences cut to their first n_words words."""
    results = [detect_language(" ".join(s.split()[:n_words]))[0] == lang
               for lang, sentences in HELD_OUT.items() for s in sentences]
    return sum(results), len(results)


def main():
    rows, wrong = by_length(pydoc_paragraphs())
    print("| CPython docs paragraphs (en), characters | correct | accuracy |")
    print("|---|---|---|")
    for lo, hi, ok, n in rows:
        label = f"> {lo - 1}" if hi == 10**9 else f"{lo}-{hi}"
        print(f"| {label} | {ok}/{n} | {ok / max(n, 1):.3f} |")
    print(f"wrong answers: {dict(wrong.most_common(5))}")
    print("\n| held-out sentences, first N words (26 languages) | correct | accuracy |")
    print("|---|---|---|")
    for n in (2, 3, 5, 8, 1000):
        ok, total = held_out_first_words(n)
        print(f"| {'all' if n == 1000 else n} | {ok}/{total} | {ok / total:.3f} |")


if __name__ == "__main__":
    main()
