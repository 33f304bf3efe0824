"""`minillm plan --flops C`: the Chinchilla-optimal parameters and tokens for a compute budget and
the closest minillm ModelConfig (minillm.scaling)."""
import math

from .args import output_file, positive_float, positive_int
from ..scaling import (check_positive, chinchilla_loss, chinchilla_optimal, plot_iso_flop,
                       recommend_config)


def register(subparsers):
    p = subparsers.add_parser("plan", help="compute-optimal model size and tokens for a FLOP budget",
                              description=main.__doc__)
    p.add_argument("--flops", type=positive_float, required=True, help="training budget C in FLOPs, e.g. 1e18")
    p.add_argument("--vocab-size", type=positive_int, default=32000)
    p.add_argument("--seq-len", type=positive_int, default=2048)
    p.add_argument("--arch", default="llama", choices=["llama", "gpt2"])
    p.add_argument("--head-dim", type=positive_int, default=64)
    p.add_argument("--gflops", type=positive_float, default=200.0,
                   help="sustained GFLOP/s for the time estimate (~200 for fp32 GEMM on 2 Zen 4 cores)")
    p.add_argument("--plot", default=None, type=output_file, help="write the iso-FLOP curves to this PNG (needs matplotlib)")
    p.set_defaults(func=main)


def main(args):
    """Print the Chinchilla-optimal parameters and tokens for a FLOP budget (Hoffmann et al. 2022)
    and the closest minillm ModelConfig."""
    C = check_positive("--flops", args.flops)
    n_opt, d_opt = chinchilla_optimal(C)
    print(f"budget C = {C:.3g} FLOPs (C = 6 N D)")
    print(f"Chinchilla optimum (Hoffmann et al. 2022, eq. 4 with eq. 10): N = {n_opt:.4g} parameters, "
          f"D = {d_opt:.4g} tokens ({d_opt / n_opt:.1f} tokens/parameter), "
          f"predicted loss {chinchilla_loss(n_opt, d_opt):.3f}")
    cfg, n_tokens = recommend_config(C, args.vocab_size, args.seq_len, args.arch, args.head_dim)
    fpt = cfg.flops_per_token(args.seq_len)
    n = cfg.num_params()
    print("recommended config:")
    print(f"  ModelConfig(arch={cfg.arch!r}, vocab_size={cfg.vocab_size}, n_layer={cfg.n_layer}, "
          f"n_head={cfg.n_head}, d_model={cfg.d_model}, ffn_dim={cfg.ffn_dim}, max_seq_len={cfg.max_seq_len})")
    print(f"  parameters {n:,} ({cfg.num_params(non_embedding=True):,} non-embedding)")
    print(f"  training FLOPs/token {fpt:.4g} (6N = {6 * n:.4g}; the rest is attention over T={args.seq_len})")
    print(f"  tokens D = C / FLOPs-per-token = {n_tokens:.4g} ({n_tokens / n:.1f} tokens/parameter)")
    print(f"  predicted loss L(N, D) = {chinchilla_loss(n, n_tokens):.3f}")
    hours = C / (args.gflops * 1e9) / 3600
    print(f"  time at {args.gflops:g} GFLOP/s: {hours:.3g} hours")
    if args.plot:
        out = plot_iso_flop(args.plot, budgets=sorted({10.0 ** k for k in range(
            int(math.floor(math.log10(C))) - 2, int(math.floor(math.log10(C))) + 3)}))
        print(f"iso-FLOP curves -> {out}" if out else "matplotlib is not installed: no plot")
    return 0
