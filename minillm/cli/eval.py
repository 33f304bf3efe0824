"""`minillm eval`: perplexity of a model over a text file, in windows the way llama.cpp's perplexity
tool measures it, and with --ref the KL divergence, top-1 agreement and perplexity change against a
reference model (minillm.inference.perplexity).

  minillm eval --model smol-q4_0.gguf --text doc.txt --ctx 512
  minillm eval --model smol-q4_0.gguf --ref smol-f32.gguf --text doc.txt --json
"""
import json
import sys
import time

from ..inference.perplexity import model_logits, score_windows, text_windows
from ..loaders import load
from .args import UsageError
from .generate import add_exact_arg


def _progress_bar(stream):
    start = time.time()

    def show(i, total):
        width = 30
        fill = int(width * i / total)
        rate = i / max(time.time() - start, 1e-9)
        stream.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {i}/{total} windows  "
                     f"{time.time() - start:6.1f}s  ({rate:.2f} windows/s)")
        if i == total:
            stream.write("\n")
        stream.flush()
    return show


def _load(path, what, exact=False):
    try:
        return load(path, act_int8=not exact)
    except (ValueError, FileNotFoundError, TypeError) as e:
        raise ValueError(f"{what}: {e}") from None     # a missing or damaged file: exit code 1


def _windows(args, model, tok):
    if tok is None:
        raise UsageError(f"--model: {args.model} carries no tokenizer (the text must be tokenized)")
    try:
        with open(args.text, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--text: cannot read {args.text}: {e}") from None
    if args.ctx < 4 or args.ctx > model.config.max_seq_len:
        raise UsageError(f"--ctx: expected 4 .. {model.config.max_seq_len} (the model's context), got {args.ctx}")
    ids = tok.encode(text)
    if len(ids) < args.ctx:
        raise UsageError(f"--text: {args.text} has {len(ids)} tokens, fewer than one window of --ctx {args.ctx}")
    windows = text_windows(ids, args.ctx, tok.bos_token_id if tok.add_bos else None)
    if args.chunks is not None:
        if args.chunks < 1:
            raise UsageError(f"--chunks: expected an int >= 1, got {args.chunks}")
        windows = windows[:args.chunks]
    return windows


def main(args):
    model, tok = _load(args.model, "--model", args.exact)
    windows = _windows(args, model, tok)
    ref_fn = None
    if args.ref:
        ref, _ = _load(args.ref, "--ref", args.exact)
        if ref.config.vocab_size != model.config.vocab_size:
            raise UsageError(f"--ref: vocabulary of {ref.config.vocab_size} tokens, expected the model's "
                             f"{model.config.vocab_size}")
        ref_fn = model_logits(ref)
    n, n_ctx = windows.shape
    print(f"{n} windows of {n_ctx} tokens, scoring the second half of each ({n * (n_ctx - 1 - n_ctx // 2)} tokens)",
          file=sys.stderr)
    scores = score_windows(model_logits(model), windows, ref_fn,
                           progress=None if args.no_progress else _progress_bar(sys.stderr))
    s = scores.summary()
    if args.json:
        print(json.dumps(s))
        return 0
    print(f"perplexity {s['ppl']:.4f} over {s['tokens']} tokens")
    if args.ref:
        print(f"reference perplexity {s['ppl_ref']:.4f}  Δppl {s['dppl_pct']:+.3f}%  "
              f"mean KL(ref || model) {s['kl']:.6f}  top-1 agreement {100 * s['top1']:.2f}%")
    return 0


def register(subparsers):
    p = subparsers.add_parser("eval", help="perplexity over a text (and KL / top-1 against a reference model)")
    p.add_argument("--model", required=True, help="a GGUF file, Hugging Face folder or minillm run folder")
    p.add_argument("--ref", default=None, help="reference model (same vocabulary) for KL, top-1 and Δppl")
    p.add_argument("--text", required=True, help="UTF-8 text file to evaluate on")
    p.add_argument("--ctx", type=int, default=512, help="window length in tokens (the second half is scored)")
    p.add_argument("--chunks", type=int, default=None, help="evaluate only the first N windows")
    p.add_argument("--json", action="store_true", help="print one JSON object: ppl, tokens (and kl, top1, ppl_ref)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_exact_arg(p)
    p.set_defaults(func=main)
