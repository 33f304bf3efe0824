"""Heuristic quality filters with their published thresholds as defaults.

Each rule is one small function computing one statistic of the text (written once, reused by every
filter that needs it); each filter is a dataclass whose fields are the thresholds, with a
`check(text) -> reason | None` method (None = keep) and, for C4, a line-level rewrite.

- GopherQuality: Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from
  Training Gopher", App. A.1.1 (word count 50..100,000, mean word length 3..10, symbol-to-word
  ratio < 0.1, <= 90% bullet lines, <= 30% ellipsis lines, >= 80% words with a letter, >= 2 stop words).
- GopherRepetition: same paper, Table A1 (duplicate line/paragraph fractions and the characters
  they cover; top 2/3/4-gram character fractions 0.20/0.18/0.16; duplicate 5..10-gram character
  fractions 0.15..0.10).
- C4Filter: Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
  Text-to-Text Transformer", Sec. 2.2 (keep lines ending in terminal punctuation with >= 3 words,
  drop lines mentioning javascript or cookie/terms-of-use boilerplate, drop pages with lorem ipsum
  or a curly bracket, drop pages with fewer than 5 sentences), with the extra rules of the TFDS
  reference code (citation markers removed, lines with a word over 1000 characters dropped).
- FineWebFilter: Penedo et al. 2024, "The FineWeb Datasets", Sec. 3.5, with the defaults of the
  released datatrove code: drop if < 12% of lines end in punctuation, if >= 67% of lines are
  <= 30 characters, if characters in duplicated lines are >= 1% of all characters, or if there are
  more than 0.3 newlines per word.
Words are whitespace-separated tokens (the papers used a proper word tokenizer; for English the
statistics are close). All filters are pure functions of the text: deterministic.
"""
import re
from collections import Counter
from dataclasses import dataclass, field

# --- the rules: one statistic each -----------------------------------------------------------------

TERMINAL_PUNCTUATION = (".", "!", "?", '"', "'", "”", "’", "。", "！", "？", "…")
BULLETS = ("•", "●", "○", "▪", "◦", "‣", "⁃", "-", "*", "–", "—", "·")
GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
_ALPHA = re.compile(r"[^\W\d_]")  # a letter in any script


def words(text):
    return text.split()


def nonempty_lines(text):
    return [line for line in (s.strip() for s in text.split("\n")) if line]


def mean_word_length(ws):
    return sum(len(w) for w in ws) / len(ws) if ws else 0.0


def symbol_word_ratio(text, ws):
    """(# '#' + # ellipses) / # words, Gopher's symbol-to-word ratio."""
    symbols = text.count("#") + text.count("...") + text.count("…")
    return symbols / max(len(ws), 1)


def fraction_lines_starting_with_bullet(lines):
    return sum(line.startswith(BULLETS) for line in lines) / max(len(lines), 1)


def fraction_lines_ending_with_ellipsis(lines):
    return sum(line.endswith(("...", "…")) for line in lines) / max(len(lines), 1)


def fraction_words_with_letter(ws):
    return sum(bool(_ALPHA.search(w)) for w in ws) / max(len(ws), 1)


def stop_word_count(ws, stop_words=GOPHER_STOP_WORDS):
    stop = set(stop_words)
    return sum(w.lower().strip(".,;:!?\"'()") in stop for w in ws)


def duplicate_fractions(items):
    """(fraction of items that repeat an earlier item, fraction of characters in those items)."""
    seen, dup_items, dup_chars = set(), 0, 0
    for it in items:
        if it in seen:
            dup_items += 1
            dup_chars += len(it)
        else:
            seen.add(it)
    total_chars = sum(len(it) for it in items)
    return dup_items / max(len(items), 1), dup_chars / max(total_chars, 1)


def top_ngram_char_fraction(ws, n):
    """Characters covered by the most frequent word n-gram (its length x count) / characters in
    all words. Gopher's 'top n-gram' rule for n = 2, 3, 4."""
    if len(ws) < n:
        return 0.0
    grams = Counter(tuple(ws[i:i + n]) for i in range(len(ws) - n + 1))
    gram, count = grams.most_common(1)[0]
    if count < 2:
        return 0.0
    return sum(len(w) for w in gram) * count / max(sum(len(w) for w in ws), 1)


def duplicate_ngram_char_fraction(ws, n):
    """Characters in words covered by any word n-gram that occurs more than once (each word
    counted once) / characters in all words. Gopher's 'duplicate n-gram' rule for n = 5..10."""
    if len(ws) < n:
        return 0.0
    grams = [tuple(ws[i:i + n]) for i in range(len(ws) - n + 1)]
    counts = Counter(grams)
    covered = [False] * len(ws)
    for i, g in enumerate(grams):
        if counts[g] > 1:
            for j in range(i, i + n):
                covered[j] = True
    return sum(len(w) for w, c in zip(ws, covered) if c) / max(sum(len(w) for w in ws), 1)


def fraction_lines_ending_with_punctuation(lines):
    return sum(line.endswith(TERMINAL_PUNCTUATION) for line in lines) / max(len(lines), 1)


def fraction_short_lines(lines, max_chars):
    return sum(len(line) <= max_chars for line in lines) / max(len(lines), 1)


# --- the filters -------------------------------------------------------------------------------------

@dataclass
class LengthFilter:
    """Keep documents with min_length <= length <= max_length, length in words or, with a
    tokenizer (anything with .encode(text) -> list of ids), in tokens."""
    min_length: int = 0
    max_length: int = 10**9
    tokenizer: object = None

    def check(self, text):
        n = len(self.tokenizer.encode(text)) if self.tokenizer is not None else len(words(text))
        if n < self.min_length:
            return "too_short"
        if n > self.max_length:
            return "too_long"
        return None


@dataclass
class SymbolRatioFilter:
    """Drop documents whose symbol-to-word ratio ('#' and ellipses per word) is >= max_ratio."""
    max_ratio: float = 0.1

    def check(self, text):
        return "symbol_word_ratio" if symbol_word_ratio(text, words(text)) >= self.max_ratio else None


@dataclass
class GopherQuality:
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2
    stop_words: tuple = GOPHER_STOP_WORDS

    def check(self, text):
        ws, lines = words(text), nonempty_lines(text)
        if len(ws) < self.min_words:
            return "gopher_too_few_words"
        if len(ws) > self.max_words:
            return "gopher_too_many_words"
        mwl = mean_word_length(ws)
        if not self.min_mean_word_length <= mwl <= self.max_mean_word_length:
            return "gopher_mean_word_length"
        if symbol_word_ratio(text, ws) > self.max_symbol_word_ratio:
            return "gopher_symbol_word_ratio"
        if fraction_lines_starting_with_bullet(lines) > self.max_bullet_lines_ratio:
            return "gopher_bullet_lines"
        if fraction_lines_ending_with_ellipsis(lines) > self.max_ellipsis_lines_ratio:
            return "gopher_ellipsis_lines"
        if fraction_words_with_letter(ws) < self.min_alpha_words_ratio:
            return "gopher_non_alpha_words"
        if stop_word_count(ws, self.stop_words) < self.min_stop_words:
            return "gopher_stop_words"
        return None


@dataclass
class GopherRepetition:
    max_dup_line_frac: float = 0.30
    max_dup_para_frac: float = 0.30
    max_dup_line_char_frac: float = 0.20
    max_dup_para_char_frac: float = 0.20
    top_ngram_max_char_frac: dict = field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    dup_ngram_max_char_frac: dict = field(default_factory=lambda: {
        5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})

    def check(self, text):
        paragraphs = [p.strip() for p in re.split(r"\n{2,}", text) if p.strip()]
        frac, char_frac = duplicate_fractions(paragraphs)
        if frac > self.max_dup_para_frac:
            return "gopher_dup_para_frac"
        if char_frac > self.max_dup_para_char_frac:
            return "gopher_dup_para_char_frac"
        frac, char_frac = duplicate_fractions(nonempty_lines(text))
        if frac > self.max_dup_line_frac:
            return "gopher_dup_line_frac"
        if char_frac > self.max_dup_line_char_frac:
            return "gopher_dup_line_char_frac"
        ws = words(text)
        for n, limit in sorted(self.top_ngram_max_char_frac.items()):
            if top_ngram_char_fraction(ws, int(n)) > limit:
                return f"gopher_top_{n}gram"
        for n, limit in sorted(self.dup_ngram_max_char_frac.items()):
            if duplicate_ngram_char_fraction(ws, int(n)) > limit:
                return f"gopher_dup_{n}gram"
        return None


_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)
C4_POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies",
                     "use of cookies", "use cookies")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")


@dataclass
class C4Filter:
    """C4's line and page rules. Unlike the other filters it rewrites the document: `apply(text)
    -> (kept_text | None, reason)`; `check` is the page-level verdict alone."""
    min_words_per_line: int = 3
    min_sentences: int = 5
    max_word_length: int = 1000
    remove_citations: bool = True
    require_terminal_punct: bool = True
    filter_javascript: bool = True
    filter_policy: bool = True
    filter_lorem_ipsum: bool = True
    filter_curly_bracket: bool = True

    def apply(self, text):
        kept, sentences = [], 0
        for line in text.split("\n"):
            line = line.strip()
            ws = line.split()
            if any(len(w) > self.max_word_length for w in ws):
                continue
            if self.remove_citations:
                line = _CITATION.sub("", line)
            if self.require_terminal_punct and (not line.endswith(TERMINAL_PUNCTUATION[:5])
                                                or line.endswith("...")):
                continue
            if len(ws) < self.min_words_per_line:
                continue
            low = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in low:
                return None, "c4_lorem_ipsum"
            if self.filter_javascript and "javascript" in low:
                continue
            if self.filter_curly_bracket and "{" in line:
                return None, "c4_curly_bracket"
            if self.filter_policy and any(p in low for p in C4_POLICY_PHRASES):
                continue
            sentences += max(1, len(_SENTENCE_END.findall(line)))
            kept.append(line)
        if sentences < self.min_sentences:
            return None, "c4_too_few_sentences"
        return "\n".join(kept), None

    def check(self, text):
        return self.apply(text)[1]


@dataclass
class FineWebFilter:
    min_line_punct_ratio: float = 0.12
    max_short_line_ratio: float = 0.67
    short_line_length: int = 30
    max_dup_line_char_ratio: float = 0.01
    max_newline_word_ratio: float = 0.3

    def check(self, text):
        lines = nonempty_lines(text)
        if not lines:
            return "fineweb_empty"
        if fraction_lines_ending_with_punctuation(lines) < self.min_line_punct_ratio:
            return "fineweb_line_punct_ratio"
        if fraction_short_lines(lines, self.short_line_length) >= self.max_short_line_ratio:
            return "fineweb_short_line_ratio"
        dup_chars = duplicate_fractions(lines)[1] * sum(len(l) for l in lines)
        if dup_chars / max(len(text.replace("\n", "")), 1) >= self.max_dup_line_char_ratio:
            return "fineweb_char_dup_ratio"
        if text.count("\n") / max(len(words(text)), 1) > self.max_newline_word_ratio:
            return "fineweb_list_ratio"
        return None
