"""Why the guard refuses: a stable rule id and a message in English and French.

Messages tell a doctor what to do instead and never repeat the offending content.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MEGOLM = "m.megolm.v1.aes-sha2"


@dataclass(frozen=True)
class Refusal:
    """Why the guard refused something, for the person who tried."""

    rule: str
    english: str
    french: str

    @property
    def message(self) -> str:
        return f"{self.english} / {self.french}"


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


MEDIA_IN_CLEAR = Refusal(
    "media_in_clear",
    "Files must be end-to-end encrypted (send them in an encrypted room); only a small "
    "picture (PNG, JPEG, GIF or WebP under 1 MiB, without text or metadata) may be "
    "uploaded in clear, as an avatar.",
    "Les fichiers doivent être chiffrés de bout en bout (envoyez-les dans un salon chiffré) ; "
    "seule une petite image (PNG, JPEG, GIF ou WebP de moins de 1 Mio, sans texte ni "
    "métadonnées) peut être envoyée en clair, comme avatar.",
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
        f"A patient identifier ({kind}) was recognised in the {field[0]}. Room names, "
        "topics, addresses, display names, reasons and reactions are not encrypted: use a "
        "pseudonym.",
        f"Un identifiant de patient ({kind}) a été reconnu dans : {field[1]}. Les noms, "
        "sujets et adresses de salon, noms affichés, motifs et réactions ne sont pas "
        "chiffrés : utilisez un pseudonyme.",
    )


def state_type_forbidden(event_type: str) -> Refusal:
    return Refusal(
        "state_type_forbidden",
        f"Room state of type {event_type!r} is not allowed: room state is not encrypted, so "
        "rooms only hold the settings Matrix and Element use.",
        f"L'état de salon de type {event_type!r} est interdit : l'état d'un salon n'est pas "
        "chiffré, les salons ne contiennent donc que les réglages utilisés par Matrix et "
        "Element.",
    )


def field_forbidden(event_type: str, names: Iterable[str]) -> Refusal:
    listed = ", ".join(repr(name[:64]) for name in sorted(names)[:3])
    return Refusal(
        "field_forbidden",
        f"This {event_type} event carries fields that would travel in clear ({listed}): "
        "they are not allowed.",
        f"Cet évènement {event_type} contient des champs qui partiraient en clair ({listed}) : "
        "ils sont interdits.",
    )


def fake_ciphertext(what: str) -> Refusal:
    return Refusal(
        "ciphertext_malformed",
        f"This encrypted event is not real Olm/Megolm ciphertext (its {what} is malformed), "
        "so its content could be readable: refused. Check that your client has encryption "
        "set up.",
        f"Cet évènement chiffré n'est pas un vrai chiffré Olm/Megolm (champ {what} mal formé), "
        "son contenu pourrait donc être lisible : refusé. Vérifiez que le chiffrement est "
        "actif dans votre application.",
    )


TEXT_REACTION = Refusal(
    "reaction_text_forbidden",
    "Reactions travel in clear: only emoji are allowed, no text or numbers.",
    "Les réactions partent en clair : seuls les émojis sont autorisés, ni texte ni chiffres.",
)


TOO_DEEP = Refusal(
    "field_forbidden",
    "This event's content is nested too deeply to be checked: refused.",
    "Le contenu de cet évènement est trop imbriqué pour être vérifié : refusé.",
)
