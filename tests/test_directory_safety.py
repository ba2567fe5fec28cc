"""The import's safety nets: the shrink valve, the lock, compaction, and a killed import.

- An import removing more than 5 % of the directory is refused with the figures unless the
  admin confirms; a file without practitioners never replaces the directory (both back ends).
- Two imports of one SQLite database through different paths (a symlink) cannot interleave.
- The SQLite file does not grow with each import.
- A killed import's worker processes die with it, and the next import removes its folder.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from bridge.admin import audit
from bridge.admin.departed import check_lock_share, lock_departed
from bridge.admin.model import Actor, AdminError
from bridge.admin.services import AdminServices
from bridge.directory import store
from bridge.directory.generation_sqlite import SqliteGeneration
from bridge.directory.generations import ImportBusyError
from bridge.directory.importer import DirectoryImportError, import_directory
from bridge.directory.spill import PREFIX
from tests.admin_support import import_register, random_rpps
from tests.directory_support import (
    demo_extract,
    directory_database,
    search,
    table_counts,
)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_an_import_that_would_gut_the_directory_needs_confirming(
    backend: str, tmp_path: Path
) -> None:
    full = demo_extract(tmp_path, lines=800)
    lines = full.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut" / full.name
    cut.parent.mkdir()
    cut.write_text("".join(lines[: len(lines) // 3]))  # a download cut short
    header_only = tmp_path / "header" / full.name
    header_only.parent.mkdir()
    header_only.write_text(lines[0])
    async with directory_database(backend, tmp_path) as db:
        first = await import_directory(db, full)
        before = await table_counts(db)
        page = await search(db, "martin")
        with pytest.raises(DirectoryImportError) as refused:
            await import_directory(db, cut)
        message = str(refused.value)
        gone = first.practitioners - _count_in(cut)
        assert f"would remove {gone:,} of the {first.practitioners:,} practitioners" in message
        assert "more than the 5% allowed" in message and "--allow-shrink" in message
        assert await table_counts(db) == before and await search(db, "martin") == page
        # A smaller share is refused or not according to the setting.
        with pytest.raises(DirectoryImportError):
            await import_directory(db, cut, max_shrink=0.5)
        for allowed in (None, 0.95):
            with pytest.raises(DirectoryImportError, match="no practitioner"):
                await import_directory(db, header_only, max_shrink=allowed)
            assert await table_counts(db) == before
        report = await import_directory(db, cut, max_shrink=None)
        assert report.disappeared == gone and report.practitioners == first.practitioners - gone


def _count_in(path: Path) -> int:
    rpps = {line.split("|")[1] for line in path.read_text().splitlines()[1:]}
    return len(rpps)


async def test_the_import_lock_follows_the_file_not_the_path(tmp_path: Path) -> None:
    async with directory_database("sqlite", tmp_path):
        pass
    real = tmp_path / "bridge.db"
    link = tmp_path / "link.db"
    link.symlink_to(real)
    first = SqliteGeneration(str(real))
    await first.begin()
    try:
        for other in (link, tmp_path / "." / "bridge.db"):
            with pytest.raises(ImportBusyError):
                await SqliteGeneration(str(other)).begin()
    finally:
        await first.discard()
    second = SqliteGeneration(str(link))
    await second.begin()
    await second.discard()


async def test_the_sqlite_file_does_not_grow_with_each_import(tmp_path: Path) -> None:
    extract = demo_extract(tmp_path, lines=4000)
    sizes = []
    async with directory_database("sqlite", tmp_path) as db:
        for _ in range(4):
            await import_directory(db, extract)
            sizes.append((tmp_path / "bridge.db").stat().st_size)
    assert max(sizes[1:]) <= sizes[0] * 1.25, sizes


_KILLED_IMPORT = """
import asyncio, sys
from bridge.db import open_database
from bridge.directory import importer, loading

class Stop:
    def started(self, total): pass
    def phase(self, text): pass
    def advanced(self, done, lines):
        if lines > 3000:
            print("reading", flush=True)
            sys.stdin.readline()  # held here, workers running, until killed

async def main():
    db = await open_database(sys.argv[1], create=True)
    loading.PARALLEL_MIN_CHARS = 0
    loading.MAX_WORKERS = 2
    loading.BLOCK_CHARS = 150_000
    loading.os.cpu_count = lambda: 2
    await importer.import_directory(db, sys.argv[2], progress=Stop())

asyncio.run(main())
"""


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _spills(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(PREFIX)]


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_import_leaves_no_worker_and_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short folder of its own: the fork server's socket path must fit in 108 bytes, which
    # a pytest-xdist worker's tmp_path can exceed.
    temp = Path(tempfile.mkdtemp(prefix="caducee-spill-"))
    extract = demo_extract(tmp_path, lines=8000)
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    env = {**os.environ, "TMPDIR": str(temp)}
    with subprocess.Popen(
        [sys.executable, "-c", _KILLED_IMPORT, url, str(extract)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == b"reading\n"
            workers = _descendants(process.pid)
            assert len(workers) >= 2, workers  # the fork server and its workers
            assert len(_spills(temp)) == 1
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _running(pid)]
    assert len(_spills(temp)) == 1  # the dead import's folder is still there

    monkeypatch.setattr(tempfile, "tempdir", str(temp))

    async def import_again() -> None:
        async with directory_database("sqlite", tmp_path) as db:
            await import_directory(db, extract)

    try:
        asyncio.run(import_again())
        assert _spills(temp) == []
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def test_locking_departed_accounts_obeys_the_same_valve() -> None:
    check_lock_share(1, 3, 0.05)  # one account is always allowed
    check_lock_share(5, 100, 0.05)
    check_lock_share(60, 100, None)  # confirmed
    with pytest.raises(AdminError, match=r"lock 6 of the 100 onboarded .* --allow-shrink"):
        check_lock_share(6, 100, 0.05)


async def test_a_gutted_register_does_not_lock_everyone(tmp_path: Path) -> None:
    people = [(random_rpps(), f"NOM{i:03d}", "ANNE") for i in range(40)]
    async with directory_database("sqlite", tmp_path) as db:
        await import_register(db, tmp_path, people)
        async with db.sessions.begin() as session:
            for rpps, last, _ in people:
                await store.link_matrix_id(session, rpps, f"@{last.lower()}:a.test", visible=True)
        await import_register(db, tmp_path, people[:25])  # forced past the import's valve
        services = cast(AdminServices, SimpleNamespace(db=db))
        with pytest.raises(AdminError, match="lock 15 of the 40") as refused:
            await lock_departed(services, Actor("cli:test"))
        assert refused.value.kind == "conflict"
        async with db.sessions() as session:
            assert await audit.recent(session, action="lock") == []
