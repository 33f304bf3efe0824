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
            except (json.JSONDecodeError, RecursionError) as e:
                raise ValueError(f"{os.fspath(path)}:{lineno}: not valid JSON ({e})") from None


def parse_json(text, where, expect=None):
    """json.loads(text), with every way it can fail as one ValueError naming `where`: bad syntax or
    encoding, and nesting deep enough to exhaust Python's recursion limit (json raises RecursionError
    there, e.g. for 100,000 '['). expect: a type (dict, list) the value must have."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:      # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{where}: not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None
    if expect is not None and not isinstance(value, expect):
        raise ValueError(f"{where}: expected a JSON {'object' if expect is dict else expect.__name__}, "
                         f"got {type(value).__name__}")
    return value


def read_json(path, expect=None):
    """parse_json of a UTF-8 file's contents; the error names the file."""
    with open(path, "rb") as f:
        return parse_json(f.read(), os.fspath(path), expect)
