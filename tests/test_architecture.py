"""Imports run one way: the rules the package READMEs state, checked on the source text.

Every `import` and `from ... import` in a file counts, wherever it stands: at the top, inside a
function (a lazy import), under `if TYPE_CHECKING:`. Attribute access is not an import, so the
guard's one documented reach into Synapse (`api._hs.config.federation` in
`bridge/guard/outsiders.py`) is not seen here; its README explains it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "bridge", "deploy")

# The bridge modules the bot may use: shared configuration/database helpers, the stdlib-only
# parts of the guard (the allow-list answer, patient-identifier detection) and the registry's
# plain constants. Everything else in `bridge` is server code (aiohttp, the directory, the
# console) that the bot must not load.
BOT_MAY_USE_FROM_BRIDGE = (
    "bridge.common",
    "bridge.guard.allowlist",
    "bridge.guard.identifiers",
    "bridge.guard.ids",
    "bridge.registry.model",
)

# `bridge.common` (its docstring): only these third-party libraries, so the bot may use it.
COMMON_THIRD_PARTY = frozenset({"pydantic", "yaml", "sqlalchemy", "alembic", "typer"})


def module_name(path: Path) -> str:
    parts = list(path.relative_to(CHECKOUT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in `source`, nested ones included."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                drop = node.level - 1 if is_package else node.level
                anchor = anchor[: len(anchor) - drop] if drop else anchor
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            # `from bridge.guard import allowlist` imports a submodule: count it by its full name.
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}"


def source_files(package: str) -> list[Path]:
    """The .py files of a folder (recursively), or the one file `package` names."""
    path = CHECKOUT / package
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


def imports_of(package: str) -> Iterator[tuple[str, int, str]]:
    """(file, line, imported module) for every .py file under `package`."""
    for path in source_files(package):
        module = module_name(path)
        for line, name in imported_names(
            path.read_text(), module, is_package=path.name == "__init__.py"
        ):
            yield str(path.relative_to(CHECKOUT)), line, name


def top(name: str) -> str:
    return name.split(".", 1)[0]


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def is_stdlib(name: str) -> bool:
    return top(name) in sys.stdlib_module_names or name == "__future__"


def guard_breaks(imports: Iterator[tuple[str, int, str]]) -> list[str]:
    """The guard imports only the standard library, Synapse's public module API and itself."""
    return [
        f"{where}:{line} imports {name}"
        for where, line, name in imports
        if not (
            is_stdlib(name)
            or within(name, "synapse.module_api")
            or within(name, "bridge.guard")
            or name == "bridge"
        )
    ]


def bot_breaks(imports: Iterator[tuple[str, int, str]]) -> list[str]:
    """The bot imports no bridge server code: from `bridge`, only the modules listed above."""
    return [
        f"{where}:{line} imports {name}"
        for where, line, name in imports
        if within(name, "bridge")
        and name != "bridge"
        and not any(within(name, allowed) for allowed in BOT_MAY_USE_FROM_BRIDGE)
    ]


def deploy_breaks(imports: Iterator[tuple[str, int, str]]) -> list[str]:
    return [
        f"{where}:{line} imports {name}" for where, line, name in imports if top(name) == "deploy"
    ]


def forbidden_breaks(
    imports: Iterator[tuple[str, int, str]], forbidden: Sequence[str]
) -> list[str]:
    """Imports of any of the `forbidden` modules (or their submodules)."""
    return [
        f"{where}:{line} imports {name}"
        for where, line, name in imports
        if any(within(name, f) for f in forbidden)
    ]


def common_breaks(imports: Iterator[tuple[str, int, str]]) -> list[str]:
    return [
        f"{where}:{line} imports {name}"
        for where, line, name in imports
        if not (is_stdlib(name) or top(name) in COMMON_THIRD_PARTY or within(name, "bridge.common"))
        and name != "bridge"
    ]


def test_the_guard_imports_only_stdlib_and_synapse_module_api() -> None:
    imports = list(imports_of("bridge/guard"))
    assert any(name == "synapse.module_api" for _, _, name in imports)  # the scan sees the guard
    assert guard_breaks(iter(imports)) == []


def test_the_bot_imports_no_bridge_server_code() -> None:
    assert bot_breaks(imports_of("bot")) == []


def test_what_the_bot_may_use_from_the_bridge_pulls_in_no_server_code() -> None:
    """The allowed bridge modules (and the package `__init__`s Python runs on the way) import only
    stdlib, the shared helpers, or each other: the bot never loads the bridge's web stack."""
    files = [
        "bridge/__init__.py",
        "bridge/guard/__init__.py",
        "bridge/guard/allowlist.py",
        "bridge/guard/identifiers.py",
        "bridge/guard/ids.py",
        "bridge/registry/__init__.py",
        "bridge/registry/model.py",
    ]
    broken = []
    for rel in files:
        path = CHECKOUT / rel
        for line, name in imported_names(
            path.read_text(), module_name(path), is_package=path.name == "__init__.py"
        ):
            lazy_class = rel == "bridge/guard/__init__.py" and within(name, "bridge.guard")
            allowed = any(within(name, a) for a in BOT_MAY_USE_FROM_BRIDGE)
            if not (is_stdlib(name) or allowed or lazy_class):
                broken.append(f"{rel}:{line} imports {name}")
    assert broken == []


def test_the_guard_package_loads_its_synapse_class_lazily() -> None:
    """`bridge/guard/__init__.py` reaches `module`/`config` (which import Synapse) only inside its
    `__getattr__` or under TYPE_CHECKING: `import bridge.guard.allowlist` needs no Synapse."""
    tree = ast.parse((CHECKOUT / "bridge/guard/__init__.py").read_text())
    top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert all(
        (n.module or "") in ("__future__", "typing")
        for n in top_level
        if isinstance(n, ast.ImportFrom)
    )


@pytest.mark.parametrize("package", ["bot", "bridge"])
def test_no_package_imports_deploy(package: str) -> None:
    assert deploy_breaks(imports_of(package)) == []


def test_bridge_common_uses_only_the_libraries_it_names() -> None:
    assert common_breaks(imports_of("bridge/common")) == []


# The bot's layers (bot/README.md): commands and stores never see matrix-nio (the shell's
# `MatrixActions` and the stores stand between); the database knows nothing above it; the
# pure rules do no I/O. The bridge's directory knows nothing of the web layer above it.
BOT_PURE_RULES = (
    "bot/commands/parsing.py",
    "bot/commands/policy.py",
    "bot/durations.py",
    "bot/expiry/policy.py",
    "bot/cases/lifetime.py",
)
IO_LIBRARIES = ("nio", "aiohttp", "sqlalchemy", "alembic", "asyncpg", "aiosqlite")


@pytest.mark.parametrize("package", ["bot/commands", "bot/store"])
def test_the_bots_commands_and_stores_import_no_matrix_client(package: str) -> None:
    assert forbidden_breaks(imports_of(package), ("nio",)) == []


@pytest.mark.parametrize("rules", BOT_PURE_RULES)
def test_the_bots_pure_rules_import_no_io_library(rules: str) -> None:
    assert forbidden_breaks(imports_of(rules), IO_LIBRARIES) == []


def test_the_bots_database_imports_nothing_of_the_bot_above_it() -> None:
    imports = [
        (where, line, name)
        for where, line, name in imports_of("bot/store")
        if within(name, "bot") and name != "bot"
    ]
    assert imports  # the scan sees the store
    assert [i for i in imports if not (within(i[2], "bot.ids") or within(i[2], "bot.store"))] == []


def test_the_directory_imports_no_web_code() -> None:
    web = ("aiohttp", "bridge.http", "bridge.console")
    assert forbidden_breaks(imports_of("bridge/directory"), web) == []


# The checker itself must be able to fail: each rule against a file that breaks it.
BAD = """
from __future__ import annotations
import json

def later():
    from synapse.handlers.room import RoomCreationHandler
    import aiohttp
    from deploy.local import stack
    from bridge.http import keys
    from bridge.directory.search import search
"""


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            guard_breaks,
            {
                "synapse.handlers.room",
                "aiohttp",
                "deploy.local",
                "bridge.http",
                "bridge.directory.search",
            },
        ),
        (bot_breaks, {"bridge.http", "bridge.http.keys", "bridge.directory.search"}),
        (deploy_breaks, {"deploy.local", "deploy.local.stack"}),
        (lambda i: forbidden_breaks(i, ("aiohttp", "bridge.http")), {"aiohttp", "bridge.http"}),
    ],
)
def test_each_rule_sees_lazy_imports(rule: object, expected: set[str]) -> None:
    imports = [("bad.py", line, name) for line, name in imported_names(BAD, "x.bad")]
    broken = rule(iter(imports))  # type: ignore[operator]
    flagged = {b.split(" imports ", 1)[1] for b in broken}
    assert expected <= flagged
    assert not {"__future__", "json"} & flagged


def test_relative_imports_resolve_to_absolute_names() -> None:
    names = {
        n
        for _, n in imported_names(
            "from .allowlist import AllowList\nfrom .. import db\n", "bridge.guard.module"
        )
    }
    assert "bridge.guard.allowlist" in names
    assert "bridge.db" in names
    names = {
        n for _, n in imported_names("from .model import X\n", "bridge.registry", is_package=True)
    }
    assert "bridge.registry.model" in names


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (lazy and TYPE_CHECKING imports included)."""
    files = {
        module_name(p): p
        for package in PACKAGES
        for p in source_files(package)
        if p.name != "__init__.py"  # a package's face: Python runs it before any of its modules
    }
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = {
            name if name in files else name.rsplit(".", 1)[0]
            for _, name in imported_names(path.read_text(), module)
        }
        graph[module] = {t for t in targets if t in files and t != module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or around a loop (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles() -> None:
    graph = import_graph()
    assert len(graph) > 100  # the scan sees the project
    assert circles(graph) == []


def test_circles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
