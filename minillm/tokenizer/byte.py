"""The byte tokenizer: token id = UTF-8 byte, 256 ids, no training. The fallback vocabulary of
`minillm train --tokenizer byte` and of the data pipeline's final stage; every string round-trips
(decode replaces bytes that do not form UTF-8). Unlike BPE (bpe.py) it has no merges at all.

On disk it is one line, FILE_HEADER, so a run folder's tokenizer.model says which kind it holds.
"""
import os

from ..io.atomic import write_bytes_atomic

FILE_HEADER = b"minillm byte tokenizer"


class ByteTokenizer:
    """encode(text) -> list of UTF-8 bytes; decode(ids) -> text. vocab_size 256, no end-of-text id."""
    vocab_size = 256
    eot_id = None

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def save(self, path):
        write_bytes_atomic(path, FILE_HEADER + b"\n")

    @staticmethod
    def is_file(path):
        """True if `path` is a byte tokenizer file written by ByteTokenizer.save."""
        if not os.path.exists(path):
            return False
        with open(path, "rb") as f:
            return f.read(len(FILE_HEADER)) == FILE_HEADER
