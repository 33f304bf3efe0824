"""The tokenizer of a published model, built from its own files (gguf_vocab.py, hf_tokenizer.py):
one object that encodes, decodes and renders chats the way the model was trained to read them.

    ids = tok.encode("Hi <|im_end|>")                          # special-token text stays text
    ids = tok.encode("Hi <|im_end|>", allowed_special="all")   # ... or becomes the token
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True)   # str
    tok.decode(ids)

Encoding follows llama.cpp's llama_vocab::tokenize: the text is first cut at special tokens --
user-defined tokens always, control tokens only when allowed -- and every stretch of ordinary text
goes to the core: byte-level BPE behind a named pre-tokenizer (bpe.py + pretokenizers.py, "gpt2"
vocabularies: GPT-2, Llama-3, Qwen2, SmolLM) or SentencePiece-style BPE (spm_bpe.py, "llama"
vocabularies: Llama-2, Mistral). A BOS (EOS) token is added only where the model file says so
(`add_bos`, `add_eos`), never by default.
"""
import codecs
import functools

import numpy as np
import regex

from . import chat_template, pretokenizers, spm_bpe, templates

# texts of end-of-turn tokens (llama.cpp's list): generation stops at them as at EOS
EOT_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "_<EOT>",
             "<|end_of_text|>", "<｜end▁of▁sentence｜>")


class ByteLevelCore:
    """Ordinary text -> ids by a regex-sequence pre-tokenizer and a byte-level BPE merge table.
    dropped: bytes the vocabulary has no token for (SmolLM2's lacks a few ASCII control bytes);
    they are removed before merging, as Hugging Face's BPE skips symbols it has no token for."""

    def __init__(self, bpe, exprs, dropped=()):
        self.bpe, self.exprs = bpe, tuple(exprs)
        self.dropped = bytes(sorted(set(dropped)))

    def encode(self, text, at_start, after_special):
        pieces = pretokenizers.split(text, self.exprs)
        if not self.dropped:
            return self.bpe.encode_pieces(pieces)
        data = [p.encode("utf-8").translate(None, self.dropped) for p in pieces]
        return self.bpe.encode_pieces([d for d in data if d])


class SentencePieceCore:
    """Ordinary text -> ids by SentencePiece-style BPE. add_space_prefix: a space is prepended to
    text that starts the input or follows a special token (llama.cpp, and Hugging Face's Prepend
    normalizer); prefix_first_only: only at the start of the input, and only when the text does not
    already start with a space (Hugging Face's Metaspace pre-tokenizer, prepend_scheme "first")."""

    def __init__(self, spm, add_space_prefix, prefix_first_only=False):
        self.spm, self.add_space_prefix = spm, bool(add_space_prefix)
        self.prefix_first_only = bool(prefix_first_only)

    def encode(self, text, at_start, after_special):
        if self.prefix_first_only:
            prefix = self.add_space_prefix and at_start and not text.startswith(" ")
        else:
            prefix = self.add_space_prefix and after_special
        return self.spm.encode(spm_bpe.escape(text, prefix))


class PretrainedTokenizer:
    """core: ByteLevelCore or SentencePieceCore. token_bytes: (V,) list, what each id decodes to.
    control: {text: id} of control tokens (parsed only when allowed); user_defined: {text: id},
    always parsed. chat_template: the model's Jinja template or None."""

    def __init__(self, core, token_bytes, control=None, user_defined=None, bos_token_id=None,
                 eos_token_id=None, add_bos=False, add_eos=False, chat_template=None, eot_token_id=None,
                 unk_token_id=None, pre=None):
        self.core = core
        self.token_bytes_table = list(token_bytes)
        self.control = dict(control or {})
        self.user_defined = dict(user_defined or {})
        V = len(self.token_bytes_table)
        for name, i in (("bos_token_id", bos_token_id), ("eos_token_id", eos_token_id),
                        ("eot_token_id", eot_token_id), ("unk_token_id", unk_token_id)):
            if i is not None and not 0 <= i < V:
                raise ValueError(f"{name}: {i} is outside the vocabulary of {V} tokens")
        if add_bos and bos_token_id is None:
            raise ValueError("add_bos: the vocabulary asks for a BOS token but names none")
        if add_eos and eos_token_id is None:
            raise ValueError("add_eos: the vocabulary asks for an EOS token but names none")
        self.bos_token_id, self.eos_token_id, self.unk_token_id = bos_token_id, eos_token_id, unk_token_id
        self.add_bos, self.add_eos = bool(add_bos), bool(add_eos)
        self.chat_template = chat_template
        self.pre = pre
        self.special_tokens = {**self.control, **self.user_defined}
        self.inverse_special = {i: s for s, i in self.special_tokens.items()}
        eot = {i for s, i in self.special_tokens.items() if s in EOT_TEXTS}
        self.stop_token_ids = frozenset(eot | {i for i in (eos_token_id, eot_token_id) if i is not None})

    # ------------------------------------------------------------------ sizes
    @property
    def n_vocab(self):
        return len(self.token_bytes_table)

    @property
    def vocab_size(self):
        return self.n_vocab

    def token_text(self, token_id):
        """The special-token string of token_id (e.g. "<|im_end|>"), or None for an ordinary token."""
        return self.inverse_special.get(token_id)

    # ------------------------------------------------------------------ encoding
    def _allowed(self, allowed_special):
        if allowed_special == "all":
            return set(self.control)
        if isinstance(allowed_special, str) or not isinstance(allowed_special, (set, frozenset, list, tuple)):
            raise TypeError(f"allowed_special: expected 'all' or a set of special-token strings, "
                            f"got {allowed_special!r}")
        unknown = sorted(s for s in allowed_special if s not in self.special_tokens)
        if unknown:
            raise ValueError(f"allowed_special: {unknown[:5]} are not special tokens of this tokenizer")
        return set(allowed_special)

    def encode(self, text, allowed_special=frozenset(), add_bos=None, add_eos=None):
        """Token ids (list of int) of text. allowed_special: "all" or a set of special-token strings
        that become their tokens; any other special-token text is encoded as ordinary text.
        add_bos / add_eos: None follows the model file's setting."""
        if not isinstance(text, str):
            raise TypeError(f"text: expected str, got {type(text).__name__}")
        text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates -> "?"
        parse = self._allowed(allowed_special) | set(self.user_defined)
        add_bos = self.add_bos if add_bos is None else add_bos
        add_eos = self.add_eos if add_eos is None else add_eos
        for flag, name, i in ((add_bos, "add_bos", self.bos_token_id), (add_eos, "add_eos", self.eos_token_id)):
            if flag and i is None:
                raise ValueError(f"{name}: this vocabulary names no {name[4:].upper()} token")
        out = [self.bos_token_id] if add_bos else []
        after_special = True
        pos = 0
        for m in (_special_regex(tuple(sorted(parse))).finditer(text) if parse else ()):
            if m.start() > pos:
                out.extend(self.core.encode(text[pos:m.start()], pos == 0, after_special))
            out.append(self.special_tokens[m.group()])
            after_special, pos = True, m.end()
        if pos < len(text):
            out.extend(self.core.encode(text[pos:], pos == 0, after_special))
        if add_eos:
            out.append(self.eos_token_id)
        return out

    def encode_ordinary(self, text):
        """Token ids of text with no BOS/EOS and no control-token parsing."""
        return self.encode(text, add_bos=False, add_eos=False)

    # ------------------------------------------------------------------ decoding
    def _kept(self, ids, skip_special):
        table = self.token_bytes_table
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(table):
                raise ValueError(f"ids: {i!r} is not a token id of this tokenizer (n_vocab={len(table)})")
        if not skip_special:
            return [int(i) for i in ids]
        return [int(i) for i in ids if self.inverse_special.get(int(i)) not in self.control]

    def decode_bytes(self, ids, skip_special=False):
        """The bytes of a token sequence; skip_special drops control tokens (BOS, EOS, ...)."""
        return b"".join([self.token_bytes_table[i] for i in self._kept(ids, skip_special)])

    def decode(self, ids, skip_special=False, errors="replace"):
        """Text of a token sequence. SentencePiece vocabularies drop the space their encoder
        prepended (the leading space of a first, ordinary token), as sentencepiece's decode does."""
        kept = self._kept(ids, skip_special)
        text = b"".join([self.token_bytes_table[i] for i in kept]).decode("utf-8", errors=errors)
        if isinstance(self.core, SentencePieceCore) and self.core.add_space_prefix and text.startswith(" ") \
                and kept[0] not in self.inverse_special:
            text = text[1:]
        return text

    def token_bytes(self, token_id):
        return self.decode_bytes([token_id])

    def stream_decoder(self):
        return StreamDecoder(self)

    # ------------------------------------------------------------------ chat
    def apply_chat_template(self, messages, add_generation_prompt=False, tools=None, **kwargs):
        """The prompt text (str) of messages [{"role": ..., "content": ...}] in the model's own chat
        template, rendered as transformers does; models without one use the built-in ChatML (if the
        vocabulary has its tokens) or Llama-2 format (templates.py)."""
        if self.chat_template is None:
            return self._builtin_template(messages, add_generation_prompt)
        specials = {"bos_token": self._text(self.bos_token_id), "eos_token": self._text(self.eos_token_id),
                    "unk_token": self._text(self.unk_token_id)}
        return chat_template.render(self.chat_template, messages, add_generation_prompt, specials, tools,
                                    **kwargs)

    def _builtin_template(self, messages, add_generation_prompt):
        for name in ("chatml", "llama2"):
            if all(t in self.special_tokens for t in templates.special_tokens(name)):
                return templates.render(messages, name, add_generation_prompt)
        raise ValueError("chat_template: the model file has no chat template and its vocabulary lacks the "
                         "ChatML (<|im_start|>, <|im_end|>) and Llama-2 (<s>, </s>) tokens")

    def encode_chat(self, messages, add_generation_prompt=True, **kwargs):
        """Token ids of the rendered conversation: its special-token text becomes tokens, and no BOS
        is added (the template writes its own, as transformers' tokenize=True does)."""
        text = self.apply_chat_template(messages, add_generation_prompt, **kwargs)
        return self.encode(text, allowed_special="all", add_bos=False, add_eos=False)

    def _text(self, token_id):
        if token_id is None:
            return None
        return self.inverse_special.get(token_id) or self.decode_bytes([token_id]).decode("utf-8", "replace")


class StreamDecoder:
    """Incremental decoding for streaming: feed(ids) returns only complete characters."""

    def __init__(self, tokenizer, skip_special=True):
        self.tokenizer, self.skip_special = tokenizer, skip_special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._first = True

    def feed(self, ids):
        ids = list(ids)
        text = self._utf8.decode(self.tokenizer.decode_bytes(ids, self.skip_special))
        core = self.tokenizer.core
        if self._first and text and isinstance(core, SentencePieceCore) and core.add_space_prefix:
            text = text[1:] if text.startswith(" ") else text
        self._first = self._first and not text
        return text

    def flush(self):
        return self._utf8.decode(b"", final=True)


@functools.lru_cache(maxsize=16)
def _special_regex(tokens):
    """Leftmost match, longest token first where several start at the same place."""
    return regex.compile("|".join(regex.escape(t) for t in sorted(tokens, key=len, reverse=True)))
