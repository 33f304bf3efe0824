"""JSON-lines reading shared by the data pipeline and SFT: plain and gzip, blank lines, bad lines."""
import gzip

import pytest

from minillm.io.jsonl import iter_jsonl


def test_plain_and_gzip_agree_and_skip_blank_lines(tmp_path):
    body = '{"a": 1}\n\n{"a": 2}\n'
    (tmp_path / "x.jsonl").write_text(body)
    with gzip.open(tmp_path / "x.jsonl.gz", "wt") as f:
        f.write(body)
    expected = [(1, {"a": 1}), (3, {"a": 2})]
    assert list(iter_jsonl(tmp_path / "x.jsonl")) == expected
    assert list(iter_jsonl(tmp_path / "x.jsonl.gz")) == expected


def test_bad_line_is_named(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"x\.jsonl:2: not valid JSON"):
        list(iter_jsonl(tmp_path / "x.jsonl"))
