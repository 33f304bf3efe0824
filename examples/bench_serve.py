"""Serving benchmark: minillm serve beside llama-cpp-python's OpenAI-compatible server on the same
GGUF file, the same threads and the same workload.

    python examples/bench_serve.py make-gguf /tmp/bench.gguf           # optional: a test model file
    python examples/bench_serve.py run --model FILE --threads 2 --clients 1,4,16,64

For each concurrency C, C clients each send requests back to back (streaming /v1/completions), with
prompt and output lengths drawn from a fixed seed (default: prompts 8-64 words, outputs 16-64
tokens; end of text is ignored -- ignore_eos / a -100 logit bias -- so both servers produce
exactly the requested tokens). Reported per server and C:
requests/s, output tokens/s, time to first token (TTFT) and inter-token latency (ITL: (last token -
first token) / (tokens - 1) per request) at p50 / p99, then the ratios minillm / llama.cpp.

llama.cpp's AMX matmul ("extra buffer types") crashes on some Intel hosts; the launcher below
(`llama-server`) starts `python -m llama_cpp.server` with use_extra_bufts = False, which also turns
off llama.cpp's weight repacking, so it runs somewhat below its best there.
"""
import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np

WORDS = ("the of and to in is that for it as with was on be by this are from or at an which not but "
         "have has can will one all would there their what so up out if about who get make like time "
         "just know take people into year good some could them see other than then now look only come "
         "its over think also back after use two how our work first well way even new want because").split()


def workload(n, seed, words=(8, 64), outputs=(16, 64)):
    """n (prompt text, max_tokens) pairs, the same for every server: prompt lengths uniform in
    words (in words), output lengths uniform in outputs (in tokens)."""
    rng = np.random.default_rng(seed)
    return [(" ".join(rng.choice(WORDS, size=int(rng.integers(words[0], words[1] + 1)))),
             int(rng.integers(outputs[0], outputs[1] + 1))) for _ in range(n)]


async def one(client, model, prompt, max_tokens, extra):
    """One streamed request -> (TTFT, ITL, output tokens). Tokens: the usage the server reports at the
    end of the stream when it can (stream_options), else one per chunk with text (llama.cpp's
    server streams one token per chunk)."""
    t0 = time.perf_counter()
    times, usage = [], None
    kw = {"stream_options": {"include_usage": True}} if extra and extra.get("ignore_eos") else {}
    stream = await client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens,
                                             temperature=0.0, stream=True, extra_body=extra, **kw)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            times.append(time.perf_counter())
        if getattr(chunk, "usage", None):
            usage = chunk.usage.completion_tokens
    n = usage if usage is not None else len(times)
    ttft = times[0] - t0 if times else float("nan")
    itl = (times[-1] - times[0]) / (n - 1) if len(times) > 1 and n > 1 else float("nan")
    return ttft, itl, n


async def level(url, model, clients, jobs, extra):
    from openai import AsyncOpenAI     # the official client, as the servers' users have it
    client = AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=3600)
    queue = list(jobs)
    results = []

    async def worker():
        while queue:
            prompt, n = queue.pop()
            results.append(await one(client, model, prompt, n, extra))
    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(clients)])
    wall = time.perf_counter() - t0
    await client.close()
    ttft, itl, toks = (np.array(x, dtype=np.float64) for x in zip(*results))
    asked = sum(n for _, n in jobs)
    if toks.sum() != asked:   # a server that stopped early would look faster than it is
        print(f"warning: {int(toks.sum())} output tokens received, {asked} requested", flush=True)
    return {"req/s": len(results) / wall, "tok/s": toks.sum() / wall,
            "ttft50": np.nanpercentile(ttft, 50), "ttft99": np.nanpercentile(ttft, 99),
            "itl50": np.nanpercentile(itl, 50), "itl99": np.nanpercentile(itl, 99)}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, url, env, timeout=600):
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{cmd[:4]} did not start")


def stop(proc):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def servers(args):
    """(name, command, extra request fields) of the two servers."""
    here = os.path.abspath(__file__)
    mini = [sys.executable, "-c", "import sys; from minillm.cli import main; sys.exit(main())", "serve",
            "--model", args.model, "--served-model-name", "bench", "--max-num-seqs", "64",
            "--max-model-len", "512", "--max-queue", "256"]
    llama = [sys.executable, here, "llama-server", "--model", args.model, "--threads", str(args.threads)]
    return [("minillm", mini, {"ignore_eos": True}), ("llama.cpp", llama, None)]


def run(args):
    # minillm: its C kernels on `threads` OpenMP threads, OpenBLAS (the batched GEMMs) on one: OpenBLAS's
    # own pool collapses when the cores are shared with other work (see minillm/kernels/__init__.py),
    # and the two pools never run at once, so at most `threads` cores are busy, as for llama.cpp
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS="1",
               NUMBA_NUM_THREADS=str(args.threads))
    clients = [int(c) for c in args.clients.split(",")]
    table = {}
    for name, cmd, extra in servers(args):
        if args.only and name != args.only:
            continue
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start(cmd + ["--port", str(port)], url, env)
        try:
            model = "bench"
            if name == "llama.cpp":   # its name is the path; end of text off through logit_bias
                eos = llama_eos(args.model)
                extra = {"logit_bias": {str(eos): -100.0}} if eos is not None else None
                model = args.model
            asyncio.run(level(url, model, 1, workload(2, 99), extra))          # warm-up
            for c in clients:
                jobs = workload(max(args.min_requests, c * args.requests_per_client), args.seed + c,
                                _pair(args.prompt_words), _pair(args.output_tokens))
                table[name, c] = asyncio.run(level(url, model, c, jobs, extra))
                print(name, c, {k: round(v, 4) for k, v in table[name, c].items()}, flush=True)
        finally:
            stop(proc)
    print_table(table, clients)


def _pair(text):
    lo, hi = (int(x) for x in text.split(","))
    return lo, hi


def llama_eos(path):
    from minillm.io.gguf import read_gguf
    return read_gguf(path)[0].get("tokenizer.ggml.eos_token_id")


def print_table(table, clients):
    print("\n| server | clients | requests/s | output tok/s | TTFT p50 / p99 (s) | ITL p50 / p99 (ms) |")
    print("|---|---|---|---|---|---|")
    for (name, c), r in sorted(table.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(f"| {name} | {c} | {r['req/s']:.2f} | {r['tok/s']:.1f} | {r['ttft50']:.2f} / {r['ttft99']:.2f} | "
              f"{1e3 * r['itl50']:.0f} / {1e3 * r['itl99']:.0f} |")
    if all(("minillm", c) in table and ("llama.cpp", c) in table for c in clients):
        print("\n| clients | requests/s ratio | tok/s ratio | TTFT p50 ratio | ITL p50 ratio |")
        print("|---|---|---|---|---|")
        for c in clients:
            a, b = table["minillm", c], table["llama.cpp", c]
            print(f"| {c} | {a['req/s'] / b['req/s']:.2f}x | {a['tok/s'] / b['tok/s']:.2f}x | "
                  f"{a['ttft50'] / b['ttft50']:.2f}x | {a['itl50'] / b['itl50']:.2f}x |")


def llama_server(args):
    """python -m llama_cpp.server with llama.cpp's extra buffer types (AMX) off."""
    import runpy
    import llama_cpp.llama_cpp as lc    # optional: only this launcher needs llama-cpp-python
    default = lc.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p
    lc.llama_model_default_params = params
    sys.argv = ["llama_cpp.server", "--model", args.model, "--port", str(args.port), "--host", "127.0.0.1",
                "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads), "--n_ctx", "2048",
                "--interrupt_requests", "False"]   # by default a new request cuts the running stream short
    runpy.run_module("llama_cpp.server", run_name="__main__")


def make_gguf(args):
    """A Llama in SmolLM2-135M's shape (but an 8,192-token vocabulary) with random weights, and
    a BPE vocabulary trained on CPython's documentation: for hosts where no real model file is at hand."""
    from pydoc_data.topics import topics
    from minillm import ModelConfig, Transformer
    from minillm.loaders import save_gguf
    from minillm.tokenizer import BPETokenizer
    tok = BPETokenizer.train("".join(topics.values()), 8192, special_tokens=["<|endoftext|>"])
    cfg = ModelConfig(arch="llama", vocab_size=tok.n_vocab, n_layer=30, n_head=9, n_kv_head=3, d_model=576,
                      ffn_dim=1536, max_seq_len=2048, tie_embeddings=True)
    save_gguf(Transformer(cfg, seed=0), args.out, dtype=args.dtype, tokenizer=tok)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", required=True, help="GGUF file both servers load")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--clients", default="1,4,16,64")
    r.add_argument("--requests-per-client", type=int, default=1)
    r.add_argument("--min-requests", type=int, default=8)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--prompt-words", default="8,64", help="prompt length range in words: LO,HI")
    r.add_argument("--output-tokens", default="16,64", help="output length range in tokens: LO,HI")
    r.add_argument("--only", choices=["minillm", "llama.cpp"], default=None)
    ls = sub.add_parser("llama-server")
    ls.add_argument("--model", required=True)
    ls.add_argument("--port", type=int, required=True)
    ls.add_argument("--threads", type=int, default=2)
    m = sub.add_parser("make-gguf")
    m.add_argument("out")
    m.add_argument("--dtype", default="f32", choices=["f32", "f16", "q8_0", "q4_0", "q4_K"])
    args = p.parse_args()
    {"run": run, "llama-server": llama_server, "make-gguf": make_gguf}[args.cmd](args)


if __name__ == "__main__":
    main()
