"""The client-server API requests the bot makes itself (nio has no call for them), built the way
`nio.api.Api` builds its own: each function returns what to send and sends nothing.

A `Request` unpacks into `HomeserverJson.request_json(method, path, body)`
(`bot.matrix.homeserver`); `send_parsed` (`bot.matrix.nio_private`) takes its body as JSON
text (`body_text`).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, NamedTuple

from bot.crypto.signing import Json
from bot.matrix.nio_private import build_path


class Request(NamedTuple):
    method: str
    path: str
    body: Json | None


def body_text(request: Request) -> str | None:
    return None if request.body is None else json.dumps(request.body)


def _transaction_id() -> str:
    return uuid.uuid4().hex


def password_login(user_id: str, password: str, device_name: str) -> Request:
    """``POST /login`` (the body holds the password: never log it)."""
    body: Json = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user_id},
        "password": password,
        "initial_device_display_name": device_name,
    }
    return Request("POST", build_path(["login"]), body)


def whoami() -> Request:
    return Request("GET", build_path(["account", "whoami"]), None)


def create_room(body: Json) -> Request:
    return Request("POST", build_path(["createRoom"]), body)


def room_create_event(room_id: str) -> Request:
    """The room's ``m.room.create`` event whole (its sender too), not only its content."""
    path = build_path(["rooms", room_id, "state", "m.room.create", ""], {"format": "event"})
    return Request("GET", path, None)


def room_encryption(room_id: str) -> Request:
    """The room's ``m.room.encryption`` content (404 ``M_NOT_FOUND``: the room has none)."""
    return Request("GET", build_path(["rooms", room_id, "state", "m.room.encryption", ""]), None)


def invited_members(room_id: str) -> Request:
    path = build_path(["rooms", room_id, "members"], {"membership": "invite"})
    return Request("GET", path, None)


def room_send(room_id: str, event_type: str, content: Json) -> Request:
    """One room event as given (already encrypted when it must be), with a fresh transaction."""
    path = build_path(["rooms", room_id, "send", event_type, _transaction_id()])
    return Request("PUT", path, content)


def send_to_device(event_type: str, messages: dict[str, dict[str, Any]]) -> Request:
    """To-device messages (user id -> device id -> content), with a fresh transaction."""
    path = build_path(["sendToDevice", event_type, _transaction_id()])
    return Request("PUT", path, {"messages": messages})


def keys_query(user_ids: list[str]) -> Request:
    """Every device of `user_ids` with the cross-signing keys (nio keeps only the devices)."""
    body: Json = {"device_keys": {u: [] for u in user_ids}}
    return Request("POST", build_path(["keys", "query"]), body)


def device_signing_upload(body: Json) -> Request:
    return Request("POST", build_path(["keys", "device_signing", "upload"]), body)


def signatures_upload(body: Json) -> Request:
    return Request("POST", build_path(["keys", "signatures", "upload"]), body)
