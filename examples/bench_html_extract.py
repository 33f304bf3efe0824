"""Main-text extraction on real pages: resiliparse vs trafilatura on CPython's HTML documentation.

Every page of the docs (Debian: apt-get install python3-doc) was rendered by Sphinx from a reST
source that ships beside it (_sources/<page>.rst.txt): that source is the page's main text, without
the navigation bar, sidebar (table of contents, previous/next topic, "Show Source") and footer
(copyright, "Last updated on", "Found a bug?"). Per extractor we measure on the same pages:

  recall      share of the reST source's words found in the extracted text (multiset overlap)
  precision   share of the extracted words found in the reST source
  boilerplate pages whose extracted text still holds a navigation / sidebar / footer line
  ms/page     extraction time (HTML already in memory, one thread)

    python examples/bench_html_extract.py [--docs /usr/share/doc/python3-doc/html] [--every 3]
"""
import argparse
import collections
import pathlib
import re
import time

from minillm.data.html_text import EXTRACTORS, extract_main_text

BOILERPLATE = ("Previous topic", "Next topic", "This Page", "Show Source", "Report a Bug",
               "Table of Contents", "Navigation", "Last updated on", "Found a bug?",
               "Created using Sphinx", "Python Software Foundation.")
_WORD = re.compile(r"[a-z][a-z0-9_]+")


def words(text):
    return collections.Counter(_WORD.findall(text.lower()))


def pages(root, every):
    """(html path, reST source text) for content pages that have a source."""
    out = []
    for html in sorted(root.rglob("*.html")):
        rel = html.relative_to(root).with_suffix("")
        src = root / "_sources" / f"{rel}.rst.txt"
        if src.exists():
            out.append((html, src.read_text(encoding="utf-8", errors="replace")))
    return out[::every]


def measure(items, extractor):
    hit = ref_n = ext_n = leaks = 0
    t = 0.0
    for html, ref in items:
        raw = html.read_bytes()
        t0 = time.perf_counter()
        text = extract_main_text(raw, extractor)
        t += time.perf_counter() - t0
        r, e = words(ref), words(text)
        hit += sum((r & e).values())
        ref_n += sum(r.values())
        ext_n += sum(e.values())
        lines = {ln.strip(" •-|»") for ln in text.splitlines()}
        leaks += any(b in lines or any(ln.startswith(b) for ln in lines) for b in BOILERPLATE)
    return hit / ref_n, hit / max(ext_n, 1), leaks, 1e3 * t / len(items)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", default="/usr/share/doc/python3-doc/html")
    ap.add_argument("--every", type=int, default=3, help="measure every n-th page")
    args = ap.parse_args()
    items = pages(pathlib.Path(args.docs), args.every)
    if not items:
        raise SystemExit(f"--docs: no pages with _sources under {args.docs} (apt-get install python3-doc)")
    print(f"{len(items)} pages of {args.docs}\n")
    print("| extractor | recall (reST words kept) | precision | pages with boilerplate left | ms/page |")
    print("|---|---|---|---|---|")
    for ex in EXTRACTORS:
        extract_main_text(items[0][0].read_bytes(), ex)            # warm up: imports, caches
        rec, prec, leaks, ms = measure(items, ex)
        print(f"| {ex} | {rec:.3f} | {prec:.3f} | {leaks} / {len(items)} | {ms:.1f} |")


if __name__ == "__main__":
    main()
