"""Replies shared by several commands, French first then English, in one message.

Kept together so the wording stays consistent and reviewable. None of them echoes message
content beyond what the requester typed as a command.
"""

from __future__ import annotations

from html import escape

from bot.commands.registry import Reply

DIRECTORY_UNAVAILABLE = (
    "L'annuaire est indisponible pour le moment ; réessayez dans quelques minutes. / "
    "The directory is unavailable right now; please try again in a few minutes."
)
UNKNOWN_COMMAND = (
    "Commande inconnue : « !{word} ». Tapez !help pour la liste des commandes. / "
    "Unknown command: “!{word}”. Type !help for the list of commands."
)
EMPTY_COMMAND = "Tapez !help pour la liste des commandes. / Type !help for the list of commands."
NOT_A_CASE_ROOM = (
    "Cette commande s'utilise dans une salle de dossier ouverte par le bot (!case new). / "
    "This command works inside a case room opened by the bot (!case new)."
)
CASE_CLOSED = (
    "Ce dossier est clos : son contenu a été effacé, il n'en reste rien (ni à exporter). / "
    "This case is closed: its content was erased, nothing is left (to export either)."
)
INTERRUPTED = (
    "Le bot a redémarré pendant cette commande ; elle n'a peut-être pas abouti. Vérifiez le "
    "résultat et relancez-la si besoin. / The bot restarted while running this command; it "
    "may not have completed. Check the result and run it again if needed."
)
MATRIX_FAILED = (
    "Le serveur Matrix a refusé l'opération : {reason} / "
    "The Matrix server refused the operation: {reason}"
)
INTERNAL_ERROR = (
    "Une erreur interne est survenue ; l'administrateur en a la trace. / "
    "An internal error occurred; the administrator has the details in the logs."
)
NOT_ON_NETWORK = "pas encore sur le réseau / not on the network yet"
NOT_MEMBER_SERVER = (
    "son serveur n'est pas membre de la fédération / their server is not a federation member"
)
UNKNOWN_REGISTER_NUMBER = "numéro inconnu de l'annuaire / number not in the directory"


def usage_reply(problem: str | None, usage: str) -> Reply:
    """A syntax error: what is wrong (if known) and the command's usage."""
    lines = [problem] if problem else []
    lines.append(f"Usage : {usage}")
    html_lines = [escape(problem)] if problem else []
    html_lines.append(f"Usage : <code>{escape(usage)}</code>")
    return Reply("\n".join(lines), "<br>".join(html_lines))


def plain(text: str) -> Reply:
    """A one-paragraph reply, with line breaks kept in HTML."""
    return Reply(text, "<br>".join(escape(line) for line in text.split("\n")))
