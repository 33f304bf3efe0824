"""The `minillm` command. Each subcommand lives in the module that owns the feature and exposes
`register(subparsers)`, which adds its parser and sets `func`; this file is only the table."""
import argparse
import importlib
import sys

# subcommand -> module providing register(subparsers)
COMMANDS = {
    "train": "minillm.train",
    "generate": "minillm.inference.cli",
    "chat": "minillm.inference.cli",
    "tokenizer": "minillm.tokenizer.cli",
    "data": "minillm.data.cli",
    "quantize": "minillm.quant.cli",
    "sft": "minillm.align.cli",
    "rag": "minillm.reasoning.cli",
    "plan": "minillm.scaling",
    "serve": "minillm.serve.cli",
}


def build_parser():
    parser = argparse.ArgumentParser(prog="minillm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    done = set()
    for module_name in dict.fromkeys(COMMANDS.values()):
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            if e.name is not None and module_name.startswith(e.name):
                continue  # that part of minillm is not in this checkout
            raise
        if hasattr(module, "register") and module_name not in done:
            module.register(sub)
            done.add(module_name)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
