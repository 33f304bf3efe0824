"""The textbook's LLM-inference code companion in one script, on a model trained by `minillm train`:

  1. decoding strategies side by side (greedy, temperature, top-k, top-p, beam search);
  2. the KV cache: the same greedy generation with and without it, and the speedup;
  3. prompt formatting: one conversation in ChatML and in Llama-2 chat format;
  4. an RLHF simulation: SFT loss on a few rendered conversations, the reward model's parameter
     count, and one PPO update with its loss, KL and probability ratio.

    minillm train --out runs/minillm             # once, ~5 minutes on 2 cores (the default model)
    python examples/llm_inference.py             # uses runs/minillm
    python examples/llm_inference.py --run DIR   # any run folder written by `minillm train`
    python examples/llm_inference.py --model SmolLM2-135M-Instruct.Q4_1.gguf   # any minillm.load path

Without a run folder it says how to make one and trains a tiny byte-level model itself (~1 minute,
into runs/llm_inference_tiny), so the script always runs.
"""
import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import numpy as np  # noqa: E402

import minillm  # noqa: E402
from minillm.checkpoint import latest_checkpoint, load_checkpoint  # noqa: E402
from minillm.inference import beam_search, generate  # noqa: E402
from minillm.tokenizer import templates  # noqa: E402
from minillm.run_folder import load_run_tokenizer  # noqa: E402


def banner(title):
    print("\n" + "=" * 78 + f"\n{title}\n" + "=" * 78)


def show(text, width=70):
    return repr(text if len(text) <= width else text[:width] + "...")


def load_run(run, fallback):
    """(model, tokenizer, run folder): `run` if it holds a checkpoint, else a tiny model trained now."""
    if latest_checkpoint(os.path.join(run, "ckpt")) is None:
        print(f"No checkpoint under {run}/ckpt. The companion expects a model from `minillm train`:\n"
              f"    minillm train --out {run}        # ~5 minutes on 2 cores\n"
              f"Training a tiny byte-level model now instead (llama-tiny, 250 steps) into {fallback} ...")
        if latest_checkpoint(os.path.join(fallback, "ckpt")) is None:
            from minillm.cli import main as cli
            t0 = time.perf_counter()
            # 128-token context: a ChatML turn costs ~50 bytes of markup on a byte-level vocabulary
            cli(["train", "--out", fallback, "--preset", "llama-tiny", "--tokenizer", "byte", "--steps", "250",
                 "--batch-size", "16", "--seq-len", "128", "--fresh"])
            print(f"trained in {time.perf_counter() - t0:.0f} s")
        run = fallback
    model = load_checkpoint(latest_checkpoint(os.path.join(run, "ckpt")))[0]
    return model, load_run_tokenizer(run), run


def demo_decoding(model, tok, prompt, n_new):
    banner("1. Decoding strategies side by side")
    ids = tok.encode(prompt)
    print(f"prompt: {prompt!r} ({len(ids)} tokens), {n_new} new tokens each\n")
    settings = [("greedy", dict(temperature=0.0)),
                ("temperature 0.7", dict(temperature=0.7, seed=0)),
                ("temperature 1.2", dict(temperature=1.2, seed=0)),
                ("top-k 20 (T=0.8)", dict(temperature=0.8, top_k=20, seed=0)),
                ("top-p 0.9 (T=0.8)", dict(temperature=0.8, top_p=0.9, seed=0))]
    for name, kw in settings:
        out = generate(model, ids, n_new, **kw)
        print(f"{name:>18}: {show(tok.decode(out.tolist()))}")
    best, info = beam_search(model, ids, n_new, beam_width=4)
    print(f"{'beam search (4)':>18}: {show(tok.decode(best.tolist()))}")
    print("\nGreedy and beam search are deterministic; higher temperature flattens the distribution"
          "\n(more diverse, less coherent); top-k / top-p cut the unreliable tail before sampling.")


def demo_kv_cache(model, tok, prompt, n_new, repeats):
    banner("2. KV cache: the same greedy generation with and without it")
    ids = tok.encode(prompt)
    times = {}
    outs = {}
    for use_cache in (False, True):
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            outs[use_cache] = generate(model, ids, n_new, use_cache=use_cache)
            ts.append(time.perf_counter() - t0)
        times[use_cache] = float(np.median(ts))
    cfg = model.config
    per_token = 2 * cfg.n_layer * cfg.n_kv_head * cfg.head_dim * 4
    print(f"prompt {len(ids)} tokens + {n_new} generated, median of {repeats} runs")
    print(f"{'':16}{'time (s)':>10}{'tokens/s':>10}")
    for use_cache, name in ((False, "without cache"), (True, "with cache")):
        print(f"{name:16}{times[use_cache]:10.3f}{n_new / times[use_cache]:10.1f}")
    print(f"speedup: {times[False] / times[True]:.1f}x; identical tokens: {np.array_equal(outs[False], outs[True])}")
    print(f"cache size: 2 x L{cfg.n_layer} x Hkv{cfg.n_kv_head} x D{cfg.head_dim} x 4 bytes = {per_token} bytes "
          f"per token, {per_token * (len(ids) + n_new) / 1024:.1f} KiB for this sequence")
    print("Without the cache every step re-runs the whole prefix (quadratic work); with it each step"
          "\nprocesses one token and reads the stored keys and values.")


CONVERSATION = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What does the for statement do?"},
                {"role": "assistant", "content": "It iterates over the items of a sequence."},
                {"role": "user", "content": "And break?"}]


def demo_formatting(tok):
    banner("3. Prompt formatting: ChatML and Llama-2 chat")
    for name in ("chatml", "llama2"):
        text = templates.render(CONVERSATION, name, add_generation_prompt=True)
        print(f"--- {name} ({len(tok.encode(text))} tokens with this run's tokenizer) ---")
        print(text)
    print("--- round trip: parse(render(messages)) == messages:",
          all(templates.parse(templates.render(CONVERSATION[:3], n), n) == CONVERSATION[:3]
              for n in ("chatml", "llama2")))


def demo_rlhf(model, tok):
    banner("4. RLHF simulation: SFT loss, reward model, one PPO update")
    import copy

    from minillm.align.ppo import PPOConfig, PPOTrainer
    from minillm.align.reward import ScalarHeadModel
    from minillm.align.sft import SFTConfig, sft_eval_loss, sft_train, tokenize_conversation
    seq_len = model.config.max_seq_len
    qa = [("What does the for statement do?", "It iterates over a sequence."),
          ("What does break do?", "It leaves the innermost loop."),
          ("What does continue do?", "It skips to the next iteration."),
          ("What does pass do?", "Nothing; it is a placeholder."),
          ("What does return do?", "It leaves a function with a value.")]
    convs = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in qa]
    examples = [tokenize_conversation(tok, c, "chatml", max_len=seq_len) for c in convs]
    policy = copy.deepcopy(model)
    before = sft_eval_loss(policy, examples)
    sft_train(policy, examples, SFTConfig(lr=1e-3, warmup_steps=2, steps=20, batch_size=5))
    after = sft_eval_loss(policy, examples)
    n_resp = int(sum(m.sum() for _, m in examples))
    if n_resp == 0:
        print(f"(the model's {seq_len}-token context cuts every conversation before its answer; skipping SFT)")
    print(f"SFT on {len(examples)} ChatML conversations ({n_resp} response tokens carry the loss, prompts masked):")
    print(f"  response cross-entropy {before:.3f} -> {after:.3f} after 20 steps")
    rm = ScalarHeadModel.from_model(policy)
    print(f"reward model: the SFT Transformer + a scalar head on the last token = {rm.num_params():,} parameters "
          f"(head: {model.config.d_model + 1})")
    # two epochs of two minibatches: the first minibatch sees ratio 1 exactly (π_θ = π_old before any
    # step), later ones see the policy the earlier steps produced
    cfg = PPOConfig(max_new_tokens=12, ppo_epochs=2, minibatch_size=2, lr=2e-4, value_lr=1e-4,
                    init_kl_coef=0.1, adaptive_kl=False, seed=0)
    trainer = PPOTrainer(policy, rm, cfg)
    prompts = [tok.encode(templates.render(c[:1], "chatml", add_generation_prompt=True)) for c in convs[:4]]
    s1 = trainer.step(prompts)
    print(f"one PPO update on {len(prompts)} sampled responses (clip eps {cfg.clip_eps}, beta {cfg.init_kl_coef}):")
    print(f"  reward (untrained RM) {s1['reward']:+.4f}   policy loss {s1['pg_loss']:+.4f}   value loss "
          f"{s1['vf_loss']:.4f}")
    print(f"  KL(pi || ref) {s1['kl']:.4f} nats (rollouts come from the policy before the update, which equals "
          f"the reference)")
    print(f"  ratio pi/pi_old {s1['ratio']:.4f} (mean over minibatches)   approx-KL(pi_old || pi) "
          f"{s1['approx_kl']:.5f}   clip fraction {s1['clipfrac']:.3f}")
    s2 = trainer.step(prompts)
    print(f"a second update: KL(pi || ref) k1 {s2['kl']:.4f} / k3 {s2['kl_k3']:.4f} nats, ratio {s2['ratio']:.4f}, "
          f"policy loss {s2['pg_loss']:+.4f}")
    mem = trainer.memory()
    print("models PPO holds: " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in mem.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/minillm")
    ap.add_argument("--model", default=None, help="a GGUF file or Hugging Face folder (minillm.load) instead of --run")
    ap.add_argument("--fallback", default="runs/llm_inference_tiny")
    ap.add_argument("--prompt", default="The for statement")
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.model:  # float weights: part 4 takes gradients
        (model, tok), run = minillm.load(args.model, dequantize=True), args.model
    else:
        model, tok, run = load_run(args.run, args.fallback)
    cfg = model.config
    print(f"model from {run}: {cfg.arch}, {cfg.n_layer} layers, d_model {cfg.d_model}, vocab {cfg.vocab_size}, "
          f"{cfg.num_params():,} parameters")
    n_new = min(args.new_tokens, cfg.max_seq_len - len(tok.encode(args.prompt)) - 1)
    demo_decoding(model, tok, args.prompt, n_new)
    demo_kv_cache(model, tok, args.prompt, n_new, args.repeats)
    demo_formatting(tok)
    demo_rlhf(model, tok)


if __name__ == "__main__":
    main()
