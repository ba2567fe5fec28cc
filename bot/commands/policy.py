"""Pure decisions of the commands: who may run what, what an invitee reference means, whether a
case label and lifetime are acceptable. No I/O; every refusal carries a FR / EN message.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass

from bot.commands.context import CommandSettings
from bot.commands.parsing import ArgumentError
from bot.commands.registry import Permission
from bot.durations import DurationError, check_bounds, parse_duration
from bot.ids import UserId, server_of
from bot.store import CaseRoom
from bridge.common.api import MAX_QUERY_LENGTH
from bridge.guard.ids import is_valid_user_id

ROOM_ADMIN_LEVEL = 100
LABEL_MAX_CHARS = 64
QUERY_MAX_CHARS = MAX_QUERY_LENGTH  # what the bridge accepts

# Localparts: printable ASCII but ":" (historical ids included); server: host or [IPv6], port.
_REGISTER_NUMBER = re.compile(r"^(\d{11}|\d{9})$")
_TTL_PREFIX = "ttl="


@dataclass(frozen=True)
class MatrixRef:
    """An invitee given by Matrix ID."""

    user_id: UserId


@dataclass(frozen=True)
class RegisterRef:
    """An invitee given by RPPS (11 digits) or ADELI (9 digits) number."""

    number: str


WhoRef = MatrixRef | RegisterRef


def is_member_user(user_id: str, member_servers: Container[str]) -> bool:
    """Whether ``user_id`` belongs to a member homeserver of the federation."""
    return server_of(user_id) in member_servers


def may_run(
    permission: Permission,
    *,
    sender: UserId,
    case: CaseRoom | None,
    sender_power: int,
    member_servers: Container[str],
) -> str | None:
    """None if ``sender`` may run a command with ``permission``, else the refusal to show.

    ``sender_power`` is the sender's power level in the room (only looked at for case rooms).
    """
    if not is_member_user(sender, member_servers):
        return (
            "Cette commande est réservée aux praticiens des serveurs membres de la fédération. / "
            "This command is for practitioners of the federation's member servers."
        )
    if permission is Permission.MEMBER:
        return None
    if case is not None and (sender == case.creator or sender_power >= ROOM_ADMIN_LEVEL):
        return None
    return (
        "Seul le praticien qui a ouvert ce dossier ou un administrateur de la salle peut faire "
        "cela. / Only the practitioner who opened this case or a room admin can do that."
    )


def parse_who(token: str) -> WhoRef:
    """A Matrix ID (``@name:server``) or an RPPS / ADELI number; anything else is refused."""
    if token.startswith("@"):
        if is_valid_user_id(token):
            return MatrixRef(UserId(token))
        raise ArgumentError(
            f"« {token} » n'est pas un identifiant Matrix valide (forme @nom:serveur). / "
            f"“{token}” is not a valid Matrix ID (form @name:server)."
        )
    if _REGISTER_NUMBER.match(token):
        return RegisterRef(token)
    raise ArgumentError(
        f"« {token} » n'est ni un identifiant Matrix (@nom:serveur) ni un numéro RPPS "
        f"(11 chiffres). / “{token}” is neither a Matrix ID (@name:server) nor an RPPS "
        "number (11 digits)."
    )


def _looks_like_who(token: str) -> bool:
    return token.startswith("@") or bool(_REGISTER_NUMBER.match(token))


def parse_ttl(text: str, settings: CommandSettings) -> int:
    """A lifetime within the federation's bounds, in seconds (ArgumentError otherwise)."""
    try:
        seconds = parse_duration(text)
        return check_bounds(seconds, settings.min_ttl_seconds, settings.max_ttl_seconds)
    except DurationError as exc:
        raise ArgumentError(str(exc)) from exc


@dataclass(frozen=True)
class CaseNewArgs:
    label: str
    invitees: tuple[WhoRef, ...]
    ttl_seconds: int


def parse_case_new(args: Sequence[str], settings: CommandSettings) -> CaseNewArgs:
    """``<label words...> [who ...] [ttl=<duration>]``.

    The label is every word before the first invitee or ``ttl=`` (so quotes are optional);
    after it, each word must be an invitee or the one ``ttl=``.
    """
    label_words: list[str] = []
    invitees: list[WhoRef] = []
    ttl: int | None = None
    in_label = True
    for word in args:
        if word.lower().startswith(_TTL_PREFIX):
            if ttl is not None:
                raise ArgumentError("« ttl= » est donné deux fois. / “ttl=” is given twice.")
            ttl = parse_ttl(word[len(_TTL_PREFIX) :], settings)
            in_label = False
        elif in_label and not _looks_like_who(word):
            label_words.append(word)
        else:
            in_label = False
            ref = parse_who(word)
            if ref not in invitees:
                invitees.append(ref)
    label = " ".join(label_words).strip()
    if not label:
        raise ArgumentError("Il manque le libellé du dossier. / The case label is missing.")
    if len(invitees) > settings.max_invitees:
        raise ArgumentError(
            f"Au plus {settings.max_invitees} invités à la fois. / "
            f"At most {settings.max_invitees} invitees at once."
        )
    return CaseNewArgs(label, tuple(invitees), settings.default_ttl_seconds if ttl is None else ttl)


def parse_invitees(args: Sequence[str], settings: CommandSettings) -> tuple[WhoRef, ...]:
    """``<who> [who ...]``: at least one, at most ``max_invitees``, duplicates dropped."""
    if not args:
        raise ArgumentError("Qui inviter ? / Whom should I invite?")
    refs: list[WhoRef] = []
    for word in args:
        ref = parse_who(word)
        if ref not in refs:
            refs.append(ref)
    if len(refs) > settings.max_invitees:
        raise ArgumentError(
            f"Au plus {settings.max_invitees} invités à la fois. / "
            f"At most {settings.max_invitees} invitees at once."
        )
    return tuple(refs)


def parse_no_args(args: Sequence[str], settings: CommandSettings) -> None:
    if args:
        raise ArgumentError(
            "Cette commande ne prend pas d'argument. / This command takes no arguments."
        )


def parse_query(args: Sequence[str], settings: CommandSettings) -> str:
    """The search text, as typed (words joined by one space)."""
    query = " ".join(args).strip()
    if not query:
        raise ArgumentError("Que faut-il chercher ? / What should I search for?")
    if len(query) > QUERY_MAX_CHARS:
        raise ArgumentError(
            f"Recherche trop longue (au plus {QUERY_MAX_CHARS} caractères). / "
            f"Search too long (at most {QUERY_MAX_CHARS} characters)."
        )
    return query


def check_label(label: str, find_identifier: Callable[[str], str | None]) -> str:
    """The label to use as room name, or ArgumentError saying why it is refused.

    ``find_identifier`` is the guard's patient-identifier check (same rules on both sides);
    the refusal never repeats the label, since it may hold the identifier.
    """
    cleaned = unicodedata.normalize("NFC", " ".join(label.split()))
    if len(cleaned) > LABEL_MAX_CHARS:
        raise ArgumentError(
            f"Libellé trop long (au plus {LABEL_MAX_CHARS} caractères). / "
            f"Label too long (at most {LABEL_MAX_CHARS} characters)."
        )
    if any(unicodedata.category(ch).startswith("C") for ch in cleaned):
        raise ArgumentError(
            "Le libellé contient des caractères invisibles. / The label has invisible characters."
        )
    reason = find_identifier(cleaned)
    if reason is not None:
        raise ArgumentError(
            "Libellé refusé : il semble contenir un identifiant de patient "
            f"({reason}). Choisissez un libellé pseudonyme, par ex. « genou-droit-72 ». / "
            f"Label refused: it seems to contain a patient identifier ({reason}). "
            "Choose a pseudonymous label, e.g. “knee-right-72”."
        )
    return cleaned
