"""The `minillm` command: every stage of a language model system, from scratch, on a CPU.

Each subcommand is a module of this package exposing
`register(subparsers)`, which adds its parser and sets `func`; this file is only the table, plus
the one place errors are turned into a single line: `minillm CMD: error: ...` with exit code 2 for
a command line that cannot work and 1 for a failure while running (a missing or damaged file, ...).
`--debug` (or MINILLM_DEBUG=1) shows the traceback instead.
Command-line code lives here and nowhere else, and nothing in minillm imports this package."""
import argparse
import os
import sys

from . import chat, data, generate, imatrix, plan, quantize, rag, serve, sft, tokenizer, train
from .args import DefaultsFormatter, Parser, UsageError, has_default

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

EPILOG = ("Start with `minillm train` (a small model on CPython's docs, resumable), then "
          "`minillm generate --prompt TEXT`. `minillm COMMAND --help` shows each command's options "
          "and defaults; README.md walks through all of them.")
# exceptions a user's input or environment causes: their message is the whole story
USER_ERRORS = (ValueError, TypeError, OSError, RuntimeError, ImportError, MemoryError, KeyError,
               UnicodeError, OverflowError)


def _walk(parser):
    """Every parser below `parser` (nested subcommands included), parser first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _walk(child)


def build_parser():
    parser = Parser(prog="minillm", description=__doc__.splitlines()[0], epilog=EPILOG)
    # the package root is always loaded before its cli subpackage; read its version from there
    version = sys.modules[__package__.rpartition(".")[0]].__version__
    parser.add_argument("--version", action="version", version=f"minillm {version}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback on errors (also: MINILLM_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMANDS.values():
        module.register(sub)
    for p in _walk(parser):
        p.set_defaults(_prog=p.prog)           # the deepest command parsed names itself in errors
        if p is not parser:
            p.formatter_class = DefaultsFormatter
        for action in p._actions:              # options without help text still show their default
            if action.help is None and action.option_strings and has_default(action):
                action.help = " "
    return parser


def describe(e):
    """One line for an exception: its message (OSError: 'path: reason'), newlines folded."""
    if isinstance(e, OSError) and e.strerror:
        msg = f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    elif isinstance(e, KeyError) and len(e.args) == 1:
        msg = f"missing key {e.args[0]!r}"
    else:
        msg = str(e) or type(e).__name__
    if not isinstance(e, (ValueError, OSError)):
        msg = f"{type(e).__name__}: {msg}"
    return " ".join(msg.split())


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:                # named by the subcommand they were given to, not by `minillm`
            parsers = {p.prog: p for p in _walk(parser)}
            parsers[getattr(args, "_prog", parser.prog)].error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:      # a usage error (already printed in one line), --help or --version
        return e.code
    debug = args.debug or os.environ.get("MINILLM_DEBUG", "") not in ("", "0")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    prog = args._prog
    try:
        return args.func(args) or 0
    except KeyboardInterrupt as e:
        if debug:
            raise
        sys.stderr.write(f"\n{prog}: {str(e) or 'interrupted'}\n")
        return 130
    except BrokenPipeError:          # `minillm ... | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except Exception as e:
        if debug:
            raise
        hint = "" if isinstance(e, USER_ERRORS) else " (a bug? re-run with --debug and report the traceback)"
        sys.stderr.write(f"{prog}: error: {describe(e)}{hint}\n")
        return 2 if isinstance(e, UsageError) else 1
