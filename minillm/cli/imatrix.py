"""`minillm imatrix`: the importance matrix of a model over a text, as llama.cpp's llama-imatrix
computes it (sum of x^2 at the input of every block linear layer, per input channel, over chunks of
--ctx tokens), written as GGUF (the format current llama.cpp writes) or, for a name ending in .dat,
the legacy format. `minillm quantize --imatrix FILE` and llama.cpp's quantizer both read either.

  minillm imatrix --model SmolLM2-135M-Instruct.Q4_1.gguf --text calib.txt --out imatrix.gguf
"""
import os
import sys
import time

import numpy as np

from ..loaders.gguf import gguf_name
from ..quant.imatrix import Imatrix, collect_imatrix, save_imatrix
from .args import UsageError, existing_file, existing_path, nonneg_int, output_file, positive_int
from .generate import load_model_arg


def _chunks(tok, text, ctx, max_chunks):
    """Token chunks (n, ctx): the text's tokens cut into windows of ctx, each starting with BOS when
    the model's tokenizer adds one (as llama-imatrix does)."""
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    n = len(ids) // ctx
    if max_chunks:
        n = min(n, max_chunks)
    if n < 1:
        raise UsageError(f"--text: {len(ids)} tokens, fewer than one chunk of --ctx {ctx}")
    chunks = ids[:n * ctx].reshape(n, ctx).copy()
    bos = getattr(tok, "bos_token_id", None)
    if getattr(tok, "add_bos", False) and bos is not None:
        chunks[:, 0] = bos
    return chunks


def main(args):
    model, tok = load_model_arg(args, dequantize=True)     # activations of the float32 model
    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    if args.ctx > model.config.max_seq_len:
        raise UsageError(f"--ctx: expected at most the model's context {model.config.max_seq_len}, got {args.ctx}")
    chunks = _chunks(tok, text, args.ctx, args.chunks)
    start = time.time()

    def progress(i, n):
        sys.stderr.write(f"\rchunk {i}/{n}  {time.time() - start:5.1f}s")
        if i == n:
            sys.stderr.write("\n")

    stats = collect_imatrix(model, chunks, progress=progress)
    im = Imatrix(chunk_count=len(chunks), chunk_size=args.ctx, datasets=[os.path.basename(args.text)])
    for name, (s, count) in stats.items():
        gg = gguf_name(name)
        im.sums[gg], im.counts[gg] = s, np.array([count])
    save_imatrix(args.out, im)
    print(f"wrote {args.out}: {len(im.sums)} entries, {len(chunks)} chunks of {args.ctx} tokens")
    return 0


def register(subparsers):
    p = subparsers.add_parser("imatrix", help="importance matrix of a model over a text (llama.cpp's format)")
    p.add_argument("--model", required=True, type=existing_path, help="a GGUF file, Hugging Face folder or minillm run folder")
    p.add_argument("--text", required=True, type=existing_file, help="calibration text (UTF-8)")
    p.add_argument("--out", required=True, type=output_file,
                   help="imatrix.gguf, or a name ending in .dat for the legacy format")
    p.add_argument("--ctx", type=positive_int, default=512, help="tokens per chunk")
    p.add_argument("--chunks", type=nonneg_int, default=0, help="at most this many chunks (0: all)")
    p.set_defaults(func=main)
