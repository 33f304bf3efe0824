"""WARC and HTML input: main text kept and boilerplate dropped (on CPython's real HTML docs when
python3-doc is installed), metadata, per-reason skips, damaged records counted and skipped, the URL
filter stage, and a pipeline run over a WARC with exact accounting."""
import pathlib
import re
from collections import Counter

import pytest

pytest.importorskip("warcio", reason="WARC input needs warcio (pip install minillm[web])")
pytest.importorskip("resiliparse", reason="HTML extraction needs resiliparse (pip install minillm[web])")

from minillm.data import Pipeline, make_stage, read_documents  # noqa: E402
from minillm.data.html_text import extract_main_text  # noqa: E402
from minillm.data.url_filter import URLFilter, url_host  # noqa: E402
from minillm.data.warc import read_warc, write_warc  # noqa: E402

DOCS = pathlib.Path("/usr/share/doc/python3-doc/html")
NAV = ("Previous topic", "Next topic", "Show Source", "Report a Bug", "Table of Contents",
       "Navigation", "Last updated on", "Found a bug?", "Created using Sphinx")


def page(i):
    return (f"<html><head><title>Page {i}</title></head><body>"
            f"<nav><a href='/'>Home</a> | <a href='/about'>About us</a> | <a href='/shop'>Shop</a></nav>"
            f"<article><h1>Report number {i}</h1><p>This is the main text of page number {i}, a "
            f"paragraph long enough for the extractor to treat it as content.</p><p>A second "
            f"paragraph of real content about stones and rivers, page {i}.</p></article>"
            f"<footer>Copyright 2026 Example Corp. All rights reserved.</footer></body></html>").encode()


def small_warc(path, gzip=True):
    pages = [(f"http://example.org/{i}", page(i)) for i in range(4)]
    pages.insert(2, ("http://example.org/gone", b"<html>gone</html>", "404 Not Found"))
    pages.insert(3, ("http://example.org/moved", b"", "301 Moved Permanently"))
    pages.append(("http://example.org/logo.png", b"\x89PNG\r\n", "200 OK", "image/png"))
    write_warc(path, pages, gzip=gzip)
    return path


def record_starts(data, gz):
    return [m.start() for m in re.finditer(b"\x1f\x8b\x08" if gz else b"WARC/1.0\r\n", data)]


@pytest.mark.parametrize("gz", [True, False])
def test_warc_pages_metadata_and_skips(tmp_path, gz):
    path = small_warc(tmp_path / ("a.warc.gz" if gz else "a.warc"), gz)
    skipped = Counter()
    docs = list(read_documents(path, skipped=skipped))
    assert [d["meta"]["url"] for d in docs] == [f"http://example.org/{i}" for i in range(4)]
    assert skipped == Counter({"http_404": 1, "http_301": 1, "not_html": 1})
    d = docs[1]
    assert "main text of page number 1" in d["text"] and "second paragraph" in d["text"]
    assert "About us" not in d["text"] and "Copyright" not in d["text"]      # nav and footer
    assert d["meta"]["date"] == "2026-01-01T00:00:00Z"
    assert d["meta"]["content_type"].startswith("text/html")
    assert d["id"].startswith("<urn:uuid:")


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("damage", ["flip", "header", "truncate", "cut_header", "garbage_tail"])
def test_damaged_record_is_counted_and_skipped(tmp_path, gz, damage):
    good = small_warc(tmp_path / ("a.warc.gz" if gz else "a.warc"), gz).read_bytes()
    s = record_starts(good, gz)                     # 7 records: pages 0, 1, 404, 301, 2, 3, png
    data = bytearray(good)
    if damage == "flip":                            # bytes flipped inside page 1's record
        mid = (s[1] + s[2]) // 2
        data[mid:mid + 40] = bytes(b ^ 0x5A for b in data[mid:mid + 40])
    elif damage == "header":
        data[s[1]:s[1] + 8] = b"XXXX/9.9"
    elif damage == "truncate":                      # the file ends inside page 3's record
        data = data[: (s[5] + s[6]) // 2]
    elif damage == "cut_header":
        data = data[: s[5] + 20]
    else:
        data += b"\x00 not a record \x00" * 10
    bad = tmp_path / ("b.warc.gz" if gz else "b.warc")
    bad.write_bytes(bytes(data))
    skipped = Counter()
    urls = [d["meta"]["url"] for d in read_warc(bad, skipped)]
    assert skipped["corrupt_record"] == 1
    expected = {"flip": [0, 2, 3], "header": [0, 2, 3], "truncate": [0, 1, 2],
                "cut_header": [0, 1, 2], "garbage_tail": [0, 1, 2, 3]}[damage]
    assert urls == [f"http://example.org/{i}" for i in expected]


def test_wrong_content_length_does_not_swallow_the_next_record(tmp_path):
    good = small_warc(tmp_path / "a.warc", gzip=False).read_bytes()
    s = record_starts(good, False)
    data = bytearray(good)
    at = data.find(b"Content-Length: ", s[1]) + len(b"Content-Length: ")
    data[at:at + 3] = b"999"                        # page 1 claims more bytes than it has
    (tmp_path / "b.warc").write_bytes(bytes(data))
    skipped = Counter()
    urls = [d["meta"]["url"] for d in read_warc(tmp_path / "b.warc", skipped)]
    assert skipped["corrupt_record"] == 1
    assert urls == [f"http://example.org/{i}" for i in (0, 2, 3)]


def test_garbage_file_counts_one_corrupt_record(tmp_path):
    (tmp_path / "x.warc.gz").write_bytes(b"not a warc at all " * 50)
    skipped = Counter()
    assert list(read_warc(tmp_path / "x.warc.gz", skipped)) == []
    assert skipped == Counter({"corrupt_record": 1})


def test_extractor_argument_is_checked():
    with pytest.raises(ValueError, match="extractor"):
        extract_main_text("<p>x</p>", extractor="lynx")


def test_html_file_input(tmp_path):
    (tmp_path / "p.html").write_bytes(page(7))
    docs = list(read_documents(tmp_path / "p.html"))
    assert len(docs) == 1 and "page number 7" in docs[0]["text"] and "Shop" not in docs[0]["text"]
    assert docs[0]["meta"]["url"].startswith("file://")


def test_url_filter():
    f = URLFilter(domains=["blocked.com"], urls=["http://ok.org/secret"], banned_words=["casino"])
    assert f.check("https://blocked.com/a") == "url_domain_blocked"
    assert f.check("https://www.shop.blocked.com/a") == "url_domain_blocked"
    assert f.check("https://notblocked.com/a") is None
    assert f.check("http://ok.org/secret") == "url_blocked"
    assert f.check("http://ok.org/best-casino-bonus") == "url_banned_word"
    assert f.check("http://ok.org/casinoville") is None           # whole words only
    assert url_host("http://[bad") == "" and url_host("HTTP://Example.COM.:80/x") == "example.com"


def test_pipeline_over_warc_accounts_for_every_record(tmp_path):
    small_warc(tmp_path / "in" / "a.warc.gz") if (tmp_path / "in").mkdir() is None else None
    pipe = Pipeline([make_stage({"type": "url_filter", "domains": ["example.org"],
                                 "urls": []}),
                     make_stage({"type": "length", "min_length": 1})])
    report = pipe.run(tmp_path / "in", tmp_path / "out")
    assert report.input_skipped == Counter({"http_404": 1, "http_301": 1, "not_html": 1})
    assert report.docs_in == 4 and report.docs_out == 0
    assert report.stages["url_filter"].dropped == Counter({"url_domain_blocked": 4})


SMART_QUOTES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"'})  # Sphinx's smartquotes
needs_docs = pytest.mark.skipif(not (DOCS / "library" / "json.html").exists(),
                                reason="CPython's HTML docs not installed (apt-get install python3-doc)")


@needs_docs
def test_real_docs_pages_keep_main_text_and_drop_navigation(tmp_path):
    names = ["library/json.html", "library/functions.html", "tutorial/classes.html",
             "howto/logging.html", "reference/datamodel.html"]
    pages = [(f"https://docs.python.org/3/{n}", (DOCS / n).read_bytes()) for n in names]
    write_warc(tmp_path / "docs.warc.gz", pages)
    docs = list(read_documents(tmp_path / "docs.warc.gz"))
    assert [d["meta"]["url"] for d in docs] == [p[0] for p in pages]
    for d, n in zip(docs, names):
        src = (DOCS / "_sources" / f"{n[:-5]}.rst.txt").read_text(encoding="utf-8")
        # the prose lines of the reST source (free of markup, table rules, dashes) are in the text
        prose = [" ".join(ln.split()) for ln in src.splitlines()
                 if len(ln) > 60 and not re.search(r"[`*:_|\\<>\[\]+=]|--", ln)]
        flat = " ".join(d["text"].translate(SMART_QUOTES).split())
        assert len(prose) >= 5 and sum(ln in flat for ln in prose) >= 0.9 * len(prose), n
        lines = {ln.strip(" •-|»") for ln in d["text"].splitlines()}
        assert not [b for b in NAV if b in lines], n
        assert "Python Software Foundation" not in d["text"]
        assert d["meta"]["date"] and d["meta"]["content_type"].startswith("text/html")
