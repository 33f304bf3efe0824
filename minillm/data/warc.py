"""WARC input: web-crawl archives (ISO 28500, the format of CommonCrawl) as pipeline documents.

A WARC file is a sequence of records, each a header block (WARC-Type, WARC-Target-URI, WARC-Date,
Content-Length) and a payload; a `response` record's payload is the raw HTTP response. In a
.warc.gz every record is its own gzip member, so a reader can restart at any member boundary.

`read_warc` yields one document per HTML page answered with HTTP 200: the main text (html_text.py),
with meta {url, date, content_type, warc_record_id, source}. Everything else is skipped and counted
by reason into the `skipped` Counter the caller passes:

  record_<type>   warcinfo, request, metadata, ... records (not a server's response)
  http_<code>     responses other than 200 (redirects, errors)
  not_html        a 200 response whose Content-Type is not HTML (images, PDF, JSON ...)
  no_text         HTML from which the extractor kept nothing
  corrupt_record  a record that cannot be parsed (bad header, truncated payload, broken gzip):
                  the reader scans forward to the next record start and carries on

`write_warc` packs (url, html bytes) pages into a WARC with warcio: it builds the test corpora and
the example's archive of CPython's HTML documentation.
"""
import io
import os
import pathlib
import zlib
from collections import Counter

from .html_text import decode_html, extract_main_text

WARC_SUFFIXES = (".warc", ".warc.gz")
HTML_SUFFIXES = (".html", ".htm")
_GZIP_MAGIC = b"\x1f\x8b\x08"
_WARC_MAGIC = b"WARC/1."
_SCAN_BLOCK = 1 << 20


def _warcio():
    try:  # optional dependency: imported where used
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed
        from warcio.statusandheaders import StatusAndHeaders
        from warcio.warcwriter import WARCWriter
    except ImportError:
        raise ImportError("reading WARC files needs warcio: pip install minillm[web]") from None
    return ArchiveIterator, ArchiveLoadFailed, StatusAndHeaders, WARCWriter


def _next_start(f, after, gz):
    """Offset of the first record start after byte `after`, or None at end of file."""
    magic = _GZIP_MAGIC if gz else b"\n" + _WARC_MAGIC      # "WARC/1." counts at a line start
    skip = 0 if gz else 1
    pos = after + 1
    while True:
        f.seek(pos)
        block = f.read(_SCAN_BLOCK + len(magic))
        if len(block) < len(magic):
            return None
        i = block.find(magic)
        if i >= 0:
            return pos + i + skip
        pos += _SCAN_BLOCK


def _record_page(record):
    """-> (skip reason, None) or (None, (url, date, content_type, record id, body bytes))."""
    kind = record.rec_type
    if kind is None:                                   # e.g. a header block cut short
        raise ValueError("record without a WARC-Type header")
    if kind != "response":
        return f"record_{kind}", None
    status = record.http_headers.get_statuscode() if record.http_headers else None
    if status is None:                                  # no parsable HTTP status line
        raise ValueError("response record without an HTTP status line")
    if status != "200":
        return f"http_{status}", None
    ctype = (record.http_headers.get_header("Content-Type") or "").lower()
    if "html" not in ctype.split(";")[0]:
        return "not_html", None
    body = record.content_stream().read()
    if getattr(record.raw_stream, "limit", 0) > 0:    # fewer bytes than its Content-Length
        raise EOFError(f"truncated record ({record.raw_stream.limit} bytes missing)")
    h = record.rec_headers
    return None, (h.get_header("WARC-Target-URI"), h.get_header("WARC-Date"), ctype,
                  h.get_header("WARC-Record-ID"), body)


def iter_warc_pages(path, skipped):
    """Yield (url, date, content_type, record_id, body) for each HTML 200 response of a WARC
    file; count the rest into skipped (Counter). Never raises on a damaged record."""
    ArchiveIterator, ArchiveLoadFailed, _, _ = _warcio()
    gz = os.fspath(path).endswith(".gz")
    errors = (ArchiveLoadFailed, EOFError, OSError, ValueError, zlib.error)
    with open(path, "rb") as f:
        start, resynced = 0, False
        while start is not None:
            f.seek(start)
            # digests (WARC-Block/Payload-Digest, when the writer recorded them) catch flipped
            # bytes and a wrong Content-Length that would swallow the next record
            it = ArchiveIterator(f, check_digests="raise")
            good_end, n_read = start, 0            # end of the last record read whole
            try:
                for record in it:
                    reason, page = _record_page(record)
                    # after the payload was read: asking for the offset reads to the record's end
                    good_end = start + it.get_record_offset() + it.get_record_length()
                    n_read += 1
                    if reason:
                        skipped[reason] += 1
                    else:
                        yield page
                if not _at_end(f, good_end, gz):      # e.g. a record cut inside its header
                    raise EOFError("bytes after the last record that parse as no record")
                start = None
            except errors:
                # a scan can land on bytes that only look like a record start (gzip magic inside
                # compressed data): a failure before any record there is the same damage, once
                if not (resynced and n_read == 0):
                    skipped["corrupt_record"] += 1
                start, resynced = _next_start(f, max(good_end, start), gz), True


def _at_end(f, offset, gz):
    """Whether nothing but the blank lines that close a record follow `offset`."""
    f.seek(offset)
    rest = f.read(1 << 16)
    return not rest.strip() if not gz else not rest


def read_warc(path, skipped=None, extractor="resiliparse"):
    """Yield the documents of one WARC file (see the module docstring)."""
    skipped = Counter() if skipped is None else skipped
    for url, date, ctype, rec_id, body in iter_warc_pages(path, skipped):
        charset = ctype.split("charset=")[1].strip() if "charset=" in ctype else None
        text = extract_main_text(decode_html(body, charset), extractor, url)
        if not text:
            skipped["no_text"] += 1
            continue
        yield {"id": str(rec_id or url), "text": text,
               "meta": {"url": url, "date": date, "content_type": ctype, "warc_record_id": rec_id,
                        "source": str(path)}}


def read_html_file(path, skipped=None, extractor="resiliparse"):
    """One .html file as one document (url = file:// path, date = modification time)."""
    skipped = Counter() if skipped is None else skipped
    p = pathlib.Path(path)
    text = extract_main_text(p.read_bytes(), extractor, p.resolve().as_uri())
    if not text:
        skipped["no_text"] += 1
        return
    yield {"id": p.stem, "text": text,
           "meta": {"url": p.resolve().as_uri(), "content_type": "text/html", "source": str(path)}}


def write_warc(path, pages, gzip=True, date="2026-01-01T00:00:00Z"):
    """Write pages [(url, html bytes)] or [(url, body bytes, status, content_type)] as WARC
    response records (gzip per record when gzip). -> number of records written."""
    _, _, StatusAndHeaders, WARCWriter = _warcio()
    n = 0
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=gzip)
        for page in pages:
            url, body = page[0], page[1]
            status = page[2] if len(page) > 2 else "200 OK"
            ctype = page[3] if len(page) > 3 else "text/html; charset=utf-8"
            http = StatusAndHeaders(status, [("Content-Type", ctype),
                                             ("Content-Length", str(len(body)))],
                                    protocol="HTTP/1.1")
            record = writer.create_warc_record(url, "response", payload=io.BytesIO(body),
                                               http_headers=http,
                                               warc_headers_dict={"WARC-Date": date})
            writer.write_record(record)
            n += 1
    return n
