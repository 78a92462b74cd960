"""Error classes shared by the library and every entry point, each with its CLI exit code.

=========================  =========  =====================================================
class                      exit code  meaning
=========================  =========  =====================================================
:class:`UsageError`        2          a bad option value or output path (fix the command)
:class:`InputError`        3          an input file or data set is missing, unreadable or
                                      malformed (fix or rebuild the input)
:class:`EnvironmentProblem` 4         the machine refuses: permissions, read-only or full
                                      disk, missing package or device, out of memory
=========================  =========  =====================================================

All are :class:`ValueError` subclasses except :class:`EnvironmentProblem` (an :class:`OSError`),
so ``except ValueError`` keeps working for callers of the library. The mapping of other
exceptions to exit codes is :func:`hashlab.commands.errors.exit_code_for`.
"""

from __future__ import annotations

__all__ = [
    "UsageError",
    "InputError",
    "EnvironmentProblem",
    "DeviceUnavailable",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_INPUT",
    "EXIT_ENVIRONMENT",
    "EXIT_INTERRUPTED",
    "EXIT_INTERNAL",
]

EXIT_OK = 0
EXIT_FAILED = 1  # a check ran and failed (hashlab check)
EXIT_USAGE = 2  # argparse's own code for bad arguments
EXIT_INPUT = 3
EXIT_ENVIRONMENT = 4
EXIT_INTERNAL = 70  # a bug (BSD sysexits EX_SOFTWARE): the traceback is shown
EXIT_INTERRUPTED = 130  # Ctrl-C


class UsageError(ValueError):
    """A command-line value or an output path is unusable; the message says what to pass instead."""

    exit_code = EXIT_USAGE


class InputError(ValueError):
    """An input file or data set is missing, unreadable or malformed; the message names it."""

    exit_code = EXIT_INPUT


class EnvironmentProblem(OSError):
    """The environment refuses the work (permission, read-only or full disk, missing device or package)."""

    exit_code = EXIT_ENVIRONMENT


class DeviceUnavailable(EnvironmentProblem, ValueError):
    """A requested compute device (CUDA, MPS) is not available here; also a ValueError, as before."""
