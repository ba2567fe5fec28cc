"""One Synapse homeserver of the local federation: its configuration and its process.

The same code runs the demo (`caducee local up`) and the test fixtures, so what the tests
prove is what a newcomer runs. Configuration comes from `synapse-config/` templates; secrets
(signing key, macaroon and registration secrets) are created once in the homeserver's data
directory and reused, so a restart keeps accounts, devices and rooms.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jinja2
from signedjson.key import generate_signing_key, write_signing_keys

from bridge.synapse_admin import Session, SynapseAdmin, SynapseAdminError
from deploy.local.ca import CertPaths, ensure_server_cert, write_private
from deploy.local.process import ManagedProcess
from deploy.local.state import REPO_ROOT

logger = logging.getLogger(__name__)

SYNAPSE_CONFIG_DIR = REPO_ROOT / "synapse-config"
ADMIN_LOCALPART = "admin"


@dataclass(frozen=True)
class HomeserverSpec:
    """What a homeserver of the local federation is: names, ports and policy knobs."""

    name: str  # short label: "a", "b"
    federation_port: int  # the server name's port: localhost:<federation_port>
    client_port: int
    metrics_port: int
    allowed_servers: tuple[str, ...] = ()  # other homeservers it federates with
    restrict_federation: bool = True  # render federation_domain_whitelist
    testing: bool = False  # fast bcrypt, relaxed rate limits, 1 s retention jobs
    extra_guard_config: dict[str, Any] = field(default_factory=dict)
    login_address_relaxed: bool = False  # demo: every client signs in from 127.0.0.1
    oidc_providers: tuple[dict[str, Any], ...] = ()  # Pro Santé Connect sign-in

    @property
    def server_name(self) -> str:
        return f"localhost:{self.federation_port}"

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"


@dataclass(frozen=True, slots=True)
class RegisteredUser:
    user_id: str
    access_token: str
    device_id: str
    password: str


def _load_or_create_secrets(data_dir: Path) -> dict[str, str]:
    path = data_dir / "secrets.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    values = {
        "macaroon_secret_key": secrets.token_urlsafe(32),
        "form_secret": secrets.token_urlsafe(32),
        "registration_shared_secret": secrets.token_urlsafe(32),
        "admin_password": secrets.token_urlsafe(18),
    }
    write_private(path, json.dumps(values, indent=2).encode())
    return values


def render_config(spec: HomeserverSpec, data_dir: Path, ca: CertPaths) -> Path:
    """Write homeserver.yaml (and its log config, keys, certificate) into `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    values = _load_or_create_secrets(data_dir)
    signing_key = data_dir / "signing.key"
    if not signing_key.exists():
        fd = os.open(signing_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            write_signing_keys(handle, [generate_signing_key("a_" + secrets.token_hex(2))])
    tls = ensure_server_cert(ca, data_dir)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(SYNAPSE_CONFIG_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - YAML, values are passed through tojson
    )
    log_config = data_dir / "log.yaml"
    log_config.write_text(
        env.get_template("log.yaml.j2").render(
            log_file=str(data_dir / "homeserver.log"), log_level="INFO"
        )
    )
    whitelist = [spec.server_name, *spec.allowed_servers]
    guard_config: dict[str, Any] = {"allowed_servers": whitelist, **spec.extra_guard_config}
    text = env.get_template("homeserver.yaml.j2").render(
        server_name=spec.server_name,
        data_dir=str(data_dir),
        public_baseurl=spec.client_url + "/",
        federation_port=spec.federation_port,
        federation_bind=["127.0.0.1"],
        client_port=spec.client_port,
        metrics_port=spec.metrics_port,
        x_forwarded=False,
        tls_cert=str(tls.cert),
        tls_key=str(tls.key),
        ca_cert=str(ca.cert),
        federation_whitelist=whitelist if spec.restrict_federation else None,
        ip_range_whitelist=["127.0.0.1/32", "::1/128"],
        federation_min_retry="1s" if spec.testing else "10s",
        federation_max_retry="5s" if spec.testing else "5m",
        database={"name": "sqlite3", "args": {"database": str(data_dir / "homeserver.db")}},
        log_config=str(log_config),
        signing_key_path=str(signing_key),
        macaroon_secret_key=values["macaroon_secret_key"],
        form_secret=values["form_secret"],
        registration_shared_secret=values["registration_shared_secret"],
        bcrypt_rounds=4 if spec.testing else 12,
        retention_default_max="30d",
        retention_min="1s" if spec.testing else "30s",
        retention_max="365d",
        retention_purge_interval="1s" if spec.testing else "1m",
        redaction_retention_period="5m",
        media_local_lifetime="30d",
        media_remote_lifetime="7d",
        rate_limits_relaxed=spec.testing,
        login_address_relaxed=spec.login_address_relaxed,
        oidc_providers=list(spec.oidc_providers),
        sso_template_dir=str(SYNAPSE_CONFIG_DIR / "templates"),
        guard_config=guard_config,
    )
    path = data_dir / "homeserver.yaml"
    write_private(path, text.encode())
    return path


class Homeserver:
    """A running (or startable) Synapse process with its admin session."""

    def __init__(self, spec: HomeserverSpec, data_dir: Path, ca: CertPaths) -> None:
        self.spec = spec
        self.name = spec.name
        self.server_name = spec.server_name
        self.client_url = spec.client_url
        self.data_dir = data_dir
        self.ca = ca
        self.config_path = data_dir / "homeserver.yaml"
        self.log_path = data_dir / "homeserver.log"
        self._process = ManagedProcess(
            f"homeserver {spec.server_name}",
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            data_dir / "stdout.log",
            f"{spec.client_url}/_matrix/client/versions",
            cwd=data_dir,
            extra_logs=(self.log_path,),
        )
        self.admin_user_id = f"@{ADMIN_LOCALPART}:{spec.server_name}"
        self.admin_token = ""
        self._secrets: dict[str, str] = {}

    @property
    def admin_password(self) -> str:
        return self._secrets["admin_password"]

    @property
    def registration_shared_secret(self) -> str:
        return self._secrets["registration_shared_secret"]

    def prepare(self) -> None:
        render_config(self.spec, self.data_dir, self.ca)
        self._secrets = _load_or_create_secrets(self.data_dir)

    def launch(self) -> None:
        """Start the Synapse process (returns at once; see `wait_ready`)."""
        self.prepare()
        self._process.launch()

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._process.process

    async def wait_ready(self, http: aiohttp.ClientSession, timeout: float = 60.0) -> None:
        """Wait until the client API answers; fail with the log's tail if Synapse died."""
        await self._process.wait_ready(http, timeout)

    def log_tail(self, lines: int = 30) -> str:
        return self._process.log_tail(lines)

    async def ensure_admin(self, http: aiohttp.ClientSession) -> None:
        """Create the server admin account once; sign it in (reusing a saved token)."""
        admin = SynapseAdmin(http, self.client_url)
        token_file = self.data_dir / "admin-session.json"
        if token_file.exists():
            saved = json.loads(token_file.read_text())
            try:
                await admin.whoami(saved["access_token"])
            except SynapseAdminError:
                pass
            else:
                self.admin_token = saved["access_token"]
                return
        try:
            session = await admin.register(
                self.registration_shared_secret, ADMIN_LOCALPART, self.admin_password, admin=True
            )
        except SynapseAdminError as error:
            if error.errcode != "M_USER_IN_USE":
                raise
            session = await admin.login(self.admin_user_id, self.admin_password)
        self.admin_token = session.access_token
        write_private(token_file, json.dumps({"access_token": session.access_token}).encode())

    async def register_user(
        self,
        localpart: str,
        password: str,
        *,
        admin: bool = False,
        displayname: str | None = None,
    ) -> RegisteredUser:
        """Create an account (shared-secret registration) and return a signed-in session."""
        async with aiohttp.ClientSession() as http:
            session = await SynapseAdmin(http, self.client_url).register(
                self.registration_shared_secret,
                localpart,
                password,
                admin=admin,
                displayname=displayname,
            )
        return RegisteredUser(session.user_id, session.access_token, session.device_id, password)

    async def ensure_user(
        self, localpart: str, password: str, *, displayname: str | None = None
    ) -> str:
        """Create an account unless it exists (the demo's accounts survive restarts)."""
        async with aiohttp.ClientSession() as http:
            admin = SynapseAdmin(http, self.client_url)
            try:
                session: Session = await admin.register(
                    self.registration_shared_secret, localpart, password, displayname=displayname
                )
            except SynapseAdminError as error:
                if error.errcode != "M_USER_IN_USE":
                    raise
                return f"@{localpart}:{self.server_name}"
        return session.user_id

    def terminate(self) -> None:
        self._process.terminate()

    def wait_stopped(self, timeout: float = 15.0) -> None:
        """Wait for a clean exit after `terminate`; kill the process group past `timeout`."""
        self._process.wait_stopped(timeout)
