"""How every `caducee` command ends: one line on stderr and one of three exit statuses.

- 0: done.
- 1: the command was understood but the operation failed (a database, a homeserver or a file
  it had to use refused, the data was rejected, nothing to do where something was expected).
- 2: usage or configuration error: a wrong argument or option, or a configuration or settings
  file that is missing or invalid. Fix the command line or the file and run it again.

Errors read ``Error: <what is wrong>``, never a traceback.
"""

from __future__ import annotations

import typer

EXIT_FAILED = 1
EXIT_USAGE = 2


def fail(message: str, status: int = EXIT_FAILED) -> typer.Exit:
    """Print `message` as the command's one error line; raise the returned exit."""
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(status)


def usage_error(message: str) -> typer.Exit:
    """`fail` with the usage and configuration status (2)."""
    return fail(message, EXIT_USAGE)


def os_reason(exc: BaseException) -> str:
    """An operating-system error in a few words (`File name too long`), without the path."""
    if isinstance(exc, UnicodeError):
        return "not valid UTF-8"
    strerror = getattr(exc, "strerror", None)
    return str(strerror) if strerror else type(exc).__name__


def first_non_utf8(args: list[str]) -> str | None:
    """The first argument holding a byte that is not UTF-8 (shown escaped), if any."""
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return arg.encode("utf-8", "backslashreplace").decode("ascii", "replace")
    return None
