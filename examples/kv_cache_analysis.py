"""What the KV cache buys, and how fast minillm decodes beside transformers and llama.cpp.

    python examples/kv_cache_analysis.py                    # ~5 minutes on 2 cores
    python examples/kv_cache_analysis.py --lengths 25,50,100,200 --repeats 3

Table 1 -- with vs without the cache (124M GPT-2 shape, random weights, greedy, 16-token prompt):
    generation tokens/s and the speedup at several lengths. Without a cache step t re-runs the model
    over all 16 + t tokens, so the cost per token grows with length; with it, only the new token runs.
Table 2 -- memory per token: the formula 2 * n_layer * n_kv_head * d_head * bytes beside the bytes
    actually held per token by kv_cache.KVCache and by the paged cache, for GPT-2 124M and a Llama.
Table 3 -- decode tokens/s at batch 1 after a 128-token prompt (time between streamed tokens, median):
    minillm vs Hugging Face transformers (torch CPU, fp32) on the same weights (minillm.loaders.save_hf ->
    from_pretrained), for the GPT-2 124M shape and the 134M Llama shape; and, when llama-cpp-python is
    installed and minillm.loaders.save_gguf exists, llama.cpp on the same Llama written as F32 GGUF.
    The three run in turn, --repeats rounds, and each column is the median over rounds. Batch-1
    decode reads every weight once per token, so it is bounded by the memory wall
    (minillm.inference.memory_wall): the ceiling is the read bandwidth, measured in the same run,
    over the weight bytes per token, and each system's tok/s is also printed as a fraction of it.
Everything runs on the same inputs (transformers in a child process, see USER_WAIT_POLICY);
ratios are what to compare across machines.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
# transformers runs in a child process (hf_worker): torch and minillm would otherwise share one
# OpenMP runtime, and minillm sets OMP_WAIT_POLICY=PASSIVE for it (kernels/native.py), which
# slows torch. The child gets the user's own setting, or none.
USER_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

if __name__ == "__main__" and "--hf-worker" in sys.argv:  # child: torch only, never minillm's kernels
    def _hf_worker(folder, n, repeats):
        import torch
        from transformers import AutoModelForCausalLM
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        prompt = np.load(os.path.join(folder, "prompt.npy"))
        rates = []
        for _ in range(repeats):
            r, tokens = hf_decode_rate(hf, prompt, n)
            rates.append(r)
        print(json.dumps({"rate": float(np.median(rates)), "tokens": [int(t) for t in tokens]}))

from minillm import ModelConfig, Transformer  # noqa: E402
from minillm.inference import KVCache, generate, kv_bytes_per_token  # noqa: E402
from minillm.inference.paged_kv_cache import PagedKVCache  # noqa: E402
from bench_real_model import llama_cpp_module  # noqa: E402  (llama.cpp with its AMX workaround)
from minillm.inference.memory_wall import decode_ceiling, weight_bytes_per_token, working_set_bandwidth  # noqa: E402


def timed(fn, repeats):
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def cache_speedup(model, lengths, repeats):
    prompt = np.arange(16) + 100
    print(f"\n== Table 1: with vs without KV cache ({model.config.n_layer}L d{model.config.d_model}, "
          f"greedy, 16-token prompt, median of {repeats})")
    print(f"{'new tokens':>10s} {'no cache tok/s':>15s} {'cache tok/s':>12s} {'speedup':>8s} {'same tokens':>12s}")
    for n in lengths:
        a = generate(model, prompt, n)
        b = generate(model, prompt, n, use_cache=False)
        t_cache = timed(lambda: generate(model, prompt, n), repeats)
        t_plain = timed(lambda: generate(model, prompt, n, use_cache=False), repeats)
        print(f"{n:10d} {n / t_plain:15.1f} {n / t_cache:12.1f} {t_plain / t_cache:7.1f}x "
              f"{str(bool(np.array_equal(a, b))):>12s}")


def memory_per_token():
    print("\n== Table 2: KV memory per token (float32)")
    print(f"{'model':12s} {'formula B/tok':>14s} {'KVCache B/slot':>15s} {'paged B/slot':>13s} "
          f"{'MiB @1024 tok':>14s}")
    for name in ("gpt2", "llama-134m", "llama-small"):
        cfg = ModelConfig.preset(name)
        formula = kv_bytes_per_token(cfg, 4)
        c = KVCache.allocate(cfg, 1, 64)
        measured = (c.k.nbytes + c.v.nbytes) / 64
        p = PagedKVCache(cfg, num_blocks=4, block_size=16)
        paged = (p.k.nbytes + p.v.nbytes) / (4 * 16)
        print(f"{name:12s} {formula:14,d} {measured:15,.0f} {paged:13,.0f} {formula * 1024 / 2**20:14.1f}")
    print("  formula: 2 (K and V) * n_layer * n_kv_head * head_dim * 4 bytes; GQA shrinks it by n_head / n_kv_head")


def minillm_decode_rate(model, prompt, n):
    stamps = []
    generate(model, prompt, n, stream=lambda t: stamps.append(time.perf_counter()))
    return 1.0 / float(np.median(np.diff(stamps))), stamps


def hf_decode_rate(hf, prompt, n):
    import torch
    from transformers.generation.streamers import BaseStreamer

    class Stamps(BaseStreamer):
        def __init__(self):
            self.t, self.tokens, self.first = [], [], True

        def put(self, value):
            if self.first:          # the prompt comes first
                self.first = False
                return
            self.t.append(time.perf_counter())
            self.tokens.append(int(value.reshape(-1)[0]))

        def end(self):
            pass
    s = Stamps()
    with torch.inference_mode():
        ids = torch.tensor(prompt[None])
        # an explicit all-ones mask: otherwise transformers masks every prompt token equal to pad_token_id
        hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                    do_sample=False, pad_token_id=hf.config.eos_token_id, streamer=s)
    return 1.0 / float(np.median(np.diff(s.t))), np.array(s.tokens)


def llama_cpp_decode_rate(model, prompt, n, folder):
    """llama.cpp F32 on the same Llama, or (None, reason)."""
    if importlib.util.find_spec("llama_cpp") is None:   # optional: the reference compared with
        return None, "llama-cpp-python not installed (pip install llama-cpp-python builds it, ~6 min)"
    llama_cpp = llama_cpp_module()                       # with the AMX workaround on Intel hosts
    try:
        from minillm.loaders import save_gguf
    except ImportError:
        return None, "minillm.loaders.save_gguf not available"
    path = os.path.join(folder, "model-f32.gguf")
    save_gguf(model, path, dtype="f32")
    # logits_all: llama-cpp-python fills .scores only then (a decode step still computes one row)
    llm = llama_cpp.Llama(model_path=path, n_ctx=len(prompt) + n + 8, n_batch=512, logits_all=True,
                          n_threads=int(os.environ["OMP_NUM_THREADS"]), verbose=False)
    llm.reset()
    llm.eval(prompt.tolist())
    stamps, tokens = [], []
    for _ in range(n):
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        tokens.append(tok)
        stamps.append(time.perf_counter())
        llm.eval([tok])
    return 1.0 / float(np.median(np.diff(stamps))), np.array(tokens)


def hf_decode_in_child(folder, prompt, n, repeats=3):
    """transformers' decode rate (median of repeats) and tokens, measured in a child process."""
    np.save(os.path.join(folder, "prompt.npy"), prompt)
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if USER_WAIT_POLICY is not None:
        env["OMP_WAIT_POLICY"] = USER_WAIT_POLICY
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--hf-worker", folder, str(n), str(repeats)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"transformers worker failed:\n{out.stderr}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return res["rate"], np.array(res["tokens"])


def decode_speed(n_new, folder, repeats):
    from minillm.loaders import save_hf
    print(f"\n== Table 3: decode tokens/s at batch 1 (prompt 128, {n_new} new tokens, greedy, "
          f"median time between tokens, {os.environ['OMP_NUM_THREADS']} threads, median of "
          f"{repeats} runs taken in turn)")
    threads = int(os.environ["OMP_NUM_THREADS"])
    print("read bandwidth: memory_wall.working_set_bandwidth, a read of each model's bytes per token, this run")
    print(f"{'model':12s} {'minillm':>8s} {'transformers':>13s} {'ratio':>6s} {'llama.cpp F32':>14s} "
          f"{'ratio':>6s} {'MB/token':>9s} {'GB/s':>5s} {'ceiling':>8s}  % of ceiling: minillm, transformers, "
          f"llama.cpp;  same tokens")
    notes = []
    for name in ("gpt2", "llama-134m"):
        cfg = ModelConfig.preset(name)
        model = Transformer(cfg, seed=0)
        prompt = ((np.arange(128) * 7919 + 13) % cfg.vocab_size).astype(np.int64)
        d = os.path.join(folder, name)
        save_hf(model, d)
        generate(model, prompt, 2)
        ours_tok = generate(model, prompt, n_new)
        use_cpp = cfg.arch == "llama"
        rates = {"minillm": [], "transformers": [], "llama.cpp": []}
        same = []
        # One run of each system per round, rounds repeated: a slow spell of the shared machine
        # then lands on all three instead of on whichever happened to run during it.
        for r in range(repeats):
            rate, hf_tok = hf_decode_in_child(d, prompt, n_new, repeats=1)
            rates["transformers"].append(rate)
            rates["minillm"].append(minillm_decode_rate(model, prompt, n_new)[0])
            if use_cpp:
                res = llama_cpp_decode_rate(model, prompt, n_new, d)
                if res[0] is None:
                    notes.append(f"llama.cpp column skipped: {res[1]}")
                    use_cpp = False
                else:
                    rates["llama.cpp"].append(res[0])
                    cpp_tok = res[1]
        ours, theirs = float(np.median(rates["minillm"])), float(np.median(rates["transformers"]))
        same.append(f"transformers {int(np.sum(ours_tok == hf_tok))}/{n_new}")
        cpp = float(np.median(rates["llama.cpp"])) if rates["llama.cpp"] else None
        if cpp:
            same.append(f"llama.cpp {int(np.sum(ours_tok == cpp_tok))}/{n_new}")
        nbytes = weight_bytes_per_token(model)
        bw = working_set_bandwidth(nbytes, threads)
        ceiling = decode_ceiling(nbytes, bw)
        cpp_s = f"{cpp:14.1f} {ours / cpp:5.2f}x" if cpp else f"{'-':>14s} {'-':>6s}"
        frac = f"{ours / ceiling:.0%}, {theirs / ceiling:.0%}, " + (f"{cpp / ceiling:.0%}" if cpp else "-")
        print(f"{name:12s} {ours:8.1f} {theirs:13.1f} {ours / theirs:5.2f}x {cpp_s} {nbytes / 1e6:9.0f} "
              f"{bw / 1e9:5.1f} {ceiling:8.1f}  {frac};  {', '.join(same)}")
        print(f"{'':12s} runs: minillm {fmt(rates['minillm'])} | transformers {fmt(rates['transformers'])}"
              + (f" | llama.cpp {fmt(rates['llama.cpp'])}" if cpp else ""))
    for note in notes:
        print("  " + note)
    print("  batch-1 decode streams every weight once per token: its ceiling is bandwidth / bytes")


def fmt(values):
    return " ".join(f"{v:.1f}" for v in values)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="25,50,100")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--skip", default="", help="comma list of tables to skip: 1,2,3")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    if "1" not in skip:
        cache_speedup(Transformer(ModelConfig.preset("gpt2"), seed=0),
                      [int(x) for x in args.lengths.split(",")], args.repeats)
    if "2" not in skip:
        memory_per_token()
    if "3" not in skip:
        with tempfile.TemporaryDirectory() as folder:
            decode_speed(args.decode_tokens, folder, args.repeats)


if __name__ == "__main__":
    if "--hf-worker" in sys.argv:
        i = sys.argv.index("--hf-worker")
        _hf_worker(sys.argv[i + 1], int(sys.argv[i + 2]), int(sys.argv[i + 3]))
    else:
        main()
