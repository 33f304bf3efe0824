"""Argument types and errors shared by the subcommands: every option is checked when it is parsed,
so a bad value ends the command with one line naming the option, the expected and the given value
(`minillm train: error: argument --grad-accum: expected an int >= 1, got 0`, exit code 2)."""
import argparse
import math
import os


class UsageError(ValueError):
    """A command line that cannot work (exit code 2), found after parsing (e.g. two options that
    exclude each other, a --run folder without a checkpoint)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line `minillm CMD: error: ...` (exit 2), not the usage
    block followed by the message."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows every option's default (argparse's ArgumentDefaultsHelpFormatter skips the
    options without help text and prints 'default: None' for the unset ones)."""

    def _get_help_string(self, action):
        help = action.help or ""
        if "%(default)" not in help and action.option_strings and has_default(action):
            help += " (default: %(default)s)"
        return help.strip()


def has_default(action):
    return action.default not in (None, False, argparse.SUPPRESS) and action.default != []


def _number(kind, lo=None, hi=None, lo_open=False, hi_open=False):
    """An argparse type: `kind` (int or float) within [lo, hi] (open ends where asked), finite."""
    name = "an int" if kind is int else "a number"
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    expected = f"{name} {' and '.join(parts)}".strip()

    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            if kind is int:   # 1e9 is an int to a person: accept integral floats, say so otherwise
                try:
                    f = float(text)
                except ValueError:
                    f = math.nan
                if math.isfinite(f) and f == int(f):
                    v = int(f)
                else:
                    raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
            else:
                raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        bad = (not math.isfinite(v) or (lo is not None and (v <= lo if lo_open else v < lo))
               or (hi is not None and (v >= hi if hi_open else v > hi)))
        if bad:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return v
    parse.__name__ = expected   # argparse names the type in some messages
    return parse


positive_int = _number(int, 1)
nonneg_int = _number(int, 0)
positive_float = _number(float, 0, lo_open=True)
nonneg_float = _number(float, 0)
finite_float = _number(float)
probability = _number(float, 0, 1)                       # [0, 1]
open_probability = _number(float, 0, 1, lo_open=True)    # (0, 1]
fraction = _number(float, 0, 1, hi_open=True)            # [0, 1)
port = _number(int, 1, 65535)


def seed(text):
    """A random seed: an int in [0, 2**32)."""
    return _number(int, 0, 2**32 - 1)(text)


def existing_file(text):
    """A path that must be an existing regular file."""
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a folder, expected a file")
    return text


def existing_path(text):
    """A file or folder that must exist."""
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"no such file or folder: {text}")
    return text


def existing_folder(text):
    """A path that must be an existing folder."""
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"no such folder: {text}")
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a file, expected a folder")
    return text


def output_file(text):
    """A file to write: not an existing folder, and its folder must exist or be creatable."""
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a folder, expected a file name")
    return text


def output_folder(text):
    """A folder to write: not an existing file."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a file, expected a folder")
    return text
