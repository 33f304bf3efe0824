"""`--data` sources: text files, folders of .txt / .jsonl(.gz), token files; clear errors for the bad ones."""
import gzip
import json

import numpy as np
import pytest

from minillm.batches import DataSpec
from minillm.data.sources import check_source, read_texts, tokenize_sources
from minillm.io import read_tokens, write_tokens
from minillm.tokenizer import BPETokenizer, ByteTokenizer


def test_sources_are_checked_and_read(tmp_path):
    (tmp_path / "a.txt").write_text("first document")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "second"}) + "\n\n" + json.dumps({"text": "third"}) + "\n")
    assert check_source(str(tmp_path)) == "text"
    assert read_texts(str(tmp_path)) == ["first document", "second", "third"]
    write_tokens(tmp_path / "t.bin", np.arange(10), 16)
    assert check_source(str(tmp_path / "t.bin")) == "tokens"
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text("  \n\n ")
    write_tokens(tmp_path / "none.bin", np.zeros(0, dtype=np.int64), 16)
    with pytest.raises(FileNotFoundError, match="--data: no such file or folder: .*missing.txt"):
        check_source(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match=r"--data: .*empty.txt is empty \(0 bytes\)"):
        check_source(str(tmp_path / "empty.txt"))
    with pytest.raises(ValueError, match="holds 0 tokens"):
        check_source(str(tmp_path / "none.bin"))
    with pytest.raises(ValueError, match="holds no text"):
        read_texts(str(tmp_path / "blank.txt"))
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match=r"--data: folder .*sub holds no .txt or .jsonl\(.gz\) files"):
        check_source(str(tmp_path / "sub"))


def test_tokenized_sources_keep_special_token_text_plain_and_separate_documents(tmp_path):
    docs = [["a <|endoftext|> b", "second doc"]]
    tok = BPETokenizer.train("hello world " * 50, 260, special_tokens=("<|endoftext|>",))
    eot = tok.special_tokens["<|endoftext|>"]
    (path,) = tokenize_sources([DataSpec("src.txt")], docs, tok, str(tmp_path))
    ids = list(read_tokens(path)[0])
    want = tok.encode_ordinary(docs[0][0]) + [eot] + tok.encode_ordinary(docs[0][1]) + [eot]
    assert ids == want and ids.count(eot) == 2                 # the literal string is not the EOT id
    (path,) = tokenize_sources([DataSpec("b.txt")], docs, ByteTokenizer(), str(tmp_path))
    assert bytes(read_tokens(path)[0].tolist()) == "".join(docs[0]).encode()   # bytes: no separator
