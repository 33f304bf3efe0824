"""RLHF end to end on a tiny model: SFT -> reward model -> PPO (InstructGPT's three stages).

    python examples/rlhf_pipeline.py            # ~3-5 minutes on 2 cores
    python examples/rlhf_pipeline.py --quick    # fewer steps, ~1 minute

The task (minillm/align/tasks.py): prompts "v:xyz=" / "c:xyz=" ask for a response of 3-6 vowels /
consonants ending in a newline. SFT demonstrations have the right format but ignore the instruction,
so the SFT model satisfies it ~6% of the time. A program plays the labeller: it ranks K sampled
responses per prompt, the reward model learns those rankings (Bradley-Terry), and PPO optimises the
policy against the reward model with a KL penalty to the SFT model. Printed per stage: losses,
reward-model accuracy, PPO statistics, and the checkable preference rate and KL to the reference on
held-out prompts before and after PPO.
"""
import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")       # d_model 64: threading costs more than it saves
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from minillm import ModelConfig  # noqa: E402
from minillm.align import tasks  # noqa: E402
from minillm.align.ppo import PPOConfig, PPOTrainer  # noqa: E402
from minillm.align.reward import RewardConfig, ScalarHeadModel, pair_accuracy, train_reward_model  # noqa: E402


def mib(n):
    return f"{n / 2**20:.2f} MiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    q = args.quick
    rng = np.random.default_rng(args.seed)
    t_start = time.perf_counter()
    cfg = ModelConfig.preset("llama-tiny", max_seq_len=32)
    held_out = [tasks.make_prompt(rng) for _ in range(256)]
    print(f"model: llama-tiny, {cfg.num_params():,} parameters, byte vocabulary; held-out prompts: {len(held_out)}")

    # ---------------------------------------------------------------- 1. SFT
    t0 = time.perf_counter()
    print("\n== stage 1: supervised fine-tuning (loss on response tokens only) ==")
    policy, ref, val, loss0, loss1 = tasks.sft_stage(
        cfg, args.seed, 150 if q else 400, rng,
        log=lambda r: print(f"  step {r['step']:4d}  loss {r['loss']:.3f}") if r["step"] % 100 == 0 else None)
    print(f"response loss before: {loss0:.3f}")
    ev = tasks.evaluate_policy(policy, ref, held_out, np.random.default_rng(1))
    print(f"response loss after: {loss1:.3f}   (entropy floor of the demonstrations ~2.7)")
    print(f"SFT policy: well-formed {ev['well_formed']:.1%}, preference rate {ev['rate_sampled']:.1%} sampled / "
          f"{ev['rate_greedy']:.1%} greedy   [{time.perf_counter() - t0:.0f} s]")
    print(f"  samples: {ev['examples']}")
    before = ev

    # ---------------------------------------------------------------- 2. reward model
    t0 = time.perf_counter()
    print("\n== stage 2: reward model (Bradley-Terry on K=4 rankings -> all pairs) ==")
    pairs = tasks.preference_pairs(policy, [tasks.make_prompt(rng) for _ in range(300 if q else 600)], rng, K=4)
    val_pairs = tasks.preference_pairs(policy, [tasks.make_prompt(rng) for _ in range(100)], rng, K=4)
    rm = ScalarHeadModel.from_model(policy, seed=args.seed)
    print(f"pairs: {len(pairs)} train, {len(val_pairs)} held-out; reward model parameters: {rm.num_params():,}")
    print(f"held-out accuracy before: {pair_accuracy(rm, val_pairs):.1%}")
    rcfg = RewardConfig(lr=2e-3, batch_size=32, epochs=3 if q else 5, center_coef=0.01, seed=args.seed)
    hist = train_reward_model(rm, pairs, rcfg, val_pairs=val_pairs)
    for h in hist:
        if "val_accuracy" in h:
            print(f"  epoch {h['epoch'] + 1}: train loss {h['loss']:.3f}, held-out accuracy {h['val_accuracy']:.1%}")
    print(f"   [{time.perf_counter() - t0:.0f} s]")

    # ---------------------------------------------------------------- 3. PPO
    t0 = time.perf_counter()
    print("\n== stage 3: PPO against the reward model, KL penalty to the SFT model ==")
    pcfg = PPOConfig(max_new_tokens=8, stop_id=tasks.STOP, ppo_epochs=4, minibatch_size=16, clip_eps=0.2,
                     lam=0.95, entropy_coef=0.01, init_kl_coef=0.05, target_kl=4.0, kl_horizon=2000,
                     lr=3e-4, value_lr=1e-3, seed=args.seed)
    trainer = PPOTrainer(policy, rm, pcfg, ref=ref)
    mem = trainer.memory()
    print("models in memory: " + ", ".join(f"{k} {mib(v)}" for k, v in mem.items())
          + f"  = 4 copies, {mib(sum(mem.values()))}")
    iters = 20 if q else 40
    print(f"{'iter':>4} {'reward':>7} {'KL(k1)':>7} {'KL(k3)':>7} {'beta':>6} {'pg_loss':>8} {'vf_loss':>8} "
          f"{'clipfrac':>8} {'approxKL':>8} {'expl.var':>8} {'entropy':>7}")
    for it in range(iters):
        prompts = [tasks.encode(tasks.make_prompt(rng)) for _ in range(64)]
        s = trainer.step(prompts)
        if it % 5 == 0 or it == iters - 1:
            print(f"{s['iteration']:4d} {s['reward']:7.3f} {s['kl']:7.3f} {s['kl_k3']:7.3f} {s['kl_coef']:6.3f} "
                  f"{s['pg_loss']:8.4f} {s['vf_loss']:8.4f} {s['clipfrac']:8.3f} {s['approx_kl']:8.4f} "
                  f"{s['explained_variance']:8.3f} {s['entropy']:7.3f}")
    after = tasks.evaluate_policy(policy, ref, held_out, np.random.default_rng(1))
    print(f"   [{time.perf_counter() - t0:.0f} s]")
    print(f"  samples: {after['examples']}")

    print("\n== result on held-out prompts ==")
    print(f"{'':24}{'SFT':>10}{'after PPO':>12}")
    for key, name in (("rate_sampled", "preference rate (T=1)"), ("rate_greedy", "preference rate (greedy)"),
                      ("well_formed", "well-formed (T=1)")):
        print(f"{name:24}{before[key]:10.1%}{after[key]:12.1%}")
    print(f"{'KL to reference (k1)':24}{before['kl_k1']:10.3f}{after['kl_k1']:12.3f}  nats/response")
    print(f"{'KL to reference (k3)':24}{before['kl_k3']:10.3f}{after['kl_k3']:12.3f}  nats/response")
    print(f"total time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
