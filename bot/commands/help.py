"""``!help``: generated from the registry's declarations, in French and English at once."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from bot.commands.policy import parse_no_args
from bot.commands.registry import (
    Command,
    Invocation,
    Permission,
    Registry,
    Reply,
    Scope,
)

_WHO: dict[tuple[Permission, Scope], tuple[str, str]] = {
    (Permission.MEMBER, Scope.ANYWHERE): ("", ""),
    (Permission.CASE_MANAGER, Scope.CASE_ROOM): (
        "Dans une salle de dossier ; réservé à qui l'a ouverte et aux administrateurs.",
        "In a case room; for whoever opened it and room admins.",
    ),
    (Permission.MEMBER, Scope.CASE_ROOM): (
        "Dans une salle de dossier.",
        "In a case room.",
    ),
    (Permission.CASE_MANAGER, Scope.ANYWHERE): (
        "Réservé à qui a ouvert le dossier et aux administrateurs.",
        "For whoever opened the case and room admins.",
    ),
}

TITLE = "Commandes de Caducée / Caducée commands"
FOOTER = (
    "Seuls les praticiens des serveurs membres de la fédération peuvent utiliser le bot. / "
    "Only practitioners of the federation's member servers can use the bot."
)


def render_help(commands: Sequence[Command[Any]]) -> Reply:
    """The help message: for each command its usage, FR and EN help, who, and examples."""
    text: list[str] = [TITLE, ""]
    html: list[str] = [f"<p><strong>{escape(TITLE)}</strong></p>", "<ul>"]
    for command in commands:
        who_fr, who_en = _WHO[(command.permission, command.scope)]
        text.append(command.usage)
        text.append(f"  FR : {command.help_fr}" + (f" {who_fr}" if who_fr else ""))
        text.append(f"  EN: {command.help_en}" + (f" {who_en}" if who_en else ""))
        for example in command.examples:
            text.append(f"  ex. {example}")
        text.append("")
        items = [
            f"<code>{escape(command.usage)}</code>",
            f"FR : {escape(command.help_fr)}" + (f" <em>{escape(who_fr)}</em>" if who_fr else ""),
            f"EN: {escape(command.help_en)}" + (f" <em>{escape(who_en)}</em>" if who_en else ""),
        ]
        if command.examples:
            items.append("ex. " + ", ".join(f"<code>{escape(e)}</code>" for e in command.examples))
        html.append("<li>" + "<br>".join(items) + "</li>")
    text.append(FOOTER)
    html.append("</ul>")
    html.append(f"<p>{escape(FOOTER)}</p>")
    return Reply("\n".join(text), "\n".join(html))


def help_command(registry: Registry) -> Command[None]:
    """The ``!help`` declaration; it renders the registry as it is when called."""

    async def run(invocation: Invocation, args: None) -> Reply:
        return render_help(registry.commands)

    return Command(
        path=("help",),
        aliases=(("aide",),),
        usage="!help",
        help_fr="Affiche cette aide (aussi : !aide).",
        help_en="Shows this help (also: !aide).",
        examples=("!help",),
        permission=Permission.MEMBER,
        scope=Scope.ANYWHERE,
        rerun_if_interrupted=True,
        parse=parse_no_args,
        run=run,
    )
