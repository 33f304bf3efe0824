"""Speculative decoding on a real model: SmolLM2-135M-Instruct as the target (float32, and Q8_0),
drafted by the same model quantized to Q2_K or Q4_0 (self-speculation) or by prompt lookup (n-grams
copied from the prompt, no draft model). The quantized models (drafts, and the Q8_0 target) run
with int8 activations, as GGUF files load by default, and hold the LM head in their format too (quantize(..., head=True)): the 49152 x 576 head is a fifth of SmolLM2's
float32 weights, and a draft that kept it in float32 would cost close to half a target step. For each draft, k tokens per step and temperature: the
acceptance rate (accepted / proposed drafts), tokens per target call, and the wall-clock speedup
over plain decoding of the same target (minillm.inference.generate with its KV cache). First, what a
verification of T tokens costs against a decode step, per target.

    python examples/speculative_real.py --model .../SmolLM2-135M-Instruct.Q4_1.gguf
    python examples/speculative_real.py --model ... --ks 2,3,4,5,6,7,8 --targets f32,q8_0   # the full grid

The prompt asks the model to rewrite a Python function it is shown, as code assistants are asked
to: the answer repeats much of the prompt, which is where prompt lookup pays. Greedy runs check
that the output equals plain greedy decoding token for token. Times: one run per setting (the
machine is shared: read the ratios, measured back to back, not the absolute numbers).
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import minillm  # noqa: E402
from minillm.inference import generate, prompt_lookup_generate, speculative_generate  # noqa: E402
from minillm.inference.decode import forward_cached  # noqa: E402
from minillm.inference.kv_cache import KVCache  # noqa: E402
from minillm.quant import quantize  # noqa: E402

CODE = '''def moving_average(values, window):
    """Return the moving averages of values over window items."""
    result = []
    for i in range(len(values) - window + 1):
        total = 0
        for j in range(i, i + window):
            total += values[j]
        result.append(total / window)
    return result
'''
PROMPT = [{"role": "user", "content": "Add type hints to this Python function and keep everything else "
                                      f"the same:\n\n```python\n{CODE}```"}]


def baseline(target, ids, n_new, temperature, seed):
    t = time.perf_counter()
    out = generate(target, ids, n_new, temperature=temperature, seed=seed)
    return out, time.perf_counter() - t


def run(target, draft, ids, n_new, k, temperature, seed):
    """-> (tokens, stats) for a draft model, or prompt lookup when draft is None."""
    if draft is None:
        return prompt_lookup_generate(target, ids, n_new, k=k, ngram=3, temperature=temperature, seed=seed)
    return speculative_generate(target, draft, ids, n_new, k=k, temperature=temperature, seed=seed)


def verification_costs(target, ids, sizes=(1, 3, 5, 9), rounds=5):
    """Median ms of one forward of T tokens after the prompt (a k = T - 1 verification; T = 1 is a
    decode step), each round from the same cache position. -> {T: ms}"""
    cache = KVCache.allocate(target.config, 1, len(ids) + max(sizes))
    forward_cached(target, ids[None, :], cache)
    times = {T: [] for T in sizes}
    for _ in range(rounds):
        for T in sizes:
            t0 = time.perf_counter()
            forward_cached(target, ids[None, -T:], cache)
            times[T].append(time.perf_counter() - t0)
            cache.truncate(len(ids))
    return {T: 1e3 * float(np.median(v)) for T, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="SmolLM2 GGUF file (dequantized to float32 for the target)")
    ap.add_argument("--targets", default="f32", help="comma list of f32, q8_0")
    ap.add_argument("--drafts", default="q4_0,q2_K,lookup", help="comma list of q4_0, q2_K, lookup")
    ap.add_argument("--ks", default="2,4,6,8")
    ap.add_argument("--temperatures", default="0,0.8")
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    f32, tok = minillm.load(args.model, dequantize=True)
    ids = np.asarray(tok.encode(tok.apply_chat_template(PROMPT, add_generation_prompt=True),
                                allowed_special="all"), dtype=np.int64)
    models = {"f32": f32}
    for name in set(args.targets.split(",") + args.drafts.split(",")) - {"f32", "lookup"}:
        models[name] = quantize(f32, "rtn", format=name, head=True)   # block linears and the LM head
        for layer in models[name].quantized.values():                 # int8 activations, as minillm.load
            layer.act_int8 = True                                     # gives a GGUF file's layers
    ks = [int(k) for k in args.ks.split(",")]
    greedy = None
    print("| target | " + " | ".join(f"{T} token{'s' * (T > 1)}, ms (x one step)" for T in (1, 3, 5, 9)) + " |")
    print("|---|---|---|---|---|")
    for tname in args.targets.split(","):
        ms = verification_costs(models[tname], ids)
        print(f"| {tname} | " + " | ".join(f"{v:.1f} ({v / ms[1]:.2f}x)" for v in ms.values()) + " |")
    print(f"\nprompt: {len(ids)} tokens; {args.new_tokens} new tokens per run\n")
    print("| target | draft | temperature | k | acceptance | tokens / target call | spec s | plain s | speedup |")
    print("|---|---|---|---|---|---|---|---|---|")
    for tname in args.targets.split(","):
        target = models[tname]
        generate(target, ids, 2)                                 # warm-up
        for temperature in [float(t) for t in args.temperatures.split(",")]:
            plain, t_plain = baseline(target, ids, args.new_tokens, temperature, args.seed)
            greedy = plain if temperature == 0 else greedy
            for dname in args.drafts.split(","):
                for k in ks:
                    out, st = run(target, None if dname == "lookup" else models[dname], ids, args.new_tokens, k,
                                  temperature, args.seed)
                    if temperature == 0 and not np.array_equal(out, plain):
                        raise SystemExit(f"greedy speculative output differs from greedy decoding ({dname}, k={k})")
                    print(f"| {tname} | {dname} | {temperature:g} | {k} | {100 * st['acceptance_rate']:.0f}% | "
                          f"{st['tokens_per_target_call']:.2f} | {st['seconds']:.1f} | {t_plain:.1f} | "
                          f"{t_plain / st['seconds']:.2f}x |", flush=True)
    if greedy is not None:
        print("\nthe target's greedy answer:", tok.decode(greedy.tolist()))


if __name__ == "__main__":
    main()
