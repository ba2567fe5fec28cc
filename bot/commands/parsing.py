"""Turning a message body into a command name and arguments. Pure: no I/O, no state.

Doctors type on phones: quotes may be straight or typographic (“ ” « » ‘ ’), a quote may be
left open, words may be separated by several spaces or non-breaking spaces. The tokeniser
accepts all of that; only the commands decide what their arguments mean.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "!"

# Opening quote -> the quote that closes it. Typographic quotes pair with their mirror.
_QUOTES: dict[str, str] = {'"': '"', "'": "'", "“": "”", "«": "»", "„": "“", "‘": "’"}
_SPACES = frozenset(" \t\n\r\u00a0\u202f\u2009")


class ArgumentError(ValueError):
    """The arguments do not fit the command. `message` is user-facing (FR / EN)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def tokenize(text: str) -> list[str]:
    """Split ``text`` into words, keeping quoted passages together.

    Unlike `shlex.split`, an unterminated quote does not raise: it runs to the end of the
    text. Backslashes are ordinary characters (Matrix IDs and labels never need escaping).
    Apostrophes inside a word (``l'hôpital``) are kept as letters; a quote only opens at the
    start of a word.
    """
    tokens: list[str] = []
    current: list[str] = []
    in_token = False
    closing: str | None = None
    for ch in text:
        if closing is not None:
            if ch == closing or (closing == "”" and ch == '"'):
                closing = None
            else:
                current.append(ch)
            continue
        if ch in _SPACES:
            if in_token:
                tokens.append("".join(current))
                current, in_token = [], False
            continue
        if not in_token and ch in _QUOTES:
            closing = _QUOTES[ch]
            in_token = True
            continue
        current.append(ch)
        in_token = True
    if in_token:
        tokens.append("".join(current))
    return tokens


@dataclass(frozen=True)
class CommandLine:
    """A message that addresses the bot: the words after the ``!`` prefix."""

    words: tuple[str, ...]


def parse_command_line(body: str) -> CommandLine | None:
    """The command words of ``body``, or None when the message is not for the bot.

    Only the first line counts (a command followed by a pasted reply quote still works); a
    message that does not start with ``!`` is ignored. ``!`` alone yields an empty command,
    which the dispatcher answers with a pointer to ``!help``.
    """
    stripped = body.lstrip()
    if not stripped.startswith(PREFIX):
        return None
    first_line = stripped[len(PREFIX) :].split("\n", 1)[0]
    words = tokenize(first_line)
    return CommandLine(tuple(words))
