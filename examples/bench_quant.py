"""Benchmark: fused dequant-matmul GEMV (csrc/quant.c) vs numpy fp32 GEMV, and minillm decode vs
llama.cpp on the same GGUF files.

    python examples/bench_quant.py              # GEMV table (+ decode table if llama-cpp-python is installed)
    python examples/bench_quant.py --quick      # fewer repeats, 4096x4096 only, no decode
    python examples/bench_quant.py --no-decode  # GEMV table only
    python examples/bench_quant.py --decode-only [--rounds 5]

Threads: 2 unless OMP_NUM_THREADS / OPENBLAS_NUM_THREADS are set (both libraries get the same count).

Part 1: x (M, K) @ W^T for W (N, K) = 4096x4096, 3072x768 and 768x3072, at M = 1 (decode) and M = 16
(a batched serving step): fp32 (numpy/OpenBLAS) and the ggml formats Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and
Q6_K, each with float32 activations ("exact": equal to dequantize-then-matmul within float32 rounding)
and with int8 activations ("int8": csrc/qgemm.c, x quantized per 32 inputs and summed in integers, as
llama.cpp computes; the GGUF loader's default). Where the int8 products read the weights as row tiles
(csrc/qtiles.h: AVX-512 VNNI or AVX2; Q8_0, Q4_0, Q4_1, Q4_K, Q6_K), "blocks" rows time the block kernels
they replace (GGMLLinear.row_tiles = False) in the same rounds. GB/s counts the bytes of the weights (and their
scales) read once per GEMV; the machine's read bandwidth is measured in the same run
(memory_wall.read_bandwidth: a native streaming read on all threads, best of 7) over as many bytes as
the timings rotate through, so "% of bw" is the fraction of the decode ceiling reached. A weight set
of a few MB stays in the cache between repeats, so each timing rotates through enough copies of the
matrix to fill CACHE_BYTES (96 MiB), as a real decode step (every layer once) does; on a host whose
last-level cache holds that much, both the kernels and the probe read from it. The machine is shared: every repeat times every entry in turn (so load from others
hits all of them alike), and the table gives medians. fp32 runs last in each repeat, and each repeat
starts with 0.2 s of untimed kernel calls (see settle(): OpenBLAS's idle workers spin for about 0.1 s
after a call).
Part 2 (needs llama-cpp-python): the Llama-134M shape (d768, 12 layers, ffn 2048, V32000, random
weights; --model llama-1.1b: TinyLlama-1.1B's shape, d2048, 22 layers, 4 kv heads, ffn 5632, whose
0.6-4.4 GB per token outgrow a last-level cache) written as GGUF F32/Q8_0/Q4_0/Q4_K by minillm.loaders.save_gguf (its Q4_0 file keeps the
32000x768 output matrix in Q6_K, as llama.cpp writes it) and as Q4_1 by llama.cpp's quantizer from the
F32 file; greedy decode of 64 tokens after a 16-token prompt in llama.cpp and in minillm (load_gguf +
minillm.inference.generate with its KV cache), in turn, each tok/s the median of --rounds (default 3)
runs. llama.cpp's rate: its eval of one token at a time after the prompt, from Python. minillm's:
generate's, the time of a 64-token generation less that of a 1-token one (the prefill and the first
token) over the 63 steps after it, which generate runs in one C call (csrc/decode.c decode_run); and
"streamed", the same generation with a Python stream callback per token, timed from the first token
to the last. Each row also gives the decode ceiling (minillm.inference.memory_wall: read
bandwidth / the weight bytes a token reads in that format; the bandwidth probed in every round
right after the two runs over a buffer of those bytes (memory_wall.working_set_bandwidth: where the
weights fit in the last-level cache, its bandwidth), the median taken, so that a busy spell on a
shared host moves the ceiling and the runs alike) and the fraction of it each reaches.
minillm loads the files as minillm.load does (int8 activations, what llama.cpp itself computes) and
runs again with float32 activations ("exact", the --exact flag). llama.cpp runs with use_extra_bufts = False on Intel hosts
(its AMX path crashes there; see bench_real_model.py).
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bench_real_model import llama_cpp_module  # noqa: E402  (llama.cpp with its AMX workaround)

from minillm.inference.memory_wall import (decode_ceiling, read_bandwidth, weight_bytes_per_token,  # noqa: E402
                                          working_set_bandwidth)
from minillm.quant import _native  # noqa: E402
from minillm.quant.ggml_quants import quantize_blocks  # noqa: E402
from minillm.quant.linear import GGMLLinear  # noqa: E402

CACHE_BYTES = 96 << 20  # rotate through copies until this many weight bytes (and probe as many)
SETTLE_S = 0.2  # see settle()
THREADS = int(os.environ["OMP_NUM_THREADS"])


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def settle(calls):
    """Run the C kernels untimed for SETTLE_S seconds before a round's timings. Two effects on this
    2-core VM otherwise bias them, each by up to 2x (measured with a C loop as well as here):
    OpenBLAS keeps its idle workers spinning (sched_yield) for 2^28 cycles, about 0.1 s, after each
    call, so a kernel timed right after the fp32 GEMV shares a core with them; and after the
    process has slept, the OpenMP worker wakes on the same core as the main thread for the next
    ~50 ms (until the scheduler moves it). fp32 runs last in each round, after the others."""
    t = time.perf_counter()
    while time.perf_counter() - t < SETTLE_S:
        for c in calls:
            c()


GGML_FORMATS = ("q8_0", "q4_0", "q4_1", "q4_K", "q5_K", "q6_K")


def layers_for(w):  # W (N, K) float32 -> {name: quantized linear layer}
    """Each ggml format twice: float32 activations ("exact": dequantize-then-matmul up to float32
    rounding) and int8 activations (csrc/qgemm.c: what llama.cpp computes, minillm's GGUF default)."""
    made = {}
    for f in GGML_FORMATS:
        blocks = quantize_blocks(w, f)
        made[f + " exact"] = GGMLLinear(f, blocks)
        made[f + " int8"] = GGMLLinear(f, blocks, act_int8=True)
        if made[f + " int8"].row_tiles:           # int8 from row tiles: the block kernels beside them
            made[f + " blocks"] = GGMLLinear(f, blocks, act_int8=True)
            made[f + " blocks"].row_tiles = False
    return made


def _copies(lin):  # enough copies of a layer to exceed the cache between two uses of one
    copies = [lin] + [type(lin).from_arrays(lin.meta(), {k: v.copy() for k, v in lin.arrays().items()})
                      for _ in range(-(-CACHE_BYTES // lin.nbytes) - 1)]
    for c in copies:
        c.act_int8 = lin.act_int8
        if isinstance(lin, GGMLLinear) and lin.act_int8:
            c.row_tiles = lin.row_tiles
    return copies


def _time_rounds(runs, repeats):
    """{name: median seconds per call}: every round times every entry in turn (fp32 last)."""
    times = {name: [] for name in runs}
    order = [name for name in runs if not name.startswith("fp32")] + [n for n in runs if n.startswith("fp32")]
    for r in range(repeats + 1):                             # round 0 warms up
        settle(runs[order[0]][1])
        for name in order:
            calls = runs[name][1]
            calls[0]()                                       # wake the thread team first
            t = timed(lambda: [c() for c in calls]) / len(calls)
            if r:
                times[name].append(t)
    return {name: float(np.median(v)) for name, v in times.items()}


def gemv_table(shapes, repeats):
    """x (M, K) @ W^T at M = 1 (decode: GB/s and % of the read bandwidth) and M = 16 (a batched
    serving step: ms, and how many times the M = 1 time it takes)."""
    rng = np.random.default_rng(0)
    bw = read_bandwidth(THREADS, nbytes=CACHE_BYTES) / 1e9
    print(f"{THREADS} threads; read bandwidth (native streaming read of {CACHE_BYTES >> 20} MiB, the bytes each "
          f"timing rotates through, best of 7): {bw:.1f} GB/s")
    print(f"{'N x K':>12} {'format':>11} {'MB':>6} {'M=1 ms':>8} {'GB/s':>6} {'% of bw':>8} {'M=16 ms':>8} "
          f"{'M=16/M=1':>9}")
    rows = []
    for N, K in shapes:
        w = (rng.standard_normal((N, K)) * 0.02).astype(np.float32)
        x1, x16 = rng.standard_normal((1, K)).astype(np.float32), rng.standard_normal((16, K)).astype(np.float32)
        runs = {}                                                # name -> (bytes, calls over copies)
        fp32 = [w] + [w.copy() for _ in range(-(-CACHE_BYTES // w.nbytes) - 1)]
        for M, x in ((1, x1), (16, x16)):
            runs[f"fp32/{M}"] = (w.nbytes, [lambda m=m, x=x: x @ m.T for m in fp32])
        for name, lin in layers_for(w).items():
            copies = _copies(lin)
            for M, x in ((1, x1), (16, x16)):
                runs[f"{name}/{M}"] = (lin.nbytes, [lambda m=c, x=x: m.matmul(x) for c in copies])
        t = _time_rounds(runs, repeats)
        for name in dict.fromkeys(n.rsplit("/", 1)[0] for n in runs):
            nbytes, t1, t16 = runs[name + "/1"][0], t[name + "/1"], t[name + "/16"]
            gbs = nbytes / t1 / 1e9
            rows.append((N, K, name, gbs / bw, t16 / t1))
            print(f"{N:>5} x {K:<5} {name:>11} {nbytes / 1e6:6.1f} {t1 * 1e3:8.3f} {gbs:6.1f} {100 * gbs / bw:7.0f}% "
                  f"{t16 * 1e3:8.3f} {t16 / t1:8.1f}x")
        del runs, fp32
    return rows


def gguf_files(model, folder):
    """{format: path} of the model as GGUF: F32, Q8_0, Q4_0 and Q4_K written by minillm.save_gguf,
    Q4_1 by llama.cpp's own quantizer from the F32 file (save_gguf has no Q4_1 writer)."""
    from minillm.loaders import save_gguf
    files = {}
    for dtype in ("f32", "q8_0", "q4_0", "q4_K"):
        files[dtype] = os.path.join(folder, f"m-{dtype}.gguf")
        save_gguf(model, files[dtype], dtype=dtype)
    llama_cpp = llama_cpp_module()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = 3                                                  # LLAMA_FTYPE_MOSTLY_Q4_1
    files["q4_1"] = os.path.join(folder, "m-q4_1.gguf")
    if llama_cpp.llama_model_quantize(files["f32"].encode(), files["q4_1"].encode(), params) != 0:
        raise SystemExit("llama_model_quantize failed writing the Q4_1 file")
    return files


def decode_table(n_new=64, prompt_len=16, repeats=3, kv_dtype="float16", preset="llama-134m"):
    if importlib.util.find_spec("llama_cpp") is None:   # optional: the reference compared with
        print("\nllama-cpp-python not installed: decode comparison skipped (pip install llama-cpp-python)")
        return
    from minillm import ModelConfig, Transformer
    from minillm.inference import generate
    from minillm.loaders import load_gguf
    llama_cpp = llama_cpp_module()                   # with the AMX workaround on Intel hosts
    cfg = ModelConfig.preset(preset)
    model = Transformer(cfg, seed=0)
    prompt = [int(t) for t in np.random.default_rng(1).integers(0, cfg.vocab_size, prompt_len)]
    print(f"\ngreedy decode, {preset} shape ({cfg.num_params() / 1e6:.0f}M parameters), {prompt_len}-token prompt, {n_new} new tokens, {THREADS} threads, "
          f"KV cache {kv_dtype} (llama.cpp: float16), "
          f"{repeats} rounds; ceiling = read bandwidth / weight bytes per token, the bandwidth of a read of those "
          f"bytes measured in each round beside the runs (median of the rounds' probes, each the best of 7 reads)")
    print("columns: tok/s (% of the ceiling); minillm int8: int8 activations (the GGUF default, what llama.cpp "
          "computes), generate's decode loop; streamed: the same with a stream callback per token (the time between "
          "tokens); minillm exact: float32 activations (--exact); the first line (F32) has no int8 activations")
    print(f"{'format':>8} {'MB/token':>9} {'GB/s':>5} {'ceiling':>8} {'llama.cpp':>14} {'minillm int8':>14} "
          f"{'streamed':>14} {'minillm exact':>14} {'llama.cpp / int8':>17}")
    with tempfile.TemporaryDirectory() as d:
        for dtype, path in gguf_files(model, d).items():
            llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_threads=THREADS, n_batch=64, verbose=False)

            def run_llama():
                llm.reset()
                llm.eval(prompt)
                t = time.perf_counter()
                for _ in range(n_new):
                    tok = llm.sample(temp=0.0)
                    llm.eval([tok])
                return n_new / (time.perf_counter() - t)
            ours, _ = load_gguf(path)                     # int8 activations: the default, as llama.cpp
            def run_ours():  # decode rate of generate's own loop: a generation of n_new tokens less one of 1
                t0 = time.perf_counter()           # (the prefill and the first token), over the n_new - 1 steps
                generate(ours, np.array(prompt), 1, kv_dtype=kv_dtype)
                t1 = time.perf_counter()
                generate(ours, np.array(prompt), n_new, kv_dtype=kv_dtype)
                return (n_new - 1) / ((time.perf_counter() - t1) - (t1 - t0))

            def run_streamed():  # tokens after the first over the time between them, a Python callback per token
                stamps = []
                generate(ours, np.array(prompt), n_new, stream=lambda tok: stamps.append(time.perf_counter()),
                         kv_dtype=kv_dtype)
                return (len(stamps) - 1) / (stamps[-1] - stamps[0])
            runs = {"llama.cpp": [], "minillm": [], "streamed": [], "bw": []}
            nbytes = weight_bytes_per_token(ours)
            generate(ours, np.array(prompt), 2)          # untimed: the step tables are built on first use
            for _ in range(repeats):                     # in turn: a slow spell lands on all of them
                runs["llama.cpp"].append(run_llama())
                runs["minillm"].append(run_ours())
                runs["streamed"].append(run_streamed())
                runs["bw"].append(working_set_bandwidth(nbytes, THREADS))
            theirs, mine, streamed, bw = (float(np.median(runs[k])) for k in ("llama.cpp", "minillm", "streamed", "bw"))
            ceiling = decode_ceiling(nbytes, bw)
            ggml = [q for q in ours.quantized.values() if isinstance(q, GGMLLinear) and q.fmt in _native.INT8_ROWS]
            exact = "-"                                   # F32: no int8 path, the one column is exact
            if ggml:                                      # the same file with float32 activations (--exact)
                for q in ggml:
                    q.act_int8 = False
                generate(ours, np.array(prompt), 2)      # untimed, as above
                ex = float(np.median([run_ours() for _ in range(repeats)]))
                exact = f"{ex:.1f} ({ex / ceiling:.0%})"
            int8 = f"{mine:.1f} ({mine / ceiling:.0%})" if ggml else "-"
            if not ggml:
                exact = f"{mine:.1f} ({mine / ceiling:.0%})"
            print(f"{dtype:>8} {nbytes / 1e6:9.0f} {bw / 1e9:5.1f} {ceiling:8.1f} {f'{theirs:.1f} ({theirs / ceiling:.0%})':>14} "
                  f"{int8:>14} {f'{streamed:.1f} ({streamed / ceiling:.0%})':>14} {exact:>14} {theirs / mine:16.2f}x")
            llm.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4096x4096 only, 3 repeats, no decode table")
    ap.add_argument("--no-decode", action="store_true", help="skip the llama.cpp decode comparison")
    ap.add_argument("--decode-only", action="store_true", help="only the llama.cpp decode comparison")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the decode comparison (medians; default 3)")
    ap.add_argument("--kv-dtype", choices=("float16", "float32"), default="float16",
                    help="minillm's KV cache in the decode comparison (default float16, as llama.cpp's)")
    ap.add_argument("--model", choices=("llama-134m", "llama-1.1b"), default="llama-134m",
                    help="the decode comparison's model shape (default llama-134m; llama-1.1b: weights "
                         "past a last-level cache, read from memory; its files take ~8 GB of disk and "
                         "~3 minutes to write)")
    args = ap.parse_args()
    if not _native.available():
        print("native extension not built: nothing to benchmark (pip install -e .)")
        return
    # 4096 x 4096: a 7B-class matrix; 3072 x 768 and 768 x 3072: the MLP of the 124M-class models
    shapes = [(4096, 4096)] if args.quick else [(4096, 4096), (3072, 768), (768, 3072)]
    if not args.decode_only:
        gemv_table(shapes, 3 if args.quick else 7)
    if not (args.quick or args.no_decode):
        if args.rounds < 1:
            raise SystemExit(f"--rounds: expected an int >= 1, got {args.rounds}")
        decode_table(repeats=args.rounds, kv_dtype=args.kv_dtype, preset=args.model)


if __name__ == "__main__":
    main()
