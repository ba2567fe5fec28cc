"""Finding what an interrupted ``!case new`` already did on Matrix.

Each case room carries, in its ``m.room.create`` content, the id of the command event that
asked for it (an opaque Matrix id, nothing about the patient). If the bot stopped between
the homeserver creating the room and the bot recording its id, the restarted bot finds the
room by that mark instead of creating a second one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any, Protocol, runtime_checkable

from bot.commands.context import MatrixActionError
from bot.ids import EventId, RoomId

REQUEST_MARK = "fr.caducee.request"
"""Key of the ``m.room.create`` content holding the requesting command's event id."""


@runtime_checkable
class FindsCreatedRoom(Protocol):
    """Optional addition to `MatrixActions`: a room the bot created for a given request."""

    async def find_created_room(
        self, request: EventId, skip: Collection[str] = ()
    ) -> RoomId | None:
        """``skip``: rooms known to be something else (recorded cases and direct rooms),
        so the search reads only the rooms the bot knows nothing of."""
        ...


async def find_marked_room(
    rooms: list[str],
    create_event: Callable[[RoomId], Awaitable[dict[str, Any]]],
    request: EventId,
    creator: str,
) -> RoomId | None:
    """The first of ``rooms`` created by ``creator`` (the bot) whose ``m.room.create``
    content carries ``request``'s mark. A room someone else created never matches, whatever
    its content says: anyone who can invite the bot can write any creation content.

    Only called when resuming an interrupted request, so reading each room's creation
    event (cached by the shell) is acceptable.
    """
    for room in rooms:
        try:
            event = await create_event(RoomId(room))
        except MatrixActionError:
            continue
        content = event.get("content")
        if (
            event.get("sender") == creator
            and isinstance(content, dict)
            and content.get(REQUEST_MARK) == request
        ):
            return RoomId(room)
    return None
