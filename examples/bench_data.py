"""Benchmark: MinHash signatures per second, minillm vs datasketch, on the same documents and
parameters (word 5-gram shingles, 128 hash functions), plus a check that the two give
statistically the same Jaccard estimates.

    python examples/bench_data.py                 # paragraphs of CPython's pydoc_data.topics
    python examples/bench_data.py --num-perm 256 --repeat 5

datasketch is optional (`pip install datasketch`); without it only minillm is timed. The corpus is
the ~466 KB of English that every CPython ships, cut into paragraphs, with edited copies appended so
the agreement check has pairs across the whole range of similarity.
"""
import argparse
import time

import numba
import numpy as np
from pydoc_data.topics import topics

from minillm.data import estimate_jaccard, minhash_signatures


def corpus(rng):
    paragraphs = [p.strip() for doc in topics.values() for p in doc.split("\n\n")]
    docs = [p for p in paragraphs if len(p.split()) >= 8]
    pairs = []
    for i in rng.choice(len(docs), 300, replace=False):     # an edited copy of 300 paragraphs
        words = docs[i].split()
        keep = rng.random(len(words)) > rng.uniform(0.0, 0.3)
        pairs.append((int(i), len(docs)))
        docs.append(" ".join(w if k else "EDIT" for w, k in zip(words, keep)))
    return docs, pairs


def shingles(text, n):
    """The word n-gram set minillm hashes, as UTF-8 bytes for datasketch."""
    w = text.split()
    return {" ".join(w[i:i + n]).encode("utf-8") for i in range(max(len(w) - n + 1, 1))}


def best_of(repeat, fn):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--ngram", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    docs, pairs = corpus(rng)
    n_bytes = sum(len(d.encode()) for d in docs)
    print(f"{len(docs)} documents, {n_bytes / 1e6:.2f} MB, num_perm={args.num_perm}, "
          f"word {args.ngram}-gram shingles, best of {args.repeat}")
    minhash_signatures(docs[:4], args.num_perm, args.ngram)            # JIT compile / cache load

    rows = []
    try:
        from datasketch import MinHash

        # its fastest documented path: hash functions drawn once, shared by every MinHash object
        template = MinHash(num_perm=args.num_perm, seed=1)

        def run_datasketch():
            out = []
            for d in docs:
                m = MinHash(num_perm=args.num_perm, permutations=template.permutations,
                            scheme=template.scheme)
                m.update_batch(shingles(d, args.ngram))
                out.append(m.hashvalues)
            return np.array(out)

        t_ds, sig_ds = best_of(max(1, args.repeat // 2), run_datasketch)
        rows.append(("datasketch MinHash.update_batch", 1, t_ds))
    except ImportError:
        t_ds, sig_ds = None, None

    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(threads)
        t, sig = best_of(args.repeat, lambda: minhash_signatures(docs, args.num_perm, args.ngram))
        rows.append(("minillm minhash_signatures (Numba)", threads, t))
        if threads == numba.config.NUMBA_NUM_THREADS:
            break

    print(f"\n| implementation | threads | seconds | signatures/s | vs datasketch |")
    print("|---|---:|---:|---:|---:|")
    for name, threads, t in rows:
        ratio = f"{t_ds / t:.1f}x" if t_ds else "n/a"
        print(f"| {name} | {threads} | {t:.3f} | {len(docs) / t:,.0f} | {ratio} |")

    # agreement: both estimate the same Jaccard of the same shingle sets, with different hashes
    true = np.array([len(shingles(docs[i], args.ngram) & shingles(docs[j], args.ngram))
                     / len(shingles(docs[i], args.ngram) | shingles(docs[j], args.ngram))
                     for i, j in pairs])
    ours = np.array([estimate_jaccard(sig[i], sig[j]) for i, j in pairs])
    print(f"\nJaccard estimates on {len(pairs)} edited pairs (true J from the shingle sets, "
          f"mean {true.mean():.3f}); theoretical sd <= 1/(2 sqrt(P)) = "
          f"{0.5 / np.sqrt(args.num_perm):.4f}")
    print(f"  minillm    : mean error {np.mean(ours - true):+.4f}, rms error "
          f"{np.sqrt(np.mean((ours - true) ** 2)):.4f}")
    if sig_ds is not None:
        theirs = np.array([np.mean(sig_ds[i] == sig_ds[j]) for i, j in pairs])
        diff = ours - theirs
        z = diff.mean() / (diff.std(ddof=1) / np.sqrt(len(diff)))
        print(f"  datasketch : mean error {np.mean(theirs - true):+.4f}, rms error "
              f"{np.sqrt(np.mean((theirs - true) ** 2)):.4f}")
        print(f"  paired difference minillm - datasketch: mean {diff.mean():+.4f} "
              f"(z = {z:+.2f}; |z| < 3 means no detectable disagreement)")


if __name__ == "__main__":
    main()
