"""The `minillm` command: every stage of a language model system, from scratch, on a CPU.

Each subcommand is a module of this package exposing
`register(subparsers)`, which adds its parser and sets `func`; this file is only the table.
Command-line code lives here and nowhere else, and nothing in minillm imports this package."""
import argparse

from . import chat, data, generate, imatrix, plan, quantize, rag, serve, sft, tokenizer, train

# subcommand -> module providing register(subparsers)
COMMANDS = {
    "train": train,
    "generate": generate,
    "chat": chat,
    "tokenizer": tokenizer,
    "data": data,
    "quantize": quantize,
    "imatrix": imatrix,
    "sft": sft,
    "rag": rag,
    "plan": plan,
    "serve": serve,
}


def build_parser():
    parser = argparse.ArgumentParser(prog="minillm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        module.register(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args) or 0

