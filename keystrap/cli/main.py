"""``keystrap``: one command, one subcommand per task.

Each subcommand is a module of this package, listed in
:data:`keystrap.cli.commands.COMMANDS`; this module only builds the parser
from that table, dispatches, and turns every failure into one line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import signal
import sqlite3
import sys
from collections.abc import Sequence
from typing import NoReturn

from keystrap import __version__
from keystrap.cli.commands import COMMANDS
from keystrap.config import ConfigError
from keystrap.extras import MissingExtra
from keystrap.oob import OobError
from keystrap.services.instance import AlreadyRunning
from keystrap.shown import escaped
from keystrap.store.errors import StoreError
from keystrap.store.sqlite import BUSY_HINT, busy


class UsageError(Exception):
    """A command line argparse refused; its message is argparse's."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is a :class:`UsageError` like any other
    input error -- one line, status 2 -- instead of a usage screen on stderr.
    (Subparsers are made of the same class.)"""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = Parser(
        prog="keystrap",
        description="Secure bootstrapping for the Internet of small things "
        "(Kang's PSK reconfiguration scheme).",
    )
    parser.add_argument("--version", action="version", version=f"keystrap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


TYPED_ERRORS = (
    UsageError,
    ConfigError,
    StoreError,
    OobError,
    ValueError,
    AlreadyRunning,
    MissingExtra,
)
EXIT_ERROR = 2
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a reader that went away
EXIT_INTERRUPTED = 128 + signal.SIGINT


def main(argv: Sequence[str] | None = None) -> int:
    """Every failure ends here as one line on stderr and status 2, never a traceback.

    The typed errors carry a message written where the problem was found; an
    OSError or SQLite error that escaped them still gets one line naming the
    file or the database, so an unforeseen condition is a message too.
    """
    command = "keystrap"
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(words)
        command = f"keystrap {args.command}"
        status = _run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
        return status
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except UsageError as exc:
        message = f"{exc}{_read_as_options(parser, words, str(exc))}"
    except TYPED_ERRORS as exc:
        message = str(exc)
    except OSError as exc:
        message = _os_error(exc)
    except sqlite3.DatabaseError as exc:
        # A store another process holds is not damaged: say so, as opening it does.
        message = f"database error: {exc}" + (f": {BUSY_HINT}" if busy(exc) else "")
    except Exception as exc:
        if not isinstance(exc, network_errors()):
            raise
        message = str(exc)
    print(f"{command}: error: {_one_line(message)}", file=sys.stderr)
    return EXIT_ERROR


def network_errors() -> tuple[type[Exception], ...]:
    """The typed errors of the CoAP layer. They are looked up only if a command
    loaded that layer: importing it imports aiocoap, which would add a sixth of a
    second to every command that never goes on the network -- and an error
    whose module was never imported cannot have been raised."""
    if "keystrap.coap" not in sys.modules:
        return ()
    from keystrap.coap.client import ServerUnresolvable
    from keystrap.coap.node_client import NodeRefused, NodeUnreachable
    from keystrap.coap.server import BindError

    return (NodeUnreachable, NodeRefused, BindError, ServerUnresolvable)


def _os_error(exc: OSError) -> str:
    what = exc.strerror or str(exc) or type(exc).__name__
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{what}: {' -> '.join(names)}" if names else what


_NUMBER = re.compile(r"-\d+(\.\d*)?|-\.\d+")


def _read_as_options(parser: argparse.ArgumentParser, words: list[str], message: str) -> str:
    """argparse takes a word that starts with '-' for an option. When one was
    meant as a value, its message ("the following arguments are required: id")
    names nothing that was typed: name those words, and the way out."""
    if "--" in words:
        words = words[: words.index("--")]
    known = _option_strings(parser)
    odd = [
        word
        for word in words
        if word.startswith("-")
        and word != "-"
        and not _NUMBER.fullmatch(word)
        and not any(option.startswith(word.split("=", 1)[0]) for option in known)
        and word not in message
    ]
    if not odd:
        return ""
    return f"; {', '.join(odd)} taken for an option: put -- before a value that starts with '-'"


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    found: set[str] = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                found |= _option_strings(command)
    return found


def _one_line(text: str) -> str:
    """Control characters (a newline in a file name, say) shown escaped."""
    return escaped(text) or "failed"


def _discard_stdout() -> None:
    """The reader of our output went away: point stdout at /dev/null so the
    interpreter's final flush has nowhere to fail (Python's documented recipe)."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _run(args: argparse.Namespace) -> int:
    return COMMANDS[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
