"""Finding what an interrupted ``!case new`` already did on Matrix.

Each case room carries, in its ``m.room.create`` content, the id of the command event that
asked for it (an opaque Matrix id, nothing about the patient). If the bot stopped between
the homeserver creating the room and the bot recording its id, the restarted bot finds the
room by that mark instead of creating a second one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from bot.commands.context import MatrixActionError
from bot.ids import EventId, RoomId

REQUEST_MARK = "fr.caducee.request"
"""Key of the ``m.room.create`` content holding the requesting command's event id."""


@runtime_checkable
class FindsCreatedRoom(Protocol):
    """Optional addition to `MatrixActions`: a room the bot created for a given request."""

    async def find_created_room(self, request: EventId) -> RoomId | None: ...


async def find_marked_room(
    rooms: list[str],
    create_event: Callable[[RoomId], Awaitable[dict[str, Any]]],
    request: EventId,
) -> RoomId | None:
    """The first of ``rooms`` whose ``m.room.create`` content carries ``request``'s mark.

    Only called when resuming an interrupted request, so reading each room's creation
    event (cached by the shell) is acceptable.
    """
    for room in rooms:
        try:
            event = await create_event(RoomId(room))
        except MatrixActionError:
            continue
        content = event.get("content")
        if isinstance(content, dict) and content.get(REQUEST_MARK) == request:
            return RoomId(room)
    return None
