"""`minillm quantize`: quantize a trained run's latest checkpoint (or a saved model) and write a
quantized checkpoint (minillm.loaders.save_quantized) and/or a GGUF file for llama.cpp.

  minillm quantize --run runs/minillm --method gptq --bits 4 --group-size 128 --out runs/minillm/q4.safetensors
  minillm quantize --run runs/minillm --gguf runs/minillm/model-q4_0.gguf --gguf-dtype q4_0
  minillm quantize --model SmolLM2-135M-Instruct.Q4_1.gguf --gguf smol-q8_0.gguf --gguf-dtype q8_0

With --type, the model (a GGUF file in any type minillm reads, or a model folder) is written as one of
llama.cpp's file types, tensor for tensor what llama.cpp's quantizer writes (loaders.gguf_quantize):
  minillm quantize --model model-f32.gguf --type Q4_K_M --out model-Q4_K_M.gguf [--imatrix imatrix.gguf]
"""
import sys
import time

import numpy as np

from ..loaders import save_gguf, save_quantized
from ..loaders.gguf import FILE_TYPE
from ..loaders.gguf_quantize import quantize_gguf
from ..quant import FORMATS, METHODS, quantize
from ..quant.ggml_quants import QUANTIZERS
from ..quant.mixes import MIXES
from ..train import corpus_text
from .args import UsageError, existing_file, existing_path, output_file, positive_int
from .generate import load_model_arg


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
    model, tok = load_model_arg(args, dequantize=True)   # float weights: the quantizers start from them
    T = min(model.config.max_seq_len, 256)
    ids = np.asarray(tok.encode(corpus_text()[:200_000]), dtype=np.int64)
    n = max(1, min(args.calib_tokens, len(ids)) // T)
    calib = ids[:n * T].reshape(n, T) if len(ids) >= T else ids[None, :]
    return model, tok, calib


def _mix(args):
    """--type: llama.cpp's file type from --model to the GGUF file --out."""
    if not args.model or not args.out:
        raise UsageError("--type: give --model IN and --out OUT.gguf")
    start = time.time()

    def progress(i, n, name):
        sys.stderr.write(f"\r[{i:4d}/{n}] {name[:40]:40s} {time.time() - start:6.1f}s")
        if i == n:
            sys.stderr.write("\n")
    types = quantize_gguf(args.model, args.out, args.type, imatrix=args.imatrix, progress=progress)
    counts = {}
    for t in types.values():
        counts[t] = counts.get(t, 0) + 1
    print(f"wrote {args.out} ({args.type}): " + ", ".join(f"{n} {t}" for t, n in sorted(counts.items())))
    return 0


def main(args):
    if args.type:
        return _mix(args)
    if args.imatrix:
        raise UsageError("--imatrix: only with --type (llama.cpp's file types)")
    if not args.out and not args.gguf:
        raise UsageError("give --out and/or --gguf (where to write the quantized model)")
    model, tok, calib = _load(args)
    if args.out:
        needs = args.method != "rtn" or args.format == "llm_int8" or args.format in QUANTIZERS
        qm = quantize(model, args.method, args.bits, args.group_size, args.format,
                      calib if needs else None, act_order=args.act_order, progress=_progress_bar(sys.stderr))
        save_quantized(qm, args.out)
        print(f"wrote {args.out}")
    if args.gguf:
        save_gguf(model, args.gguf, dtype=args.gguf_dtype, tokenizer=tok)
        print(f"wrote {args.gguf}")
    return 0


def register(subparsers):
    p = subparsers.add_parser("quantize", help="quantize a trained model (RTN/GPTQ/AWQ, INT8/INT4/NF4/GGUF)")
    p.add_argument("--run", default="runs/minillm", help="run directory written by `minillm train`")
    p.add_argument("--model", default=None, type=existing_path, help="a GGUF file or Hugging Face folder to quantize instead of --run")
    p.add_argument("--method", choices=METHODS, default="rtn")
    p.add_argument("--bits", type=int, choices=(4, 8), default=8)
    p.add_argument("--group-size", type=positive_int, default=128, help="weights sharing one scale")
    p.add_argument("--format", choices=FORMATS, default=None, help="default: int8 or int4 from --bits")
    p.add_argument("--act-order", action="store_true", help="GPTQ: quantize columns by decreasing Hessian diagonal")
    p.add_argument("--calib-tokens", type=positive_int, default=4096, help="calibration tokens from the corpus")
    p.add_argument("--type", choices=tuple(MIXES), default=None,
                   help="llama.cpp file type: --model is written to --out as that GGUF mix")
    p.add_argument("--imatrix", type=existing_file, default=None,
                   help="with --type: importance matrix (GGUF or legacy .dat)")
    p.add_argument("--out", type=output_file, help="quantized checkpoint (.safetensors); with --type the GGUF file")
    p.add_argument("--gguf", type=output_file, help="also write a GGUF file for llama.cpp")
    p.add_argument("--gguf-dtype", choices=tuple(FILE_TYPE), default="q8_0")
    p.set_defaults(func=main)
