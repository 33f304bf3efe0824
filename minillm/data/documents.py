"""Documents and the files they live in.

A document is a dict {"id": str, "text": str, "meta": dict}. A corpus is a file or a directory of
shard files; each shard is read as a stream, so memory stays bounded by one document:

  *.jsonl, *.jsonl.gz, *.json.gz   one JSON object per line with a "text" field ("id" and "meta"
                                   optional: id defaults to "<shard stem>:<line number>")
  *.txt, *.txt.gz                  text_unit="file": the whole file is one document;
                                   "paragraph": blank-line-separated blocks; "line": each line
  *.warc, *.warc.gz                web crawl archives: the main text of each HTML page answered
                                   with 200, with url/date/content type in meta (warc.py)
  *.html, *.htm                    one page per file, its main text (html_text.py)

Records a reader skips (non-HTML, non-200, damaged WARC records) are counted by reason into the
`skipped` Counter passed to read_documents.

Writers are atomic (temp file + rename, minillm.io.atomic_write): a shard appears whole or not at
all, which is what lets an interrupted pipeline run resume shard by shard.
"""
import gzip
import json
import os
import pathlib
import re

from ..io.atomic import atomic_write
from ..io.jsonl import iter_jsonl, open_text
from .warc import HTML_SUFFIXES, WARC_SUFFIXES, read_html_file, read_warc

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz")
TEXT_SUFFIXES = (".txt", ".txt.gz")
ALL_SUFFIXES = JSONL_SUFFIXES + TEXT_SUFFIXES + WARC_SUFFIXES + HTML_SUFFIXES
TEXT_UNITS = ("file", "paragraph", "line")


def make_document(id, text, meta=None):
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    return {"id": str(id), "text": text, "meta": dict(meta or {})}


def shard_stem(path):
    name = pathlib.Path(path).name
    for suffix in ALL_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return pathlib.Path(path).stem


def list_shards(path):
    """The shard files of a corpus: [path] for a file, else every JSONL/text file below the
    directory, sorted by relative path (the order that makes runs deterministic)."""
    p = pathlib.Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"input: no such file or directory: {path}")
    shards = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")
                    and f.name.endswith(ALL_SUFFIXES))
    if not shards:
        raise ValueError(f"input: {path} holds no {'/'.join(ALL_SUFFIXES)} files")
    return shards


def read_documents(path, text_unit="file", skipped=None):
    """Yield the documents of one shard file (see the module docstring for formats); skipped
    (a Counter, optional) receives the per-reason counts of WARC/HTML records not yielded."""
    if text_unit not in TEXT_UNITS:
        raise ValueError(f"text_unit: expected one of {TEXT_UNITS}, got {text_unit!r}")
    name = os.fspath(path)
    stem = shard_stem(path)
    if name.endswith(JSONL_SUFFIXES):
        for lineno, obj in iter_jsonl(path):
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise ValueError(f"{name}:{lineno}: expected an object with a string 'text' field")
            yield make_document(obj.get("id", f"{stem}:{lineno}"), obj["text"], obj.get("meta"))
    elif name.endswith(TEXT_SUFFIXES):
        with open_text(path) as f:
            text = f.read()
        if text_unit == "file":
            parts = [text]
        elif text_unit == "line":
            parts = text.split("\n")
        else:
            parts = re.split(r"\n\s*\n", text)
        n = 0
        for part in parts:
            if part.strip():
                n += 1
                yield make_document(f"{stem}:{n}", part.strip("\n"), {"source": name})
    elif name.endswith(WARC_SUFFIXES):
        yield from read_warc(path, skipped)
    elif name.endswith(HTML_SUFFIXES):
        yield from read_html_file(path, skipped)
    else:
        raise ValueError(f"path: {name} is not JSON lines ({', '.join(JSONL_SUFFIXES)}), text "
                         f"({', '.join(TEXT_SUFFIXES)}), WARC or HTML ({', '.join(WARC_SUFFIXES + HTML_SUFFIXES)})")


def write_jsonl(path, docs):
    """Write documents as JSON lines (gzip if path ends in .gz), atomically. -> (n_docs, n_bytes
    of text written)."""
    n_docs = n_bytes = 0
    with atomic_write(path) as raw:
        f = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if os.fspath(path).endswith(".gz") else raw
        for doc in docs:
            f.write(json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n")
            n_docs += 1
            n_bytes += len(doc["text"].encode("utf-8"))
        if f is not raw:
            f.close()                                  # writes the gzip trailer; raw stays open
    return n_docs, n_bytes


def write_text(path, docs, separator="\n\n"):
    """Write the texts only, joined by separator, atomically. -> (n_docs, n_bytes)."""
    n_docs = n_bytes = 0
    with atomic_write(path) as raw:
        f = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if os.fspath(path).endswith(".gz") else raw
        for doc in docs:
            data = doc["text"].encode("utf-8")
            f.write((separator.encode("utf-8") if n_docs else b"") + data)
            n_docs += 1
            n_bytes += len(data)
        if f is not raw:
            f.close()
    return n_docs, n_bytes
