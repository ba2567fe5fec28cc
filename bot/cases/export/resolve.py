"""From raw room events to filed messages: edits applied, replies linked, fallbacks removed.
Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.cases.export.model import Attachment, Message, RawEvent

FILE_MSGTYPES = frozenset({"m.image", "m.file", "m.audio", "m.video"})


def strip_reply_fallback(body: str) -> str:
    """Remove the quoted ``> <@sender> ...`` lines clients put before a reply's text."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> "):
        return body
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    return "\n".join(lines[i:])


def _relation(content: dict[str, Any]) -> dict[str, Any]:
    rel = content.get("m.relates_to")
    return rel if isinstance(rel, dict) else {}


def _text(content: dict[str, Any]) -> str:
    body = content.get("body")
    return body if isinstance(body, str) else ""


def resolve_messages(
    events: Sequence[RawEvent], attachments: dict[str, Attachment] | None = None
) -> list[Message]:
    """Oldest first. An edit (``m.replace``) replaces its original's text and is not listed
    itself; the latest edit by the original's sender wins. ``attachments`` maps event ids
    to the downloaded files."""
    files = attachments or {}
    ordered = sorted(events, key=lambda e: (e.ts_ms, e.event_id))
    edits: dict[str, RawEvent] = {}
    originals: list[RawEvent] = []
    senders = {e.event_id: e.sender for e in ordered}
    for event in ordered:
        rel = _relation(event.content or {})
        if rel.get("rel_type") == "m.replace" and isinstance(rel.get("event_id"), str):
            target = rel["event_id"]
            if senders.get(target) == event.sender:  # only one's own messages can be edited
                edits[target] = event
            continue
        originals.append(event)
    out: list[Message] = []
    for event in originals:
        if event.content is None:
            out.append(Message(event.event_id, event.sender, event.ts_ms, None))
            continue
        content = event.content
        edit = edits.get(event.event_id)
        if edit is not None and edit.content is not None:
            new = edit.content.get("m.new_content")
            if isinstance(new, dict):
                content = {**new, "m.relates_to": content.get("m.relates_to")}
        reply = _relation(content).get("m.in_reply_to")
        reply_to = reply.get("event_id") if isinstance(reply, dict) else None
        text = _text(content)
        if reply_to is not None:
            text = strip_reply_fallback(text)
        out.append(
            Message(
                event.event_id,
                event.sender,
                event.ts_ms,
                text,
                reply_to=reply_to if isinstance(reply_to, str) else None,
                edited=edit is not None,
                attachment=files.get(event.event_id),
            )
        )
    return out


def file_info(content: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``file`` (encrypted) or ``url`` of an attachment message, else None."""
    if not content or content.get("msgtype") not in FILE_MSGTYPES:
        return None
    if isinstance(content.get("file"), dict) or isinstance(content.get("url"), str):
        return content
    return None
