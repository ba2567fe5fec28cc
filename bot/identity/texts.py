"""What the bot says about an identity reset: fixed texts, French then English.

Pure: no I/O. The texts carry no secret (no directory answer, no case data), which is what
allows sending them to devices the bot does not trust yet.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

AUDIT_COMMAND = "identity-reset"


class Outcome(StrEnum):
    """Audit outcomes of an identity reset (at most 32 characters)."""

    PENDING = "pending"
    CONFIRMED_BY_SESSION = "confirmed-by-session"
    CONFIRM_REFUSED = "confirm-refused"
    ACCEPTED_BY_OPERATOR = "accepted-by-operator"
    FORGOTTEN_BY_OPERATOR = "forgotten-by-operator"


def _both(french: str, english: str) -> str:
    return f"🔐 {french}\n\n{english}"


def reset_code(new_master_key: str) -> str:
    """A short code naming one pending reset: the first 6 hex digits of the new key's SHA-256.

    ``!identity confirm`` must quote it, so a confirmation the doctor once sent for an earlier
    reset, replayed by their homeserver, confirms nothing now.
    """
    return hashlib.sha256(new_master_key.encode()).hexdigest()[:6].upper()


def explain(code: str) -> str:
    """The explanation of a pending reset, with the code that confirms it."""
    return _both(
        "Votre identité de chiffrement a changé (par exemple après une réinstallation "
        "d'Element sans votre clé de récupération). Par sécurité, je n'exécute plus vos "
        "commandes et mes réponses ne sont plus lisibles par vos sessions tant que ce "
        "changement n'est pas confirmé. Si une session ouverte AVANT le changement vous reste "
        "(Element sur votre ordinateur, par exemple), envoyez depuis celle-ci "
        f"« !identity confirm {code} » dans cette conversation. Sinon, contactez "
        "l'administrateur de votre établissement : il vérifiera que c'est bien vous et "
        "validera le changement. Si vous n'avez rien changé, prévenez-le immédiatement : "
        "quelqu'un d'autre a peut-être accès à votre compte.",
        "Your encryption identity has changed (for example after reinstalling Element "
        "without your recovery key). For your safety I no longer run your commands, and your "
        "sessions cannot read my answers, until this change is confirmed. If you still have a "
        "session opened BEFORE the change (Element on your computer, for example), send "
        f'"!identity confirm {code}" from it in this conversation. Otherwise, contact your '
        "organisation's administrator: they will check that it is really you and accept the "
        "change. If you changed nothing, tell them at once: someone else may have access to "
        "your account.",
    )


CONFIRMED = _both(
    "Merci : votre nouvelle identité de chiffrement est acceptée. Vos sessions vérifiées "
    "peuvent de nouveau lire mes réponses ; renvoyez votre commande.",
    "Thank you: your new encryption identity is accepted. Your verified sessions can read "
    "my answers again; send your command again.",
)

REFUSED = _both(
    "Cette session ne peut pas confirmer le changement : elle n'était pas vérifiée par votre "
    "ancienne identité. Envoyez « !identity confirm » depuis une session ouverte avant le "
    "changement, ou contactez l'administrateur de votre établissement.",
    "This session cannot confirm the change: your previous identity had not verified it. "
    'Send "!identity confirm" from a session opened before the change, or contact your '
    "organisation's administrator.",
)

NOTHING_PENDING = _both(
    "Votre identité de chiffrement n'a pas changé : il n'y a rien à confirmer.",
    "Your encryption identity has not changed: there is nothing to confirm.",
)


class Request(StrEnum):
    """What a message asks of the identity gate."""

    NOT_A_COMMAND = "not a command"
    OTHER_COMMAND = "another command"
    IDENTITY = "!identity"
    CONFIRM = "!identity confirm"


def confirm_code(body: str) -> str | None:
    """The code quoted after ``!identity confirm``, upper-cased; None when there is none."""
    words = body.strip().split()
    return words[2].upper() if len(words) >= 3 else None


def classify(body: str) -> Request:
    """Read a message body: only commands (``!...``) are the gate's business."""
    words = body.strip().split()
    if not words or not words[0].startswith("!"):
        return Request.NOT_A_COMMAND
    if words[0].lower() != "!identity":
        return Request.OTHER_COMMAND
    if len(words) >= 2 and words[1].lower() == "confirm":
        return Request.CONFIRM
    return Request.IDENTITY
