"""Tokenizers: byte-level BPE (bpe.py), bytes (byte.py), Unigram LM (unigram.py), pre-tokenizer patterns
(patterns.py), chat templates (templates.py), and `cached_bpe`, the on-disk cache `minillm train` uses.

    from minillm.tokenizer import BPETokenizer
    tok = BPETokenizer.train(text, vocab_size=8192)
    ids = tok.encode("hello world")            # list[int]
    assert tok.decode(ids) == "hello world"
"""
from . import patterns, templates
from .bpe import BPETokenizer
from .byte import ByteTokenizer
from .cache import cached_bpe
from .unigram import UnigramTokenizer

__all__ = ["BPETokenizer", "ByteTokenizer", "UnigramTokenizer", "cached_bpe", "patterns", "templates"]
