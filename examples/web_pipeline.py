"""From a web crawl to clean text: pack CPython's HTML documentation (real pages with navigation
bars, sidebars and footers) into a WARC file, then run minillm's default data pipeline on it and
print what each stage did.

    apt-get install python3-doc                     # the pages: /usr/share/doc/python3-doc/html
    pip install -e ".[web]"                         # warcio, resiliparse (and ray)
    python examples/web_pipeline.py [--limit 200] [--out /tmp/web_run] [--executor ray]

The archive gets one response record per page (its URL as on docs.python.org), plus the records a
real crawl holds besides pages: a 404, a redirect, an image. The pipeline is the shipped
default_pipeline.toml with a URL filter in front that drops the generated index pages by the words
in their URL (genindex, modindex, search), and the NER PII stage (`pii_ner`) after the regex one. The run prints the extraction of one page, then the
per-stage table: documents in/out, MB in/out, drop reasons, PII replaced.
"""
import argparse
import pathlib
import time

from minillm.data.cli import print_report
from minillm.data.pipeline import DEFAULT_PIPELINE, Pipeline, load_config
from minillm.data.stages import make_stage
from minillm.data.warc import read_warc, write_warc

DOCS = pathlib.Path("/usr/share/doc/python3-doc/html")


def pack(docs, warc_path, limit):
    """Write the first `limit` pages (sorted by path) and three non-page records into a WARC."""
    pages = sorted(p for p in docs.rglob("*.html") if "_static" not in p.parts)[:limit]
    records = [(f"https://docs.python.org/3/{p.relative_to(docs).as_posix()}", p.read_bytes())
               for p in pages]
    records += [("https://docs.python.org/3/missing.html", b"<html>Not Found</html>", "404 Not Found"),
                ("https://docs.python.org/3/old.html", b"", "301 Moved Permanently"),
                ("https://docs.python.org/3/_static/py.png", b"\x89PNG\r\n\x1a\n", "200 OK", "image/png")]
    write_warc(warc_path, records)
    return len(records)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", default=str(DOCS))
    ap.add_argument("--limit", type=int, default=200, help="pages to pack (0 = all)")
    ap.add_argument("--out", default="/tmp/minillm_web_run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--executor", choices=("local", "ray"), default="local")
    args = ap.parse_args()
    docs, out = pathlib.Path(args.docs), pathlib.Path(args.out)
    if not (docs / "index.html").exists():
        raise SystemExit(f"--docs: {docs} has no index.html (apt-get install python3-doc)")
    (out / "crawl").mkdir(parents=True, exist_ok=True)
    warc = out / "crawl" / "python-docs.warc.gz"
    n = pack(docs, warc, args.limit or 10**9)
    print(f"packed {n} records into {warc} ({warc.stat().st_size / 1e6:.1f} MB)")

    sample = next(read_warc(warc))
    print(f"\nfirst page: {sample['meta']['url']}  ({sample['meta']['date']}, "
          f"{sample['meta']['content_type']})\n" + sample["text"][:400] + "\n...")

    specs = load_config(DEFAULT_PIPELINE)["stage"]
    at = next(i for i, s in enumerate(specs) if s["type"] == "pii") + 1
    specs = ([{"type": "url_filter", "banned_words": ["genindex", "modindex", "search"]}]
             + specs[:at] + [{"type": "pii_ner"}] + specs[at:])
    pipe = Pipeline([make_stage(s) for s in specs], workers=args.workers, executor=args.executor)
    t0 = time.perf_counter()
    report = pipe.run(out / "crawl", out / "clean")
    print(f"\npipeline: {time.perf_counter() - t0:.1f} s ({args.executor} executor)")
    print_report(report)


if __name__ == "__main__":
    main()
