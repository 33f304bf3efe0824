"""`minillm generate` and `minillm chat`: load a run written by `minillm train` and stream text.

Streaming needs care with byte-level vocabularies: one token can end in the middle of a multi-byte
UTF-8 character, which decodes to U+FFFD until the next token completes it. StreamDecoder decodes
the whole accumulated id list each time and releases only the text that can no longer change
(everything before a trailing run of U+FFFD), so the terminal never shows half a character.
"""
import os
import sys

import numpy as np

from .generate import generate

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


def load_run(run_dir):
    """(model, tokenizer) of a `minillm train` run directory, or ValueError saying what is missing."""
    from ..checkpoint import latest_checkpoint, load_checkpoint
    from ..train import load_run_tokenizer
    ckpt_dir = os.path.join(run_dir, "ckpt")
    path = latest_checkpoint(ckpt_dir) if os.path.isdir(ckpt_dir) else None
    if path is None:
        raise ValueError(f"--run: {run_dir} has no checkpoint in {ckpt_dir}; run `minillm train --out "
                         f"{run_dir}` first")
    model = load_checkpoint(path)[0]
    try:
        tokenizer = load_run_tokenizer(run_dir)
    except FileNotFoundError as e:
        raise ValueError(f"--run: {e}; run `minillm train --out {run_dir}` first") from None
    return model, tokenizer


def load_model_arg(args):
    """(model, tokenizer) named by --model (a GGUF file, a Hugging Face folder or a run folder, see
    minillm.load) or else by --run; ValueError saying which argument is wrong."""
    if getattr(args, "model", None):
        from ..loaders import load  # loaders sits above inference: a module-level import would be a cycle
        try:
            model, tok = load(args.model)
        except (ValueError, FileNotFoundError) as e:
            raise ValueError(f"--model: {e}") from None
        if tok is None:
            raise ValueError(f"--model: {args.model} carries no tokenizer")
        return model, tok
    return load_run(args.run)


def _add_sampling_args(p, max_new_tokens):
    p.add_argument("--run", default="runs/minillm", help="run directory written by `minillm train`")
    p.add_argument("--model", default=None,
                   help="a GGUF file or Hugging Face folder (or run folder) to use instead of --run")
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--min-p", type=float, default=None)
    p.add_argument("--repetition-penalty", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)


def register(subparsers):
    """Adds `generate` and `chat` (minillm/cli.py maps both names to this module)."""
    g = subparsers.add_parser("generate", help="stream a continuation of a prompt")
    g.add_argument("--prompt", required=True, help="text to continue")
    _add_sampling_args(g, 200)
    g.set_defaults(func=cmd_generate)
    c = subparsers.add_parser("chat", help="multi-turn chat on stdin (ChatML template)")
    c.add_argument("--system", default=None, help="system message (default: the model's template decides "
                                                    "with --model, 'You are a helpful assistant.' with --run)")
    _add_sampling_args(c, 256)
    c.set_defaults(func=cmd_chat)


def _sampling_kwargs(args):
    return dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                repetition_penalty=args.repetition_penalty)


def _fit_prompt(model, ids, max_new_tokens):
    """Keep the newest tokens when prompt + output would exceed a learned position table."""
    cfg = model.config
    if cfg.pos == "learned":
        room = cfg.max_seq_len - max_new_tokens
        if room < 1:
            raise ValueError(f"--max-new-tokens: must be below max_seq_len {cfg.max_seq_len}, got {max_new_tokens}")
        ids = ids[-room:]
    return ids


def cmd_generate(args, out=None):
    out = out or sys.stdout
    try:
        model, tok = load_model_arg(args)
        ids = tok.encode(args.prompt)
        if not ids:
            raise ValueError("--prompt: encodes to no tokens")
        ids = _fit_prompt(model, ids, args.max_new_tokens)
    except ValueError as e:
        print(f"minillm generate: {e}", file=sys.stderr)
        return 1
    dec = StreamDecoder(tok)
    out.write(args.prompt)
    out.flush()
    stops = sorted(getattr(tok, "stop_token_ids", ()))      # a published model's EOS / end of turn

    def on_token(t):
        text = "" if t in stops else dec.push(t)
        if text:
            out.write(text)
            out.flush()
    generate(model, ids, args.max_new_tokens, seed=args.seed, stream=on_token, stop=stops or None,
             **_sampling_kwargs(args))
    out.write(dec.flush() + "\n")
    out.flush()
    return 0


# ------------------------------------------------------------------------------------------ chat
def chat_format(tokenizer):
    """(encode(messages) -> prompt ids ending where the assistant speaks, stop strings, name).
    ChatML from minillm.tokenizer.templates when it is available -- with real special-token ids if
    the tokenizer has them, as plain text otherwise (the byte vocabulary) -- else a plain
    User:/Assistant: layout. A published model (minillm.load) uses its own chat template and stops at
    its end-of-turn tokens."""
    if hasattr(tokenizer, "apply_chat_template"):
        stops = [tokenizer.token_text(i) for i in sorted(tokenizer.stop_token_ids)]
        return tokenizer.encode_chat, [s for s in stops if s], "model"
    try:
        from ..tokenizer import templates
    except ImportError:
        templates = None
    if templates is not None:
        specials = set(templates.special_tokens("chatml"))
        have = set(getattr(tokenizer, "special_tokens", None) or ())

        def chatml(messages):
            if specials <= have:
                return templates.encode(tokenizer, messages, "chatml", add_generation_prompt=True)
            return tokenizer.encode(templates.render(messages, "chatml", add_generation_prompt=True))
        return chatml, ["<|im_end|>", "<|im_start|>"], "chatml"

    def plain(messages):
        parts = []
        for m in messages:
            role = {"system": "System", "user": "User", "assistant": "Assistant"}[m["role"]]
            parts.append(f"{role}: {m['content']}\n")
        return tokenizer.encode("".join(parts) + "Assistant:")
    return plain, ["\nUser:", "\nSystem:"], "plain"


def chat_reply(model, tokenizer, messages, encode, stops, max_new_tokens, seed=None, write=None, **kw):
    """Generate the assistant's next message for `messages` (prompt ids from encode(messages), see
    chat_format); streams it through write(text) and ends at the first stop string. Returns the
    reply text without the stop string."""
    ids = _fit_prompt(model, list(encode(messages)), max_new_tokens)
    dec = StreamDecoder(tokenizer)
    state = {"text": "", "written": 0, "end": None}

    class Stop(Exception):
        pass

    def emit(upto):
        if write and upto > state["written"]:
            write(state["text"][state["written"]:upto])
        state["written"] = max(state["written"], upto)

    def on_token(t):
        state["text"] += dec.push(t)
        text = state["text"]
        hits = [i for i in (text.find(s) for s in stops) if i >= 0]
        if hits:
            state["end"] = min(hits)
            emit(state["end"])
            raise Stop  # ends generate() early: nothing after a stop string is wanted
        # hold back the longest tail that could still grow into a stop string
        hold = max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        emit(len(text) - hold)

    try:
        generate(model, ids, max_new_tokens, seed=seed, stream=on_token, **kw)
    except Stop:
        pass
    if state["end"] is None:
        state["text"] += dec.flush()
        state["end"] = len(state["text"])
        emit(state["end"])
    return state["text"][:state["end"]].strip()


def cmd_chat(args, stdin=None, out=None):
    stdin, out = stdin or sys.stdin, out or sys.stdout
    try:
        model, tok = load_model_arg(args)
    except ValueError as e:
        print(f"minillm chat: {e}", file=sys.stderr)
        return 1
    encode, stops, _ = chat_format(tok)
    system = args.system if args.system is not None or args.model else "You are a helpful assistant."
    messages = [{"role": "system", "content": system}] if system else []
    rng = np.random.default_rng(args.seed)
    interactive = stdin.isatty()
    while True:
        if interactive:
            out.write("you> ")
            out.flush()
        line = stdin.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        messages.append({"role": "user", "content": line})
        out.write("assistant> ")
        out.flush()

        def write(text):
            out.write(text)
            out.flush()
        reply = chat_reply(model, tok, messages, encode, stops, args.max_new_tokens,
                           seed=int(rng.integers(2**63 - 1)), write=write, **_sampling_kwargs(args))
        out.write("\n")
        out.flush()
        messages.append({"role": "assistant", "content": reply})
    return 0
