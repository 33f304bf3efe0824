"""`minillm generate`: load a model (--model: GGUF, Hugging Face folder; or a --run written by
`minillm train`) and stream a continuation of a prompt.

Streaming needs care with byte-level vocabularies: one token can end in the middle of a multi-byte
UTF-8 character, which decodes to U+FFFD until the next token completes it. StreamDecoder decodes
the whole accumulated id list each time and releases only the text that can no longer change
(everything before a trailing run of U+FFFD), so the terminal never shows half a character.
"""
import sys

from ..inference import generate
from ..loaders import load
from ..run_folder import load_run
from .args import UsageError, existing_path, nonneg_float, open_probability, positive_float, \
    positive_int, probability, seed

REPLACEMENT = "\ufffd"


class StreamDecoder:
    """Incremental detokenizer: push(token_id) -> the newly completed text ('' if none yet)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids = []
        self.emitted = 0      # characters of decode(ids) already returned

    def push(self, token_id):
        self.ids.append(int(token_id))
        text = self.tokenizer.decode(self.ids)
        stable = len(text.rstrip(REPLACEMENT))   # a trailing U+FFFD may still become a character
        if stable <= self.emitted:
            return ""
        new = text[self.emitted:stable]
        self.emitted = stable
        return new

    def flush(self):
        """Whatever is left at the end (genuinely invalid bytes stay U+FFFD)."""
        text = self.tokenizer.decode(self.ids)
        new = text[self.emitted:]
        self.emitted = len(text)
        return new

    @property
    def text(self):
        return self.tokenizer.decode(self.ids)


def load_model_arg(args, dequantize=False):
    """(model, tokenizer) named by --model (a GGUF file, a Hugging Face folder or a run folder, see
    minillm.load; dequantize=True: quantized matrices as float32; --exact: float32 activations in the
    quantized layers) or else by --run; ValueError saying which argument is wrong."""
    if getattr(args, "model", None):
        try:
            model, tok = load(args.model, dequantize=dequantize, act_int8=not getattr(args, "exact", False))
        except (ValueError, FileNotFoundError) as e:
            raise ValueError(f"--model: {e}") from None
        if tok is None:
            raise ValueError(f"--model: {args.model} carries no tokenizer")
        return model, tok
    return load_run(args.run, "--run")


def add_exact_arg(p):
    """--exact: a quantized GGUF model's layers keep x in float32 (minillm.load(act_int8=False));
    --kv-dtype: the KV cache's element type."""
    p.add_argument("--exact", action="store_true",
                   help="float32 activations in quantized GGUF layers (default: x quantized to int8 per 32 "
                        "inputs in decode-sized matmuls, as llama.cpp computes these types)")
    p.add_argument("--kv-dtype", choices=("float32", "float16"), default="float32",
                   help="KV cache elements: float16 halves its memory and the bytes a decode step reads from "
                        "it (llama.cpp's default cache type), keys and values rounded to float16")


def add_sampling_args(p, max_new_tokens):
    p.add_argument("--run", default="runs/minillm", help="run directory written by `minillm train`")
    p.add_argument("--model", default=None, type=existing_path,
                   help="a GGUF file or Hugging Face folder (or run folder) to use instead of --run")
    add_exact_arg(p)
    p.add_argument("--max-new-tokens", type=positive_int, default=None,
                   help=f"at most the model's context (max_seq_len) minus one (default: {max_new_tokens}, "
                        f"or what fits in the context beside the prompt)")
    p.set_defaults(default_max_new_tokens=max_new_tokens)
    p.add_argument("--temperature", type=nonneg_float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=positive_int, default=None, help="keep the k most likely tokens")
    p.add_argument("--top-p", type=open_probability, default=None, help="nucleus: keep this much mass")
    p.add_argument("--min-p", type=probability, default=None, help="keep tokens >= this x the top one")
    p.add_argument("--repetition-penalty", type=positive_float, default=None, help="CTRL's penalty, > 1 repeats less")
    p.add_argument("--seed", type=seed, default=None, help="random seed (default: fresh each run)")


def register(subparsers):
    g = subparsers.add_parser("generate", help="stream a continuation of a prompt")
    g.add_argument("--prompt", required=True, help="text to continue")
    add_sampling_args(g, 200)
    g.set_defaults(func=cmd_generate)


def sampling_kwargs(args):
    return dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                repetition_penalty=args.repetition_penalty, kv_dtype=args.kv_dtype)


def resolve_max_new_tokens(model, n_prompt, requested, default):
    """--max-new-tokens as given, or (not given) the default cut to what fits in the context beside
    the prompt, keeping at least half the context for new tokens when the prompt is long."""
    if requested is not None:
        return requested
    n_ctx = model.config.max_seq_len
    return max(1, min(default, max(n_ctx - n_prompt, n_ctx // 2)))


def fit_prompt(model, ids, max_new_tokens, warn=None):
    """Keep the newest prompt tokens so that prompt + output fit the model's context (max_seq_len),
    for every position scheme: learned tables stop there, and RoPE models were trained up to it
    (beyond it the output degrades while the KV cache keeps growing). UsageError if max_new_tokens
    alone does not fit; warn(message) is told how many prompt tokens were dropped."""
    n_ctx = model.config.max_seq_len
    if max_new_tokens >= n_ctx:
        raise UsageError(f"--max-new-tokens: expected at most {n_ctx - 1} (the model's context is "
                         f"{n_ctx} tokens and the prompt needs one), got {max_new_tokens}")
    room = n_ctx - max_new_tokens
    if len(ids) > room:
        if warn is not None:
            warn(f"prompt: {len(ids)} tokens, kept the last {room} (context {n_ctx} - {max_new_tokens} new tokens)")
        ids = ids[-room:]
    return ids


def cmd_generate(args, out=None):
    out = out or sys.stdout
    model, tok = load_model_arg(args)
    ids = tok.encode(args.prompt)
    if not ids:
        raise UsageError("--prompt: encodes to no tokens")
    max_new = resolve_max_new_tokens(model, len(ids), args.max_new_tokens, args.default_max_new_tokens)
    ids = fit_prompt(model, ids, max_new, warn=lambda m: print(f"minillm generate: note: {m}", file=sys.stderr))
    dec = StreamDecoder(tok)
    out.write(args.prompt)
    out.flush()
    stops = sorted(getattr(tok, "stop_token_ids", ()))      # a published model's EOS / end of turn

    def on_token(t):
        text = "" if t in stops else dec.push(t)
        if text:
            out.write(text)
            out.flush()
    generate(model, ids, max_new, seed=args.seed, stream=on_token, stop=stops or None,
             **sampling_kwargs(args))
    out.write(dec.flush() + "\n")
    out.flush()
    return 0
