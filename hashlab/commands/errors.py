"""One error line and a distinct exit code for every user error; the traceback only with ``--debug``.

Exit codes (also in docs/CLI.md): 0 success, 1 a check ran and failed, 2 usage (bad option or
value, unusable output path), 3 input (missing, unreadable or malformed input file or data set),
4 environment (permission, read-only or full disk, out of memory, missing package or device),
70 internal error (a bug: the traceback is printed), 130 interrupted.

Any entry point uses it as::

    def main(argv=None) -> int: ...           # parses argv, may raise
    if __name__ == "__main__":
        sys.exit(run_cli(main, prog="python -m analysis.reproduce"))
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence

from ..configs import is_int
from ..io.errors import (
    EXIT_ENVIRONMENT,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    EnvironmentProblem,
    InputError,
    UsageError,
)

__all__ = ["run_cli", "exit_code_for", "add_debug_flag", "UsageError", "InputError", "EnvironmentProblem"]

DEBUG_FLAG = "--debug"


def exit_code_for(exc: BaseException) -> int | None:
    """Exit code of a user / environment error, or None for an unexpected exception (a bug)."""
    code = getattr(exc, "exit_code", None)
    if is_int(code):
        return code
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return EXIT_INPUT
    if isinstance(exc, (OSError, MemoryError, ImportError)):
        return EXIT_ENVIRONMENT
    if isinstance(exc, ValueError):  # SpecError, ConfigError and other bad values
        return EXIT_USAGE
    return None


def _message(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return f"out of memory ({exc or 'allocation failed'}); use smaller sizes or a machine with more memory"
    if isinstance(exc, ImportError):
        return f"missing package: {exc}; install it (pip install 'hashlab[torch]' for training)"
    if isinstance(exc, EnvironmentProblem) and exc.strerror:
        return exc.strerror
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def add_debug_flag(parser) -> None:
    """Declare ``--debug`` on an argparse parser (for ``--help``; :func:`run_cli` consumes it)."""
    parser.add_argument(DEBUG_FLAG, action="store_true", help="show the Python traceback of an error")


def run_cli(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None, prog: str = "hashlab") -> int:
    """Run ``main(argv)`` and turn exceptions into one stderr line and an exit code.

    ``--debug`` anywhere in ``argv`` is removed before ``main`` sees it and makes every error
    print its traceback too. argparse's own errors exit 2 as usual (``SystemExit`` passes).

    Returns:
        The exit code: ``main``'s return value (None -> 0), or :func:`exit_code_for` of the error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - this is the one place that classifies them
        code = exit_code_for(e)
        if code is None:
            traceback.print_exc()
            print(
                f"{prog}: internal error (a bug, please report it with the traceback above): {type(e).__name__}: {e}",
                file=sys.stderr,
            )
            return EXIT_INTERNAL
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {_message(e)}", file=sys.stderr)
        return code
