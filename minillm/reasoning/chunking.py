"""Splitting documents into overlapping chunks for retrieval (Lewis et al. 2020, "Retrieval-
Augmented Generation", retrieves fixed 100-word passages; the recursive splitter is the common
practice popularised by LangChain's RecursiveCharacterTextSplitter).

  recursive_chunks  characters: split on the coarsest separator present (paragraph, line, sentence,
                    word, then anywhere), recursing into pieces that are still too long, then merge
                    neighbouring pieces greedily up to chunk_size, carrying up to `overlap` characters
                    of whole pieces into the next chunk. Chunks are exact slices text[start:end].
  token_chunks      tokens: fixed windows of chunk_size token ids with stride chunk_size - overlap,
                    the unit a model's context is measured in.
"""
from dataclasses import dataclass

DEFAULT_SEPARATORS = ("\n\n", "\n", ". ", " ", "")


@dataclass(frozen=True)
class Chunk:
    text: str
    start: int          # offset of the chunk in its document: characters (recursive) or tokens (token_chunks)
    end: int            # one past the last character / token
    source: str = None  # document name, filled in by the RAG index


def _check_sizes(chunk_size, overlap):
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < chunk_size:
        raise ValueError(f"overlap: expected an int in [0, chunk_size={chunk_size}), got {overlap!r}")


def _pieces(text, start, end, separators, chunk_size):
    """Contiguous spans covering text[start:end], each at most chunk_size long."""
    if end - start <= chunk_size:
        return [(start, end)]
    for i, sep in enumerate(separators):
        if sep == "":                                       # last resort: cut every chunk_size chars
            return [(s, min(s + chunk_size, end)) for s in range(start, end, chunk_size)]
        if text.find(sep, start, end) < 0:
            continue
        spans, s = [], start
        while s < end:                                      # keep each separator with the piece before it
            j = text.find(sep, s, end)
            e = end if j < 0 else j + len(sep)
            spans.extend(_pieces(text, s, e, separators[i + 1:], chunk_size))
            s = e
        return spans
    # no separator matched and no "" fallback: keep the oversize piece whole (caller's choice)
    return [(start, end)]


def recursive_chunks(text, chunk_size=800, overlap=100, separators=DEFAULT_SEPARATORS, source=None):
    """Split text into Chunks of at most chunk_size characters that cover it without gaps;
    consecutive chunks share at most `overlap` characters (whole pieces, possibly none when a
    piece is longer than the overlap). -> list[Chunk] with chunk.text == text[chunk.start:chunk.end]."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    _check_sizes(chunk_size, overlap)
    if not text:
        return []
    spans = _pieces(text, 0, len(text), tuple(separators), chunk_size)
    chunks, cur = [], []                                    # cur: the spans of the chunk being built

    def emit():
        s, e = cur[0][0], cur[-1][1]
        chunks.append(Chunk(text[s:e], s, e, source))

    for span in spans:
        if cur and span[1] - cur[0][0] > chunk_size:        # span does not fit: close the chunk
            emit()
            # keep a tail of whole pieces as overlap, small enough to leave room for `span`
            while cur and (cur[-1][1] - cur[0][0] > overlap or span[1] - cur[0][0] > chunk_size):
                cur.pop(0)
        cur.append(span)
    emit()
    return chunks


def token_windows(n_tokens, chunk_size, overlap):
    """(start, end) windows over n_tokens ids: stride chunk_size - overlap, the last one ending
    at n_tokens. -> list of (start, end)."""
    _check_sizes(chunk_size, overlap)
    if n_tokens <= chunk_size:
        return [(0, n_tokens)] if n_tokens else []
    stride = chunk_size - overlap
    starts = list(range(0, n_tokens - chunk_size, stride)) + [n_tokens - chunk_size]
    return [(s, s + chunk_size) for s in sorted(set(starts))]


def token_chunks(text, tokenizer, chunk_size=256, overlap=32, source=None):
    """Split text into windows of chunk_size token ids (tokenizer.encode) overlapping by `overlap`
    tokens; each Chunk's text is tokenizer.decode of its window, start/end are token offsets."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    ids = list(tokenizer.encode(text))
    return [Chunk(tokenizer.decode(ids[s:e]), s, e, source) for s, e in token_windows(len(ids), chunk_size, overlap)]
