"""Every use the bot makes of matrix-nio's private API, and nowhere else.

nio has no public way to build a request path, to send a request of the bot's own and have
nio parse and apply its answer, to encrypt one Olm message for a chosen device, or to change
how it handles a sync. The bot needs all four, so it reaches past nio's public surface here,
and only here. `tests/test_bot_nio_private.py` pins each behaviour relied on against the
installed nio (pinned in `pyproject.toml`): a nio upgrade that changes one fails there.
The crypto state the bot reads and writes under public-looking but undocumented names
(outbound group sessions, `session_store`, `tracked_users`, `members_synced`...) is pinned
the same way in `tests/test_bot_nio_crypto_state.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nio.api import Api

from bot.sync_filter import changed_tracked_users, forget_members_after_gaps


def build_path(path: list[str], query: Mapping[str, str] | None = None) -> str:
    """A client-server API v3 path, each segment percent-encoded (``/`` too); a trailing empty
    segment is dropped with its slash. Query parameters are URL-encoded."""
    return str(Api._build_path(path, dict(query) if query else None))


async def send_parsed(
    client: Any, response_class: type, method: str, path: str, data: str | None
) -> Any:
    """Send a request through nio's own machinery (`AsyncClient._send`): the access token
    header, nio's retries on 429 and timeouts, `response_class.from_dict` on the answer (an
    error class in its place when the homeserver refuses), then `receive_response`, so nio's
    state learns what the answer says (a subclass of a nio response counts as that response).
    """
    return await client._send(response_class, method, path, data)


def olm_encrypt(olm: Any, session: Any, device: Any, event_type: str, content: Any) -> Any:
    """The ``m.room.encrypted`` content of one Olm message to `device` over `session`
    (`Olm._olm_encrypt`; the session is saved to nio's store as it advances)."""
    return olm._olm_encrypt(session, device, event_type, content)


async def apply_invites(client: Any, response: Any) -> None:
    """Let nio take the invitations of a sync response read outside its sync loop
    (`AsyncClient._handle_invited_rooms`): each lands in `invited_rooms` and goes through the
    event callbacks, as from a sync of nio's own."""
    await client._handle_invited_rooms(response)


class LeanSync:
    """nio's sync handling made O(changed rooms); mixed into the bot's `AsyncClient` ahead of it.

    The decisions are the pure functions of `bot.sync_filter`; here they replace two of nio's
    private sync steps (`AsyncClient._handle_olm_events`, `_handle_joined_rooms`).
    """

    olm: Any
    rooms: dict[str, Any]
    device_store: Any

    def _handle_olm_events(self, response: Any) -> None:
        """nio's, without its loop over every room for each changed user.

        A one-time key count of 0 is taken too: nio skips it (it tests the count for
        truth), and once every one-time key of the bot had been claimed, it would never
        upload more, and no new device could start an encrypted session with the bot again.
        """
        olm = self.olm
        assert olm is not None
        count = response.device_key_count.signed_curve25519
        if count is not None:
            olm.uploaded_key_count = count
        olm.add_changed_users(
            changed_tracked_users(
                response.device_list.changed,
                response.device_list.left,
                olm.tracked_users,
                self.device_store.users,
            )
        )

    async def _handle_joined_rooms(self, response: Any) -> None:
        await super()._handle_joined_rooms(response)  # type: ignore[misc]
        forget_members_after_gaps(self.rooms, response.rooms.join)
