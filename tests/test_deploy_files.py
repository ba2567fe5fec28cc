"""The operator's files agree with each other and with the worker configuration.

Compose, the Caddyfile, `.env.example`, the Dockerfile, the PostgreSQL init script, the
systemd units and the rendered configuration are checked against one another: every
referenced file, port, route and variable exists and matches (no Docker engine needed).
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from deploy.local.ca import ensure_ca
from deploy.local.homeserver import HomeserverSpec, render_config
from deploy.production.caddy import caddyfile
from deploy.production.envfile import SECRET_KEYS, EnvFileError, fill_secrets, parse_env
from deploy.production.render import Rendered, prepare_data_dirs, registry_reminder, render
from deploy.production.routes import ROUTE_GROUPS, Upstream, route
from deploy.production.settings import Settings, Topology

PRODUCTION = Path(__file__).resolve().parents[1] / "deploy" / "production"
COMPOSE = yaml.safe_load((PRODUCTION / "compose.yaml").read_text())
CADDYFILE = (PRODUCTION / "Caddyfile").read_text()
ENV_EXAMPLE = parse_env((PRODUCTION / ".env.example").read_text())
TOPOLOGY = Topology.containers()


def _settings() -> Settings:
    values = {
        "CADUCEE_SERVER_NAME": "sante-nord.test",
        "CADUCEE_MATRIX_HOST": "matrix.sante-nord.test",
        "CADUCEE_ELEMENT_HOST": "element.sante-nord.test",
        "CADUCEE_ADMIN_EMAIL": "admin@sante-nord.test",
        "CADUCEE_FEDERATION_MEMBERS": "sante-sud.test, sante-est.test",
    }
    values |= {name: f"secret-{name.lower()}" for name in SECRET_KEYS}
    return Settings.from_env(values)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Rendered]:
    """The container layout rendered under a temporary root (paths re-rooted)."""
    root = tmp_path_factory.mktemp("render")
    topology = replace(
        TOPOLOGY,
        config_dir=root / "etc/caducee",
        synapse_data_dir=root / "var/lib/caducee/synapse",
        bridge_data_dir=root / "var/lib/caducee/bridge",
        bot_data_dir=root / "var/lib/caducee/bot",
    )
    prepare_data_dirs(topology)
    return root, render(_settings(), topology, topology.config_dir)


def _in_container(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def test_committed_caddyfile_is_the_generated_one() -> None:
    assert caddyfile() == CADDYFILE, "run: caducee deploy caddyfile > deploy/production/Caddyfile"


def _caddy_routes() -> list[tuple[str, str, tuple[str, ...], str]]:
    """(matcher, regex, methods, action) in the order of the Caddyfile's route block."""
    matchers: dict[str, tuple[str, tuple[str, ...]]] = {}
    for name, regex in re.findall(r"@(\w+) path_regexp \w+ (\S+)", CADDYFILE):
        matchers[name] = (regex, ())
    for name, regex, methods in re.findall(
        r"@(\w+) \{\n\s+path_regexp \w+ (\S+)\n\s+method ([A-Z ]+)\n", CADDYFILE
    ):
        matchers[name] = (regex, tuple(methods.split()))
    block = CADDYFILE.split("route {", 1)[1].split("}", 1)[0]
    order = []
    for line in block.strip().splitlines():
        words = line.split()
        if words[0] == "respond" and words[1].startswith("@"):
            order.append((words[1][1:], "blocked"))
        elif words[0] == "reverse_proxy":
            order.append((words[1][1:], " ".join(words[2:])))
    return [(name, *matchers[name], action) for name, action in order]


SAMPLE_PATHS = [
    ("GET", "/_matrix/client/v3/sync"),
    ("PUT", "/_matrix/client/v3/rooms/!a:b/send/m.room.encrypted/1"),
    ("POST", "/_matrix/client/v3/keys/upload"),
    ("POST", "/_matrix/client/v3/keys/query"),
    ("POST", "/_matrix/client/v3/login"),
    ("GET", "/_matrix/client/versions"),
    ("PUT", "/_matrix/client/v3/user/@a:b/account_data/m.direct"),
    ("GET", "/_matrix/client/v3/user/@a:b/account_data/m.direct"),
    ("PUT", "/_matrix/client/v3/sendToDevice/m.room_key/1"),
    ("GET", "/_matrix/client/v1/media/download/a/b"),
    ("PUT", "/_matrix/federation/v1/send/123"),
    ("PUT", "/_matrix/federation/v2/invite/!a:b/$e"),
    ("GET", "/_matrix/federation/v1/openid/userinfo"),
    ("GET", "/_matrix/key/v2/server"),
    ("POST", "/_matrix/key/v2/query"),
    ("GET", "/_synapse/admin/v1/server_version"),
    ("POST", "/_synapse/admin/v1/register"),
    ("GET", "/_synapse/admin"),
    ("GET", "/_synapse/client/password_reset/email/submit_token"),
    ("GET", "/metrics"),
    ("GET", "/_synapse/replication/x"),
]


@pytest.mark.parametrize(("method", "path"), SAMPLE_PATHS)
def test_caddyfile_routes_like_the_route_table(method: str, path: str) -> None:
    """Interpret the committed Caddyfile's route block and compare with `route()`."""
    hosts = {
        Upstream.WORKER: f"synapse-generic-worker:{TOPOLOGY.generic_workers[0].http.port}",  # type: ignore[union-attr]
        Upstream.FEDERATION: f"synapse:{TOPOLOGY.main_federation.port}",
        Upstream.MAIN: f"synapse:{TOPOLOGY.main_client.port}",
        Upstream.BLOCKED: "blocked",
    }
    caddy = "blocked"  # the final `respond 404`
    for _name, regex, methods, action in _caddy_routes():
        if methods and method not in methods:
            continue
        if re.match(regex, path):
            caddy = action
            break
    assert caddy == hosts[route(path, method)]


def test_route_table_follows_the_worker_documentation() -> None:
    assert route("/_matrix/client/v3/sync") is Upstream.WORKER
    assert route("/_matrix/federation/v1/send/1", "PUT") is Upstream.WORKER
    assert route("/_matrix/client/v3/rooms/!r:s/send/m.room.encrypted/t", "PUT") is Upstream.WORKER
    assert route("/_matrix/client/v3/user/@u:s/account_data/x", "PUT") is Upstream.MAIN
    assert route("/_matrix/key/v2/server") is Upstream.FEDERATION
    assert route("/_synapse/admin/v1/rooms/!r:s") is Upstream.BLOCKED  # listed for workers
    assert route("/_synapse/replication/send_event") is Upstream.BLOCKED
    assert route("/") is Upstream.BLOCKED
    assert ROUTE_GROUPS[0].name == "admin", "the admin block must come first"


def test_compose_variables_exist_in_the_env_example() -> None:
    text = (PRODUCTION / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    assert used, "compose.yaml uses no variable?"
    assert used <= set(ENV_EXAMPLE), used - set(ENV_EXAMPLE)
    caddy_env = COMPOSE["services"]["caddy"]["environment"]
    placeholders = set(re.findall(r"\{\$([A-Z0-9_]+)\}", CADDYFILE))
    assert placeholders <= set(caddy_env), placeholders - set(caddy_env)
    assert placeholders <= set(ENV_EXAMPLE)
    assert set(SECRET_KEYS) <= set(ENV_EXAMPLE)
    assert all(ENV_EXAMPLE[name] == "" for name in SECRET_KEYS), "no secret is committed"


def _bind_sources(service: dict[str, Any]) -> list[str]:
    return [v.split(":", 1)[0] for v in service.get("volumes", []) if v.startswith("./")]


def test_compose_references_existing_files_volumes_and_build_targets() -> None:
    dockerfile = (PRODUCTION / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.MULTILINE))
    operator_made = {"./.env", "./backups"}  # created by generate-secrets / the first backup
    declared_volumes = set(COMPOSE["volumes"])
    for name, service in COMPOSE["services"].items():
        for source in _bind_sources(service):
            assert source in operator_made or (PRODUCTION / source).exists(), (name, source)
        for volume in service.get("volumes", []):
            if not volume.startswith("./"):
                assert volume.split(":", 1)[0] in declared_volumes, (name, volume)
        build = service.get("build")
        if build:
            context = (PRODUCTION / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name
            assert build["target"] in targets, name
        for network in service.get("networks", []):
            assert network in COMPOSE["networks"], (name, network)
    assert ".env" in (PRODUCTION / ".gitignore").read_text().split()
    assert stat.S_IMODE((PRODUCTION / "generate-secrets").stat().st_mode) & 0o100
    init = (PRODUCTION / "postgres" / "10-caducee-databases.sh").read_text()
    for which, database in TOPOLOGY.databases.items():
        assert f"CREATE DATABASE {database} " in init, which
    assert "synapse ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" in init
    assert COMPOSE["services"]["postgres"]["environment"]["POSTGRES_USER"] == TOPOLOGY.postgres_user


def test_compose_synapse_processes_match_the_worker_configuration(
    rendered: tuple[Path, Rendered],
) -> None:
    root, files = rendered
    services = COMPOSE["services"]
    shared = yaml.safe_load(files.homeserver.read_text())
    ports = {item["port"] for item in shared["listeners"]}
    assert {TOPOLOGY.main_client.port, TOPOLOGY.main_federation.port} <= ports
    main = services[TOPOLOGY.main_client.host]
    assert TOPOLOGY.main_replication.host == TOPOLOGY.main_client.host
    assert shared["instance_map"]["main"] == {
        "host": TOPOLOGY.main_replication.host,
        "port": TOPOLOGY.main_replication.port,
    }
    assert shared["redis"]["host"] in services and shared["redis"]["port"] == 6379
    assert shared["database"]["args"]["host"] in services
    assert shared["federation_sender_instances"] == ["federation_sender1"]
    # The worker that serves clients persists their events: no hop to the main process.
    assert shared["stream_writers"] == {"events": ["generic_worker1"]}
    assert [w.name for w in TOPOLOGY.event_writers] == ["generic_worker1"]
    assert f"localhost:{TOPOLOGY.main_client.port}/health" in " ".join(main["healthcheck"]["test"])
    config_args = [a.split("=", 1)[1] for a in main["command"] if a.startswith("--config-path")]
    assert [_in_container(root, a) for a in config_args] == [files.homeserver]

    for worker in TOPOLOGY.workers:
        endpoint = worker.http or worker.health
        assert endpoint is not None
        service = services[endpoint.host]
        assert service["environment"]["SYNAPSE_WORKER"] == "synapse.app.generic_worker"
        paths = [a.split("=", 1)[1] for a in service["command"] if a.startswith("--config-path")]
        assert [_in_container(root, p) for p in paths] == [
            files.homeserver,
            files.workers[worker.name],
        ]
        own = yaml.safe_load(files.workers[worker.name].read_text())
        assert own["worker_name"] == worker.name
        listener_ports = {item["port"] for item in own["worker_listeners"]}
        assert endpoint.port in listener_ports
        assert f"localhost:{endpoint.port}/health" in " ".join(service["healthcheck"]["test"])
        if worker.role == "generic":
            assert f"{endpoint.host}:{endpoint.port}" in CADDYFILE
            names = own["worker_listeners"][0]["resources"][0]["names"]
            assert set(names) == {"client", "federation"}
        if worker.replication is not None:  # the other processes reach it at this address
            assert worker.replication.host == endpoint.host
            assert shared["instance_map"][worker.name] == {
                "host": worker.replication.host,
                "port": worker.replication.port,
            }
            replication = [
                item
                for item in own["worker_listeners"]
                if item["resources"][0]["names"] == ["replication"]
            ]
            assert [item["port"] for item in replication] == [worker.replication.port]
            assert f":{worker.replication.port}" not in CADDYFILE  # never routed from outside
        assert Path(own["worker_log_config"]).is_file()  # rendered under the test root
    for service in ("bridge", "bot"):
        config = services[service]["command"][-1]
        assert _in_container(root, config) in (files.bridge, files.bot)
    backup = services["backup"]["command"]
    assert _in_container(root, backup[backup.index("--config") + 1]) == files.manifest


def test_caddy_serves_element_config_and_wellknown() -> None:
    caddy = COMPOSE["services"]["caddy"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in caddy["volumes"]}
    assert mounts["/etc/caddy/Caddyfile"] == "./Caddyfile"
    assert mounts["/srv/element-config"] == "element-config"  # only Element's file, no secret
    assert "root * /srv/element-config" in CADDYFILE
    render_mounts = COMPOSE["services"]["render"]["volumes"]
    assert "element-config:/etc/caducee/element" in render_mounts
    assert "/.well-known/matrix/server" in CADDYFILE
    assert "/.well-known/matrix/client" in CADDYFILE
    assert f"element:{COMPOSE['services']['element']['environment']['ELEMENT_WEB_PORT']}" in (
        CADDYFILE
    )
    assert set(caddy["ports"]) == {"80:80", "443:443", "443:443/udp"}
    for name, service in COMPOSE["services"].items():
        if name != "caddy":
            assert "ports" not in service, f"{name} must not be published"


@pytest.mark.slow  # runs Synapse's own configuration loader
def test_rendered_configuration_passes_synapse_validation(rendered: tuple[Path, Rendered]) -> None:
    _root, files = rendered
    for worker in [None, *files.workers.values()]:
        args = ["-c", str(files.homeserver)] + (["-c", str(worker)] if worker else [])
        done = subprocess.run(
            [sys.executable, "-m", "synapse.config", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]


_DEPLOYMENT_KEYS = {
    "server_name", "pid_file", "public_baseurl", "listeners", "tls_certificate_path",
    "tls_private_key_path", "federation_custom_ca_list", "federation_domain_whitelist",
    "ip_range_whitelist", "database", "redis", "instance_map", "worker_replication_secret",
    "federation_sender_instances", "log_config", "media_store_path", "signing_key_path",
    "macaroon_secret_key", "form_secret", "registration_shared_secret", "modules",
    "admin_contact",
}  # fmt: skip


def test_production_has_the_same_hardening_as_the_local_federation(
    rendered: tuple[Path, Rendered], tmp_path: Path
) -> None:
    """Every policy setting of the demo's (non-testing) homeserver is identical in production."""
    _root, files = rendered
    production = yaml.safe_load(files.homeserver.read_text())
    spec = HomeserverSpec("a", 18481, 18491, 19481, allowed_servers=("localhost:18482",))
    local = yaml.safe_load(
        render_config(spec, tmp_path / "hs", ensure_ca(tmp_path / "ca")).read_text()
    )
    policy = set(local) - _DEPLOYMENT_KEYS
    assert policy, "nothing compared"
    assert {k: production.get(k) for k in policy} == {k: local[k] for k in policy}
    assert production["modules"][0]["module"] == local["modules"][0]["module"]
    assert production["database"]["name"] == "psycopg2"
    assert (
        "tls_certificate_path" not in production and "federation_custom_ca_list" not in production
    )
    client = next(x for x in production["listeners"] if x["port"] == TOPOLOGY.main_client.port)
    assert client["x_forwarded"] is True and client["resources"][0]["names"] == ["client", "openid"]


def test_guards_follow_the_registry_live_through_the_bridge(
    rendered: tuple[Path, Rendered],
) -> None:
    """Every Synapse process's guard polls the bridge's allow-list on the internal network;
    no static whitelist, so onboarding or cutting off a homeserver needs no restart."""
    from aiohttp import web

    from bridge.guard.config import parse_config
    from bridge.registry.routes import add_routes

    _root, files = rendered
    production = yaml.safe_load(files.homeserver.read_text())
    assert "federation_domain_whitelist" not in production
    (guard,) = (m["config"] for m in production["modules"] if m["module"].endswith("CaduceeGuard"))
    # The .env members: the list in force until the bridge first answers.
    assert guard["allowed_servers"] == ["sante-nord.test", "sante-sud.test", "sante-est.test"]
    assert guard["refresh_seconds"] == 10  # well within the 30 s a registry change may take
    assert parse_config(guard).allowed_servers_url == guard["allowed_servers_url"]
    url = urlsplit(guard["allowed_servers_url"])
    # The bridge as the topology places it (its compose service, its rendered listener)...
    assert url.scheme == "http"
    assert (url.hostname, url.port) == (TOPOLOGY.bridge.host, TOPOLOGY.bridge.port)
    assert TOPOLOGY.bridge.host in COMPOSE["services"]
    assert yaml.safe_load(files.bridge.read_text())["listen_port"] == TOPOLOGY.bridge.port
    # ...and the path its route table serves the allow-list on.
    app = web.Application()
    add_routes(app)
    assert url.path == app.router["federation_allowed_servers"].canonical
    # Synapse and the bridge share a network; the guard's URL carries no secret.
    for name in ("synapse", "synapse-generic-worker", "synapse-federation-sender"):
        assert "internal" in COMPOSE["services"][name]["networks"], name
    assert "internal" in COMPOSE["services"]["bridge"]["networks"]
    assert "@" not in guard["allowed_servers_url"]
    # Workers load the shared file: no worker file overrides the modules.
    for worker in files.workers.values():
        assert "modules" not in yaml.safe_load(worker.read_text())


def test_render_tells_the_operator_to_register_the_env_members() -> None:
    """The .env members are cut off once the bridge answers unless they are registered."""
    bridge_yaml = Path("/etc/caducee/bridge/bridge.yaml")
    lines = registry_reminder(_settings(), bridge_yaml)
    for server in ("sante-sud.test", "sante-est.test"):
        assert any(
            f"caducee admin homeserver add {server} --member" in line
            and line.endswith(f"-c {bridge_yaml}")
            for line in lines
        ), server
    assert not any("sante-nord.test" in line for line in lines)  # the bridge's own: always in
    assert registry_reminder(replace(_settings(), members=()), bridge_yaml) == []


def test_rendered_files_are_private_and_element_is_locked(rendered: tuple[Path, Rendered]) -> None:
    _root, files = rendered
    for path in (files.homeserver, files.bridge, files.bot, files.manifest, files.signing_key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    element = json.loads(files.element.read_text())
    assert element["disable_custom_urls"] is True
    assert element["disable_guests"] is True
    assert element["default_server_config"]["m.homeserver"] == {
        "base_url": "https://matrix.sante-nord.test",
        "server_name": "sante-nord.test",
    }
    assert element["setting_defaults"]["UIFeature.registration"] is False
    assert element["setting_defaults"]["urlPreviewsEnabled_e2ee"] is False
    bot = yaml.safe_load(files.bot.read_text())
    bridge = yaml.safe_load(files.bridge.read_text())
    assert bot["database_url"].startswith("postgresql+asyncpg://caducee:")
    assert bridge["database_url"].startswith("postgresql+asyncpg://caducee:")
    assert bot["bridge_token"] == bridge["service_tokens"][0]["token"]
    assert bot["homeserver_url"] == "https://matrix.sante-nord.test"


def test_backup_manifest_names_the_paths_the_services_use(
    rendered: tuple[Path, Rendered], tmp_path: Path
) -> None:
    """The federation key where the bridge reads it, the media store where Synapse writes."""
    from bridge.config import load_config as load_bridge_config
    from deploy.production.backup import Manifest

    _root, files = rendered
    manifest = Manifest.load(files.manifest)
    bridge_yaml = yaml.safe_load(files.bridge.read_text())
    bridge_yaml["service_tokens"][0]["token"] = "t" * 64  # the test settings' is short
    bridge_file = tmp_path / "bridge.yaml"
    bridge_file.write_text(yaml.safe_dump(bridge_yaml))
    bridge = load_bridge_config(bridge_file)
    federation_key = manifest.optional["bridge_federation_key"]
    assert federation_key.path == bridge.effective_signing_key_file
    assert "first start" in federation_key.absent
    homeserver = yaml.safe_load(files.homeserver.read_text())
    assert manifest.media == {"synapse_media_store": Path(homeserver["media_store_path"])}
    assert manifest.paths["synapse_signing_key"] == Path(homeserver["signing_key_path"])
    assert manifest.media["synapse_media_store"].is_dir()  # prepare_data_dirs made it
    assert set(manifest.databases) == {"synapse", "bridge", "bot"}


def _mounts(service: str) -> dict[str, bool]:
    """Container path → writable, for the named volumes and binds of a compose service."""
    mounts: dict[str, bool] = {}
    for volume in COMPOSE["services"][service].get("volumes", []):
        _source, target, *options = volume.split(":")
        mounts[target] = "ro" not in options
    return mounts


@pytest.mark.parametrize(("service", "writes"), [("backup", False), ("restore", True)])
def test_backup_and_restore_containers_see_everything_the_manifest_names(
    service: str, writes: bool
) -> None:
    """A path the tool cannot see in its container would be left out of every backup."""
    from deploy.production.render import manifest

    contents = manifest(_settings(), TOPOLOGY)
    paths = [
        *contents["paths"].values(),
        *(entry["path"] for entry in contents["optional_paths"].values()),
        *contents["media"].values(),
    ]
    mounts = _mounts(service)
    for path in paths:
        owners = [m for m in mounts if Path(path).is_relative_to(m)]
        assert owners, f"{service}: {path} is on no volume of the container"
        if writes:
            assert mounts[max(owners, key=len)], f"{service}: {path} is mounted read-only"


def test_systemd_units_run_the_rendered_files(rendered: tuple[Path, Rendered]) -> None:
    units = {p.name: p.read_text() for p in (PRODUCTION / "systemd").iterdir()}
    host = Topology.host()
    target = units["caducee.target"]
    for worker in host.workers:
        assert f"caducee-synapse-worker@{worker.name}.service" in target
    worker_unit = units["caducee-synapse-worker@.service"]
    assert "--config-path=/etc/caducee/synapse/workers/%i.yaml" in worker_unit
    assert "synapse.app.generic_worker" in worker_unit
    assert "--config-path=/etc/caducee/synapse/homeserver.yaml" in units["caducee-synapse.service"]
    assert "bridge run --config /etc/caducee/bridge/bridge.yaml" in units["caducee-bridge.service"]
    assert "bot run --config /etc/caducee/bot/bot.yaml" in units["caducee-bot.service"]
    assert "--layout host" in units["caducee-synapse.service"]
    for name, text in units.items():
        if name.endswith(".service"):
            assert "UMask=0077" in text and "User=caducee" in text, name


def test_generate_secrets_fills_only_empty_secrets(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    filled = fill_secrets(env, PRODUCTION / ".env.example")
    assert set(filled) == set(SECRET_KEYS)
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    first = parse_env(env.read_text())
    assert all(len(first[name]) >= 48 for name in SECRET_KEYS)
    assert fill_secrets(env) == []
    assert parse_env(env.read_text()) == first  # never regenerated
    done = subprocess.run(
        [str(PRODUCTION / "generate-secrets"), str(env)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "nothing changed" in done.stdout


def test_settings_refuse_example_values_with_a_clear_message(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    fill_secrets(env, PRODUCTION / ".env.example")
    with pytest.raises(EnvFileError, match="CADUCEE_SERVER_NAME still has its example value"):
        Settings.load(env)
    done = subprocess.run(
        [sys.executable, "-c", "from deploy.cli import main; main()", "deploy", "render",
         "--env-file", str(env), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "example value" in done.stderr
    assert "Traceback" not in done.stderr
