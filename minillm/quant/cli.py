"""`minillm quantize`: quantize a trained run's latest checkpoint (or a saved model) and write a
quantized checkpoint (minillm.quant.save_quantized) and/or a GGUF file for llama.cpp.

  minillm quantize --run runs/minillm --method gptq --bits 4 --group-size 128 --out runs/minillm/q4.safetensors
  minillm quantize --run runs/minillm --gguf runs/minillm/model-q4_0.gguf --gguf-dtype q4_0
"""
import sys
import time

import numpy as np

from .api import FORMATS, METHODS


def _progress_bar(stream):
    start = time.time()

    def show(i, total, name):
        width = 30
        fill = int(width * i / total)
        stream.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {i}/{total} layers  {time.time() - start:5.1f}s  {name[-40:]:40s}")
        if i == total:
            stream.write("\n")
        stream.flush()
    return show


def _load(args):
    from ..checkpoint import latest_checkpoint, load_checkpoint
    from ..train import corpus_text, load_run_tokenizer
    path = latest_checkpoint(args.run + "/ckpt")
    if path is None:
        raise SystemExit(f"--run: no checkpoint under {args.run}/ckpt (train one with `minillm train`)")
    model = load_checkpoint(path)[0]
    tok = load_run_tokenizer(args.run)
    T = min(model.config.max_seq_len, 256)
    ids = np.asarray(tok.encode(corpus_text()[:200_000]), dtype=np.int64)
    n = max(1, min(args.calib_tokens, len(ids)) // T)
    calib = ids[:n * T].reshape(n, T) if len(ids) >= T else ids[None, :]
    return model, tok, calib


def main(args):
    from .api import quantize, save_quantized
    if not args.out and not args.gguf:
        print("minillm quantize: give --out and/or --gguf", file=sys.stderr)
        return 2
    model, tok, calib = _load(args)
    if args.out:
        needs = args.method != "rtn" or args.format in ("llm_int8", "q4_0", "q4_K", "q6_K")
        qm = quantize(model, args.method, args.bits, args.group_size, args.format,
                      calib if needs else None, act_order=args.act_order, progress=_progress_bar(sys.stderr))
        save_quantized(qm, args.out)
        print(f"wrote {args.out}")
    if args.gguf:
        from ..loaders.gguf import save_gguf
        save_gguf(model, args.gguf, dtype=args.gguf_dtype, tokenizer=tok)
        print(f"wrote {args.gguf}")
    return 0


def register(subparsers):
    p = subparsers.add_parser("quantize", help="quantize a trained model (RTN/GPTQ/AWQ, INT8/INT4/NF4/GGUF)")
    p.add_argument("--run", default="runs/minillm", help="run directory written by `minillm train`")
    p.add_argument("--method", choices=METHODS, default="rtn")
    p.add_argument("--bits", type=int, choices=(4, 8), default=8)
    p.add_argument("--group-size", type=int, default=128)
    p.add_argument("--format", choices=FORMATS, default=None, help="default: int8 or int4 from --bits")
    p.add_argument("--act-order", action="store_true", help="GPTQ: quantize columns by decreasing Hessian diagonal")
    p.add_argument("--calib-tokens", type=int, default=4096, help="calibration tokens from the corpus")
    p.add_argument("--out", help="quantized checkpoint (.safetensors)")
    p.add_argument("--gguf", help="also write a GGUF file for llama.cpp")
    p.add_argument("--gguf-dtype", choices=("f32", "f16", "q8_0", "q4_0", "q4_K"), default="q8_0")
    p.set_defaults(func=main)
