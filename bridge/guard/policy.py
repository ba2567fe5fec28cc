"""What the guard allows, as pure functions over plain data.

Every member homeserver of a medical federation enforces the same rules, whoever asks
(an ordinary user, a server admin, or another homeserver over federation):

- only servers on the allow-list take part: no invitation, join or event from or to
  anyone else, and nothing new in a room shared with an outsider (leaving, removing
  people and deleting messages stay possible so such a room can be cleaned up);
- every room is end-to-end encrypted with Megolm; its encryption cannot be removed or
  changed, and no message-like (non-state) event travels in clear: only
  `m.room.encrypted` and redactions. Reactions, edits, polls and calls are encrypted
  by Element in encrypted rooms, so a plaintext one is refused too. Receipts and
  typing notifications are not room events and are not affected;
- rooms are invite-only ("invite" or "restricted" join rules; "public" and the
  knocking rules are refused because they advertise the room and its name to
  strangers), without guest access, with history never readable by everyone, and
  never published in the room directory; no invitation by e-mail or phone number;
- no patient identifier in what Matrix does not encrypt: room name, topic, addresses
  (aliases) and redaction reasons.

A refusal carries a stable rule id (for logs and clients) and a message in English
and French that tells a doctor what to do instead. Messages never repeat the
offending content.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.guard.allowlist import AllowList, server_of
from bridge.guard.identifiers import NamedPattern, find_patient_identifier

MEGOLM = "m.megolm.v1.aes-sha2"
ALLOWED_JOIN_RULES = frozenset({"invite", "restricted"})
ALLOWED_HISTORY_VISIBILITY = frozenset({"invited", "joined", "shared"})
# Memberships that bring someone (or their server) into a room.
ENTERING_MEMBERSHIPS = frozenset({"invite", "join", "knock"})
# Encrypted content that says more than this is leaking something in clear.
_CLEAR_FIELDS_IN_ENCRYPTED = ("body", "formatted_body")

# State whose text is shown to people and travels unencrypted: what it is called.
_SCANNED_STATE = {
    "m.room.name": ("name", "nom"),
    "m.room.topic": ("topic", "sujet"),
    "m.room.canonical_alias": ("address", "adresse"),
}


@dataclass(frozen=True)
class Refusal:
    """Why the guard refused something, for the person who tried."""

    rule: str
    english: str
    french: str

    @property
    def message(self) -> str:
        return f"{self.english} / {self.french}"


@dataclass(frozen=True)
class EventFacts:
    """The parts of a Matrix event the policy looks at."""

    type: str
    sender: str
    content: Mapping[str, Any]
    state_key: str | None = None


@dataclass(frozen=True)
class RoomFacts:
    """The parts of a room's current state the policy looks at."""

    encryption_algorithm: str | None
    participant_servers: frozenset[str]


def outsider(server: str | None) -> Refusal:
    name = server or "an unknown server"
    return Refusal(
        "server_not_allowed",
        f"{name} is not a member of this medical federation: no invitations, joins or "
        "messages with it.",
        f"{name} ne fait pas partie de cette fédération médicale : ni invitation, ni "
        "entrée, ni message avec ce serveur.",
    )


def shared_with_outsider(server: str) -> Refusal:
    return Refusal(
        "room_shared_with_outsider",
        f"This room includes {server}, which is not a member of this medical federation: "
        "you can only leave, remove people or delete messages here.",
        f"Ce salon inclut {server}, qui ne fait pas partie de cette fédération médicale : "
        "vous pouvez seulement le quitter, en retirer des personnes ou supprimer des messages.",
    )


NOT_MEGOLM = Refusal(
    "encryption_required",
    f"Rooms must be end-to-end encrypted ({MEGOLM}); this encryption cannot be removed or changed.",
    f"Les salons doivent être chiffrés de bout en bout ({MEGOLM}) ; ce chiffrement ne peut "
    "être ni retiré ni changé.",
)
ROOM_NOT_ENCRYPTED = Refusal(
    "room_not_encrypted",
    "This room is not end-to-end encrypted, so nothing can be sent in it.",
    "Ce salon n'est pas chiffré de bout en bout : rien ne peut y être envoyé.",
)
GUEST_ACCESS = Refusal(
    "guest_access_forbidden",
    "Guest access is not allowed: rooms are for registered practitioners only.",
    "L'accès invité est interdit : les salons sont réservés aux praticiens inscrits.",
)
PUBLISHED = Refusal(
    "directory_forbidden",
    "Rooms cannot be published in the room directory.",
    "Les salons ne peuvent pas être publiés dans l'annuaire des salons.",
)
THIRD_PARTY_INVITE = Refusal(
    "third_party_invite_forbidden",
    "Invitations by e-mail or phone number are not allowed: invite the person's Matrix account.",
    "Les invitations par e-mail ou téléphone sont interdites : invitez le compte Matrix de "
    "la personne.",
)


def plaintext(event_type: str) -> Refusal:
    return Refusal(
        "plaintext_forbidden",
        f"Messages must be end-to-end encrypted; this {event_type} event would travel in "
        "clear. Check that your client has encryption set up.",
        f"Les messages doivent être chiffrés de bout en bout ; cet évènement {event_type} "
        "partirait en clair. Vérifiez que le chiffrement est actif dans votre application.",
    )


def join_rule(rule: object) -> Refusal:
    return Refusal(
        "join_rule_forbidden",
        f"Rooms are invite-only: the join rule {rule!r} is not allowed.",
        f"Les salons sont sur invitation uniquement : la règle d'accès {rule!r} est interdite.",
    )


def history_visibility(value: object) -> Refusal:
    return Refusal(
        "history_visibility_forbidden",
        f"Room history cannot be made visible to everyone ({value!r} is not allowed).",
        f"L'historique d'un salon ne peut pas être visible par tous ({value!r} est interdit).",
    )


def patient_identifier(kind: str, field: tuple[str, str]) -> Refusal:
    return Refusal(
        "patient_identifier",
        f"A patient identifier ({kind}) was recognised in the room {field[0]}. Room names, "
        "topics and addresses are not encrypted: use a pseudonym.",
        f"Un identifiant de patient ({kind}) a été reconnu dans : {field[1]} du salon. Les "
        "noms, sujets et adresses de salon ne sont pas chiffrés : utilisez un pseudonyme.",
    )


def _strings(value: object, depth: int = 0) -> Iterable[str]:
    """Every string inside a JSON value (bounded depth: content is at most 64 KiB)."""
    if isinstance(value, str):
        yield value
    elif depth < 8 and isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item, depth + 1)
    elif depth < 8 and isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item, depth + 1)


def scan(value: object, field: tuple[str, str], extra: Sequence[NamedPattern]) -> Refusal | None:
    """Refuse if any text inside ``value`` holds a patient identifier."""
    for text in _strings(value):
        kind = find_patient_identifier(text, tuple(extra))
        if kind is not None:
            return patient_identifier(kind, field)
    return None


def _is_self_leave(event: EventFacts) -> bool:
    return (
        event.type == "m.room.member"
        and event.content.get("membership") == "leave"
        and event.state_key == event.sender
    )


def _is_cleanup(event: EventFacts) -> bool:
    """Leaving, kicking, banning and redacting shrink exposure: always welcome."""
    if event.type == "m.room.redaction":
        return True
    return event.type == "m.room.member" and event.content.get("membership") in ("leave", "ban")


def _check_state(
    event: EventFacts, allow: AllowList, extra: Sequence[NamedPattern]
) -> Refusal | None:
    content = event.content
    if event.type == "m.room.member":
        if "third_party_invite" in content:
            return THIRD_PARTY_INVITE
        target = event.state_key or ""
        if content.get("membership") in ENTERING_MEMBERSHIPS and not allow.allows_user(target):
            return outsider(server_of(target))
        return None
    if event.type == "m.room.third_party_invite":
        return THIRD_PARTY_INVITE
    if event.type == "m.room.encryption":
        return None if content.get("algorithm") == MEGOLM else NOT_MEGOLM
    if event.type == "m.room.join_rules":
        rule = content.get("join_rule")
        return None if rule in ALLOWED_JOIN_RULES else join_rule(rule)
    if event.type == "m.room.guest_access":
        return None if content.get("guest_access") == "forbidden" else GUEST_ACCESS
    if event.type == "m.room.history_visibility":
        value = content.get("history_visibility")
        return None if value in ALLOWED_HISTORY_VISIBILITY else history_visibility(value)
    field = _SCANNED_STATE.get(event.type)
    return scan(content, field, extra) if field is not None else None


def _check_message(event: EventFacts, extra: Sequence[NamedPattern]) -> Refusal | None:
    content = event.content
    if event.type == "m.room.redaction":
        return scan(content.get("reason"), ("redaction reason", "motif de suppression"), extra)
    if event.type != "m.room.encrypted":
        return plaintext(event.type)
    if content.get("algorithm") != MEGOLM:
        return NOT_MEGOLM
    ciphertext = content.get("ciphertext")
    if not isinstance(ciphertext, str) or not ciphertext:
        return plaintext(event.type)
    if any(name in content for name in _CLEAR_FIELDS_IN_ENCRYPTED):
        return plaintext(event.type)
    return None


def check_event(
    event: EventFacts, allow: AllowList, extra: Sequence[NamedPattern] = ()
) -> Refusal | None:
    """The rules that need nothing but the event itself.

    Used for events arriving over federation (where Synapse gives the module no room
    state) and as the first half of `check_event_in_room`.
    """
    if not allow.allows_user(event.sender) and not _is_self_leave(event):
        return outsider(server_of(event.sender))
    if event.state_key is not None:
        return _check_state(event, allow, extra)
    return _check_message(event, extra)


def check_event_in_room(
    event: EventFacts, room: RoomFacts, allow: AllowList, extra: Sequence[NamedPattern] = ()
) -> Refusal | None:
    """All rules, for an event about to enter a room whose state is known."""
    refusal = check_event(event, allow, extra)
    if refusal is not None or _is_cleanup(event):
        return refusal
    for server in sorted(room.participant_servers):
        if not allow.allows(server):
            return shared_with_outsider(server)
    if event.state_key is None and room.encryption_algorithm != MEGOLM:
        return ROOM_NOT_ENCRYPTED
    return None


def room_facts(state: Iterable[EventFacts]) -> RoomFacts:
    """Summarise a room's state: its encryption and every server that takes part."""
    algorithm: str | None = None
    servers: set[str] = set()
    for event in state:
        if event.type == "m.room.encryption" and event.state_key == "":
            found = event.content.get("algorithm")
            algorithm = found if isinstance(found, str) else None
        elif event.type == "m.room.create" and event.state_key == "":
            creators = [event.sender, *_str_list(event.content.get("additional_creators"))]
            servers.update(s for s in map(server_of, creators) if s is not None)
        elif (
            event.type == "m.room.member"
            and event.state_key is not None
            and event.content.get("membership") in ENTERING_MEMBERSHIPS
        ):
            server = server_of(event.state_key)
            servers.add(server if server is not None else event.state_key)
    return RoomFacts(algorithm, frozenset(servers))


def _str_list(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def check_invite(inviter: str, invitee: str, allow: AllowList) -> Refusal | None:
    for user in (inviter, invitee):
        if not allow.allows_user(user):
            return outsider(server_of(user))
    return None


def check_join(user_id: str, room_id: str, allow: AllowList) -> Refusal | None:
    """A join: the user's server and, when the room id names one, the room's server."""
    if not allow.allows_user(user_id):
        return outsider(server_of(user_id))
    room_server = server_of(room_id)
    if room_server is not None and not allow.allows(room_server):
        return outsider(room_server)
    return None


def check_alias(alias: str, extra: Sequence[NamedPattern] = ()) -> Refusal | None:
    localpart = alias.partition(":")[0]
    return scan(localpart, _SCANNED_STATE["m.room.canonical_alias"], extra)
