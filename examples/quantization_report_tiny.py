"""Quantization report: perplexity, KL divergence, size and decode speed of one small trained model
under every quantization format minillm has.

    python examples/quantization_report_tiny.py                    # trains the model first (13-17 min on 2 cores)
    python examples/quantization_report_tiny.py --run runs/qreport   # reuses that run's checkpoint

The model: Llama flavour, d_model 256, 4 layers, ffn 768 (every matrix's input size is a multiple of
256, so it splits into 256-weight K-quant super-blocks and 128-weight INT4 groups), BPE 2048 trained
on the training part, 1200 steps of 16 x 128 tokens on CPython's documentation text (pydoc topics +
standard-library docstrings, see corpus_documents; every 10th document held out, ~63k tokens). The
trained checkpoint is cached under --run; a run trained with other settings is refused rather than
silently reused.

Evaluation: every non-overlapping 128-token window of the held-out text. Perplexity and the mean
KL(fp32 || quantized) of the next-token distributions are measured on those windows; calibration for
GPTQ / AWQ / LLM.int8 / the ggml importance matrices uses training windows only. "Δppl ± se" is the
perplexity change against fp32 with the standard error of the paired per-window difference of mean
log-likelihood (same windows for every row, so the window-to-window variation of the text cancels);
the lines below the table compare the INT4 methods with each other the same way. All INT4 rows use
group size 128. Decode tok/s: greedy generation of 48 tokens with minillm.inference.generate (KV
cache), median of 3.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import argparse  # noqa: E402
import ast  # noqa: E402
import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sysconfig  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from minillm import ModelConfig, Transformer  # noqa: E402
from minillm.checkpoint import latest_checkpoint, load_checkpoint  # noqa: E402
from minillm.io import atomic_write, read_tokens, write_tokens  # noqa: E402
from minillm.quant import quantize, weight_bytes  # noqa: E402
from minillm.tokenizer import cached_bpe  # noqa: E402
from minillm.train import TrainConfig, train  # noqa: E402

SEQ = 128
GROUP = 128                      # INT4 group size of every INT4 row
ROWS = [  # label, method, format, bits, needs calibration
    ("fp32", None, None, None, False),
    ("INT8", "rtn", "int8", 8, False),
    ("LLM.int8", "rtn", "llm_int8", 8, True),
    ("INT4-RTN", "rtn", "int4", 4, False),
    ("INT4-GPTQ", "gptq", "int4", 4, True),
    ("INT4-AWQ", "awq", "int4", 4, True),
    ("NF4", "rtn", "nf4", 4, False),
    ("Q8_0", "rtn", "q8_0", 8, False),
    ("Q4_0", "rtn", "q4_0", 4, False),
    ("Q4_K", "rtn", "q4_K", 4, False),
]
PAIRS = [("INT4-GPTQ", "INT4-RTN"), ("INT4-AWQ", "INT4-RTN"), ("INT4-GPTQ", "INT4-AWQ")]


def corpus_documents():
    """CPython's own English documentation as a list of documents, in a fixed order: the pydoc topic
    help (minillm.train.corpus_text's ~466 KB) plus every module, class and function docstring of
    the standard library's .py files (parsed with ast, never imported; tests and site-packages
    skipped; docstrings under 40 characters and repeats dropped), ~1.9 MB in all. The topics alone
    leave only ~12k held-out tokens, too few to tell 4-bit methods apart (a ±0.25% standard error
    on Δppl) and so few training tokens that the model overfits within ~400 steps."""
    from pydoc_data.topics import topics
    docs = [topics[k] for k in sorted(topics)]
    root = sysconfig.get_paths()["stdlib"]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("test", "tests", "idle_test", "site-packages",
                                                              "__pycache__"))
        for name in sorted(f for f in filenames if f.endswith(".py")):
            try:
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue  # a few files are deliberately invalid (bad-encoding fixtures)
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) >= 40:
                        docs.append(doc)
    return list(dict.fromkeys(docs))


def prepare_data(run, vocab_size=2048):
    """Split the documents 9:1 (every 10th document is held out), train BPE on the training part
    only, write run/train.bin and run/val.bin. Cached: reused while the corpus text is unchanged.
    -> (train path, val path, tokenizer)."""
    docs = corpus_documents()
    parts = {"train": "\n\n".join(d for i, d in enumerate(docs) if i % 10 != 9),
             "val": "\n\n".join(d for i, d in enumerate(docs) if i % 10 == 9)}
    key = hashlib.sha256(f"{vocab_size}\0{parts['train']}\0{parts['val']}".encode()).hexdigest()
    tok = cached_bpe(parts["train"], vocab_size, os.path.join(run, "tokenizer_cache"))
    tok.save(os.path.join(run, "tokenizer.model"))
    paths = {name: os.path.join(run, f"{name}.bin") for name in parts}
    stamp = os.path.join(run, "data.sha256")
    if not (os.path.exists(stamp) and open(stamp).read() == key and all(map(os.path.exists, paths.values()))):
        for name, text in parts.items():
            write_tokens(paths[name], np.asarray(tok.encode(text), dtype=np.int64), tok.vocab_size)
        with atomic_write(stamp, "w") as f:
            f.write(key)
    return paths["train"], paths["val"], tok


def _comparable(tc_dict):  # the training settings that define the model (paths excluded)
    d = {k: v for k, v in tc_dict.items() if k not in ("out_dir", "train_data", "val_data")}
    return json.loads(json.dumps(d))  # tuples -> lists, as stored in the checkpoint


def get_model(run, args):
    """Train (or resume, or reuse) the report's model under run/ckpt -> (model, train ids, val ids)."""
    os.makedirs(run, exist_ok=True)
    train_path, val_path, tok = prepare_data(run)
    ckpt_dir = os.path.join(run, "ckpt")
    tc = TrainConfig(train_data=train_path, val_data=val_path, out_dir=ckpt_dir,
                     batch_size=args.batch_size, seq_len=SEQ, max_steps=args.steps, lr=args.lr,
                     min_lr=args.lr / 10, warmup_steps=max(1, args.steps // 20),
                     eval_interval=max(1, args.steps // 6), eval_batches=8,
                     ckpt_interval=max(1, args.steps // 12), log_interval=max(1, args.steps // 12))
    ckpt = latest_checkpoint(ckpt_dir)
    state = load_checkpoint(ckpt)[3] if ckpt else None
    if state is not None and _comparable(state.get("train_config", {})) != _comparable(dataclasses.asdict(tc)):
        raise SystemExit(f"{ckpt_dir} holds a model trained with other settings; pass another --run "
                         f"(or delete {ckpt_dir}) to train one with these")
    if state is None or state["step"] < args.steps:
        cfg = ModelConfig.preset("llama-small", vocab_size=tok.vocab_size, ffn_dim=768, max_seq_len=SEQ)
        print(f"training {cfg.num_params():,} parameters for {args.steps} steps of {args.batch_size} x {SEQ} "
              f"tokens in {run} ...", flush=True)
        t = time.time()
        _, history = train(Transformer(cfg, seed=0), tc, log=lambda s: print("  " + s, flush=True))
        print(f"trained in {time.time() - t:.0f} s", flush=True)
        ckpt = latest_checkpoint(ckpt_dir)
    return load_checkpoint(ckpt)[0], read_tokens(train_path)[0], read_tokens(val_path)[0]


def held_out_windows(tokens):  # every non-overlapping window of SEQ + 1 tokens -> (n, SEQ + 1)
    n = (len(tokens) - 1) // SEQ
    return np.stack([np.asarray(tokens[i * SEQ:i * SEQ + SEQ + 1], dtype=np.int64) for i in range(n)])


def calibration_windows(tokens, n, seed):  # n random training windows -> (n, SEQ)
    starts = np.random.default_rng(seed).integers(0, len(tokens) - SEQ, n)
    return np.stack([np.asarray(tokens[s:s + SEQ], dtype=np.int64) for s in starts])


def log_softmax(z):  # (..., V) float32 -> float64
    z = z.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def evaluate(model, held, ref_logits, batch=8):
    """-> (per-window mean NLL (n,), mean KL(fp32 || model) over all tokens, logits (n, SEQ, V) float32
    or None). ref_logits: the fp32 model's logits on `held`; None for the fp32 row itself, which then
    returns its logits as the later rows' reference. Log-softmax runs in
    float64 one batch at a time, so no (n, SEQ, V) float64 array is ever held."""
    nll, kl, logits = [], 0.0, []
    for i in range(0, len(held), batch):
        z = model.forward(held[i:i + batch, :-1])                                         # (b, SEQ, V) f32
        if ref_logits is None:
            logits.append(z)
        logp = log_softmax(z)
        nll.append(-np.take_along_axis(logp, held[i:i + batch, 1:, None], axis=-1)[..., 0].mean(axis=1))
        if ref_logits is not None:
            ref = log_softmax(ref_logits[i:i + batch])
            kl += float(np.sum(np.exp(ref) * (ref - logp)))
    return np.concatenate(nll), kl / (len(held) * SEQ), np.concatenate(logits) if logits else None


def paired(nll_a, nll_b):
    """Perplexity change of a against b in % and its standard error, from per-window NLL pairs.
    Every window has SEQ tokens, so ppl = exp(mean of window means) and the ratio is exp(mean d)."""
    d = nll_a - nll_b                                                                      # (n,)
    mean, se = float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))
    return 100 * (np.exp(mean) - 1), 100 * np.exp(mean) * se                                # delta method


def decode_speed(model, prompt, n_new=48):
    from minillm.inference import generate
    generate(model, prompt, 4)                  # warm-up: first-call allocations and JIT stay out of the timing
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        generate(model, prompt, n_new)
        ts.append(time.perf_counter() - t)
    return n_new / float(np.median(ts))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/qreport")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--calib-windows", type=int, default=128, help="training windows of 128 tokens")
    args = ap.parse_args()
    model, train_tokens, val_tokens = get_model(args.run, args)
    held = held_out_windows(val_tokens)
    calib = calibration_windows(train_tokens, args.calib_windows, seed=2)
    prompt = held[0, :16]
    print(f"\nmodel: {model.config.num_params():,} params, trained {args.steps} steps of {args.batch_size} x {SEQ} "
          f"tokens; held-out {held[:, 1:].size:,} tokens "
          f"({len(held)} windows of {SEQ}); calibration {calib.size:,} training tokens; "
          f"INT4 group size {GROUP}\n")
    print(f"| {'format':9} | bits/weight | model MB | perplexity | Δppl vs fp32 ± se | mean KL to fp32 | "
          f"decode tok/s | quantize s |")
    print(f"|{'-' * 11}|-------------|----------|------------|-------------------|-----------------|"
          f"--------------|------------|")
    nlls, ref_logits = {}, None
    linear = [n for n in model.params if n.endswith("proj.weight")]
    for label, method, fmt, bits, needs in ROWS:
        t = time.time()
        qm = model if method is None else quantize(model, method, bits, GROUP, fmt, calib if needs else None)
        tq = time.time() - t
        nll, kl, logits = evaluate(qm, held, ref_logits)
        ref_logits = logits if ref_logits is None else ref_logits
        nlls[label] = nll
        dppl, se = paired(nll, nlls["fp32"])
        bpw = 32.0 if method is None else np.mean([qm.quantized[n].bits_per_weight for n in linear])
        print(f"| {label:9} | {bpw:11.2f} | {weight_bytes(qm) / 1e6:8.2f} | {np.exp(nll.mean()):10.3f} | "
              f"{f'{dppl:+.3f}% ± {se:.3f}%':>17} | {kl:15.5f} | {decode_speed(qm, prompt):12.1f} | {tq:10.1f} |",
              flush=True)
    print("\nINT4 methods against each other (paired over the same held-out windows):")
    for a, b in PAIRS:
        d, se = paired(nlls[a], nlls[b])
        print(f"  {a} vs {b}: {d:+.3f}% ± {se:.3f}% perplexity ({d / se:+.1f} se)")


if __name__ == "__main__":
    main()
