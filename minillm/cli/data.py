"""`minillm data ...`: run a pipeline described in TOML, print the default pipeline, explain LSH
parameters, and detect languages / scrub PII from the command line.

    minillm data run pipeline.toml [--workers N] [--input DIR] [--output DIR]
                                   [--executor ray [--ray-address HOST:PORT]]
    minillm data default-config > pipeline.toml
    minillm data lsh --threshold 0.8 --num-perm 128
    minillm data ner-train [--steps 3000] [--out minillm/data/resources/ner_pii.npz]
"""
import os
import sys
import time

from ..data.minhash import lsh_params, s_curve
from ..data.ner import WEIGHTS
from ..data.ner_train import train_and_save
from ..data.pipeline import DEFAULT_PIPELINE, load_config, pipeline_from_config
from .args import UsageError, existing_file, existing_path, open_probability, output_file, output_folder, \
    positive_int, probability, seed


def _progress_bar(stream=None, width=30):
    stream = stream or sys.stderr  # looked up now, not at import: it may have been replaced since
    start = time.perf_counter()

    def show(phase, done, total):
        if not stream.isatty() and done < total:
            return                                   # in a log file, one line per phase
        frac = done / total if total else 1.0
        bar = "#" * int(width * frac) + "-" * (width - int(width * frac))
        stream.write(f"\r{phase:<32} [{bar}] {done}/{total} shards  {time.perf_counter() - start:6.1f}s")
        if done >= total:
            stream.write("\n")
        stream.flush()
    return show


def print_report(report, out=None):
    out = out or sys.stdout
    out.write(f"\n{'stage':<20} {'docs in':>8} {'docs out':>8} {'MB in':>8} {'MB out':>8}  dropped (top reasons)\n")
    for name, din, dout, bin_, bout, reasons in report.table():
        out.write(f"{name:<20} {din:>8} {dout:>8} {bin_:>8.3f} {bout:>8.3f}  {reasons}\n")
    if report.input_skipped:
        out.write("input records skipped: " + ", ".join(
            f"{r} {n}" for r, n in report.input_skipped.most_common()) + "\n")
    out.write(f"\ndocuments: {report.docs_in} in, {report.docs_out} out, {len(report.dropped)} dropped "
              f"({report.tasks_run} of {report.tasks_total} shard x segment tasks run now, the rest resumed)\n")
    for name, summary in report.summaries.items():
        if summary:
            out.write(f"{name}: " + "; ".join(f"{k}={v}" for k, v in summary.items()) + "\n")
    for name, st in report.stages.items():
        if st.counters:
            top = ", ".join(f"{k} {v}" for k, v in sorted(st.counters.items()))
            out.write(f"{name} counters: {top}\n")
    out.write(f"output: {report.out_dir}\n")


def cmd_run(args):
    cfg = load_config(args.config)
    pipe, inp, outp = pipeline_from_config(cfg, workers=args.workers, executor=args.executor,
                                           ray_address=args.ray_address)
    inp, outp = args.input or inp, args.output or outp
    if not inp or not outp:
        raise UsageError(f"{args.config}: the TOML needs [input] path and [output] path (or pass --input/--output)")
    if not os.path.exists(inp):
        raise UsageError(f"input: {inp} does not exist; point [input] path in {args.config} (or --input) at "
                         f"your corpus: a .jsonl/.jsonl.gz/.txt/.warc/.html file or a folder of them")
    for s in pipe.stages:
        if hasattr(s, "params"):              # MinHash stages: the LSH trade-off they chose
            print(f"{s.name}: {s.params.describe()}")
    report = pipe.run(inp, outp, progress=None if args.quiet else _progress_bar())
    print_report(report)
    return 0


def cmd_default_config(args):
    sys.stdout.write(DEFAULT_PIPELINE.read_text(encoding="utf-8"))
    return 0


def cmd_lsh(args):
    p = lsh_params(args.threshold, args.num_perm, args.fp_weight, 1.0 - args.fp_weight)
    print(p.describe())
    print(f"{'Jaccard':>8} {'P(candidate)':>13}")
    for s in [0.1 * i for i in range(1, 10)] + [0.95]:
        print(f"{s:>8.2f} {float(s_curve(s, p.bands, p.rows)):>13.4f}")
    return 0


def cmd_ner_train(args):
    out = args.out or str(WEIGHTS)

    def log(step, loss, seconds):
        sys.stderr.write(f"step {step:5d}  loss {loss:.4f}  {seconds:6.1f}s\n")
    loss, scores = train_and_save(out, steps=args.steps, seed=args.seed, log=log)
    print(f"wrote {out} (final training loss {loss:.4f}); held-out generated rows:")
    print(f"{'type':<6} {'P':>6} {'R':>6} {'F1':>6} {'n':>5}")
    for kind, s in scores.items():
        print(f"{kind:<6} {s['precision']:>6.3f} {s['recall']:>6.3f} {s['f1']:>6.3f} {s['support']:>5}")
    return 0


def register(subparsers):
    p = subparsers.add_parser("data", help="data pipeline: filter, deduplicate, scrub, tokenize",
                              description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    r = sub.add_parser("run", help="run the pipeline described in a TOML file")
    r.add_argument("config", type=existing_file, help="pipeline TOML (see `minillm data default-config`)")
    r.add_argument("--workers", type=positive_int, default=None, help="worker processes (overrides [run])")
    r.add_argument("--input", default=None, type=existing_path, help="input file or folder (overrides [input] path)")
    r.add_argument("--output", default=None, type=output_folder, help="output folder (overrides [output] path)")
    r.add_argument("--executor", choices=("local", "ray"), default=None,
                   help="where shards run: this host's process pool or Ray tasks (overrides [run])")
    r.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (e.g. auto, host:6379); default: start a local Ray")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)
    d = sub.add_parser("default-config", help="print the default pipeline TOML")
    d.set_defaults(func=cmd_default_config)
    l = sub.add_parser("lsh", help="choose LSH bands x rows for a Jaccard threshold")
    l.add_argument("--threshold", type=open_probability, default=0.8, help="Jaccard similarity to catch")
    l.add_argument("--num-perm", type=positive_int, default=128, help="MinHash permutations")
    l.add_argument("--fp-weight", type=probability, default=0.5, help="weight of false positives (0..1)")
    l.set_defaults(func=cmd_lsh)
    n = sub.add_parser("ner-train", help="retrain the NER PII tagger of the pii_ner stage")
    n.add_argument("--steps", type=positive_int, default=3000, help="training steps")
    n.add_argument("--seed", type=seed, default=0, help="random seed")
    n.add_argument("--out", default=None, type=output_file, help="weights file (default: the shipped one)")
    n.set_defaults(func=cmd_ner_train)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
