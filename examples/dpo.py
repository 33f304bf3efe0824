"""SFT -> DPO on the same programmatic preference task as rlhf_pipeline.py, with no reward model
and no RL loop (Rafailov et al. 2023).

    python examples/dpo.py                          # ~2-4 minutes on 2 cores
    python examples/dpo.py --sft-coef 0             # plain DPO: watch the diagnostics fire
    python examples/dpo.py --loss-type ipo          # or hinge, robust; --label-smoothing 0.1 (cDPO)
    python examples/dpo.py --quick

Stages: SFT on demonstrations that ignore the instruction; then --rounds rounds of: K=4 samples per
prompt from the current policy ranked by the program and expanded to pairs, reference (SFT) log-probs
precomputed once per round, one DPO epoch with implicit-reward accuracy and margins logged and the
failure-mode diagnostics printed. Round 1 alone is offline DPO on SFT samples; later rounds are
iterative ("online") DPO, which keeps the pairs on the policy's own distribution (Xu et al. 2023;
Guo et al. 2024). The reference stays the SFT model throughout. The default adds RPO's NLL term on
the chosen response (--sft-coef 1): on this byte-level model plain DPO displaces probability onto
bytes no response ever contains (the diagnostics report it; try --sft-coef 0). The result is the
checkable preference rate and the KL to the reference on held-out prompts, before and after.
"""
import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")       # d_model 64: threading costs more than it saves
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from minillm import ModelConfig  # noqa: E402
from minillm.align import tasks  # noqa: E402
from minillm.align.dpo import DPOConfig, dpo_train, precompute_reference_logps  # noqa: E402
from minillm.align.ppo import param_bytes  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--loss-type", default="sigmoid", choices=["sigmoid", "ipo", "hinge", "robust"])
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--reference-free", action="store_true")
    ap.add_argument("--sft-coef", type=float, default=1.0, help="RPO's NLL weight on the chosen response")
    ap.add_argument("--rounds", type=int, default=None, help="pair-sampling rounds (1 = offline DPO)")
    ap.add_argument("--lr", type=float, default=1e-3)
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
    policy, ref, val, loss0, loss1 = tasks.sft_stage(cfg, args.seed, 150 if q else 400, rng)
    print(f"response loss before: {loss0:.3f}")
    print(f"response loss after: {loss1:.3f}")
    before = tasks.evaluate_policy(policy, ref, held_out, np.random.default_rng(1))
    print(f"SFT policy: preference rate {before['rate_sampled']:.1%} sampled / {before['rate_greedy']:.1%} greedy"
          f"   [{time.perf_counter() - t0:.0f} s]")

    mem = {"policy": param_bytes(policy), "reference": param_bytes(ref)}
    print("\nmodels in memory: " + ", ".join(f"{k} {v / 2**20:.2f} MiB" for k, v in mem.items())
          + f"  = 2 copies, {sum(mem.values()) / 2**20:.2f} MiB (the reference can be dropped once its "
            f"log-probs are stored, 16 bytes per pair)")
    dcfg = DPOConfig(beta=args.beta, loss_type=args.loss_type, label_smoothing=args.label_smoothing,
                     reference_free=args.reference_free, sft_coef=args.sft_coef, lr=args.lr, batch_size=32,
                     epochs=1, seed=args.seed)
    rounds = args.rounds or (1 if q else 3)
    for rnd in range(1, rounds + 1):
        t0 = time.perf_counter()
        print(f"\n== round {rnd}/{rounds}: pairs from the current policy (K=4 per prompt, ranked by the program), "
              f"then DPO ({dcfg.loss_type}, beta {dcfg.beta}, label smoothing {dcfg.label_smoothing}, "
              f"NLL coef {dcfg.sft_coef}{', reference-free' if dcfg.reference_free else ''}) ==")
        pairs = tasks.preference_pairs(policy, [tasks.make_prompt(rng) for _ in range(300 if q else 600)], rng, K=4)
        ref_logps = precompute_reference_logps(ref, pairs)
        print(f"pairs: {len(pairs)}; reference log-probs precomputed: chosen {np.mean(ref_logps[0]):.2f}, "
              f"rejected {np.mean(ref_logps[1]):.2f} nats on average")
        print(f"{'step':>5} {'loss':>7} {'dpo':>7} {'acc':>6} {'margin':>7} {'r_chosen':>9} {'r_rejected':>10} "
              f"{'logp_w':>7} {'logp_l':>7}")

        def log(r):
            if r["step"] % 25 == 0 or r["step"] == 1:
                print(f"{r['step']:5d} {r['loss']:7.4f} {r['dpo_loss']:7.4f} {r['reward_accuracy']:6.2f} "
                      f"{r['reward_margin']:7.3f} {r['reward_chosen']:9.3f} {r['reward_rejected']:10.3f} "
                      f"{r['logp_chosen']:7.2f} {r['logp_rejected']:7.2f}")

        _, warnings = dpo_train(policy, pairs, dcfg, ref_logps=ref_logps, log=log)
        print("diagnostics: " + ("; ".join(warnings) if warnings else "no failure mode detected"))
        ev = tasks.evaluate_policy(policy, ref, held_out, np.random.default_rng(1))
        print(f"held-out: preference rate {ev['rate_sampled']:.1%} sampled / {ev['rate_greedy']:.1%} greedy, "
              f"KL {ev['kl_k1']:.3f} nats   [{time.perf_counter() - t0:.0f} s]")
    after = ev
    print(f"  samples: {after['examples']}")

    print("\n== result on held-out prompts ==")
    print(f"{'':24}{'SFT':>10}{'after DPO':>12}")
    for key, name in (("rate_sampled", "preference rate (T=1)"), ("rate_greedy", "preference rate (greedy)"),
                      ("well_formed", "well-formed (T=1)")):
        print(f"{name:24}{before[key]:10.1%}{after[key]:12.1%}")
    print(f"{'KL to reference (k1)':24}{before['kl_k1']:10.3f}{after['kl_k1']:12.3f}  nats/response")
    print(f"{'KL to reference (k3)':24}{before['kl_k3']:10.3f}{after['kl_k3']:12.3f}  nats/response")
    print(f"total time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
