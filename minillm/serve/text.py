"""Token ids <-> text for serving: chat prompts, incremental detokenization and stop strings.

A streamed reply must never show half a character or text past a stop string, although tokens
arrive one at a time and neither UTF-8 characters nor stop strings respect token boundaries:
  - TextStream decodes a small window of recent ids (the ids since the last clean boundary, plus the
    chunk before them as context, which SentencePiece-style decoders need to keep a leading space)
    and releases new text only once it no longer ends in U+FFFD (an unfinished multi-byte character);
  - it holds back the longest tail of the text that could still grow into a stop string, and when a
    stop string is complete it cuts the text before it and reports that the choice is over.
Decoding the window costs O(new tokens) per step, where decoding the whole reply every step would
cost O(length). The chat prompt comes from the tokenizer's own chat template when it has one.
"""
from ..tokenizer import templates

REPLACEMENT = "\ufffd"
# end-of-text / end-of-turn markers of the common vocabularies, used when the tokenizer names none
END_TOKENS = ("<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "</s>", "<end_of_turn>")


class TextStream:
    """One choice of one request: push(new ids) -> newly released text; finish() -> the rest.
    stopped is True once a stop string was found (text then ends just before it)."""

    def __init__(self, tokenizer, stop=()):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.ids = []
        self.prefix = 0          # window start: decode(ids[prefix:]) - decode(ids[prefix:read]) is new
        self.read = 0            # ids before this are part of self.text
        self.text = ""           # decoded so far (cut before the stop string once stopped)
        self.sent = 0            # characters of self.text released
        self.stopped = False

    def _decode_window(self, final):
        before = self.tokenizer.decode(self.ids[self.prefix:self.read])
        after = self.tokenizer.decode(self.ids[self.prefix:])
        if len(after) > len(before) and (final or not after.endswith(REPLACEMENT)):
            self.text += after[len(before):]
            self.prefix, self.read = self.read, len(self.ids)

    def _release(self, final):
        hits = [(i, s) for s in self.stop for i in [self.text.find(s, self.sent)] if i >= 0]
        if hits:   # a stop string is complete: the reply ends before the earliest one
            end = min(hits)[0]
            self.text, self.stopped = self.text[:end], True
        elif final:
            end = len(self.text)
        else:      # keep back the longest tail that is the start of some stop string
            tail = self.text[self.sent:]
            hold = max((k for s in self.stop for k in range(1, min(len(s), len(tail) + 1))
                        if tail.endswith(s[:k])), default=0)
            end = len(self.text) - hold
        out = self.text[self.sent:end]
        self.sent = end
        return out

    def push(self, ids):  # list of new token ids -> str
        if self.stopped:
            return ""
        self.ids.extend(int(t) for t in ids)
        self._decode_window(final=False)
        return self._release(final=False)

    def finish(self):  # -> str: what was held back (an unfinished character stays U+FFFD)
        if self.stopped:
            return ""
        self._decode_window(final=True)
        return self._release(final=True)


def token_text(tokenizer, token_id):  # -> (str, list of byte values)
    """How one token is shown in logprobs: its text and its raw bytes (a token can hold part of a
    UTF-8 character, so the bytes are the exact form)."""
    if hasattr(tokenizer, "token_bytes"):
        b = tokenizer.token_bytes(int(token_id))
        return b.decode("utf-8", errors="replace"), list(b)
    text = tokenizer.decode([int(token_id)])
    return text, list(text.encode("utf-8"))


def special_id(tokenizer, token):
    """Id of a special token string, or None."""
    specials = getattr(tokenizer, "special_tokens", None) or {}
    if isinstance(specials, dict):
        return specials.get(token)
    return None


def end_token_ids(tokenizer):
    """Ids that end a reply: the tokenizer's own end-of-sequence / end-of-turn ids when it names
    them, else those of END_TOKENS that its vocabulary holds."""
    ids = []
    for name in ("stop_token_ids", "eos_token_ids", "eos_token_id", "eot_token_id"):
        v = getattr(tokenizer, name, None)
        if v is not None:
            ids += [int(x) for x in (v if isinstance(v, (list, tuple, set, frozenset)) else [v])]
    if not ids:
        ids = [i for i in (special_id(tokenizer, t) for t in END_TOKENS) if i is not None]
    return sorted(set(ids))


def chat_prompt_ids(tokenizer, messages):  # list of {"role", "content"} -> list of ids
    """The model's chat template with the assistant's turn opened: the tokenizer's own template
    (apply_chat_template) when it has one, else ChatML (with its special tokens when the vocabulary
    has them, as plain text otherwise)."""
    if hasattr(tokenizer, "apply_chat_template"):
        out = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        if isinstance(out, str):
            return list(tokenizer.encode(out, allowed_special="all"))
        return [int(t) for t in out]
    if all(special_id(tokenizer, t) is not None for t in templates.special_tokens("chatml")):
        return list(templates.encode(tokenizer, messages, "chatml", add_generation_prompt=True))
    return list(tokenizer.encode(templates.render(messages, "chatml", add_generation_prompt=True)))
