"""URL filter: drop web pages by where they come from, before reading what they say.

The first filter of RefinedWeb (Penedo et al. 2023, Sec. 3.1) and of datatrove's URLFilter: a
blocklist of domains (adult, gambling, spam farms; the UT1 lists are the usual source), of exact
URLs, and of words that betray such a page in its URL. A domain entry blocks that host and every
subdomain ("example.com" blocks "www.example.com" and "a.b.example.com", not "badexample.com").
Documents without meta.url (plain text, JSONL) pass untouched and are counted as `no_url`.
Unlike the toxicity stage, nothing here reads the text.
"""
import pathlib
from urllib.parse import urlsplit

import regex

_URL_WORDS = regex.compile(r"[a-z0-9]+")


def _read_list(path):
    lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
    return [ln.strip().lower() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def url_host(url):
    """Lower-case host of a URL without port or a trailing dot ("" when there is none)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:                                  # e.g. an unbalanced "[" in the netloc
        return ""
    return host.rstrip(".")


class URLFilter:
    """domains / urls / banned_words: lists; domain_files / url_files: files with one entry per
    line (# comments allowed). check(url) -> drop reason or None."""

    def __init__(self, domains=(), urls=(), banned_words=(), domain_files=(), url_files=()):
        self.domains = {d.lower().strip(".") for d in domains}
        self.urls = {u.lower() for u in urls}
        for f in domain_files:
            self.domains.update(d.strip(".") for d in _read_list(f))
        for f in url_files:
            self.urls.update(_read_list(f))
        self.banned_words = {w.lower() for w in banned_words}

    def check(self, url):
        if url.lower() in self.urls:
            return "url_blocked"
        labels = url_host(url).split(".")
        # the host and each parent domain: a.b.example.com, b.example.com, example.com, com
        if any(".".join(labels[i:]) in self.domains for i in range(len(labels))):
            return "url_domain_blocked"
        if self.banned_words and not self.banned_words.isdisjoint(_URL_WORDS.findall(url.lower())):
            return "url_banned_word"
        return None
