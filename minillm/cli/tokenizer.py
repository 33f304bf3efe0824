"""`minillm tokenizer train|encode|decode`.

    minillm tokenizer train corpus.txt --vocab-size 8192 --out tok.bpe            # BPE (C trainer)
    minillm tokenizer train corpus.txt --type unigram --vocab-size 4096 --out tok.unigram
    echo "Hello world" | minillm tokenizer encode --model tok.bpe                  # ids on stdout
    minillm tokenizer decode --model tok.bpe 72 105                                # text on stdout ("Hi")

--model also accepts a SentencePiece .model file. Training shows a progress bar on stderr.
"""
import sys

from ..tokenizer import BPETokenizer, UnigramTokenizer, bpe_io, patterns
from .args import UsageError, existing_file, open_probability, output_file, positive_int

BPE_FILE_PREFIX = bpe_io.MAGIC.split(" ")[0].encode()   # b"minillm-bpe", whatever the version


def load_any(path):
    """A BPE or Unigram tokenizer from any file format minillm reads, chosen by content."""
    with open(path, "rb") as f:
        head = f.read(len(BPE_FILE_PREFIX))
    return BPETokenizer.load(path) if head == BPE_FILE_PREFIX else UnigramTokenizer.load(path)


class ProgressBar:
    """`[#####.....]  512/8192 merges` redrawn in place on a stream."""

    def __init__(self, what, stream=None, width=30):
        # sys.stderr is looked up now, not at import: it may have been replaced since (e.g. captured)
        self.what, self.stream, self.width = what, stream or sys.stderr, width

    def __call__(self, done, total):
        filled = self.width * done // max(total, 1)
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {self.what}")
        self.stream.flush()

    def close(self):
        self.stream.write("\n")


def _train(args):
    texts = []
    for path in args.inputs:
        with open(path, encoding="utf-8", errors="replace") as f:
            texts.append(f.read())
    bar = ProgressBar("merges" if args.type == "bpe" else "pieces")
    if args.type == "bpe":
        tok = BPETokenizer.train(texts, args.vocab_size, pattern=args.pattern, special_tokens=args.special,
                                 progress=bar)
    else:
        tok = UnigramTokenizer.train(texts, args.vocab_size, special_tokens=args.special,
                                     split_digits=args.split_digits, character_coverage=args.character_coverage,
                                     progress=bar)
    bar.close()
    tok.save(args.out)
    print(f"wrote {args.out} ({tok.n_vocab} tokens)", file=sys.stderr)
    return 0


def _encode(args):
    tok = load_any(args.model)
    text = args.text if args.text is not None else sys.stdin.read()
    ids = tok.encode(text, allowed_special="all" if args.allow_special else frozenset())
    print(" ".join(map(str, ids)))
    return 0


def _decode(args):
    raw = args.ids if args.ids else sys.stdin.read().split()
    bad = [x for x in raw if not x.lstrip("-").isdigit()]
    if bad:
        raise UsageError(f"ids: expected integers, got {bad[0]!r}")
    tok = load_any(args.model)
    ids = [int(x) for x in raw]
    sys.stdout.write(tok.decode(ids))
    return 0


def register(subparsers):
    p = subparsers.add_parser("tokenizer", help="train, encode and decode with BPE / Unigram tokenizers")
    sub = p.add_subparsers(dest="tokenizer_command", metavar="{train,encode,decode}", required=True)

    t = sub.add_parser("train", help="train a tokenizer on text files")
    t.add_argument("inputs", nargs="+", type=existing_file, help="UTF-8 text files")
    t.add_argument("--type", choices=("bpe", "unigram"), default="bpe")
    t.add_argument("--vocab-size", type=positive_int, required=True, help="tokens in the vocabulary")
    t.add_argument("--pattern", default="cl100k", help=f"BPE pre-tokenizer: {sorted(patterns.NAMES)} or a regex")
    t.add_argument("--special", action="append", default=[], help="a special token (repeatable)")
    t.add_argument("--split-digits", action="store_true", help="unigram: every digit its own piece")
    t.add_argument("--character-coverage", type=open_probability, default=0.9995, help="unigram: required-character coverage")
    t.add_argument("--out", required=True, type=output_file, help="output file")
    t.set_defaults(func=_train)

    e = sub.add_parser("encode", help="text (argument or stdin) -> token ids")
    e.add_argument("--model", required=True, type=existing_file, help="tokenizer file (.bpe, .model, .tiktoken, ...)")
    e.add_argument("--text")
    e.add_argument("--allow-special", action="store_true", help="encode special-token strings as special tokens")
    e.set_defaults(func=_encode)

    d = sub.add_parser("decode", help="token ids (arguments or stdin) -> text")
    d.add_argument("--model", required=True, type=existing_file, help="tokenizer file (.bpe, .model, .tiktoken, ...)")
    d.add_argument("ids", nargs="*")
    d.set_defaults(func=_decode)
    return p
