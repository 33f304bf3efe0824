"""Main-text extraction from HTML: keep the article, drop navigation, sidebars, headers and footers.

Two extractors behind one function, both optional dependencies (pip install minillm[web]):

  resiliparse   Bevendorff et al. 2018/2021 (ChatNoir): a DOM walk in C++ that drops the elements
                a main-content heuristic classifies as boilerplate (nav, header, footer, aside,
                elements whose class/id look like menus, ads, cookie banners), then renders the
                rest as plain text. Used by the default pipeline: see README for the measurement.
  trafilatura   Barbaresi 2021: XPath rules for the main content, justext and readability as
                fallbacks, then a text-density comparison; used by FineWeb/datatrove.

`decode_html` turns the raw bytes of an HTTP body into str, from the charset the server declared,
else the <meta charset> or byte statistics (resiliparse's detector), else UTF-8 with replacement.
"""
import regex

EXTRACTORS = ("resiliparse", "trafilatura")
_CHARSET = regex.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_.:-]+)""", regex.IGNORECASE)


def _need(module):
    raise ImportError(f"HTML text extraction needs {module}: pip install minillm[web]")


def decode_html(body, declared_charset=None):
    """bytes -> str. declared_charset: from the Content-Type header, or None."""
    if isinstance(body, str):
        return body
    candidates = [declared_charset]
    m = _CHARSET.search(body[:4096])
    if m:
        candidates.append(m.group(1).decode("ascii"))
    for enc in candidates:
        if enc:
            try:
                return body.decode(enc)
            except (LookupError, UnicodeDecodeError):
                continue
    return body.decode("utf-8", errors="replace")


def extract_main_text(html, extractor="resiliparse", url=None):
    """html: str (or bytes, decoded with decode_html) -> the page's main text, paragraphs
    separated by blank lines ("" when nothing is left)."""
    if extractor not in EXTRACTORS:
        raise ValueError(f"extractor: expected one of {EXTRACTORS}, got {extractor!r}")
    html = decode_html(html)
    if extractor == "resiliparse":
        try:  # optional dependency: imported where used
            from resiliparse.extract.html2text import extract_plain_text
        except ImportError:
            _need("resiliparse")
        text = extract_plain_text(html, main_content=True, alt_texts=False, comments=False,
                                  form_fields=False, noscript=False)
    else:
        try:  # optional dependency: imported where used
            import trafilatura
        except ImportError:
            _need("trafilatura")
        text = trafilatura.extract(html, url=url, include_comments=False, include_tables=True,
                                   deduplicate=False) or ""
    return _tidy(text)


def _tidy(text):
    """Normalise line ends and collapse runs of blank lines to one: extractors differ here."""
    lines = [ln.rstrip() for ln in text.replace("\r\n", "\n").split("\n")]
    out, blank = [], False
    for ln in lines:
        if ln.strip():
            out.append(ln)
            blank = False
        elif out and not blank:
            out.append("")
            blank = True
    return "\n".join(out).strip()
