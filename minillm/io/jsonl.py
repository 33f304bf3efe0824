"""JSON-lines input: one JSON value per line, blank lines skipped, plain or gzip (by the .gz suffix).
Shared by the data pipeline's readers and the SFT datasets; errors name the file and line."""
import gzip
import io
import json
import os


def open_text(path):
    """A UTF-8 text stream of `path`, decompressed when it ends in .gz."""
    path = os.fspath(path)
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_jsonl(path):
    """Yield (line number, parsed value) for each non-blank line; ValueError names a bad line."""
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{os.fspath(path)}:{lineno}: not valid JSON ({e})") from None
