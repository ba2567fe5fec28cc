"""The production topology, started from processes: Synapse main + generic worker + federation
sender on PostgreSQL and Redis, behind a proxy routing like the Caddyfile, federating with an
ordinary member homeserver; the bridge and the bot on PostgreSQL with the configuration
`caducee deploy render` writes. The member homeserver is registered with `caducee admin`, as
the operator guide says, and every Synapse process's guard follows the bridge's list. Then
backup, restore into fresh databases and empty folders: the bot reads its old messages again,
the bridge signs the federation's manifest with the key peer federations pinned, and an
attachment uploaded before the backup downloads again.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import stat
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio
from nio import (
    EncryptionError,
    MegolmEvent,
    MessageDirection,
    RoomMessageNotice,
    RoomMessagesResponse,
    RoomMessageText,
)
from signedjson.key import generate_signing_key

from bot.app import init_database, production_runner
from bot.config import load_config
from bot.runner import BotRunner
from bridge.registry.keys import fingerprint_of, load
from bridge.registry.manifest import verify_manifest
from bridge.registry.model import MANIFEST_PATH, Fingerprint
from bridge.synapse_admin import SynapseAdmin
from deploy.local.ca import ensure_server_cert
from deploy.local.federation import Homeserver, HomeserverSpec, LocalFederation, RegisteredUser
from deploy.local.services import wait_for_log_line
from deploy.production.backup_archive import load_identities
from deploy.production.render import Tuning, prepare_data_dirs, render
from deploy.production.routes import Upstream
from tests.deploy_stack import (
    CADUCEE,
    ProductionStack,
    RoutingProxy,
    create_database,
    drop_database,
    free_port,
    services_missing,
    stack_settings,
    stack_topology,
)
from tests.federation_signing import SignedFederationClient
from tests.matrix_helpers import Doctor, eventually

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

_missing = services_missing()
if _missing:
    pytestmark.append(pytest.mark.skip(reason=f"production topology needs them: {_missing}"))

PEER_MEMBER = "Hôpital du pair"


async def _reply(
    doctor: Doctor,
    sender: str,
    predicate: Callable[[str], bool] = lambda body: True,
    *,
    after: int = 0,
    timeout: float = 60.0,
) -> str:
    """The first message from `sender` after index `after` whose body matches.

    Over federation a room key (to-device, an EDU) may arrive after the message it unlocks
    (a PDU in another transaction), as Element also experiences; like Element, decrypt again
    when the key arrives instead of failing at first sight.
    """

    async def probe() -> str | None:
        for event in doctor.seen[after:]:
            if getattr(event, "sender", None) != sender:
                continue
            if isinstance(event, MegolmEvent):
                try:
                    event = doctor.client.decrypt_event(event)
                except EncryptionError:
                    continue
            body = str(getattr(event, "body", ""))
            if isinstance(event, (RoomMessageText, RoomMessageNotice)) and predicate(body):
                return body
        return None

    return await eventually(probe, timeout=timeout, every=0.2)


@dataclass
class ProdHomeserver:
    """The production homeserver seen by test clients: through the proxy, like Element."""

    server_name: str
    client_url: str  # the proxy
    admin_url: str  # the main process's client listener (the admin API is not proxied)
    shared_secret: str

    async def register_user(
        self, localpart: str, password: str, *, admin: bool = False, displayname: str | None = None
    ) -> RegisteredUser:
        async with aiohttp.ClientSession() as http:
            session = await SynapseAdmin(http, self.admin_url).register(
                self.shared_secret, localpart, password, admin=admin, displayname=displayname
            )
        return RegisteredUser(session.user_id, session.access_token, session.device_id, password)


@dataclass
class Deployment:
    base: Path
    peer: Homeserver
    stack: ProductionStack
    proxy: RoutingProxy
    prod: ProdHomeserver
    bot: BotRunner | None = None
    databases: list[str] = field(default_factory=list)

    async def start_bot(self) -> BotRunner:
        assert self.stack.rendered is not None
        config = load_config(self.stack.rendered.bot)
        await init_database(config)  # `caducee bot init`, once; then the bot starts
        self.bot = production_runner(config)
        await self.bot.start()
        return self.bot

    async def stop_bot(self) -> None:
        if self.bot is not None:
            await self.bot.stop()
            self.bot = None


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


async def _caducee(*args: str) -> Done:
    """Run the operator's command as a process, as an operator would."""
    process = await asyncio.create_subprocess_exec(
        *CADUCEE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode is not None
    return Done(process.returncode, out.decode(), err.decode())


async def _register_member(bridge_config: Path, member: str, server: str) -> None:
    """Let a member homeserver in the way the operator guide says: `caducee admin`."""
    for args in (
        ("member", "add", member),
        ("homeserver", "add", server, "--member", member),
    ):
        done = await _caducee("admin", *args, "-c", str(bridge_config))
        assert done.returncode == 0, done.stderr


async def _fresh_databases(run: str, label: str) -> dict[str, str]:
    names = {which: f"caducee_t_{run}_{label}_{which}" for which in ("synapse", "bridge", "bot")}
    await create_database(names["synapse"], synapse=True)
    await create_database(names["bridge"])
    await create_database(names["bot"])
    return names


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def deployment(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    base = tmp_path_factory.mktemp("production")
    tls_port, plain_port = free_port(), free_port()
    prod_name = f"localhost:{tls_port}"
    peer_spec = HomeserverSpec(
        "peer", free_port(), free_port(), free_port(), allowed_servers=(prod_name,), testing=True
    )
    federation = LocalFederation(base / "peer", [peer_spec])
    ca = federation["peer"].ca
    run = uuid.uuid4().hex[:8]
    databases = await _fresh_databases(run, "a")
    settings = stack_settings(prod_name, (peer_spec.server_name,))
    tuning = Tuning(
        testing=True,
        ca_cert=ca.cert,
        ip_range_whitelist=("127.0.0.1/32", "::1/128"),
        bot_homeserver_url=f"http://127.0.0.1:{plain_port}",
        extra_guard_config={"refresh_seconds": 1},
    )
    stack = ProductionStack(settings, stack_topology(base / "prod", databases), tuning)
    proxy = RoutingProxy(stack.topology, tls_port, plain_port, ensure_server_cert(ca, base))
    deployment = Deployment(
        base,
        federation["peer"],
        stack,
        proxy,
        ProdHomeserver(
            prod_name,
            proxy.client_url,
            stack.main_client_url,
            settings.secrets["SYNAPSE_REGISTRATION_SHARED_SECRET"],
        ),
        databases=list(databases.values()),
    )
    try:
        await proxy.start()
        await asyncio.gather(federation.start(), stack.start())
        assert stack.rendered is not None
        await _register_member(stack.rendered.bridge, PEER_MEMBER, peer_spec.server_name)
        # Every Synapse process now runs the registry's list, not the rendered one.
        await stack.wait_guards_follow({prod_name, peer_spec.server_name})
        async with aiohttp.ClientSession() as http:
            await SynapseAdmin(http, stack.main_client_url).register(
                settings.secrets["SYNAPSE_REGISTRATION_SHARED_SECRET"],
                settings.bot_localpart,
                settings.secrets["CADUCEE_BOT_PASSWORD"],
            )
        await deployment.start_bot()
        yield deployment
    finally:
        with contextlib.suppress(Exception):
            await deployment.stop_bot()
        deployment.stack.stop()
        federation.stop()
        await proxy.stop()
        for name in deployment.databases:
            with contextlib.suppress(Exception):
                await drop_database(name)


async def test_encrypted_conversation_with_the_bot_goes_through_the_worker(
    deployment: Deployment, tmp_path: Path
) -> None:
    bot = deployment.bot
    assert bot is not None
    proxy = deployment.proxy
    for hs in (deployment.peer, deployment.prod):  # over federation, and on its own server
        doctor = await Doctor.create(hs, tmp_path, name=f"doc-{uuid.uuid4().hex[:4]}")  # type: ignore[arg-type]
        try:
            room_id = await doctor.dm(bot.user_id, timeout=40)
            await doctor.send(room_id, "!help")
            reply = await _reply(doctor, bot.user_id, lambda b: "!find" in b)
            assert "!case" in reply
        finally:
            await doctor.close()
    # The bot's and the local doctor's client traffic went to the generic worker...
    for fragment in ("/sync", "/send/m.room", "/keys/upload", "/keys/query", "/keys/claim"):
        assert proxy.count(Upstream.WORKER, fragment) > 0, fragment
    # ...and so did the peer's inbound federation (invites, joins, transactions).
    assert proxy.count(Upstream.WORKER, "/_matrix/federation/v1/send/") > 0
    assert proxy.count(Upstream.WORKER, "/invite/") > 0
    # Outbound federation left through the federation sender, never the main process.
    logs = deployment.stack.topology.synapse_data_dir / "logs"
    sent = "/_matrix/federation/v1/send/"
    assert sent in (logs / "federation_sender1.log").read_text()
    assert sent not in (logs / "main.log").read_text()


async def test_admin_api_is_not_reachable_through_the_proxy(deployment: Deployment) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{deployment.proxy.client_url}/_synapse/admin/v1/server_version") as r:
            assert r.status == 404
        # the same request on the internal listener answers: the proxy is what blocks it
        url = f"{deployment.stack.main_client_url}/_synapse/admin/v1/server_version"
        async with http.get(url) as r:
            assert r.status == 200


async def test_an_outsider_is_refused_by_every_process_and_the_registry_decides_live(
    deployment: Deployment,
) -> None:
    """A server off the registry gets "Federation denied" from the process that serves
    federation behind the proxy; `caducee admin homeserver add` lets it in on every Synapse
    process (each logs its federation whitelist) within 30 s, and `remove` cuts it off again,
    without a restart. The member peer, signing the same request, is the control."""
    stack, prod, peer = deployment.stack, deployment.prod, deployment.peer
    assert stack.rendered is not None
    user = await prod.register_user(f"target-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex)
    uri = f"/_matrix/federation/v1/user/devices/{quote(user.user_id, safe='')}"
    stranger = f"localhost:{free_port()}"
    outsider = SignedFederationClient(stranger, generate_signing_key("o"), peer.ca.cert)

    async def whitelists(change: str, start: float) -> float:
        """Seconds from `start` (the operator's command returned) until every process
        applied the change (at most the guard's refresh interval, 1 s here, 10 s rendered)."""
        for name, log in stack.synapse_logs().items():
            await wait_for_log_line(log, change, name=name, timeout=30)
        return time.monotonic() - start

    async with aiohttp.ClientSession() as http:

        async def denied() -> bool:
            reply = await outsider.request(http, "GET", prod.server_name, uri)
            return reply.status == 403 and "Federation denied" in str(reply.body.get("error"))

        assert await denied()
        control = await SignedFederationClient.of(peer).request(http, "GET", prod.server_name, uri)
        assert control.status == 200, control.body

        await _register_member(stack.rendered.bridge, "Clinique C", stranger)
        let_in = await whitelists(f"added ['{stranger}']", time.monotonic())
        assert not await denied(), "let in: Synapse now checks its signature instead"
        for args in (("homeserver", "remove", stranger), ("member", "remove", "Clinique C")):
            done = await _caducee("admin", *args, "-c", str(stack.rendered.bridge))
            assert done.returncode == 0, done.stderr
        cut_off = await whitelists(f"removed ['{stranger}']", time.monotonic())
        assert await denied()
    assert max(let_in, cut_off) < 30
    print(f"registry change on every process: {let_in:.1f} s in, {cut_off:.1f} s out")


async def _messages(bot: BotRunner, room_id: str) -> list[Any]:
    assert bot.client is not None
    response = await bot.client.room_messages(
        room_id, start=bot.client.next_batch, direction=MessageDirection.back, limit=100
    )
    assert isinstance(response, RoomMessagesResponse), response
    return list(response.chunk)


async def _signed_manifest(bridge_url: str, pinned: Fingerprint) -> dict[str, Any]:
    """The federation's manifest, checked as a peer federation that pinned `pinned` does."""
    async with aiohttp.ClientSession() as http, http.get(bridge_url + MANIFEST_PATH) as answer:
        assert answer.status == 200
        document: dict[str, Any] = await answer.json()
    verdict = verify_manifest(document, pinned, datetime.now(UTC), None)
    assert verdict.accepted, verdict.message
    assert set(document["verify_keys"].values()) == {pinned}
    return document


async def _upload(prod: ProdHomeserver, user: RegisteredUser, data: bytes) -> str:
    """Upload through the client API (the proxy, as Element does); returns the mxc:// URI."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{prod.client_url}/_matrix/media/v3/upload?filename=scan.bin",
            data=data,
            headers={
                "Authorization": f"Bearer {user.access_token}",
                "Content-Type": "application/octet-stream",
            },
        ) as answer,
    ):
        assert answer.status == 200, await answer.text()
        uri = str((await answer.json())["content_uri"])
    assert uri.startswith(f"mxc://{prod.server_name}/")
    return uri


async def _download(prod: ProdHomeserver, user: RegisteredUser, uri: str) -> bytes:
    server_and_id = uri.removeprefix("mxc://")
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{prod.client_url}/_matrix/client/v1/media/download/{server_and_id}",
            headers={"Authorization": f"Bearer {user.access_token}"},
        ) as answer,
    ):
        assert answer.status == 200, await answer.text()
        return await answer.read()


def _media_file(media_store: Path, uri: str) -> Path:
    """Where Synapse keeps a local upload: local_content/<2>/<2>/<rest of the media id>."""
    media_id = uri.rsplit("/", 1)[1]
    return media_store / "local_content" / media_id[:2] / media_id[2:4] / media_id[4:]


def open_archive(archive: Path, key_file: Path) -> tarfile.TarFile:
    """A backup archive decrypted with the operator's identity, for looking inside."""
    import pyrage

    plain = pyrage.decrypt(archive.read_bytes(), load_identities(key_file))
    return tarfile.open(fileobj=io.BytesIO(plain), mode="r:")


async def test_backup_then_restore_into_fresh_databases_brings_the_bot_back(
    deployment: Deployment, tmp_path: Path
) -> None:
    bot = deployment.bot
    assert bot is not None
    doctor = await Doctor.create(deployment.peer, tmp_path, name="doc-backup")
    try:
        room_id = await doctor.dm(bot.user_id, timeout=40)
        secret_words = f"!find before-backup-{uuid.uuid4().hex[:6]}"
        await doctor.send(room_id, secret_words)
        # the bot read it (an unreadable message would get a different notice)
        await _reply(doctor, bot.user_id, lambda b: "unavailable" in b or "No result" in b)
        device_before = bot.device_id

        stack = deployment.stack
        # The federation's key, as peer federations pinned it, and an attachment.
        federation_key = stack.topology.bridge_data_dir / "federation.signing.key"
        pinned = fingerprint_of(load(federation_key))
        await _signed_manifest(stack.bridge_url, pinned)
        uploader = await deployment.prod.register_user(f"up-{uuid.uuid4().hex[:6]}", "pw-upload")
        attachment = os.urandom(64 * 1024)  # encrypted by clients: it looks like this
        media_uri = await _upload(deployment.prod, uploader, attachment)
        media_store = stack.topology.synapse_data_dir / "media_store"
        stored = _media_file(media_store, media_uri)
        assert stored.read_bytes() == attachment

        # Back up with the operator's command, services stopped (as deploy/README.md says).
        await deployment.stop_bot()
        assert stack.rendered is not None
        stack.stop()
        out = tmp_path / "backups"
        key_file = tmp_path / "operator" / "backup-key.txt"  # the operator's, off the server
        key_file.parent.mkdir()
        done = await _caducee("deploy", "backup-key", "--out", str(key_file))
        assert done.returncode == 0, done.stderr
        recipient = done.stdout.rsplit(" ", 1)[1].strip()
        done = await _caducee(
            "deploy", "backup", "--config", str(stack.rendered.manifest), "--out", str(out),
            "--recipient", recipient,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "Warning" not in done.stderr
        (archive,) = out.glob("caducee-backup-*.tar.age")
        done = await _caducee("deploy", "verify", str(archive), "--identity", str(key_file))
        assert done.returncode == 0 and "intact" in done.stdout, done.stderr
        assert stat.S_IMODE(archive.stat().st_mode) == 0o600
        assert stat.S_IMODE(out.stat().st_mode) == 0o700
        media_member = f"media/synapse_media_store/{stored.relative_to(media_store)}"
        with open_archive(archive, key_file) as tar:
            # members keep their modes
            assert tar.getmember(media_member).mode == stat.S_IMODE(stored.stat().st_mode)
            assert tar.getmember("paths/bridge_federation_key").mode == 0o600

        # --no-media: the same backup without the media store, for operators who copy it apart.
        no_media_out = tmp_path / "backups-no-media"
        done = await _caducee(
            "deploy", "backup", "--config", str(stack.rendered.manifest),
            "--out", str(no_media_out), "--no-media", "-r", recipient,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "synapse_media_store" in done.stderr and "--no-media" in done.stderr
        (lean,) = no_media_out.glob("caducee-backup-*.tar.age")
        with open_archive(lean, key_file) as tar:
            lean_names = tar.getnames()
        assert not any(name.startswith("media/") for name in lean_names)
        assert "paths/bridge_federation_key" in lean_names
        assert lean.stat().st_size < archive.stat().st_size

        # A new machine: fresh databases, empty data folders, same settings and ports.
        run = uuid.uuid4().hex[:8]
        databases = await _fresh_databases(run, "r")
        deployment.databases += list(databases.values())
        new_base = tmp_path / "restored"
        topology = replace(
            stack.topology,
            databases=databases,
            config_dir=new_base / "etc",
            synapse_data_dir=new_base / "synapse",
            bot_data_dir=new_base / "bot",
            bridge_data_dir=new_base / "bridge",
        )
        restored = replace(stack, topology=topology, rendered=None, processes=[])
        prepare_data_dirs(topology)
        restored.rendered = render(
            restored.settings, topology, topology.config_dir, restored.tuning
        )
        # A backup of the new machine before its bridge ever ran: the key is not there yet.
        done = await _caducee(
            "deploy", "backup", "--config", str(restored.rendered.manifest),
            "--out", str(tmp_path / "backups-before-bridge"), "-r", recipient,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        assert "Warning: bridge_federation_key" in done.stderr
        assert "is not there yet" in done.stderr

        restore = ["deploy", "restore", str(archive), "--config", str(restored.rendered.manifest)]
        done = await _caducee(*restore, "--identity", str(key_file))
        assert done.returncode == 0, done.stderr
        # a second restore is refused: the databases are no longer fresh
        again = await _caducee(*restore, "--identity", str(key_file))
        assert again.returncode == 1 and "not empty" in again.stderr
        assert "Traceback" not in again.stderr
        key = topology.synapse_data_dir / "signing.key"
        assert key.read_text() == (stack.topology.synapse_data_dir / "signing.key").read_text()
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        restored_federation_key = topology.bridge_data_dir / "federation.signing.key"
        assert restored_federation_key.read_bytes() == federation_key.read_bytes()
        assert stat.S_IMODE(restored_federation_key.stat().st_mode) == 0o600
        restored_media = _media_file(topology.synapse_data_dir / "media_store", media_uri)
        assert restored_media.read_bytes() == attachment
        assert restored_media.stat().st_mode == stored.stat().st_mode

        deployment.stack = restored
        await restored.start()
        # The registry came back with the bridge's database: the peer is still let in.
        await restored.wait_guards_follow({deployment.peer.server_name})
        # Peer federations still accept the manifest: signed with the key they pinned.
        await _signed_manifest(restored.bridge_url, pinned)
        # The attachment downloads again, from the restored database and media store.
        assert await _download(deployment.prod, uploader, media_uri) == attachment
        bot = await deployment.start_bot()
        assert bot.device_id == device_before  # same device, from the restored crypto store

        # Old messages decrypt with the restored Megolm sessions.
        bodies = [e.body for e in await _messages(bot, room_id) if isinstance(e, RoomMessageText)]
        assert secret_words in bodies

        # And the conversation goes on, over federation, with the same signing key.
        after = len(doctor.seen)
        await doctor.send(room_id, "!help")
        await _reply(doctor, bot.user_id, lambda b: "!find" in b, after=after)
    finally:
        await doctor.close()


async def test_bridge_runs_on_the_deployment_database(deployment: Deployment) -> None:
    from bridge.config import load_config as load_bridge_config
    from bridge.http.meta_routes import HEALTH_PATH

    stack = deployment.stack
    assert stack.rendered is not None
    config = load_bridge_config(stack.rendered.bridge)
    assert config.effective_database_url.startswith("postgresql+asyncpg://")
    async with aiohttp.ClientSession() as http, http.get(stack.bridge_url + HEALTH_PATH) as answer:
        assert answer.status == 200
    assert config.data_dir.is_dir()
    # The member registered with `caducee admin` is in the registry the guards follow.
    done = await _caducee("admin", "member", "list", "-c", str(stack.rendered.bridge))
    assert done.returncode == 0, done.stderr
    assert f"{PEER_MEMBER}: {deployment.peer.server_name}" in done.stdout
