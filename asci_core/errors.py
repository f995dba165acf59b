"""The root of every expected failure, and the exit codes `asci` ends with.

An expected failure (bad input, a service that does not answer, a refused
operation) is an `AsciError`: `asci` prints its message as one line on stderr
and exits with its `exit_code`. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1        # the command ran and failed: a service down or refusing, an operation that did not succeed
EXIT_USAGE = 2         # bad command line, configuration or input (a malformed name, an unknown user, ...)
EXIT_PART_DOWN = 3     # `asci stack status`: a part of the stack is down
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (`asci config help | head`), as for any Unix tool

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_FAILED: "runtime failure: a service down or refusing, an operation that did not succeed",
    EXIT_USAGE: "usage or configuration error: bad arguments, configuration or input",
    EXIT_PART_DOWN: "`asci stack status`: at least one part is down",
    EXIT_INTERRUPTED: "interrupted (SIGINT)",
    EXIT_BROKEN_PIPE: "stdout closed by its reader (e.g. `| head`); nothing printed on stderr",
}


class AsciError(Exception):
    """An expected failure: one line for the person at the terminal and an exit code."""

    exit_code: int = EXIT_FAILED

    def one_line(self) -> str:
        """The message `asci` prints after its prefix; never more than one line."""
        text = str(self) or type(self).__name__
        return "; ".join(line.strip() for line in text.splitlines() if line.strip())


class UsageError(AsciError):
    """The person asked for something malformed or impossible as stated."""

    exit_code = EXIT_USAGE
