"""The default data pipeline end to end on a corpus with known defects, printing what each stage did.

    python examples/data_pipeline.py                   # writes to /tmp/minillm_data_example
    python examples/data_pipeline.py --out DIR --workers 2 --tokenizer bytes

The corpus is the ~466 KB of English that ships with CPython (pydoc_data.topics), cut into
documents of a few paragraphs, plus generated defects whose ids say what they are:
  near-*   copies of real documents with ~1% of words edited  -> MinHash dedup should drop them
  exact-*  copies differing only in case/whitespace/punctuation -> exact dedup
  spam-*   keyword-stuffed repeated lines                        -> Gopher repetition / quality
  gib-*    random-letter gibberish                               -> Gopher quality / perplexity
  menu-*   navigation menus of short lines                       -> FineWeb / Gopher
  lang-*   German, French, Spanish ... text                      -> language id
  pii-*    real documents with emails, phones, cards, IBANs...   -> kept, with PII replaced
  toxic-*  real documents with profanity inserted                -> toxicity blocklist
The default pipeline (minillm/data/resources/default_pipeline.toml) runs quality filtering,
deduplication, PII removal and toxicity filtering, then writes the token file for `minillm train`.
"""
import argparse
import collections
import gzip
import json
import pathlib
import shutil

import numpy as np
from pydoc_data.topics import topics

from minillm.data import load_config, pipeline_from_config, remove_pii, write_jsonl
from minillm.cli.data import _progress_bar, print_report
from minillm.data.lang_samples import TRAIN
from minillm.data.pipeline import DEFAULT_PIPELINE
from minillm.io import read_tokens


def base_documents(min_words=120):
    """pydoc topics cut into documents of whole paragraphs with at least min_words words."""
    docs = []
    for name, text in sorted(topics.items()):
        chunk = []
        for para in text.split("\n\n"):
            chunk.append(para)
            if len(" ".join(chunk).split()) >= min_words:
                docs.append((f"topic-{name}-{len(docs)}", "\n\n".join(chunk).strip()))
                chunk = []
        if chunk and len(" ".join(chunk).split()) >= 50:
            docs.append((f"topic-{name}-{len(docs)}", "\n\n".join(chunk).strip()))
    return docs


def with_pii(text, rng, i):
    extras = [f"Contact the maintainer at dev{i}@example.org for details.",
              f"Call +1 (415) 555-{1000 + i:04d} or +44 20 7946 {i:04d} during office hours.",
              "Payment card 4111 1111 1111 1111 was charged; IBAN DE89 3704 0044 0532 0130 00.",
              f"The server at 192.168.{i % 256}.17 (fe80::1ff:fe23:4567:{i:x}) logged SSN 123-45-{6789 - i:04d}."]
    lines = text.split("\n")
    for e in rng.choice(extras, 2, replace=False):
        lines.insert(int(rng.integers(len(lines) + 1)), e)
    return "\n".join(lines)


def build_corpus(rng):
    base = base_documents()
    docs = list(base)
    picks = rng.permutation(len(base))
    for j, k in enumerate(picks[:40]):                     # near-duplicates: ~2% of words edited
        words = base[k][1].split(" ")
        for p in rng.choice(len(words), max(1, len(words) // 100), replace=False):
            words[p] = "edited"
        docs.append((f"near-{j}-of-{base[k][0]}", " ".join(words)))
    for j, k in enumerate(picks[40:60]):                   # exact duplicates after normalisation
        docs.append((f"exact-{j}-of-{base[k][0]}", base[k][1].upper().replace(".", " .")))
    for j in range(15):                                     # spam
        line = rng.choice(["BUY CHEAP WATCHES NOW best price click here",
                           "Best casino bonus online free spins win big today"])
        docs.append((f"spam-{j}", "\n".join([line] * int(rng.integers(20, 40)))))
    letters = list("abcdefghijklmnopqrstuvwxyz")
    for j in range(15):                                     # gibberish
        words = ["".join(rng.choice(letters, int(rng.integers(2, 9)))) for _ in range(200)]
        docs.append((f"gib-{j}", " ".join(words) + "."))
    for j in range(10):                                     # navigation menus
        items = ["Home", "About", "Products", "Blog", "Careers", "Contact", "Login", "Sign up",
                 "Privacy", "Terms", "FAQ", "Support"]
        docs.append((f"menu-{j}", "\n".join(rng.permutation(items).tolist() * 6)))
    for lang in ("de", "fr", "es", "it", "nl", "pl", "ru", "ja"):   # other languages
        docs.append((f"lang-{lang}", TRAIN[lang]))
    for j, k in enumerate(picks[60:90]):                   # PII
        docs.append((f"pii-{j}", with_pii(base[k][1], rng, j)))
        docs[k] = (docs[k][0] + "-orig-pii-source", docs[k][1])
    for j, k in enumerate(picks[90:100]):                  # toxic
        sents = base[k][1].split(". ")
        sents.insert(len(sents) // 2, "This is f.u.c.k.i.n.g bullshit, you 4sshole")
        docs.append((f"toxic-{j}", ". ".join(sents)))
    order = rng.permutation(len(docs))
    return [docs[i] for i in order]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/minillm_data_example")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--tokenizer", default=None, help="override the tokenize stage: auto|bpe|bytes")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    out = pathlib.Path(args.out)
    if out.exists():
        shutil.rmtree(out)                                   # a fresh run every time
    docs = build_corpus(rng)
    for s in range(args.shards):
        write_jsonl(out / "corpus" / f"shard-{s:03d}.jsonl.gz",
                    [{"id": i, "text": t, "meta": {}} for i, t in docs[s::args.shards]])
    kinds = collections.Counter(i.split("-")[0] for i, _ in docs)
    print(f"corpus: {len(docs)} documents, {sum(len(t.encode()) for _, t in docs) / 1e3:.0f} KB in "
          f"{args.shards} shards: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))

    cfg = load_config(DEFAULT_PIPELINE)
    if args.tokenizer:
        for st in cfg["stage"]:
            if st["type"] == "tokenize":
                st["tokenizer"] = args.tokenizer
    pipe, _, _ = pipeline_from_config(cfg, workers=args.workers)
    for st in pipe.stages:
        if hasattr(st, "params"):
            print(f"{st.name}: {st.params.describe()}")
    report = pipe.run(out / "corpus", out / "clean", progress=_progress_bar())
    print_report(report)

    # what happened to each kind of generated document
    fate = collections.defaultdict(collections.Counter)
    for doc_id, stage, reason in report.dropped:
        fate[doc_id.split("-")[0]][f"{stage}:{reason}"] += 1
    print(f"\n{'kind':<8} {'docs':>5} {'dropped':>8}  by stage:reason")
    for kind in sorted(kinds):
        dropped = sum(fate[kind].values())
        how = ", ".join(f"{k} {v}" for k, v in fate[kind].most_common(4))
        print(f"{kind:<8} {kinds[kind]:>5} {dropped:>8}  {how}")

    # duplicates: how many planted copies survive next to their source? (0 is the goal; a copy
    # whose source was dropped by a quality filter rightly survives alone)
    kept = set()
    leftover = collections.Counter()
    for f in sorted((out / "clean" / "shards").glob("*.jsonl.gz")):
        for line in gzip.open(f, "rt"):
            doc = json.loads(line)
            kept.add(doc["id"])
            for k, n in remove_pii(doc["text"])[1].items():   # PII left behind would be a bug
                leftover[k] += n
    for kind in ("near", "exact"):
        pairs = [(i, i.split("-of-")[1]) for i, _ in docs if i.startswith(kind + "-")]
        both = sum(a in kept and any(b == k.split("-orig")[0] for k in kept) for a, b in pairs)
        print(f"{kind}-duplicate pairs with both copies in the output: {both} of {len(pairs)}")
    print(f"PII left in the output after the pii stage: {sum(leftover.values())}")
    tokens, vocab = read_tokens(out / "clean" / "tokens.bin")
    print(f"token file: {out / 'clean' / 'tokens.bin'}: {len(tokens):,} tokens, vocab {vocab}, "
          f"dtype {tokens.dtype}")


if __name__ == "__main__":
    main()
