"""Data-parallel training: measured on this machine, and the multi-node picture on paper.

    python examples/bench_distributed.py              # both tables (needs pip install minillm[dist])
    python examples/bench_distributed.py --paper      # only the on-paper table (no MPI needed)
    python examples/bench_distributed.py --steps 40 --preset llama-small

Measured: `minillm train` on the same token file and global batch, as (a) 1 process x 1 thread,
(b) `mpirun -n 2` x 1 thread each, (c) 1 process x 2 threads (OpenMP and OpenBLAS), and (b) again
with all gradients in one bucket, sent only after backward ends (no overlap). Each step's
tok/s and comm_s (seconds blocked in MPI calls: bucket waits, the parameter all-gather and the
agreed scalars, including any wait for the slower rank) come from metrics.jsonl; the table shows
medians over the steps after the first few. The last column is the CPU time (user + system) of all
the job's processes divided by the steps, start-up included: on a machine shared with other jobs,
wall-clock figures follow the share of the cores a job gets, CPU time does not.

On paper: per optimizer step data parallelism all-reduces every fp32 gradient (4P bytes) and, with
ZeRO-1, all-gathers the parameters (each rank contributes 4P/N). A ring all-reduce moves
2 (N-1)/N x 4P bytes through every link (Patarasuk & Yuan 2009), so its time is about
8P (N-1) / (N * bandwidth) plus latency; the ring all-gather adds (N-1)/N x 4P, half that again.
Communication starts to dominate when those 12P (N-1)/N bytes take longer than the step's compute,
6P flops per token (Kaplan et al. 2020): with b tokens per rank and F flop/s per rank that is
b < 2 (N-1)/N * F / bandwidth (bytes/s) -- independent of P. (llm.c's ZeRO-1 reduce-scatters
instead of all-reducing, 8P (N-1)/N bytes in all, which would make it (4/3) (N-1)/N * F / bandwidth.)
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

from minillm import ModelConfig

PAPER_PRESETS = ["llama-small", "gpt2-6l", "gpt2", "llama-134m"]
GBPS = [10, 100, 400]


def ring_allreduce_seconds(nbytes, ranks, gbit_per_s, latency=5e-6):
    """Bandwidth term 2 (N-1)/N * bytes / B plus 2 (N-1) latency hops."""
    return 2 * (ranks - 1) / ranks * nbytes / (gbit_per_s * 1e9 / 8) + 2 * (ranks - 1) * latency


def paper_table(ranks=8, flops=(100e9, 400e12)):
    rows = ["| preset | params P | gradient bytes all-reduced / step | ring all-reduce, N=%d: 10 / 100 / 400 Gb/s "
            "| AdamW moments per rank: 1 rank -> ZeRO-1, N=%d |" % (ranks, ranks), "|---|---|---|---|---|"]
    for name in PAPER_PRESETS:
        P = ModelConfig.preset(name).num_params()
        times = " / ".join(f"{ring_allreduce_seconds(4 * P, ranks, g) * 1e3:.1f} ms" for g in GBPS)
        rows.append(f"| {name} | {P / 1e6:.1f} M | {4 * P / 2**20:.0f} MiB | {times} | "
                    f"{8 * P / 2**20:.0f} MiB -> {8 * P / ranks / 2**20:.0f} MiB |")
    rows += ["", "Tokens per rank per step below which communication (all-reduce + ZeRO-1 all-gather, not "
             f"overlapped) takes longer than the step's compute, b* = 2 (N-1)/N F / bandwidth, N={ranks}:", "",
             "| compute per rank F | " + " | ".join(f"{g} Gb/s" for g in GBPS) + " |", "|---" * (len(GBPS) + 1) + "|"]
    for F in flops:
        label = f"{F / 1e9:.0f} GFLOP/s" if F < 1e12 else f"{F / 1e12:.0f} TFLOP/s"
        b = [2 * (ranks - 1) / ranks * F / (g * 1e9 / 8) for g in GBPS]
        rows.append(f"| {label} | " + " | ".join(f"{x:,.0f}" for x in b) + " |")
    return "\n".join(rows)


def make_tokens(folder, vocab_size):
    """CPython's pydoc text as a token file with its BPE tokenizer beside it (tokenizer.model)."""
    from minillm.io import write_tokens
    from minillm.tokenizer import cached_bpe
    from minillm.train import corpus_text
    text = corpus_text()
    tok = cached_bpe(text, vocab_size, os.path.join(folder, "cache"))
    tok.save(os.path.join(folder, "tokenizer.model"))
    path = os.path.join(folder, "tokens.bin")
    write_tokens(path, tok.encode(text), tok.vocab_size)
    return path


def measure(label, ranks, threads, tokens, out, args, extra=()):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = [sys.executable, "-c", "import sys; from minillm.cli import main; sys.exit(main())", "train",
           "--data", tokens, "--out", out, "--preset", args.preset, "--steps", str(args.steps),
           "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len), "--fresh",
           "--ckpt-interval", str(args.steps), "--eval-interval", str(args.steps), *extra]
    if ranks > 1:
        cmd = [shutil.which("mpirun") or "mpirun", "-n", str(ranks), "--oversubscribe"] + cmd
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / args.steps
    with open(os.path.join(out, "metrics.jsonl")) as f:
        recs = [r for r in map(json.loads, f) if "tok_per_s" in r][args.skip:]
    tps = statistics.median(r["tok_per_s"] for r in recs)
    step = statistics.median(args.batch_size * args.seq_len / r["tok_per_s"] for r in recs)
    comm = statistics.median(r["comm_s"] for r in recs)
    return (f"| {label} | {tps:,.0f} | {step * 1e3:.0f} ms | {comm * 1e3:.1f} ms ({comm / step:.0%}) | "
            f"{cpu:.2f} s |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paper", action="store_true", help="print only the on-paper table")
    ap.add_argument("--preset", default="llama-small")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--skip", type=int, default=5, help="first steps left out of the medians")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--vocab-size", type=int, default=2048)
    args = ap.parse_args()
    print(paper_table())
    if args.paper:
        return
    with tempfile.TemporaryDirectory() as tmp:
        tokens = make_tokens(tmp, args.vocab_size)
        print(f"\n{args.preset}, global batch {args.batch_size} x {args.seq_len} tokens, {args.steps} steps "
              f"(medians of the last {args.steps - args.skip})\n")
        print("| configuration | tokens/s | step | blocked in communication per step | CPU time per step, "
              "all processes |\n|---|---|---|---|---|")
        configs = [("1 rank x 1 thread", 1, 1, ()), ("2 ranks x 1 thread (mpirun -n 2)", 2, 1, ()),
                   ("1 rank x 2 threads", 1, 2, ()),
                   ("2 ranks x 1 thread, one bucket (no overlap)", 2, 1, ("--bucket-mb", "4096"))]
        for k, (label, ranks, threads, extra) in enumerate(configs):
            print(measure(label, ranks, threads, tokens, os.path.join(tmp, f"run{k}"), args, extra), flush=True)


if __name__ == "__main__":
    main()
