"""What a production deployment is: the operator's settings (`.env`) and its process layout.

`Settings` is validated from the `.env` file once; a missing or example value stops the
renderer with a message naming the variable. `Topology` says where each Synapse process
listens and where files live: `Topology.containers()` is the compose deployment,
`Topology.host()` the systemd one, and the tests build their own on loopback ports. The
compose file and the Caddyfile are checked against `Topology.containers()` by the tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from bridge.config import is_valid_server_name
from deploy.production.envfile import SECRET_KEYS, EnvFileError, read_env
from deploy.production.psc import PscDeployment

REQUIRED = (
    "CADUCEE_SERVER_NAME",
    "CADUCEE_MATRIX_HOST",
    "CADUCEE_ELEMENT_HOST",
    "CADUCEE_ADMIN_EMAIL",
)
EXAMPLE_DOMAIN = "example.org"
_HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Settings:
    """The operator's choices and the deployment's secrets."""

    server_name: str
    matrix_host: str
    element_host: str
    admin_email: str
    federation_name: str
    members: tuple[str, ...]
    bot_localpart: str
    secrets: dict[str, str] = field(repr=False)
    psc: PscDeployment | None = None
    """Pro Santé Connect sign-in (deploy.production.psc), off unless CADUCEE_PSC_ENV is set."""

    @classmethod
    def from_env(
        cls, values: dict[str, str], source: str = ".env", env_dir: Path | None = None
    ) -> Settings:
        problems: list[str] = []
        for name in REQUIRED:
            value = values.get(name, "")
            if not value:
                problems.append(f"{name} is empty")
            elif value.endswith(EXAMPLE_DOMAIN):
                problems.append(f"{name} still has its example value ({value})")
        for name in SECRET_KEYS:
            if not values.get(name):
                problems.append(f"{name} is empty: run generate-secrets")
        server_name = values.get("CADUCEE_SERVER_NAME", "")
        matrix_host = values.get("CADUCEE_MATRIX_HOST", "")
        if server_name and not is_valid_server_name(server_name):
            problems.append(f"CADUCEE_SERVER_NAME {server_name!r} is not a server name")
        for name in ("CADUCEE_MATRIX_HOST", "CADUCEE_ELEMENT_HOST"):
            if values.get(name) and not _HOST_RE.match(values[name]):
                problems.append(f"{name} {values[name]!r} is not a host name")
        if server_name and server_name in (matrix_host, values.get("CADUCEE_ELEMENT_HOST")):
            problems.append(
                "CADUCEE_SERVER_NAME must differ from CADUCEE_MATRIX_HOST and "
                "CADUCEE_ELEMENT_HOST (serve Matrix on a subdomain, e.g. matrix.<server name>)"
            )
        email = values.get("CADUCEE_ADMIN_EMAIL", "")
        if email and not _EMAIL_RE.match(email):
            problems.append(f"CADUCEE_ADMIN_EMAIL {email!r} is not an e-mail address")
        members = tuple(
            m.strip() for m in values.get("CADUCEE_FEDERATION_MEMBERS", "").split(",") if m.strip()
        )
        problems += [
            f"CADUCEE_FEDERATION_MEMBERS: {m!r} is not a server name"
            for m in members
            if not is_valid_server_name(m)
        ]
        localpart = values.get("CADUCEE_BOT_LOCALPART", "caducee") or "caducee"
        if not re.match(r"^[a-z0-9._=/+-]+$", localpart):
            problems.append(f"CADUCEE_BOT_LOCALPART {localpart!r} is not a Matrix localpart")
        try:
            psc = PscDeployment.from_env(values, env_dir)
        except EnvFileError as exc:
            problems.append(str(exc))
        if problems:
            raise EnvFileError(f"{source}: " + "; ".join(problems))
        return cls(
            server_name=server_name,
            matrix_host=matrix_host,
            element_host=values["CADUCEE_ELEMENT_HOST"],
            admin_email=email,
            federation_name=values.get("CADUCEE_FEDERATION_NAME", "") or server_name,
            members=members,
            bot_localpart=localpart,
            secrets={name: values[name] for name in SECRET_KEYS},
            psc=psc,
        )

    @classmethod
    def load(cls, path: Path) -> Settings:
        return cls.from_env(read_env(path), str(path), path.resolve().parent)

    @property
    def allowed_servers(self) -> list[str]:
        """This server first, then the other members: the guard's list until the bridge
        answers with the registry's, and the bot's and the bridge's list of members."""
        return [self.server_name, *[m for m in self.members if m != self.server_name]]


@dataclass(frozen=True)
class Endpoint:
    host: str  # where others reach it (a compose service name, or 127.0.0.1)
    port: int


@dataclass(frozen=True)
class Worker:
    """A Synapse worker process (`synapse.app.generic_worker` with a role)."""

    name: str  # worker_name, also its instance_map key
    role: str  # "generic" (client + federation HTTP) or "federation_sender"
    http: Endpoint | None  # its HTTP listener (client + federation), if it serves requests
    health: Endpoint | None = None  # a health-only listener for supervisors
    # Its replication listener, when other processes send it work: a worker that writes the
    # room events (Synapse's `stream_writers.events`) has one.
    replication: Endpoint | None = None
    writes_events: bool = False


@dataclass(frozen=True)
class Topology:
    """Where every process listens and where every file lives."""

    bind: str  # the address Synapse's internal listeners bind to
    main_client: Endpoint
    main_federation: Endpoint
    main_replication: Endpoint
    main_metrics_port: int
    workers: tuple[Worker, ...]
    redis: Endpoint
    postgres: Endpoint
    bridge: Endpoint
    config_dir: Path  # rendered configuration (synapse/, bridge/, bot/, element/)
    synapse_data_dir: Path  # signing key, media store, logs
    bridge_data_dir: Path
    bot_data_dir: Path  # the bot's crypto store and cross-signing keys
    databases: dict[str, str] = field(
        default_factory=lambda: {
            "synapse": "synapse",
            "bridge": "caducee_bridge",
            "bot": "caducee_bot",
        }
    )
    postgres_user: str = "caducee"

    @property
    def generic_workers(self) -> tuple[Worker, ...]:
        return tuple(w for w in self.workers if w.role == "generic")

    @property
    def event_writers(self) -> tuple[Worker, ...]:
        """The workers that persist room events (the main process does when there is none)."""
        return tuple(w for w in self.workers if w.writes_events)

    @property
    def federation_senders(self) -> tuple[Worker, ...]:
        return tuple(w for w in self.workers if w.role == "federation_sender")

    @classmethod
    def containers(cls) -> Topology:
        """The compose deployment: one container per process, names as compose services."""
        return cls(
            bind="0.0.0.0",  # noqa: S104 - inside the container, on the internal network only
            main_client=Endpoint("synapse", 8008),
            main_federation=Endpoint("synapse", 8448),
            main_replication=Endpoint("synapse", 9093),
            main_metrics_port=9000,
            workers=(
                Worker(
                    "generic_worker1",
                    "generic",
                    Endpoint("synapse-generic-worker", 8083),
                    replication=Endpoint("synapse-generic-worker", 9094),
                    writes_events=True,
                ),
                Worker(
                    "federation_sender1",
                    "federation_sender",
                    None,
                    Endpoint("synapse-federation-sender", 8085),
                ),
            ),
            redis=Endpoint("redis", 6379),
            postgres=Endpoint("postgres", 5432),
            bridge=Endpoint("bridge", 8780),
            config_dir=Path("/etc/caducee"),
            synapse_data_dir=Path("/var/lib/caducee/synapse"),
            bridge_data_dir=Path("/var/lib/caducee/bridge"),
            bot_data_dir=Path("/var/lib/caducee/bot"),
        )

    @classmethod
    def host(cls) -> Topology:
        """One host without containers (systemd units): everything on loopback."""
        local = "127.0.0.1"
        return cls(
            bind=local,
            main_client=Endpoint(local, 8008),
            main_federation=Endpoint(local, 8448),
            main_replication=Endpoint(local, 9093),
            main_metrics_port=9000,
            workers=(
                Worker(
                    "generic_worker1",
                    "generic",
                    Endpoint(local, 8083),
                    replication=Endpoint(local, 9094),
                    writes_events=True,
                ),
                Worker("federation_sender1", "federation_sender", None, Endpoint(local, 8085)),
            ),
            redis=Endpoint(local, 6379),
            postgres=Endpoint(local, 5432),
            bridge=Endpoint(local, 8780),
            config_dir=Path("/etc/caducee"),
            synapse_data_dir=Path("/var/lib/caducee/synapse"),
            bridge_data_dir=Path("/var/lib/caducee/bridge"),
            bot_data_dir=Path("/var/lib/caducee/bot"),
        )
