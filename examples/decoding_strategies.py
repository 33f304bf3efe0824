"""Decoding strategies side by side, then speculative decoding's acceptance rate and speedup.

    python examples/decoding_strategies.py                   # trains two small byte-level models (~3 min)
    python examples/decoding_strategies.py --run runs/minillm --draft-steps 300
    python examples/decoding_strategies.py --model SmolLM2-135M-Instruct.Q4_1.gguf   # any minillm.load path

Part 1 continues one prompt with greedy, temperature 0.8 and 1.5, top-k, top-p, min-p and a
combination (minillm.inference.generate, seed fixed), and prints each continuation with its
distinct-4-gram ratio (repetition) and mean log-prob under the model (how "safe" it is).
Part 2 compares plain greedy decoding with speculative decoding (a 1-layer draft model; prompt
lookup with no draft model) on the same target: identical tokens, acceptance rate, wall-clock speedup.
Without --run, the target (3 layers, d=128) and the draft (1 layer, d=64) are trained here for a
few hundred steps on the corpus every CPython carries (pydoc_data topics), byte-level. With --run or
--model the draft is trained on the same corpus tokenized by the TARGET's tokenizer: speculative
decoding compares token ids, so the draft must share the target's vocabulary (a byte-level draft
under a BPE target proposes ids that mean other things: acceptance ~0.01).
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
# OpenBLAS's pthreads and the C kernels' OpenMP threads take turns every layer; spinning OpenMP
# workers starve BLAS on 2 busy cores (measured 6.7 -> 31 tok/s decode on the 124M shape)
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import minillm  # noqa: E402
from minillm import ModelConfig, Transformer  # noqa: E402
from minillm.inference import generate, prompt_lookup_generate, speculative_generate  # noqa: E402
from minillm.inference.sampling import softmax  # noqa: E402
from minillm.optim import AdamW, warmup_cosine  # noqa: E402
from minillm.run_folder import load_run  # noqa: E402
from minillm.tokenizer import ByteTokenizer  # noqa: E402
from minillm.train import corpus_text  # noqa: E402
from minillm.inference.decode import forward_cached  # noqa: E402


def train_byte_model(cfg, steps, seed=0, batch=8, seq_len=128, lr=3e-3, log=print, data=None):
    """A few hundred AdamW steps of next-token prediction on the pydoc corpus: its bytes, or the
    token ids `data` (int64) when the vocabulary is a real model's."""
    if data is None:
        data = np.frombuffer(corpus_text().encode("utf-8"), dtype=np.uint8).astype(np.int64)
    model = Transformer(cfg, seed=seed)
    opt = AdamW(model.params, lr=lr, weight_decay=0.1)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for step in range(steps):
        starts = rng.integers(0, len(data) - seq_len - 1, size=batch)
        x = np.stack([data[s:s + seq_len] for s in starts])                     # (B, T)
        y = np.stack([data[s + 1:s + seq_len + 1] for s in starts])
        loss, grads = model.loss_and_grads(x, y)
        opt.step(grads, lr=warmup_cosine(step, lr, steps // 10, steps, lr / 10))
        if step % 100 == 0 or step == steps - 1:
            log(f"  step {step:4d}  loss {loss:.3f}  ({time.perf_counter() - t0:.0f} s)")
    return model


def draft_data(tok, vocab_size, text=None):
    """The draft's training tokens: the corpus in the target's own vocabulary. (N,) int64"""
    data = np.asarray(tok.encode(corpus_text() if text is None else text), dtype=np.int64)
    if data.size and int(data.max()) >= vocab_size:
        raise ValueError(f"tok: produces id {int(data.max())}, the target's vocabulary has {vocab_size}")
    return data


def load_or_train(args):
    data = None
    if args.model or args.run:
        target, tok = minillm.load(args.model) if args.model else load_run(args.run, "--run")
        data = draft_data(tok, target.config.vocab_size)   # the draft learns the target's vocabulary
    else:
        tok = ByteTokenizer()
        print(f"training the target (3 layers, d=128) for {args.steps} steps")
        target = train_byte_model(ModelConfig(arch="llama", vocab_size=256, n_layer=3, n_head=4,
                                              d_model=128, max_seq_len=512), args.steps)
    dc = target.config
    print(f"training the draft (1 layer, d=64) for {args.draft_steps} steps")
    draft = train_byte_model(ModelConfig(arch="llama", vocab_size=dc.vocab_size, n_layer=1, n_head=2,
                                         d_model=64, max_seq_len=dc.max_seq_len), args.draft_steps, seed=1,
                             data=data)
    return target, draft, tok


def mean_logprob(model, prompt, out):
    """Mean log p(token) the model assigns to a continuation (teacher-forced)."""
    seq = np.r_[prompt, out].astype(np.int64)
    logits = model.forward(seq[None])[0, len(prompt) - 1:-1]                   # (N, V)
    p = softmax(logits)
    return float(np.mean(np.log(p[np.arange(len(out)), out] + 1e-30)))


def distinct4(ids):
    grams = [tuple(ids[i:i + 4]) for i in range(len(ids) - 3)]
    return len(set(grams)) / max(1, len(grams))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="use a `minillm train` run as the target")
    ap.add_argument("--model", default=None, help="use a GGUF file or Hugging Face folder as the target")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--draft-steps", type=int, default=300)
    ap.add_argument("--prompt", default="The return statement")
    ap.add_argument("--new", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    target, draft, tok = load_or_train(args)
    prompt = np.asarray(tok.encode(args.prompt), dtype=np.int64)

    print(f"\n== Part 1: decoding strategies, prompt {args.prompt!r}, {args.new} new tokens, seed {args.seed}")
    strategies = [("greedy", dict()), ("T=0.8", dict(temperature=0.8)), ("T=1.5", dict(temperature=1.5)),
                  ("top-k 40 (T=1)", dict(temperature=1.0, top_k=40)),
                  ("top-p 0.9 (T=1)", dict(temperature=1.0, top_p=0.9)),
                  ("min-p 0.1 (T=1)", dict(temperature=1.0, min_p=0.1)),
                  ("T=0.8 top-k 40 top-p 0.95 rep 1.2",
                   dict(temperature=0.8, top_k=40, top_p=0.95, repetition_penalty=1.2))]
    print(f"{'strategy':36s} {'distinct-4':>10s} {'mean logp':>10s}  text")
    for name, kw in strategies:
        out = generate(target, prompt, args.new, seed=args.seed, **kw)
        text = tok.decode(out.tolist()).replace("\n", "\\n")
        print(f"{name:36s} {distinct4(out.tolist()):10.2f} {mean_logprob(target, prompt, out):10.2f}  {text[:90]}")

    print("\n== Part 2: speculative decoding (greedy: must equal plain greedy token for token)")
    passage = corpus_text()[2000:2300]
    cases = [("fresh text", np.asarray(tok.encode(passage), dtype=np.int64)),
             # an "edit this text" prompt: the passage, then its first half again -- copying pays off
             ("repeated passage", np.asarray(tok.encode(passage + "\n\n" + passage[:150]), dtype=np.int64))]
    c = forward_cost_ratio(draft, target, cases[0][1])
    print(f"draft/target cost per forward call c = {c:.2f}; predicted speedup (Leviathan et al. 2023, "
          f"Thm 3.8) = (1 - a^(k+1)) / ((1 - a)(c k + 1)) with a the acceptance rate")
    print(f"{'prompt':17s} {'method':22s} {'tok/call':>8s} {'accept':>6s} {'predicted':>9s} {'measured':>8s} {'same':>5s}")
    n = args.new
    for case, prompt2 in cases:
        ref = generate(target, prompt2, n)
        t_plain = median_time(lambda: generate(target, prompt2, n))
        print(f"{case:17s} {'plain greedy':22s} {1.0:8.2f} {'-':>6s} {'-':>9s} {1.0:7.2f}x {'True':>5s}")
        for name, k, fn, cost in [
                ("draft model k=4", 4, lambda: speculative_generate(target, draft, prompt2, n, k=4), c),
                ("prompt lookup k=4", 4, lambda: prompt_lookup_generate(target, prompt2, n, k=4), 0.0)]:
            out, st = fn()
            a = st["acceptance_rate"]
            predicted = (1 - a ** (k + 1)) / ((1 - a) * (cost * k + 1)) if a < 1 else (k + 1) / (cost * k + 1)
            t = median_time(fn)
            print(f"{case:17s} {name:22s} {st['tokens_per_target_call']:8.2f} {a:6.2f} {predicted:8.2f}x "
                  f"{t_plain / t:7.2f}x {str(bool(np.array_equal(out, ref))):>5s}")
    s_out, st = speculative_generate(target, draft, prompt, n, k=4, temperature=0.8, seed=args.seed)
    print(f"\nsampling mode (T=0.8), draft k=4: acceptance {st['acceptance_rate']:.2f}, "
          f"{st['tokens_per_target_call']:.2f} tokens per target call:\n  {tok.decode(s_out.tolist())[:100]!r}")
    print("(times are medians of 3; 'predicted' uses the measured acceptance rate and cost ratio. The prompt-"
          "\n lookup row's proposals cost nothing, but verifying k+1 tokens costs a small model more than one)")


def median_time(fn, repeats=3):
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def forward_cost_ratio(draft, target, prompt):
    """Time of one cached single-token forward of the draft over that of the target."""
    from minillm.inference import KVCache

    def one_step(model):
        cache = KVCache.allocate(model.config, 1, len(prompt) + 1)
        forward_cached(model, prompt[None, :-1], cache)
        tok = prompt[None, -1:]
        return lambda: (cache.truncate(len(prompt) - 1), forward_cached(model, tok, cache))
    step_d, step_t = one_step(draft), one_step(target)
    return median_time(step_d, 15) / median_time(step_t, 15)


if __name__ == "__main__":
    main()
