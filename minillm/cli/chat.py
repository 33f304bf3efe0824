"""`minillm chat`: multi-turn chat on stdin with a model (--model) or a run written by `minillm train`, streamed
through generate.py's StreamDecoder and cut at the template's stop strings."""
import sys

import numpy as np

from ..inference import generate
from ..tokenizer import templates
from .generate import (StreamDecoder, add_sampling_args, fit_prompt, load_model_arg, resolve_max_new_tokens,
                       sampling_kwargs)


def register(subparsers):
    c = subparsers.add_parser("chat", help="multi-turn chat on stdin (ChatML template)")
    c.add_argument("--system", default=None, help="system message (default: the model's template decides "
                                                    "with --model, 'You are a helpful assistant.' with --run)")
    add_sampling_args(c, 256)
    c.set_defaults(func=cmd_chat)


def chat_format(tokenizer):
    """(encode(messages) -> prompt ids ending where the assistant speaks, stop strings, name).
    ChatML from minillm.tokenizer.templates, with real special-token ids if the tokenizer has them,
    as plain text otherwise (the byte vocabulary). A published model (minillm.load) uses its own chat
    template and stops at its end-of-turn tokens."""
    if hasattr(tokenizer, "apply_chat_template"):
        stops = [tokenizer.token_text(i) for i in sorted(tokenizer.stop_token_ids)]
        return tokenizer.encode_chat, [s for s in stops if s], "model"
    specials = set(templates.special_tokens("chatml"))
    have = set(getattr(tokenizer, "special_tokens", None) or ())

    def chatml(messages):
        if specials <= have:
            return templates.encode(tokenizer, messages, "chatml", add_generation_prompt=True)
        return tokenizer.encode(templates.render(messages, "chatml", add_generation_prompt=True))
    return chatml, ["<|im_end|>", "<|im_start|>"], "chatml"


def chat_reply(model, tokenizer, messages, encode, stops, max_new_tokens, seed=None, write=None, **kw):
    """Generate the assistant's next message for `messages` (prompt ids from encode(messages), see
    chat_format); streams it through write(text) and ends at the first stop string. Returns the
    reply text without the stop string."""
    ids = list(encode(messages))
    max_new_tokens = resolve_max_new_tokens(model, len(ids), max_new_tokens, 256)
    ids = fit_prompt(model, ids, max_new_tokens)
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
    model, tok = load_model_arg(args)
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
                           seed=int(rng.integers(2**63 - 1)), write=write, **sampling_kwargs(args))
        out.write("\n")
        out.flush()
        messages.append({"role": "assistant", "content": reply})
    return 0
