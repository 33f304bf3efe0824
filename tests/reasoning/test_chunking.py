"""Chunking (reasoning/chunking.py): chunks are exact slices that cover the text with bounded size
and overlap; token windows cover every id."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.reasoning.chunking import recursive_chunks, token_chunks, token_windows
from minillm.tokenizer import ByteTokenizer

text_st = st.text(alphabet=st.sampled_from(list("ab c.\n")), max_size=400)


@settings(max_examples=200, deadline=None)
@given(text=text_st, size=st.integers(1, 60), frac=st.floats(0, 0.99))
def test_recursive_chunks_cover_text_with_bounded_size_and_overlap(text, size, frac):
    overlap = min(int(size * frac), size - 1)
    chunks = recursive_chunks(text, size, overlap)
    if not text:
        assert chunks == []
        return
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for c in chunks:
        assert c.text == text[c.start:c.end] and 0 < len(c.text) <= size
    for a, b in zip(chunks, chunks[1:]):
        assert a.start < b.start and b.start <= a.end          # progress, no gap
        assert a.end - b.start <= overlap                      # shared characters within the overlap


def test_recursive_prefers_paragraphs_then_sentences():
    text = "First paragraph here.\n\nSecond one. It has two sentences.\n\nThird."
    chunks = recursive_chunks(text, chunk_size=40, overlap=0)
    assert [c.text for c in chunks] == ["First paragraph here.\n\n", "Second one. It has two sentences.\n\n",
                                        "Third."]
    chunks = recursive_chunks(text, chunk_size=25, overlap=0)
    assert chunks[1].text == "Second one. "                # too long a paragraph: split at ". "


def test_overlap_carries_whole_pieces():
    text = "one two three four five six seven eight"
    chunks = recursive_chunks(text, chunk_size=15, overlap=6)
    assert [c.text for c in chunks] == ["one two three ", "three four ", "four five six ",
                                        "six seven eight"]


@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 300), size=st.integers(1, 50), frac=st.floats(0, 0.99))
def test_token_windows(n, size, frac):
    overlap = min(int(size * frac), size - 1)
    w = token_windows(n, size, overlap)
    covered = set()
    for s, e in w:
        assert 0 <= s < e <= n and e - s == min(size, n)
        covered.update(range(s, e))
    assert covered == set(range(n))
    for (s1, e1), (s2, e2) in zip(w, w[1:]):
        assert s2 - s1 <= size - overlap and s2 > s1


def test_token_chunks_decode_windows():
    tok = ByteTokenizer()
    text = "abcdefghij"
    chunks = token_chunks(text, tok, chunk_size=4, overlap=1, source="x.txt")
    assert [(c.text, c.start, c.end) for c in chunks] == [("abcd", 0, 4), ("defg", 3, 7), ("ghij", 6, 10)]
    assert all(c.source == "x.txt" for c in chunks)


def test_bad_sizes():
    with pytest.raises(ValueError, match="chunk_size"):
        recursive_chunks("abc", 0, 0)
    with pytest.raises(ValueError, match="overlap"):
        recursive_chunks("abc", 4, 4)
    with pytest.raises(TypeError, match="text"):
        recursive_chunks(b"abc", 4, 1)
