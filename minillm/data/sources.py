"""Training data from your own files, for `minillm train --data PATH[:WEIGHT] ...`.

A source is a text file (.txt, .txt.gz, or any other UTF-8 file), a .jsonl(.gz) file of {"text": ...}
documents, a folder of such files (documents.list_shards decides which), or a token file written by
minillm.io.write_tokens / `minillm data run` (recognised by its header, whatever its name). Text is
tokenized once per run into token files that minillm.batches.MixtureBatches samples by weight.
"""
import os

import numpy as np

from ..io.tokens import MAGIC, read_header, write_tokens
from .documents import JSONL_SUFFIXES, TEXT_SUFFIXES, list_shards, read_documents


def is_token_file(path):
    """True when `path` starts with the token-file magic (minillm.io.tokens)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return len(head) == 4 and int(np.frombuffer(head, dtype="<i4")[0]) == MAGIC


def check_source(path):
    """Fail early, naming --data, on a missing, empty or unreadable source. -> "tokens" | "text"."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--data: no such file or folder: {path}")
    if os.path.isdir(path):
        try:
            shards = list_shards(path)
        except ValueError:
            raise ValueError(f"--data: folder {path} holds no .txt or .jsonl(.gz) files") from None
        if all(os.path.getsize(s) == 0 for s in shards):
            raise ValueError(f"--data: every file in {path} is empty")
        return "text"
    if os.path.getsize(path) == 0:
        raise ValueError(f"--data: {path} is empty (0 bytes)")
    if is_token_file(path):
        n, _, _ = read_header(path)              # also catches a truncated file
        if n == 0:
            raise ValueError(f"--data: token file {path} holds 0 tokens")
        return "tokens"
    return "text"


def read_texts(path):
    """The documents (list of str, blank ones dropped) of a text source."""
    shards = list_shards(path) if os.path.isdir(path) else [path]
    docs = []
    for shard in shards:
        name = os.fspath(shard)
        if name.endswith(JSONL_SUFFIXES + TEXT_SUFFIXES):
            docs.extend(d["text"] for d in read_documents(shard))
        else:                                    # a text file under any other name
            with open(shard, encoding="utf-8") as f:
                docs.append(f.read())
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise ValueError(f"--data: {path} holds no text (only whitespace or empty documents)")
    return docs


def find_tokenizer(token_path):
    """The tokenizer file that belongs to a token file, if one lies beside it: `minillm train`'s
    tokenizer.model, or `minillm data run`'s tokenizer.bpe (kept in the output's _work folder)."""
    folder = os.path.dirname(os.path.abspath(token_path))
    for cand in (os.path.join(folder, "tokenizer.model"), os.path.join(folder, "tokenizer.bpe"),
                 os.path.join(folder, "_work", "tokenizer.bpe"),
                 os.path.join(os.path.dirname(folder), "_work", "tokenizer.bpe")):
        if os.path.isfile(cand):
            return cand
    return None


def tokenize_sources(specs, docs, tokenizer, out_dir):
    """Encode each text source's documents (docs: [[str]], one list per spec) with `tokenizer` into
    out_dir/<k>-<name>.bin. Special-token strings in the text stay plain text; documents are
    separated by <|endoftext|> when the tokenizer has it, as the data pipeline's tokenize stage does.
    -> [token file path]."""
    os.makedirs(out_dir, exist_ok=True)
    encode = getattr(tokenizer, "encode_ordinary", tokenizer.encode)
    eot = (getattr(tokenizer, "special_tokens", None) or {}).get("<|endoftext|>")
    paths = []
    for k, (spec, texts) in enumerate(zip(specs, docs)):
        ids = []
        for text in texts:
            ids.extend(encode(text))
            if eot is not None:
                ids.append(eot)
        name = os.path.basename(os.path.normpath(spec.path)).split(".")[0] or "data"
        path = os.path.join(out_dir, f"{k}-{name}.bin")
        write_tokens(path, np.asarray(ids, dtype=np.int64), tokenizer.vocab_size)
        paths.append(path)
    return paths


def format_mixture(paths, weights):
    """The TrainConfig.train_data list: ["path:weight", ...]."""
    return [f"{p}:{w:g}" for p, w in zip(paths, weights)]
