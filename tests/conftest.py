"""Shared fixtures: real Synapse homeservers on loopback, started once per test session.

They come from the same launcher as `make up` (deploy.local), with test settings (fast
password hashing, relaxed rate limits, 1 s retention jobs). Layout:
- hs_a and hs_b: member homeservers, each on the other's allow-list. hs_a also restricts
  federation with Synapse's own `federation_domain_whitelist`; hs_b relies on the guard
  module alone, so tests against hs_b prove the guard blocks outsiders by itself.
- hs_c: a homeserver that no member allows (it would accept them).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path

import pytest
import pytest_asyncio

from deploy.local.federation import Homeserver, HomeserverSpec, LocalFederation

pytest_plugins = [
    "tests.conftest_bot",  # bot_a: a running Caducée bot on hs_a
    "tests.psc_support",  # psc_site: Pro Santé Connect sign-in (stand-in, Synapse, bridge)
]

CHECKOUT = Path(__file__).resolve().parents[1]


# Fixtures that start real homeservers (or need them): a test that uses one, directly or
# through another fixture, belongs to the slow tier whatever its own markers say.
SERVER_FIXTURES = frozenset({"federation", "hs_a", "hs_b", "hs_c", "bot_a"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a real homeserver `slow`, so `make test-fast` (`-m "not slow
    and not postgres"`) runs only what needs no Synapse, no database server and no bot."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        # A case parametrized over the back ends needs PostgreSQL in its "postgres" variant,
        # however the parameter is spelled (`backend`, `db_url`, a combined id).
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "postgres" in callspec.id.split("-"):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(autouse=True)
def root_logging_restored() -> Iterator[None]:
    """A command run in-process (CliRunner) configures logging for its terminal, whose stream
    is closed afterwards: put the root logger back so later tests neither write to a closed
    stream nor see INFO lines in their output.

    Levels are put back for the loggers whose `setLevel` was called (which `basicConfig` and
    `dictConfig` use), rather than by walking every logger Synapse and Twisted created before
    and after each test, which cost more than many of the tests themselves."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    before: dict[logging.Logger, int] = {}
    set_level = logging.Logger.setLevel

    def recording(logger: logging.Logger, level: int | str) -> None:
        before.setdefault(logger, logger.level)
        set_level(logger, level)

    logging.Logger.setLevel = recording  # type: ignore[method-assign]
    try:
        yield
    finally:
        logging.Logger.setLevel = set_level  # type: ignore[method-assign]
        root.handlers[:] = handlers
        for logger, level in before.items():
            set_level(logger, level)


@pytest.fixture(scope="session", autouse=True)
def tests_write_nothing_into_the_checkout() -> Iterator[None]:
    """Tests keep their files in temporary directories: a stray file here is a bug (for
    example a relative default path resolved against the working directory)."""
    before = {p.name for p in CHECKOUT.iterdir() if not p.name.startswith(".")}
    yield
    stray = {p.name for p in CHECKOUT.iterdir() if not p.name.startswith(".")} - before
    assert not stray, f"tests wrote into the checkout: {sorted(stray)}"


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def federation_specs() -> Iterator[dict[str, HomeserverSpec]]:
    ports = {name: (free_port(), free_port(), free_port()) for name in "abc"}
    server = {name: f"localhost:{ports[name][0]}" for name in "abc"}
    yield {
        "a": HomeserverSpec("a", *ports["a"], allowed_servers=(server["b"],), testing=True),
        "b": HomeserverSpec(
            "b",
            *ports["b"],
            allowed_servers=(server["a"],),
            restrict_federation=False,
            testing=True,
        ),
        "c": HomeserverSpec(
            "c",
            *ports["c"],
            allowed_servers=(server["a"], server["b"]),
            restrict_federation=False,
            testing=True,
        ),
    }


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def federation(
    tmp_path_factory: pytest.TempPathFactory, federation_specs: dict[str, HomeserverSpec]
) -> AsyncIterator[LocalFederation]:
    local = LocalFederation(tmp_path_factory.mktemp("federation"), list(federation_specs.values()))
    await local.start()
    yield local
    local.stop()


@pytest.fixture(scope="session")
def hs_a(federation: LocalFederation) -> Homeserver:
    return federation["a"]


@pytest.fixture(scope="session")
def hs_b(federation: LocalFederation) -> Homeserver:
    return federation["b"]


@pytest.fixture(scope="session")
def hs_c(federation: LocalFederation) -> Homeserver:
    return federation["c"]


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database for the bot's stores, on SQLite and on PostgreSQL (a fresh database
    each time; skipped, saying why, when no PostgreSQL server answers)."""
    from tests.bot_commands_support import fresh_postgres_database, sqlite_url

    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
    else:
        async for url in fresh_postgres_database():
            yield url
