"""`minillm serve`: an OpenAI-compatible HTTP server for a model (see minillm/serve/__init__.py)."""
import contextlib
import logging
import os
import sys

import numpy as np

from ..inference import Engine
from ..inference.kv_cache import kv_bytes_per_token
from ..kernels.arith import ceil_div
from ..loaders import load
from .args import existing_path, nonneg_int, port, positive_float, positive_int
from .generate import add_exact_arg


def register(subparsers):
    p = subparsers.add_parser("serve", help="OpenAI-compatible HTTP server (continuous batching)")
    p.add_argument("--model", required=True, type=existing_path, help="GGUF file, Hugging Face folder or minillm run folder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port, default=8000, help="TCP port")
    p.add_argument("--served-model-name", default=None, help="name clients use (default: the path's basename)")
    p.add_argument("--max-num-seqs", type=positive_int, default=16, help="requests in the running batch at most")
    p.add_argument("--max-queue", type=nonneg_int, default=256, help="admitted requests waiting beyond the batch; "
                   "more get 429")
    kv = p.add_mutually_exclusive_group()
    kv.add_argument("--kv-blocks", type=positive_int, default=None, help="KV-cache blocks in the pool")
    kv.add_argument("--kv-memory", type=positive_float, default=None, help="KV-cache pool size in MB (default 512)")
    p.add_argument("--block-size", type=positive_int, default=16, help="token slots per KV block")
    p.add_argument("--max-model-len", type=positive_int, default=None, help="prompt + output tokens at most "
                   "(default: the model's max_seq_len)")
    p.add_argument("--max-num-batched-tokens", type=positive_int, default=256, help="tokens per engine step (chunked prefill)")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1/*")
    p.add_argument("--log-level", default="warning")
    add_exact_arg(p)
    p.set_defaults(func=cmd_serve)


def load_model(path, exact=False):
    """(model, tokenizer) from --model (minillm.load: GGUF file, Hugging Face folder, run folder);
    exact: float32 activations in quantized GGUF layers (--exact)."""
    try:
        model, tokenizer = load(path, act_int8=not exact)
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"--model: {e}") from None
    if tokenizer is None:
        raise ValueError(f"--model: {path} carries no tokenizer")
    return model, tokenizer


def num_blocks(args, config, max_model_len):
    """--kv-blocks, or the pool that --kv-memory MB holds; it must hold one full-length sequence."""
    per_block = kv_bytes_per_token(config, np.dtype(args.kv_dtype).itemsize) * args.block_size
    n = args.kv_blocks if args.kv_blocks is not None else int((args.kv_memory or 512) * 2**20 // per_block)
    need = ceil_div(max_model_len, args.block_size)
    if n < need:
        raise ValueError(f"--kv-blocks/--kv-memory: the pool holds {n} blocks of {args.block_size} tokens, "
                         f"one {max_model_len}-token sequence needs {need} (lower --max-model-len or raise it)")
    return n


def build_server(args):
    from ..serve.app import Server  # starlette is an optional dependency: imported only to serve
    model, tokenizer = load_model(args.model, exact=args.exact)
    cfg = model.config
    max_len = args.max_model_len or cfg.max_seq_len
    if max_len < 2 or (cfg.position_scheme == "learned" and max_len > cfg.max_seq_len):
        raise ValueError(f"--max-model-len: expected 2..{cfg.max_seq_len} for this model, got {max_len}")
    engine = Engine(model, block_size=args.block_size, num_blocks=num_blocks(args, cfg, max_len),
                    max_num_batched_tokens=args.max_num_batched_tokens, max_num_seqs=args.max_num_seqs,
                    kv_dtype=args.kv_dtype)
    name = args.served_model_name or os.path.basename(os.path.normpath(args.model))
    return Server(engine, tokenizer, name, max_len, args.max_queue, args.api_key)


def cmd_serve(args):
    try:
        import uvicorn            # optional dependency: only the server needs it
        import starlette  # noqa: F401
    except ImportError:
        raise ImportError("needs uvicorn and starlette: pip install minillm[serve]") from None
    from ..serve.app import build_app
    server = build_server(args)
    logging.basicConfig(level=args.log_level.upper())
    print(f"minillm serve: {server.model_name} on http://{args.host}:{args.port} "
          f"({server.engine.cache.num_blocks} KV blocks of {args.block_size})", file=sys.stderr, flush=True)
    config = uvicorn.Config(build_app(server), host=args.host, port=args.port, log_level=args.log_level,
                            timeout_graceful_shutdown=5)
    graceful_server(uvicorn.Server, server.worker.request_stop)(config).run()
    return 0


def graceful_server(base, on_signal):
    """uvicorn's Server, except that
    - on SIGINT/SIGTERM the engine thread is told at once to end the running requests (their
      streams close with an error event), so the drain does not wait for long generations;
    - the process then exits with code 0: uvicorn re-raises the signal after its graceful shutdown
      so that the process dies of it; a completed graceful shutdown is a success here."""
    class Graceful(base):
        def handle_exit(self, sig, frame):
            on_signal()
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self):
            with super().capture_signals():
                yield
                self._captured_signals.clear()    # handled: do not re-raise after the drain
    return Graceful
