"""The bot's login session on disk: same device (and so same keys) across restarts.

``session.json`` (0600, in the store directory) keeps the device id and access token. At start
the bot restores it; when the homeserver no longer accepts the token it logs in again, which
gives a new device that the cross-signing step then signs ("lost device").
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.crypto.keyfiles import read_json_file, write_private_file
from bot.matrix import requests
from bot.matrix.homeserver import send_json

logger = logging.getLogger(__name__)

SESSION_FILE = "session.json"


class LoginError(Exception):
    """The homeserver refused the bot's credentials; the message says what to check."""


@dataclass(frozen=True)
class Session:
    user_id: str
    device_id: str
    access_token: str

    def __repr__(self) -> str:  # never show the token
        return f"Session(user_id={self.user_id!r}, device_id={self.device_id!r})"


def load_session(store_dir: Path, user_id: str) -> Session | None:
    data = read_json_file(store_dir / SESSION_FILE)
    if not isinstance(data, dict) or data.get("user_id") != user_id:
        return None
    device_id, token = data.get("device_id"), data.get("access_token")
    if not isinstance(device_id, str) or not isinstance(token, str):
        return None
    return Session(user_id, device_id, token)


def save_session(store_dir: Path, session: Session) -> None:
    body = {
        "user_id": session.user_id,
        "device_id": session.device_id,
        "access_token": session.access_token,
    }
    write_private_file(store_dir / SESSION_FILE, json.dumps(body, indent=1) + "\n")


async def password_login(client: Any, user_id: str, password: str, device_name: str) -> Session:
    """``POST /login`` with the password, without loading any store yet (the caller prepares
    the store files with private modes first, then calls ``restore_login``)."""
    request = requests.password_login(user_id, password, device_name)
    status, answer = await send_json(client, *request, token=None)
    granted = [answer.get(key) for key in ("user_id", "device_id", "access_token")]
    if status != 200 or not all(isinstance(value, str) for value in granted):
        raise LoginError(
            f"the homeserver refused the bot's login as {user_id} (HTTP {status} "
            f"{answer.get('errcode', '')}): check user_id and password"
        )
    return Session(*(str(value) for value in granted))


async def token_still_valid(client: Any, session: Session) -> bool:
    status, answer = await send_json(client, *requests.whoami(), token=session.access_token)
    if status == 200:
        return answer.get("device_id") == session.device_id
    if status == 401:
        return False
    raise LoginError(f"the homeserver did not answer whoami (HTTP {status})")
