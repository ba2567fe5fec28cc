"""``!find <query>``: the directory search, formatted for a chat message."""

from __future__ import annotations

from html import escape

from bot.bridge_client import Practitioner, SearchPage
from bot.commands import texts
from bot.commands.policy import parse_query
from bot.commands.registry import Command, Invocation, Permission, Reply, Scope

MAX_RESULTS = 10
NO_RESULT = "Aucun résultat. / No result."


def _place(p: Practitioner) -> str:
    if p.city and p.postcode:
        return f"{p.city} ({p.postcode})"
    return p.city or p.postcode


def _fields(p: Practitioner) -> list[str]:
    return [f for f in (p.specialty or p.profession, _place(p)) if f]


def render_results(page: SearchPage) -> Reply:
    """Pure: the reply for a page of results (numbered, Matrix ID or "not on the network")."""
    if not page.results:
        return Reply(NO_RESULT, escape(NO_RESULT))
    shown = len(page.results)
    # Past its count cap the directory only knows "at least": say so rather than a number
    # the doctor would take as exact.
    total = f"{page.total}+" if page.more else str(page.total)
    head = (
        f"{shown} résultat(s) sur {total} / {shown} result(s) of {total}"
        if page.total > shown or page.more
        else f"{shown} résultat(s) / {shown} result(s)"
    )
    text = [head]
    items: list[str] = []
    for number, p in enumerate(page.results, start=1):
        fields = _fields(p)
        contact = p.matrix_id or texts.NOT_ON_NETWORK
        text.append(" — ".join([f"{number}. {p.display_name}", *fields, f"RPPS {p.rpps}", contact]))
        contact_html = (
            f'<a href="https://matrix.to/#/{escape(p.matrix_id)}">{escape(p.matrix_id)}</a>'
            if p.matrix_id
            else f"<em>{escape(texts.NOT_ON_NETWORK)}</em>"
        )
        parts = [f"<strong>{escape(p.display_name)}</strong>", *map(escape, fields)]
        items.append(
            "<li>" + " — ".join([*parts, f"RPPS {escape(p.rpps)}", contact_html]) + "</li>"
        )
    html = f"<p>{escape(head)}</p><ol>{''.join(items)}</ol>"
    return Reply("\n".join(text), html)


async def run_find(invocation: Invocation, query: str) -> Reply:
    page = await invocation.services.directory.search(query, limit=MAX_RESULTS)
    return render_results(page)


FIND = Command(
    path=("find",),
    aliases=(("cherche",), ("chercher",)),
    usage="!find <query>",
    help_fr=(
        "Cherche un praticien dans l'annuaire : nom, spécialité, ville, département ou "
        "numéro RPPS, dans n'importe quel ordre (10 résultats au plus)."
    ),
    help_en=(
        "Searches the practitioner directory: name, specialty, city, department or RPPS "
        "number, in any order (at most 10 results)."
    ),
    examples=("!find cardiologue lyon", "!find martin 69", "!find 10001234567"),
    permission=Permission.MEMBER,
    scope=Scope.ANYWHERE,
    rerun_if_interrupted=True,
    parse=parse_query,
    run=run_find,
)
