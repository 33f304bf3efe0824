"""`minillm quantize`: quantize a trained run's latest checkpoint (or a saved model) and write a
quantized checkpoint (minillm.loaders.save_quantized) and/or a GGUF file for llama.cpp.

  minillm quantize --run runs/minillm --method gptq --bits 4 --group-size 128 --out runs/minillm/q4.safetensors
  minillm quantize --run runs/minillm --gguf runs/minillm/model-q4_0.gguf --gguf-dtype q4_0
  minillm quantize --model SmolLM2-135M-Instruct.Q4_1.gguf --gguf smol-q8_0.gguf --gguf-dtype q8_0
"""
import sys
import time

import numpy as np

from ..loaders import load, save_gguf, save_quantized
from ..quant import FORMATS, METHODS, quantize
from ..run_folder import load_run
from ..train import corpus_text
from .args import UsageError, existing_path, output_file, positive_int


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


def _load_model(args):
    """(float model, tokenizer) from --model (minillm.load, quantized files dequantized first) or --run."""
    if args.model:
        try:
            model, tok = load(args.model, dequantize=True)
        except (ValueError, FileNotFoundError) as e:
            raise ValueError(f"--model: {e}") from None
        if tok is None:
            raise ValueError(f"--model: {args.model} carries no tokenizer (calibration text needs one)")
        return model, tok
    return load_run(args.run, "--run")


def _load(args):
    model, tok = _load_model(args)
    T = min(model.config.max_seq_len, 256)
    ids = np.asarray(tok.encode(corpus_text()[:200_000]), dtype=np.int64)
    n = max(1, min(args.calib_tokens, len(ids)) // T)
    calib = ids[:n * T].reshape(n, T) if len(ids) >= T else ids[None, :]
    return model, tok, calib


def main(args):
    if not args.out and not args.gguf:
        raise UsageError("give --out and/or --gguf (where to write the quantized model)")
    model, tok, calib = _load(args)
    if args.out:
        needs = args.method != "rtn" or args.format in ("llm_int8", "q4_0", "q4_K", "q6_K")
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
    p.add_argument("--out", type=output_file, help="quantized checkpoint (.safetensors)")
    p.add_argument("--gguf", type=output_file, help="also write a GGUF file for llama.cpp")
    p.add_argument("--gguf-dtype", choices=("f32", "f16", "q8_0", "q4_0", "q4_K"), default="q8_0")
    p.set_defaults(func=main)
