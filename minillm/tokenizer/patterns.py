"""Pre-tokenizer patterns: the regexes that cut text into pieces before byte-pair merging.

Byte-level BPE (Radford et al. 2019, GPT-2, Sec. 2.2) never merges across these pieces, so that
"dog." and "dog!" share the token "dog". The strings below are exactly those of tiktoken
(tiktoken_ext/openai_public.py), so a tokenizer built with one of them recognises it and splits
text with the hand-written C scanner of csrc/bpe.c instead of the `regex` module; any other
pattern goes through `regex`. `split_reference` is the spec both paths are tested against.

    GPT2    GPT-2 / r50k: contractions, " ?letters", " ?digits", " ?other", whitespace
    CL100K  GPT-4: case-insensitive contractions, digits in groups of up to three, newlines apart
    O200K   GPT-4o: letters split at lower->upper case changes, contractions attached to words
    LLAMA   cl100k with every digit its own piece, as Llama/SentencePiece models split numbers
"""
import functools

import numpy as np
import regex

GPT2 = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

CL100K = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
          r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")

O200K = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])

LLAMA = CL100K.replace(r"\p{N}{1,3}+", r"\p{N}")

# pattern string -> scanner id in csrc/bpe.c (0: not built in, use the regex module)
BUILTIN = {GPT2: 1, CL100K: 2, O200K: 3, LLAMA: 4}
NAMES = {"gpt2": GPT2, "cl100k": CL100K, "o200k": O200K, "llama": LLAMA}


def resolve(pattern):
    """A pattern given by name ("gpt2", "cl100k", "o200k", "llama") or as a regex string -> the regex."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern: expected a regex string or one of {sorted(NAMES)}, got {type(pattern).__name__}")
    pattern = NAMES.get(pattern, pattern)
    try:
        compiled(pattern)
    except regex.error as e:
        raise ValueError(f"pattern: not a valid regex ({e}): {pattern!r}") from None
    return pattern


@functools.lru_cache(maxsize=16)
def compiled(pattern):
    """regex.compile(pattern), after check_pattern for any pattern that is not built in."""
    rx = regex.compile(pattern)
    if pattern not in BUILTIN:
        check_pattern(rx, "pattern")
    return rx


# Probe texts for check_pattern: runs of each kind of character the split patterns distinguish, each
# followed by a character that makes a greedy match fail at the very end (where backtracking explodes).
_PROBE_UNITS = ("a", "A", "aA", "1", "a1", " ", "\n", " \n", "\t", "!", "'", "a ", "a!", "\u00e9", "\u4e00", "\u0301")
_PROBE_ENDS = ("", "!", " ", "a", "1", "\n", "\x00")
PROBE_TIMEOUT = 0.05            # seconds per probe; the builtin patterns take ~10 us on each


def check_pattern(rx, where):
    r"""ValueError unless the compiled regex rx splits short and long runs of letters, digits,
    spaces, newlines and punctuation in bounded time: a pattern read from a tokenizer file runs
    over every text encoded, and one with catastrophic backtracking (e.g. `(\w|\w\w)+$|\s`,
    exponential in the run length: seconds on 30 characters) would hang encode. The probes: every
    unit repeated to 32 characters (exponential patterns blow up there) and to 2,000 (quadratic
    and worse ones do), followed by end characters; ~50 ms for a sound pattern."""
    for n, units, ends in ((32, _PROBE_UNITS, _PROBE_ENDS), (2000, _PROBE_UNITS, ("!", "\x00"))):
        for unit in units:
            for end in ends:
                text = unit * (n // len(unit)) + end
                try:
                    rx.findall(text, timeout=PROBE_TIMEOUT * (1 if n < 100 else 4))
                except TimeoutError:
                    raise ValueError(f"{where}: the regex {rx.pattern[:120]!r} backtracks catastrophically "
                                     f"(no answer within {PROBE_TIMEOUT * (1 if n < 100 else 4):g} s on "
                                     f"{len(text)} characters {text[:12]!r}...); rejected") from None


def split_reference(text, pattern):
    """The pieces of `text` under `pattern`, by the regex module: the spec for csrc/bpe.c."""
    return compiled(pattern).findall(text)


# Unicode class bits of the table below; they must equal the enum at the top of csrc/bpe.c.
C_L, C_N, C_WS, C_A, C_B = 1, 2, 4, 8, 16
_CLASSES = [(C_L, r"\p{L}+"), (C_N, r"\p{N}+"), (C_WS, r"\s+"),
            (C_A, r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+"), (C_B, r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]+")]


@functools.lru_cache(maxsize=1)
def class_table():
    """(0x110000,) uint8: the class bits of every code point, as the `regex` module sees them.

    Built once per process (~0.2 s) from the same library the reference split uses, so the C
    scanner and regex.findall agree on every code point, whatever Unicode version `regex` ships.
    """
    every = np.arange(0x110000, dtype=np.uint32).tobytes().decode("utf-32-le", "surrogatepass")
    table = np.zeros(0x110000, dtype=np.uint8)  # (0x110000,)
    for bit, class_regex in _CLASSES:
        for m in regex.finditer(class_regex, every):
            table[m.start():m.end()] |= bit
    # csrc/bpe.c folds the contraction letters itself (ASCII case + U+017F LONG S -> 's');
    # make sure that is what (?i) means in this version of regex, else the C scanner is unsafe.
    folded = set(regex.findall(r"(?i:[sdmtlver])", every))
    expect = set("sdmtlverSDMTLVER\u017f")
    if folded != expect:
        raise RuntimeError(f"regex case folding gives {sorted(folded)}, csrc/bpe.c assumes {sorted(expect)}")
    table.setflags(write=False)
    return table


def text_chunks(text_or_iterator):
    """The training input of every trainer as str chunks: a str, or an iterable of str (checked
    lazily, so a generator over a large corpus is never held in memory)."""
    if isinstance(text_or_iterator, str):
        yield text_or_iterator
        return
    try:
        chunks = iter(text_or_iterator)
    except TypeError:
        raise TypeError(f"text_or_iterator: expected str or an iterable of str, "
                        f"got {type(text_or_iterator).__name__}") from None
    for k, chunk in enumerate(chunks):
        if not isinstance(chunk, str):
            raise TypeError(f"text_or_iterator: item {k} is {type(chunk).__name__}, expected str")
        yield chunk
