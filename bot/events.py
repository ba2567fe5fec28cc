"""What the bot does with what the sync loop brings: invites, messages, unreadable messages.

Callbacks run inside nio's sync loop, so they never wait on the network themselves: work is
spawned as tasks (a command that creates a room must be able to wait for the *next* sync).
Nothing here logs or keeps message content; undecrypted events are kept in memory only, as
ciphertext, while their key may still arrive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Container, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from nio import (
    EncryptionError,
    InviteMemberEvent,
    JoinError,
    MatrixInvitedRoom,
    MatrixRoom,
    MegolmEvent,
    RoomMemberEvent,
    RoomMessageText,
    SyncResponse,
)

from bot.commands.context import IncomingMessage, MatrixActionError
from bot.ids import EventId, RoomId, UserId, server_of
from bot.matrix.actions import NioActions
from bot.unreadable import (
    NO_KEY,
    SPEC_CODES,
    NoticeLimiter,
    Withheld,
    parse_withheld,
    unreadable_notice,
)

logger = logging.getLogger(__name__)

JOIN_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
MAX_HELD_INVITES = 1000

MessageHandler = Callable[[IncomingMessage], Awaitable[None]]
DirectJoinHook = Callable[[RoomId, UserId], Awaitable[None]]
"""Told of each room the bot joined on an invitation marked direct (room, inviter)."""


class SyncListener(Protocol):
    """Hook for engines that must see every room event (the expiry engine)."""

    async def on_room_event(self, room_id: RoomId, event: Any) -> None:
        """Every timeline event, decrypted when possible (MegolmEvent otherwise)."""
        ...

    async def on_gap(self, room_id: RoomId, prev_batch: str) -> None:
        """The sync skipped events in `room_id` (``limited``); paginate back from `prev_batch`."""
        ...


class CommandGate(Protocol):
    """Looks at a message before the command handler (the identity gate)."""

    async def intercept(self, msg: IncomingMessage, sender_key: str | None) -> bool:
        """True when the message was handled here and must not reach the handler.

        `sender_key` is the Curve25519 key of the device whose Olm channel delivered the
        message's room key (None for a message that was not encrypted).
        """
        ...

    async def tell_held(self, room_id: RoomId, user_id: str, text: str) -> bool:
        """Send a fixed, secret-free `text` readable by `user_id`'s untrusted devices when
        their trust is on hold; False (nothing sent) when it is not."""
        ...


@runtime_checkable
class SyncCommitListener(Protocol):
    """Optional addition to `SyncListener`: called once per sync response, after its events.

    The sync position is saved only when this returns (and every event task of that sync has
    finished): commit here what must survive a crash (e.g. ``await engine.persist()``).
    """

    async def after_sync(self, response: SyncResponse) -> None: ...


def may_join(inviter: str, member_servers: Container[str]) -> bool:
    """The bot joins only rooms whose inviter is a user of a member homeserver."""
    return server_of(inviter) in member_servers


class TaskSet:
    """Background tasks with strong references, logged failures and an orderly drain."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._batch: list[asyncio.Task[None]] = []

    def spawn(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=what)
        self._tasks.add(task)
        self._batch.append(task)
        task.add_done_callback(self._done)
        return task

    def take_batch(self) -> list[asyncio.Task[None]]:
        """The tasks spawned since the last call (the work of one sync response)."""
        batch, self._batch = self._batch, []
        return batch

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            logger.error("%s failed: %s", task.get_name(), type(exc).__name__, exc_info=exc)

    async def drain(self, timeout: float) -> None:
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()


@dataclass
class _Pending:
    room_id: RoomId
    event: Any  # MegolmEvent, still encrypted
    deadline: float


class EventRouter:
    """Routes sync events to the command handler, the listeners and the unreadable notices."""

    def __init__(
        self,
        client: Any,
        actions: NioActions,
        handler: MessageHandler,
        *,
        member_servers: Container[str],
        notice_interval: float,
        grace_seconds: float,
        tasks: TaskSet,
        gate: CommandGate | None = None,
        on_direct_join: DirectJoinHook | None = None,
    ) -> None:
        self._client = client
        self._on_direct_join = on_direct_join
        self._gate = gate
        self._actions = actions
        self._handler = handler
        self._member_servers = member_servers
        self._limiter = NoticeLimiter(notice_interval)
        self._grace = grace_seconds
        self._tasks = tasks
        self._listeners: list[SyncListener] = []
        self._joining: set[str] = set()
        self._pending: dict[str, list[_Pending]] = {}
        self._withheld: OrderedDict[tuple[str, str], Withheld] = OrderedDict()
        """Withheld notices by (sender, session id): one user's cannot replace another's."""
        self._held_invites: OrderedDict[str, str] = OrderedDict()
        """Invites ignored because the inviter's server was not a member (room -> inviter):
        the member servers can follow the registry, so they are looked at again."""

    def add_listener(self, listener: SyncListener) -> None:
        self._listeners.append(listener)

    def register(self) -> None:
        client = self._client
        client.add_event_callback(self.on_invite, InviteMemberEvent)
        client.add_event_callback(self.on_room_event, object)  # every timeline event
        client.add_to_device_callback(self.on_to_device, object)
        client.add_response_callback(self.on_sync, SyncResponse)

    # ---- invites -------------------------------------------------------------------------

    async def on_invite(self, room: MatrixRoom, event: InviteMemberEvent) -> None:
        if event.state_key != self._client.user_id or event.membership != "invite":
            return
        if room.room_id in self._joining:
            return
        if not may_join(event.sender, self._member_servers):
            logger.info(
                "Ignoring invite to %s from %s: not a member homeserver", room.room_id, event.sender
            )
            self._held_invites[room.room_id] = event.sender
            self._held_invites.move_to_end(room.room_id)
            while len(self._held_invites) > MAX_HELD_INVITES:
                self._held_invites.popitem(last=False)
            return
        self._held_invites.pop(room.room_id, None)
        direct = isinstance(event.content, dict) and event.content.get("is_direct") is True
        self._start_join(room.room_id, event.sender, direct=direct)

    def _start_join(self, room_id: str, inviter: str, *, direct: bool = False) -> None:
        self._joining.add(room_id)
        self._tasks.spawn(self._join(room_id, inviter, direct), f"join {room_id}")

    def retry_held_invites(self) -> None:
        """Accept the invites ignored earlier whose inviter's homeserver is a member now (it
        was onboarded in the registry after inviting the bot); forget withdrawn invites."""
        invited = self._client.invited_rooms
        for room_id, inviter in list(self._held_invites.items()):
            if room_id not in invited:
                del self._held_invites[room_id]  # withdrawn, refused, or joined meanwhile
            elif room_id not in self._joining and may_join(inviter, self._member_servers):
                del self._held_invites[room_id]
                logger.info(
                    "Accepting invite to %s from %s: its homeserver is a member now",
                    room_id,
                    inviter,
                )
                self._start_join(room_id, inviter)

    async def _join(self, room_id: str, inviter: str, direct: bool = False) -> None:
        """Join, retrying briefly: over federation the inviter's server may not have settled
        the invite yet ("You are not invited to this room") when ours already shows it.
        A room the inviter marked as a direct chat is recorded as theirs with the bot."""
        try:
            for delay in JOIN_RETRY_DELAYS:
                response = await self._client.join(room_id)
                if not isinstance(response, JoinError):
                    logger.info("Joined %s, invited by %s", room_id, inviter)
                    if direct and self._on_direct_join is not None:
                        await self._on_direct_join(RoomId(room_id), UserId(inviter))
                    return
                logger.info("Joining %s failed (%s); retrying", room_id, response.message)
                await asyncio.sleep(delay)
            logger.warning("Could not join %s, invited by %s", room_id, inviter)
        finally:
            self._joining.discard(room_id)

    # ---- timeline ------------------------------------------------------------------------

    async def on_room_event(self, room: MatrixRoom, event: Any) -> None:
        if isinstance(room, MatrixInvitedRoom):
            return  # invite state, not a timeline
        room_id = RoomId(room.room_id)
        for listener in self._listeners:
            self._tasks.spawn(listener.on_room_event(room_id, event), "listener")
        if isinstance(event, RoomMessageText):
            self._dispatch(room, event)
        elif isinstance(event, MegolmEvent) and event.sender != self._client.user_id:
            self._undecrypted(room_id, event)

    def _dispatch(self, room: MatrixRoom, event: RoomMessageText) -> None:
        if event.sender == self._client.user_id:
            return
        msg = IncomingMessage(
            room_id=RoomId(room.room_id),
            event_id=EventId(event.event_id),
            sender=UserId(event.sender),
            body=event.body,
            origin_server_ts=int(event.server_timestamp),
            is_direct=len(room.users) <= 2,
        )
        sender_key = event.sender_key if event.decrypted else None
        self._tasks.spawn(self._handle(msg, sender_key), f"command {event.event_id}")

    async def _handle(self, msg: IncomingMessage, sender_key: str | None = None) -> None:
        if self._gate is not None and await self._gate.intercept(msg, sender_key):
            return
        await self._handler(msg)

    # ---- unreadable messages -------------------------------------------------------------

    def _undecrypted(self, room_id: RoomId, event: MegolmEvent) -> None:
        withheld = self._withheld.get((event.sender, event.session_id))
        if withheld is not None and withheld.applies_to(room_id, event.sender, event.sender_key):
            self._notify(room_id, event.sender, withheld.code)
            return
        pending = _Pending(room_id, event, time.monotonic() + self._grace)
        self._pending.setdefault(event.session_id, []).append(pending)
        logger.info(
            "Message %s in %s not decryptable yet; waiting for its key", event.event_id, room_id
        )

    async def on_to_device(self, event: Any) -> None:
        withheld = parse_withheld(getattr(event, "source", None))
        if withheld is None:
            return
        logger.info(
            "%s withheld the key of a session in %s (%s)",
            withheld.sender,
            withheld.room_id,
            withheld.code if withheld.code in SPEC_CODES else "a code the spec does not define",
        )
        self._withheld[(withheld.sender, withheld.session_id)] = withheld
        while len(self._withheld) > 1000:
            self._withheld.popitem(last=False)
        waiting = self._pending.get(withheld.session_id, [])
        explained = [
            p for p in waiting if withheld.applies_to(p.room_id, p.event.sender, p.event.sender_key)
        ]
        if len(explained) < len(waiting):
            logger.warning(
                "Ignoring a withheld notice from %s for a session it does not own", withheld.sender
            )
        for pending in explained:
            waiting.remove(pending)
            self._notify(pending.room_id, pending.event.sender, withheld.code)
        if not waiting:
            self._pending.pop(withheld.session_id, None)

    def retry_pending(self, now: float) -> None:
        """Decrypt what can now be decrypted; tell senders whose key never came; accept
        invites of homeservers that became members."""
        self.retry_held_invites()
        for session_id in list(self._pending):
            still: list[_Pending] = []
            for pending in self._pending[session_id]:
                try:
                    decrypted = self._client.decrypt_event(pending.event)
                except EncryptionError:
                    if now >= pending.deadline:
                        logger.info(
                            "No key for message %s in %s", pending.event.event_id, pending.room_id
                        )
                        self._notify(pending.room_id, pending.event.sender, NO_KEY)
                    else:
                        still.append(pending)
                    continue
                room = self._client.rooms.get(pending.room_id)
                if room is not None:
                    decrypted.room_id = pending.room_id
                    self._tasks.spawn(self.on_room_event(room, decrypted), "late decryption")
            if still:
                self._pending[session_id] = still
            else:
                del self._pending[session_id]

    def _notify(self, room_id: RoomId, sender: str, code: str) -> None:
        if not self._limiter.allow(room_id, sender, time.monotonic()):
            return
        self._tasks.spawn(self._send_notice(room_id, code, sender), f"unreadable notice {room_id}")

    async def _send_notice(self, room_id: RoomId, code: str, sender: str) -> None:
        text = unreadable_notice(code)
        if self._gate is not None and await self._gate.tell_held(room_id, sender, text):
            return  # their devices could not read an ordinary answer
        try:
            await self._actions.send_notice(room_id, text)
        except MatrixActionError as exc:
            logger.warning(
                "Could not tell %s about an unreadable message: %s", room_id, exc.message
            )

    # ---- sync ----------------------------------------------------------------------------

    def _joined_in(self, events: list[Any]) -> bool:
        return any(
            isinstance(e, RoomMemberEvent)
            and e.state_key == self._client.user_id
            and e.membership == "join"
            for e in events
        )

    async def on_sync(self, response: SyncResponse) -> None:
        for room_id in response.rooms.leave:
            # A withdrawn or refused invitation arrives as a leave, which nio does not apply
            # to its list of invitations: a held one must not be accepted later.
            self._held_invites.pop(room_id, None)
            self._client.invited_rooms.pop(room_id, None)
        for room_id, info in response.rooms.join.items():
            timeline = info.timeline
            if timeline.limited:
                if not self._joined_in(timeline.events):
                    logger.warning(
                        "Gappy sync in %s: events before %s were skipped",
                        room_id,
                        timeline.prev_batch,
                    )
                else:  # the sync that brings our own join is always cut to the latest events
                    logger.debug("First sync of %s starts at %s", room_id, timeline.prev_batch)
                for listener in self._listeners:
                    self._tasks.spawn(
                        listener.on_gap(RoomId(room_id), timeline.prev_batch), "listener gap"
                    )
        for listener in self._listeners:
            if isinstance(listener, SyncCommitListener):
                self._tasks.spawn(listener.after_sync(response), "listener commit")
        self.retry_pending(time.monotonic())
