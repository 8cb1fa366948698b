"""What every evit command line shares: the help format, the error exit, deprecated spellings.

The CLI modules (``toolkit/cli/``) import this, never each other.

>>> p = argparse.ArgumentParser(prog="evit-x", formatter_class=HelpFormatter)
>>> deprecated_option(p, "--old", "--new")          # --old still works, with a note
>>> try: ...; except KnownErrors as e: return fail("evit-x", e)
"""

from __future__ import annotations

import argparse
import sys
import warnings

__all__ = ["HelpFormatter", "fail", "deprecated_option", "say"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring kept as written; each option's default shown once, and only when
    it says something (not for flags, empty values, or help that already names it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if ("default" in text or "%(default)" in text or d is None or d is argparse.SUPPRESS
                or d is False or d == "" or d == [] or action.nargs == 0):
            return text
        shown = " ".join(map(str, d)) if isinstance(d, (list, tuple)) else "%(default)s"
        return f"{text} (default: {shown})" if text else f"default: {shown}"


def fail(prog: str, error: BaseException | str, code: int = 2) -> int:
    """Print ``prog: error: message`` on stderr and return the exit code (2: bad input)."""
    msg = error.args[0] if isinstance(error, KeyError) and error.args else error
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return code


def say(message: str) -> None:
    """A progress or status line: stderr, so stdout stays for results (``--json``)."""
    print(message, file=sys.stderr, flush=True)


class _Deprecated(argparse.Action):
    def __init__(self, option_strings, dest, new: str = "", **kw):
        self.new = new
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: note: {option_string} is deprecated and will be removed in the "
              f"next release; use {self.new}", file=sys.stderr)
        warnings.warn(f"{option_string} is deprecated; use {self.new}", DeprecationWarning,
                      stacklevel=2)
        setattr(namespace, self.dest, values if self.nargs != 0 else True)


def deprecated_option(parser: argparse.ArgumentParser, old: str, new: str, dest: str,
                      **kw) -> None:
    """``old`` keeps working for one release as a hidden spelling of ``new`` (same ``dest``),
    with a note on stderr when used."""
    parser.add_argument(old, dest=dest, action=_Deprecated, new=new, help=argparse.SUPPRESS,
                        default=argparse.SUPPRESS, **kw)
