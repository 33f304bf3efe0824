"""ByteTokenizer: ids are UTF-8 bytes, decode inverts encode, the file says what it is."""
from hypothesis import given
from hypothesis import strategies as st

from minillm.tokenizer import BPETokenizer, ByteTokenizer


@given(st.text(max_size=200))
def test_round_trip_and_ids_are_utf8_bytes(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_file_is_recognised_and_others_are_not(tmp_path):
    ByteTokenizer().save(tmp_path / "byte.model")
    assert ByteTokenizer.is_file(tmp_path / "byte.model")
    BPETokenizer.train("hello hello world " * 20, vocab_size=260).save(tmp_path / "bpe.model")
    assert not ByteTokenizer.is_file(tmp_path / "bpe.model")
    assert not ByteTokenizer.is_file(tmp_path / "missing.model")
