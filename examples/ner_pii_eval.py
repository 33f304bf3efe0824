"""PII detection scores per entity type: the NER tagger of the `pii_ner` stage beside the regex `pii`
stage and, where it can run, Microsoft Presidio's analyzer.

Two test sets: held-out generated rows (names, streets, cities, organisations and sentence
templates that training never saw; minillm.data.ner_train.generate(split="heldout")) and the
hand-labelled real sentences in tests/data/fixtures/ner_real_sentences.jsonl.

Scores are entity-level (exact character span and type, as conlleval). The regex stage has no
rule for these types, so it is scored by what it *removes*: the share of gold entities whose text
no longer appears after remove_pii (the same "removed" measure is given for the NER stage).

    python examples/ner_pii_eval.py [--weights minillm/data/resources/ner_pii.npz] [--n 500]
"""
import argparse
import json
import pathlib
import time

from minillm.data.ner import TYPES, NERTagger
from minillm.data.ner_train import generate, prf
from minillm.data.pii import remove_pii

REAL = pathlib.Path(__file__).parent.parent / "tests" / "data" / "fixtures" / "ner_real_sentences.jsonl"
PRESIDIO_TYPES = {"PERSON": "PER", "LOCATION": "LOC", "ORGANIZATION": "ORG", "NRP": None}


def load_real():
    out = []
    for line in REAL.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        out.append((d["text"], [(d["text"].index(s), d["text"].index(s) + len(s), k)
                                for s, k in d["entities"]]))
    return out


def removed_share(examples, scrub):
    """Per type: share of gold entities whose text is gone from scrub(text)."""
    hit, total = dict.fromkeys(TYPES, 0), dict.fromkeys(TYPES, 0)
    for text, ents in examples:
        out = scrub(text)
        for a, b, kind in ents:
            total[kind] += 1
            hit[kind] += text[a:b] not in out
    return {k: hit[k] / total[k] if total[k] else float("nan") for k in TYPES}


def cut_spans(text, spans):
    """text with every predicted span replaced by a placeholder."""
    for a, b, _ in sorted(spans, reverse=True):
        text = text[:a] + "<PII>" + text[b:]
    return text


def presidio_predict():
    """-> a function text -> entities, or the reason Presidio cannot run here."""
    try:  # optional: presidio-analyzer and a spaCy English model
        from presidio_analyzer import AnalyzerEngine
        engine = AnalyzerEngine()
    except Exception as e:  # ImportError, or OSError when its spaCy model is missing
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"

    def predict(text):
        res = engine.analyze(text=text, language="en")
        return [(r.start, r.end, PRESIDIO_TYPES[r.entity_type]) for r in res
                if PRESIDIO_TYPES.get(r.entity_type)]
    return predict, None


def table(title, scores, removed):
    print(f"\n{title}")
    print("| type | precision | recall | F1 | removed | gold entities |")
    print("|---|---|---|---|---|---|")
    for k in TYPES:
        s = scores[k] if scores else None
        cells = (f"{s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f}" if s else "- | - | -")
        print(f"| {k} | {cells} | {removed[k]:.3f} | {s['support'] if s else ''} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="NER weights (default: the shipped file)")
    ap.add_argument("--n", type=int, default=500, help="held-out generated rows")
    args = ap.parse_args()
    tagger = NERTagger.load(args.weights)
    presidio, why = presidio_predict()
    sets = {"held-out generated": generate(args.n, seed=1, split="heldout"),
            "hand-labelled real sentences": load_real()}
    for name, examples in sets.items():
        t0 = time.perf_counter()
        pred = [tagger.entities(t) for t, _ in examples]
        dt = time.perf_counter() - t0
        words = sum(len(t.split()) for t, _ in examples)
        gold = [g for _, g in examples]
        table(f"NER tagger, {name} ({len(examples)} texts, {words / dt:,.0f} words/s)",
              prf(pred, gold), removed_share(examples, lambda t: tagger.redact(t)[0]))
        table(f"regex pii stage, {name}", None, removed_share(examples, lambda t: remove_pii(t)[0]))
        if presidio:
            table(f"Presidio analyzer, {name}", prf([presidio(t) for t, _ in examples], gold),
                  removed_share(examples, lambda t: cut_spans(t, presidio(t))))
    if not presidio:
        print(f"\nPresidio not run: {why}")


if __name__ == "__main__":
    main()
