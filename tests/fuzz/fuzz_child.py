"""The child process of the fuzz suite: loads each file given on the command line with minillm's
loader for FORMAT, exercises what it loaded, and prints one JSON line per file:
{"i": k, "outcome": "ok" | "error" | "raw", "type": exception class, "msg": first line}.

"error" is minillm's own clear error (ValueError itself, not a subclass such as
UnicodeDecodeError); "raw" is any other exception escaping a parser. A crash (signal) or a hang
shows in the parent as the exit status or the timeout, with the last file started on stderr.

    python tests/fuzz/fuzz_child.py FORMAT FILE...
"""
import json
import sys

import numpy as np

TEXT = "Hello wörld, 12 345 tokens!\n\tdone."


def _safetensors(path):
    from minillm.io import load_safetensors
    got = load_safetensors(path)
    mm = load_safetensors(path, mmap=True)
    assert got.keys() == mm.keys() and all(np.array_equal(got[k], mm[k], equal_nan=True) for k in got)
    try:
        from safetensors.numpy import load_file  # optional reference: a file it refuses must not load
    except ImportError:
        return
    try:
        ref = load_file(path)
    except Exception as e:
        raise AssertionError(f"silently loaded a file the safetensors library rejects: {e}") from None
    assert ref.keys() == got.keys()


def _gguf(path):
    from minillm.loaders import load_gguf
    model, tok = load_gguf(path)
    if tok is not None:
        tok.decode(tok.encode(TEXT))
    logits = model.forward(np.array([[1, 2]]))[0] if hasattr(model, "forward") else None
    assert logits is None or np.asarray(logits).shape[-1] == model.config.vocab_size


def _spm(path):
    from minillm.tokenizer import UnigramTokenizer
    tok = UnigramTokenizer.load(path)
    tok.decode(tok.encode(TEXT))


def _tiktoken(path):
    from minillm.tokenizer import BPETokenizer
    tok = BPETokenizer.from_tiktoken(path, "cl100k")
    assert tok.decode(tok.encode(TEXT)) == TEXT, "a byte-level BPE that does not round-trip"


def _tokenizer_json(path):
    import os
    from minillm.tokenizer.hf_tokenizer import tokenizer_from_hf
    tok = tokenizer_from_hf(os.path.dirname(path))
    tok.decode(tok.encode(TEXT))


def _bpe(path):
    from minillm.tokenizer import BPETokenizer
    tok = BPETokenizer.load(path)
    assert tok.decode(tok.encode(TEXT)) == TEXT, "a byte-level BPE that does not round-trip"


def _checkpoint(path):
    from minillm.checkpoint import load_checkpoint
    model, _, _, _ = load_checkpoint(path)
    model.forward(np.array([[1, 2]]))


def _tokens(path):
    from minillm.io import read_tokens
    ids, vocab = read_tokens(path)
    assert ids.size == 0 or int(ids.max()) < vocab


LOADERS = {"safetensors": _safetensors, "gguf": _gguf, "model": _spm, "tiktoken": _tiktoken,
           "tokenizer_json": _tokenizer_json, "bpe": _bpe, "checkpoint": _checkpoint, "tokens": _tokens}


def main(fmt, paths):
    load = LOADERS[fmt]
    for i, path in enumerate(paths):
        print(f"start {i} {path}", file=sys.stderr, flush=True)
        try:
            load(path)
            out = {"i": i, "outcome": "ok"}
        except AssertionError as e:
            out = {"i": i, "outcome": "wrong", "type": "AssertionError", "msg": str(e)[:300]}
        except Exception as e:            # classified here, judged by the parent
            kind = "error" if type(e) is ValueError and str(e) and "\n" not in str(e).strip() else "raw"
            out = {"i": i, "outcome": kind, "type": type(e).__name__, "msg": str(e)[:300]}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
