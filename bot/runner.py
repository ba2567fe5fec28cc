"""The bot's lifecycle: log in (or restore the same device), prove E2EE works, cross-sign,
judge devices, sync forever, stop cleanly.

Order at start matters: the store files are created private before nio opens them; device
keys are published before the device can be signed; the trust hook is installed before the
first key query; commands are dispatched only after the first sync, so a restart resumes from
the stored sync token without replaying history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Container
from contextlib import AsyncExitStack
from typing import Any

from nio import AsyncClientConfig, KeysUploadError

from bot.aio import wait_until
from bot.checkpoint import SyncCheckpoints
from bot.config import BotConfig, TrustMode
from bot.crypto.bootstrap import CrossSigningOutcome, ensure_cross_signed
from bot.crypto.device_trust import DeviceTrust
from bot.crypto.keyfiles import PinStore, ensure_private_dir, ensure_private_file
from bot.events import DirectJoinHook, EventRouter, MessageHandler, SyncListener, TaskSet
from bot.identity.gate import IdentityGate
from bot.matrix.actions import NioActions
from bot.matrix.client import CaduceeClient
from bot.matrix.homeserver import NioJson
from bot.members import open_member_servers
from bot.session import (
    LoginError,
    load_session,
    password_login,
    save_session,
    token_still_valid,
)
from bot.sync_filter import START_FILTER, SYNC_FILTER

logger = logging.getLogger(__name__)

CROSS_SIGNING_FILE = "cross_signing.json"
PINS_FILE = "trusted_identities.json"
SYNC_TIMEOUT_MS = 30_000
SYNC_RETRY_MAX_S = 4.0
"""The longest pause between two attempts to reach the homeserver (nio's own retries and the
sync loop's): once it is back, the bot answers doctors within seconds, not after a minute."""
SYNC_RECOVERED_AFTER_S = 60.0


def sync_retry_delay(previous: float, ran_for: float) -> float:
    """How long to wait before syncing again after a failure: 1 s, doubling while failures
    follow each other up to `SYNC_RETRY_MAX_S`, back to 1 s once a sync loop has run a full
    minute (an outage long ago must not slow the recovery from the next one)."""
    if previous <= 0 or ran_for >= SYNC_RECOVERED_AFTER_S:
        return 1.0
    return min(previous * 2, SYNC_RETRY_MAX_S)


def client_config(pickle_key: str) -> AsyncClientConfig:
    """The bot's nio settings: E2EE on, sync tokens saved by `SyncCheckpoints` once their events
    are handled, and nio's retry pause capped like the sync loop's (nio's default is 60 s)."""
    return AsyncClientConfig(
        encryption_enabled=True,
        store_sync_tokens=False,
        pickle_key=pickle_key,
        max_timeout_retry_wait_time=SYNC_RETRY_MAX_S,
    )


READY_TIMEOUT = 600.0
"""How long the first sync may take before the bot gives up. A bot in thousands of rooms
without a sync token (a cold start) downloads every room's state first: at 4 300 rooms on a
loaded homeserver that took more than the 60 s this used to be, and the bot never started."""

HandlerFactory = Callable[[NioActions, AsyncExitStack], Awaitable[MessageHandler]]


class E2EEUnavailable(RuntimeError):
    """The encryption machinery did not start; the bot must not run (it would leak
    plaintext into encrypted rooms, or be deaf)."""


class BotRunner:
    """One bot process (or one asyncio task in tests).

    Args:
        config: the validated configuration.
        handler_factory: builds the message handler once Matrix is ready (the production one,
            the commands and the expiry engine, comes from `bot.app.production_runner`);
            resources it opens go on the given exit stack.
    """

    def __init__(self, config: BotConfig, handler_factory: HandlerFactory) -> None:
        self.config = config
        self._handler_factory = handler_factory
        self._stack = AsyncExitStack()
        self._tasks = TaskSet()
        self._listeners: list[SyncListener] = []
        self._generation = asyncio.Event()
        self._ready = asyncio.Event()
        self._sync_task: asyncio.Task[None] | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self.client: CaduceeClient | None = None
        self.actions: NioActions | None = None
        self.router: EventRouter | None = None
        self.identity_gate: IdentityGate | None = None
        self.on_direct_join: DirectJoinHook | None = None
        """Set by the handler factory: told of each direct chat the bot joins."""
        """Holds back the commands of doctors whose identity reset is pending."""
        self.cross_signing: CrossSigningOutcome | None = None
        self._checkpoints: SyncCheckpoints | None = None
        self._cold = True
        """No sync token at start: the first sync takes `START_FILTER` (no room), pending
        invitations are read in the background."""
        self._full_state_first = False
        """The joined rooms could not be listed: the first sync asks for every room's state."""
        self.member_servers: Container[str] = config.effective_member_servers
        """Whose users the bot serves; follows the registry once started with follow_registry."""

    @property
    def user_id(self) -> str:
        return self.config.user_id

    @property
    def device_id(self) -> str:
        assert self.client is not None
        return str(self.client.device_id)

    def add_listener(self, listener: SyncListener) -> None:
        """Register an engine that must see every event (call before `start`)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Log in, check E2EE, cross-sign, start syncing; returns after the first sync."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        config = self.config
        store_dir = ensure_private_dir(config.store_dir)
        pickle_key = config.resolve_pickle_key()
        client = CaduceeClient(
            config.homeserver_url,
            config.user_id,
            store_path=str(store_dir),
            config=client_config(pickle_key),
        )
        self.client = client
        session = load_session(store_dir, config.user_id)
        if session is not None and not await token_still_valid(client, session):
            logger.warning("The saved login of %s is no longer valid; logging in again", session)
            session = None
        if session is None:
            session = await password_login(
                client, config.user_id, config.password_value(), config.device_name
            )
            save_session(store_dir, session)
            logger.info("Logged in as %s on new device %s", session.user_id, session.device_id)
        else:
            logger.info("Restored device %s of %s", session.device_id, session.user_id)
        ensure_private_file(store_dir / f"{session.user_id}_{session.device_id}.db")
        client.restore_login(session.user_id, session.device_id, session.access_token)
        if client.olm is None or client.store is None:
            raise E2EEUnavailable(
                "end-to-end encryption did not start (no crypto store loaded): check that "
                "matrix-nio is installed with its e2e extra and store_dir is writable"
            )
        client.loaded_sync_token = client.store.load_sync_token() or ""
        self._cold = not client.loaded_sync_token
        self._checkpoints = SyncCheckpoints(client.store.save_sync_token)
        if client.should_upload_keys:
            uploaded = await client.keys_upload()
            if isinstance(uploaded, KeysUploadError):
                raise E2EEUnavailable(f"could not publish the device keys: {uploaded.message}")
        self.cross_signing = await ensure_cross_signed(
            NioJson(client),
            session.user_id,
            session.device_id,
            store_dir / CROSS_SIGNING_FILE,
            config.password_value(),
            replace_foreign=config.replace_foreign_identity,
        )
        trust = DeviceTrust(
            client, PinStore(store_dir / PINS_FILE), self.cross_signing.master_public, config.trust
        )
        client.on_keys_query = trust.apply_query
        # Re-judge everyone we know at the first key query: pins or mode may have changed.
        client.olm.users_for_key_query.update(client.device_store.users)
        self.actions = NioActions(
            client,
            trust,
            self.wait_for_room,
            ignore_unverified_devices=config.trust is TrustMode.ALL,
        )
        if config.trust is not TrustMode.ALL:
            self.identity_gate = IdentityGate(
                client, self.actions, trust.pins, config.unreadable_notice_interval
            )
            trust.on_identity_change = self.identity_gate.noticed
        self.member_servers = await open_member_servers(config, self._stack)
        factory = self._handler_factory
        handler = await factory(self.actions, self._stack)
        self.router = EventRouter(
            client,
            self.actions,
            handler,
            member_servers=self.member_servers,
            notice_interval=config.unreadable_notice_interval,
            grace_seconds=config.undecryptable_grace_seconds,
            tasks=self._tasks,
            gate=self.identity_gate,
            on_direct_join=self.on_direct_join,
        )
        for listener in self._listeners:
            self.router.add_listener(listener)
        self.router.register()
        # The first sync brings only what changed (nothing at all on a cold start): know every
        # joined room first.
        known = await client.know_joined_rooms()
        self._full_state_first = known is None
        logger.info(
            "%s; %s joined rooms listed",
            "Cold start (no sync token)" if self._cold else "Resuming from the sync token",
            known,
        )
        client.add_response_callback(self._on_sync, object)
        self._sync_task = asyncio.create_task(self._sync_loop(), name="bot sync")
        self._tick_task = asyncio.create_task(self._tick_loop(), name="bot ticks")
        ready = asyncio.create_task(self._ready.wait())
        done, _ = await asyncio.wait(
            {ready, self._sync_task}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            if self._sync_task in done:
                self._sync_task.result()  # re-raise the sync failure
            raise TimeoutError("the first sync did not complete in time")
        logger.info("Bot %s ready (device %s)", session.user_id, session.device_id)
        if self._cold:
            self._tasks.spawn(self._sweep_invites(client), "invite sweep")

    async def _sweep_invites(self, client: CaduceeClient) -> None:
        """Pending invitations are in no incremental sync: read them once after a cold start."""
        found = await client.sweep_invites()
        if found is not None:
            logger.info("Invitations pending since before the start: %d", found)

    async def _on_sync(self, response: Any) -> None:
        from nio import SyncResponse

        if isinstance(response, SyncResponse):
            if self._checkpoints is not None:
                self._checkpoints.add(response.next_batch, self._tasks.take_batch())
            previous, self._generation = self._generation, asyncio.Event()
            previous.set()
            self._ready.set()

    async def wait_for_room(self, room_id: str, timeout: float) -> bool:
        """Wait until the sync loop has seen us joined to `room_id`."""
        client = self.client
        assert client is not None
        return await wait_until(lambda: room_id in client.rooms, lambda: self._generation, timeout)

    async def _sync_loop(self) -> None:
        assert self.client is not None
        delay = 0.0
        first = True
        while True:
            started = time.monotonic()
            try:
                await self.client.sync_forever(
                    timeout=SYNC_TIMEOUT_MS,
                    sync_filter=SYNC_FILTER,
                    first_sync_filter=START_FILTER if first and self._cold else None,
                    full_state=first and self._full_state_first,
                )
            except asyncio.CancelledError:
                raise
            except (LoginError, E2EEUnavailable):
                raise
            except Exception as exc:
                if not self._ready.is_set() and first:
                    raise
                delay = sync_retry_delay(delay, time.monotonic() - started)
                logger.error("Sync failed (%s); retrying in %.0f s", type(exc).__name__, delay)
                await asyncio.sleep(delay)
            first = False

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self.router is not None:
                self.router.retry_pending(time.monotonic())
            if self.identity_gate is not None:
                self.identity_gate.refresh()

    async def stop(self) -> None:
        """Stop syncing, let running commands finish (briefly), release everything."""
        for task in (self._sync_task, self._tick_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._sync_task = self._tick_task = None
        await self._tasks.drain(timeout=10.0)
        await self._stack.aclose()
        if self.client is not None:
            await self.client.close()
            if self.client.store is not None:
                with contextlib.suppress(Exception):
                    self.client.store.database.close()

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Start, then run until `stop` is set."""
        await self.start()
        try:
            sync_task = self._sync_task
            assert sync_task is not None
            waiter = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({waiter, sync_task}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if sync_task in done:
                sync_task.result()
        finally:
            await self.stop()
