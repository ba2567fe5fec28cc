"""Render the production configuration from the operator's `.env` and the hardened template.

One source of truth: Synapse's shared configuration comes from the same
`synapse-config/homeserver.yaml.j2` as the local federation, with PostgreSQL, Redis, the
replication listener and the workers filled in; each worker's own file holds only what
Synapse's worker documentation says is per worker (app, name, listeners, log config). The
bridge, the bot, Element Web and the backup manifest are rendered from the same settings, so
a server name or a password is typed once.

Who may federate is the bridge's federation registry: every Synapse process's guard reads
the registry's list from the bridge and follows it live. The members named in `.env` are
only the list in force until the bridge first answers, so they are registered once with
`caducee admin` (`registry_reminder` says how).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import yaml

from bridge.registry.model import ALLOWED_SERVERS_PATH
from deploy.local.homeserver import SYNAPSE_CONFIG_DIR
from deploy.production.datadirs import ensure_signing_key as ensure_signing_key
from deploy.production.datadirs import init_section
from deploy.production.datadirs import prepare_data_dirs as prepare_data_dirs
from deploy.production.envfile import write_private
from deploy.production.psc import SECRET_FILE, TOKEN_FILE
from deploy.production.settings import Settings, Topology, Worker

SSO_ERROR_TEMPLATE = SYNAPSE_CONFIG_DIR / "templates" / "sso_error.html"

GENERATED_HEADER = "# Rendered by `caducee deploy render` from the deployment's .env: edit .env, "
GENERATED_HEADER += "not this file.\n"
GUARD_REFRESH_SECONDS = 10  # a registry change reaches every Synapse process within this
FEDERATION_KEY_NAME = "federation.signing.key"  # in the bridge's data_dir, by default


@dataclass(frozen=True)
class Tuning:
    """Knobs the tests turn (private CA, loopback peers, fast jobs); production uses defaults."""

    testing: bool = False
    ca_cert: Path | None = None
    ip_range_whitelist: tuple[str, ...] = ()
    bot_homeserver_url: str | None = None  # default: https://<matrix host> (through the proxy)
    extra_guard_config: dict[str, Any] = field(default_factory=dict)
    relaxed_rate_limits: bool | None = None  # default: relaxed when testing


@dataclass(frozen=True)
class Rendered:
    """Paths of everything `render` wrote."""

    homeserver: Path
    workers: dict[str, Path]
    bridge: Path
    bot: Path
    element: Path
    manifest: Path
    signing_key: Path


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(SYNAPSE_CONFIG_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - YAML, values are passed through tojson
    )


def database_url(settings: Settings, topology: Topology, which: str, driver: str = "") -> str:
    """A URL for one of the deployment's databases (`driver` e.g. "+asyncpg")."""
    password = settings.secrets["POSTGRES_PASSWORD"]
    auth = quote(topology.postgres_user, safe="")
    if password:
        auth += ":" + quote(password, safe="")
    pg = topology.postgres
    return f"postgresql{driver}://{auth}@{pg.host}:{pg.port}/{topology.databases[which]}"


def bridge_url(topology: Topology) -> str:
    """The bridge on the internal network (Synapse's guard and the bot call it there)."""
    return f"http://{topology.bridge.host}:{topology.bridge.port}"


def guard_config(settings: Settings, topology: Topology, tuning: Tuning) -> dict[str, Any]:
    """The guard's configuration: the registry's live list, the .env members until it answers."""
    return {
        "allowed_servers": settings.allowed_servers,
        "allowed_servers_url": bridge_url(topology) + ALLOWED_SERVERS_PATH,
        "refresh_seconds": GUARD_REFRESH_SECONDS,
        **tuning.extra_guard_config,
    }


def synapse_values(settings: Settings, topology: Topology, tuning: Tuning) -> dict[str, Any]:
    """The hardened template's values for the shared configuration of every process."""
    data = topology.synapse_data_dir
    redis: dict[str, Any] = {
        "enabled": True,
        "host": topology.redis.host,
        "port": topology.redis.port,
    }
    if settings.secrets.get("REDIS_PASSWORD"):
        redis["password"] = settings.secrets["REDIS_PASSWORD"]
    testing = tuning.testing
    return {
        "server_name": settings.server_name,
        "data_dir": str(data),
        "public_baseurl": f"https://{settings.matrix_host}/",
        "federation_port": topology.main_federation.port,
        "federation_bind": [topology.bind],
        "federation_tls": False,
        "federation_x_forwarded": True,
        "client_port": topology.main_client.port,
        "client_bind": [topology.bind],
        "metrics_port": topology.main_metrics_port,
        "replication_port": topology.main_replication.port,
        "replication_bind": [topology.bind],
        "x_forwarded": True,
        "ca_cert": str(tuning.ca_cert) if tuning.ca_cert else None,
        # Reason: no static list (it would need a restart): every process's guard installs
        # Synapse's federation whitelist and keeps it equal to the registry's live list.
        "federation_whitelist": None,
        "ip_range_whitelist": list(tuning.ip_range_whitelist),
        "federation_min_retry": "1s" if testing else "10s",
        "federation_max_retry": "5s" if testing else "5m",
        "database": {
            "name": "psycopg2",
            "args": {
                "user": topology.postgres_user,
                "password": settings.secrets["POSTGRES_PASSWORD"],
                "dbname": topology.databases["synapse"],
                "host": topology.postgres.host,
                "port": topology.postgres.port,
                "cp_min": 2 if testing else 5,
                "cp_max": 5 if testing else 10,
            },
        },
        "workers": {
            "redis": redis,
            "instance_map": {
                "main": {
                    "host": topology.main_replication.host,
                    "port": topology.main_replication.port,
                },
                **{
                    w.name: {"host": w.replication.host, "port": w.replication.port}
                    for w in topology.workers
                    if w.replication is not None
                },
            },
            "replication_secret": settings.secrets["SYNAPSE_WORKER_REPLICATION_SECRET"],
            "federation_sender_instances": [w.name for w in topology.federation_senders],
            # Reason: the process that serves clients writes their events itself. Each event
            # a client sends (a message, a case room's creation, a redaction) is then
            # persisted where it is created, instead of crossing to the main process and
            # waiting for the new position to come back through Redis.
            "stream_writers": events_writers(topology),
        },
        "log_config": str(topology.config_dir / "synapse" / "log-main.yaml"),
        "signing_key_path": str(data / "signing.key"),
        "macaroon_secret_key": settings.secrets["SYNAPSE_MACAROON_SECRET_KEY"],
        "form_secret": settings.secrets["SYNAPSE_FORM_SECRET"],
        "registration_shared_secret": settings.secrets["SYNAPSE_REGISTRATION_SHARED_SECRET"],
        "bcrypt_rounds": 4 if testing else 12,
        "retention_default_max": "30d",
        "retention_min": "1s" if testing else "30s",
        "retention_max": "365d",
        "retention_purge_interval": "1s" if testing else "1m",
        "redaction_retention_period": "5m",
        "media_local_lifetime": "30d",
        "media_remote_lifetime": "7d",
        "rate_limits_relaxed": testing
        if tuning.relaxed_rate_limits is None
        else tuning.relaxed_rate_limits,
        "admin_contact": f"mailto:{settings.admin_email}",
        "guard_config": guard_config(settings, topology, tuning),
        "oidc_providers": []
        if settings.psc is None
        else [settings.psc.synapse_provider(topology.config_dir / "synapse", bridge_url(topology))],
        "sso_template_dir": str(topology.config_dir / "synapse" / "templates"),
    }


def events_writers(topology: Topology) -> dict[str, list[str]]:
    """Synapse's `stream_writers`: who persists room events (the main process if nobody)."""
    writers = topology.event_writers
    for worker in writers:
        if worker.replication is None:
            raise ValueError(f"{worker.name} writes events but has no replication listener")
    return {"events": [w.name for w in writers]} if writers else {}


def worker_config(worker: Worker, topology: Topology) -> dict[str, Any]:
    """A worker's own file: only what differs per process (Synapse's worker documentation)."""
    listeners: list[dict[str, Any]] = []
    if worker.http is not None:
        listeners.append(
            {
                "type": "http",
                "port": worker.http.port,
                "bind_addresses": [topology.bind],
                "x_forwarded": True,
                "resources": [{"names": ["client", "federation"], "compress": False}],
            }
        )
    if worker.replication is not None:
        listeners.append(
            {
                "type": "http",
                "port": worker.replication.port,
                "bind_addresses": [topology.bind],
                "resources": [{"names": ["replication"]}],
            }
        )
    if worker.health is not None:
        listeners.append(
            {
                "type": "http",
                "port": worker.health.port,
                "bind_addresses": [topology.bind],
                "resources": [{"names": ["health"]}],
            }
        )
    return {
        "worker_app": "synapse.app.generic_worker",
        "worker_name": worker.name,
        "worker_log_config": str(topology.config_dir / "synapse" / f"log-{worker.name}.yaml"),
        "worker_listeners": listeners,
    }


def _yaml(data: dict[str, Any]) -> str:
    return GENERATED_HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def bridge_config(settings: Settings, topology: Topology) -> dict[str, Any]:
    return {
        "server_name": settings.server_name,
        "homeserver_url": f"http://{topology.main_client.host}:{topology.main_client.port}",
        "federation_name": settings.federation_name,
        "data_dir": str(topology.bridge_data_dir),
        "database_url": database_url(settings, topology, "bridge", "+asyncpg"),
        "listen_host": topology.bind,
        "listen_port": topology.bridge.port,
        "service_tokens": [
            {"name": "bot", "token": settings.secrets["CADUCEE_BRIDGE_BOT_TOKEN"]},
            *([] if settings.psc is None else [settings.psc.bridge_service_token()]),
        ],
        "openid_allowed_servers": settings.allowed_servers,
        "log_level": "INFO",
        **({} if settings.psc is None else {"psc": settings.psc.bridge_section()}),
    }


def bot_config(settings: Settings, topology: Topology, tuning: Tuning) -> dict[str, Any]:
    data = topology.bot_data_dir
    return {
        "homeserver_url": tuning.bot_homeserver_url or f"https://{settings.matrix_host}",
        "user_id": f"@{settings.bot_localpart}:{settings.server_name}",
        "password": settings.secrets["CADUCEE_BOT_PASSWORD"],
        "store_dir": str(data / "store"),
        "pickle_key_file": str(data / "secrets" / "pickle-key"),
        "database_url": database_url(settings, topology, "bot", "+asyncpg"),
        "bridge_url": bridge_url(topology),
        "bridge_token": settings.secrets["CADUCEE_BRIDGE_BOT_TOKEN"],
        # In force until the bridge answers; then the registry decides, as for the guards.
        "member_servers": settings.allowed_servers,
        "follow_registry": True,
        "log_level": "INFO",
    }


def element_config(settings: Settings) -> dict[str, Any]:
    """Element Web locked to this homeserver: no guests, no other servers, no third parties."""
    return {
        "default_server_config": {
            "m.homeserver": {
                "base_url": f"https://{settings.matrix_host}",
                "server_name": settings.server_name,
            }
        },
        "disable_custom_urls": True,
        "disable_guests": True,
        "disable_3pid_login": True,
        "brand": "Caducée",
        "default_country_code": "FR",
        "show_labs_settings": False,
        "room_directory": {"servers": [settings.server_name]},
        "integrations_ui_url": "",
        "integrations_rest_url": "",
        "integrations_widgets_urls": [],
        "permalink_prefix": f"https://{settings.element_host}",
        "setting_defaults": {
            "UIFeature.registration": False,
            "UIFeature.passwordReset": False,
            "UIFeature.deactivate": False,
            "UIFeature.identityServer": False,
            "UIFeature.thirdPartyId": False,
            "UIFeature.urlPreviews": False,
            "UIFeature.feedback": False,
            "UIFeature.shareSocial": False,
            "UIFeature.widgets": False,
            "UIFeature.voip": False,
            "urlPreviewsEnabled": False,
            "urlPreviewsEnabled_e2ee": False,
            "blacklistUnverifiedDevices": True,
            "sendTypingNotifications": False,
            "showReadReceipts": False,
        },
    }


def manifest(settings: Settings, topology: Topology) -> dict[str, Any]:
    """What `caducee deploy backup` saves and `caducee deploy restore` puts back.

    `paths` are secrets that must exist (restored 0600, folders 0700); `optional_paths` are
    secrets a service creates at its first start, saved once they exist (the federation's
    signing key, which peer federations pin); `media` is Synapse's media store, large, left
    out with `--no-media` by operators who back it up separately.
    """
    return {
        "databases": {
            name: database_url(settings, topology, name) for name in ("synapse", "bridge", "bot")
        },
        "paths": {
            "synapse_signing_key": str(topology.synapse_data_dir / "signing.key"),
            "bot_store": str(topology.bot_data_dir / "store"),
            "bot_secrets": str(topology.bot_data_dir / "secrets"),
        },
        "optional_paths": {
            "bridge_federation_key": {
                # The bridge's default `signing_key_file` (bridge_config sets none).
                "path": str(topology.bridge_data_dir / FEDERATION_KEY_NAME),
                "absent": "the bridge creates the federation's signing key at its first "
                "start, so no peer federation can have pinned it yet",
            },
        },
        "media": {
            # media_store_path of the hardened template
            "synapse_media_store": str(topology.synapse_data_dir / "media_store"),
        },
        # What `caducee deploy init` creates where the deployment runs (render writes no data).
        "init": init_section(topology),
        # Where `caducee deploy bot-account` finds Synapse and the bot's account settings.
        "bot_account": {
            "synapse_url": f"http://{topology.main_client.host}:{topology.main_client.port}",
            "homeserver_config": str(topology.config_dir / "synapse" / "homeserver.yaml"),
            "bot_config": str(topology.config_dir / "bot" / "bot.yaml"),
        },
    }


def render(
    settings: Settings, topology: Topology, out_dir: Path, tuning: Tuning | None = None
) -> Rendered:
    """Write every configuration file under `out_dir` (the deployment's config_dir)."""
    tuning = tuning or Tuning()
    env = _env()
    synapse_dir = out_dir / "synapse"
    (synapse_dir / "workers").mkdir(parents=True, exist_ok=True)
    for sub in ("bridge", "bot", "element"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)

    logs = topology.synapse_data_dir / "logs"
    for name in ["main", *(w.name for w in topology.workers)]:
        text = env.get_template("log.yaml.j2").render(
            log_file=str(logs / f"{name}.log"), log_level="INFO"
        )
        (synapse_dir / f"log-{name}.yaml").write_text(text)
    homeserver = synapse_dir / "homeserver.yaml"
    text = env.get_template("homeserver.yaml.j2").render(
        **synapse_values(settings, topology, tuning)
    )
    write_private(homeserver, text)
    if settings.psc is not None:  # read by Synapse (client_secret_path, the mapping provider)
        write_private(synapse_dir / SECRET_FILE, settings.psc.client_secret)
        write_private(synapse_dir / TOKEN_FILE, settings.psc.bridge_token)
        (synapse_dir / "templates").mkdir(exist_ok=True)
        shutil.copyfile(SSO_ERROR_TEMPLATE, synapse_dir / "templates" / SSO_ERROR_TEMPLATE.name)
    workers = {}
    for worker in topology.workers:
        path = synapse_dir / "workers" / f"{worker.name}.yaml"
        path.write_text(_yaml(worker_config(worker, topology)))
        workers[worker.name] = path

    bridge = out_dir / "bridge" / "bridge.yaml"
    write_private(bridge, _yaml(bridge_config(settings, topology)))
    bot_data = bot_config(settings, topology, tuning)
    bot = out_dir / "bot" / "bot.yaml"
    write_private(bot, _yaml(bot_data))
    element = out_dir / "element" / "config.json"
    element.write_text(json.dumps(element_config(settings), indent=2, ensure_ascii=False) + "\n")
    manifest_path = out_dir / "deployment.yaml"
    write_private(manifest_path, _yaml(manifest(settings, topology)))
    return Rendered(
        homeserver=homeserver,
        workers=workers,
        bridge=bridge,
        bot=bot,
        element=element,
        manifest=manifest_path,
        signing_key=topology.synapse_data_dir / "signing.key",
    )


def registry_reminder(settings: Settings, bridge_config_path: Path) -> list[str]:
    """What to run once so the `.env` members stay allowed once the bridge answers the guard."""
    others = settings.allowed_servers[1:]
    if not others:
        return []
    config = f"-c {bridge_config_path}"
    lines = [
        "Register the members of CADUCEE_FEDERATION_MEMBERS in the federation registry once",
        "(one member per organisation, then its homeservers): the guard allows them only",
        "until the bridge first answers with the registry's list.",
        f'  caducee admin member add "<organisation>" {config}',
    ]
    lines += [
        f'  caducee admin homeserver add {server} --member "<organisation>" {config}'
        for server in others
    ]
    lines.append(f"  caducee admin member list {config}   (to check)")
    return lines
