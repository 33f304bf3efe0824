"""Named pre-tokenizers of published byte-level BPE vocabularies: the `tokenizer.ggml.pre` names of
GGUF files, each meaning a sequence of regexes (as llama.cpp's src/llama-vocab.cpp defines them).

A sequence is applied the way llama.cpp's unicode_regex_split applies it: the first regex cuts the
text into its matches and the stretches between them (both kept, in order), the second regex cuts
every piece again, and so on. One regex behaves as the single patterns of patterns.py; several
express splits one regex cannot, e.g. SmolLM's "every digit alone, then GPT-2's rules":
"a 123" -> ["a", " ", "1", "2", "3"] (GPT-2 alone would keep " 123" together).

    exprs = pretokenizers.resolve("smollm")      # tuple of regex strings; unknown name: ValueError
    pieces = pretokenizers.split("a 123", exprs)

Unlike patterns.py (one pattern per tokenizer, with a C scanner for four of them), these run
through the `regex` module: they exist to match other systems' files exactly.
"""
import functools

import regex

from . import patterns

_CONTRACTIONS_CS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"  # case-insensitive, spelled out
_GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"""
_LLAMA3 = (_CONTRACTIONS_CS + r"""|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
           r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
_QWEN2 = (_CONTRACTIONS_CS + r"""|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
          r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
_BLOOM = r""" ?[^(\s|.,!?…。，、।۔،)]+"""
_UPPER = r"((?=[\p{L}])([^a-z]))"   # a letter that is not a-z: llama.cpp's spelling of [\p{Lu}...]
_LOWER = r"((?=[\p{L}])([^A-Z]))"


def _case_split(suffix):  # words split where lower case turns to upper, as o200k / tekken do
    word = r"[^\r\n\p{L}\p{N}]?"
    return f"{word}{_UPPER}*{_LOWER}+{suffix}|{word}{_UPPER}+{_LOWER}*{suffix}"


_TEKKEN = _case_split("") + r"""|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
_GPT4O = _case_split(_CONTRACTIONS_CS[:-1] + ")?") + r"""|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

# llama.cpp's pre-tokenizer families: regex sequence, and the tokenizer.ggml.pre names that select it
FAMILIES = {
    "default": ((r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"), ("default",)),
    "gpt2": ((_GPT2,), ("gpt-2", "gpt2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
                        "a.x-4.0", "mellum", "modern-bert", "mpt", "olmo", "jais", "trillion",
                        "granite-docling", "exaone4", "jina-v1-en", "jina-v2-code", "roberta-bpe")),
    "llama3": ((_LLAMA3,), ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
                            "lfm2", "dbrx", "smaug-bpe", "chatglm-bpe", "glm4")),
    "smollm": ((r"\p{N}", _GPT2), ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
                                   "minerva-7b")),
    "qwen2": ((_QWEN2,), ("qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "hunyuan")),
    "falcon": ((r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, r"[0-9][0-9][0-9]"), ("falcon",)),
    "bloom": ((_BLOOM,), ("bloom", "poro-chat", "gpt3-finnish")),
    "viking": ((_BLOOM, r"\p{N}"), ("viking",)),
    "deepseek-coder": ((r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[一-龥ࠀ-一가-퟿]+", r"\p{N}"),
                       ("deepseek-coder",)),
    "tekken": ((_TEKKEN,), ("tekken",)),
    "gpt-4o": ((_GPT4O,), ("gpt-4o", "llama4")),
}
# name -> family
NAMES = {name: family for family, (_, names) in FAMILIES.items() for name in names}
# llama.cpp settings that come with some names: the whole piece is looked up before merging
# ("ignore_merges") and a BOS token is added by default
IGNORE_MERGES = {"llama3", "tekken"}
ADD_BOS = {"llama3", "tekken"}


def family(name):
    """The family of a tokenizer.ggml.pre name; an unknown name is a ValueError (never a fallback)."""
    if not isinstance(name, str):
        raise TypeError(f"tokenizer.ggml.pre: expected str, got {type(name).__name__}")
    if name not in NAMES:
        raise ValueError(f"tokenizer.ggml.pre: unknown pre-tokenizer {name!r}; minillm knows "
                         f"{', '.join(sorted(NAMES))}")
    return NAMES[name]


def resolve(name):
    """The regex sequence (tuple of str) of a tokenizer.ggml.pre name."""
    return FAMILIES[family(name)][0]


def name_of(exprs):
    """A tokenizer.ggml.pre name whose regex sequence splits like `exprs`, or None. A final "|\\s+"
    alternative (Hugging Face's spelling of GPT-2's regex) is ignored: the stretch it would match
    is kept as a piece of its own by split anyway."""
    def norm(seq):
        return tuple(e[:-len(r"|\s+")] if e.endswith(r"(?!\S)|\s+") else e for e in seq)
    for family, (family_exprs, names) in FAMILIES.items():
        if norm(family_exprs) == norm(exprs):
            return names[0]
    return None


@functools.lru_cache(maxsize=64)
def _compiled(expr):
    rx = regex.compile(expr)
    patterns.check_pattern(rx, "pre-tokenizer regex")     # read from a file: bound its running time
    return rx


def split(text, exprs):
    """The pieces of `text` (list of str, concatenating to text) under the regex sequence `exprs`."""
    pieces = [text] if text else []
    for expr in exprs:
        rx, out = _compiled(expr), []
        for piece in pieces:
            start = 0
            for m in rx.finditer(piece):
                if m.start() == m.end():
                    continue                       # an empty match cuts nothing
                if m.start() > start:
                    out.append(piece[start:m.start()])  # the stretch no alternative matched
                out.append(m.group())
                start = m.end()
            if start < len(piece):
                out.append(piece[start:])
        pieces = out
    return pieces
