"""The search half of the directory benchmark: the query mix, timed per class, on both back ends.

The mix (fixed by the seed) is drawn from the imported directory: full names as typed, name
prefixes ("mart leg"), a specialty word with a city or a department (the broad queries),
a surname with one typo and the first name, and RPPS numbers. Each query is run once to warm
the caches, then timed; p50/p95/p99 are given for the whole mix and per class. The raw
baseline is the FTS5 count plus the first page of the same plan on a plain `sqlite3`
connection. PostgreSQL runs the same mix against the same file imported into a fresh
database, when one answers.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

WORDS = [
    "cardio", "cardiologue", "MG", "généraliste", "médecin généraliste", "pédiatre", "dermato",
    "ophtalmo", "gynéco", "psychiatre", "radiologue", "kiné", "infirmier", "dentiste",
    "sage-femme", "pharmacien", "orthophoniste", "ORL", "anesthésiste", "rhumato",
]  # fmt: skip
CLASSES = ("full name", "prefix", "specialty + place", "one typo", "rpps")


def _typo(word: str, rng: random.Random) -> str:
    at = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return word[:at] + word[at + 1 :]
    if kind == 1:
        return word[:at] + word[at] + word[at:]
    if kind == 2:
        return word[:at] + ("e" if word[at] != "e" else "a") + word[at + 1 :]
    return word[: at - 1] + word[at] + word[at - 1] + word[at + 1 :]


def query_mix(database: Path, count: int, seed: int) -> list[tuple[str, str]]:
    """(class, query) pairs drawn from the directory itself, fixed by the seed."""
    from bridge.directory.vocabulary import fold

    rng = random.Random(seed)
    connection = sqlite3.connect(database)
    total = connection.execute("SELECT max(id) FROM directory_practitioner").fetchone()[0]
    mix: list[tuple[str, str]] = []
    while len(mix) < count:
        rpps, last, first, activities = connection.execute(
            "SELECT rpps, last_name, first_name, activities FROM directory_practitioner "
            "WHERE id = ?",
            (rng.randint(1, total),),
        ).fetchone()
        kind = len(mix) % 20
        first_activity = activities.split("\x1e")[0].split("\x1f")
        city, postcode = first_activity[5], first_activity[4]
        surname = fold(last).split()[0] if fold(last) else ""
        if kind < 5:
            mix.append(("full name", f"{last} {first}".lower() if kind % 2 else last.lower()))
        elif kind < 9:
            prefix = f"{last[: rng.randint(3, 5)]} {first[: rng.randint(2, 3)]}".lower()
            mix.append(("prefix", prefix))
        elif kind < 15:
            where = city if kind % 2 and city else postcode[:2]
            mix.append(("specialty + place", f"{rng.choice(WORDS)} {where}"))
        elif kind < 18 and len(surname) >= 5:
            mix.append(("one typo", f"{_typo(surname, rng)} {fold(first)}"))
        elif kind >= 18:
            mix.append(("rpps", rpps))
    connection.close()
    return mix


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100) if len(values) > 1 else [values[0]] * 99
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98]}


async def time_ours(url: str, mix: list[tuple[str, str]]) -> dict[str, list[float]]:
    """Milliseconds per query class (and "all") of `search_directory` on that database; the
    processor time of this process (all its threads, the database's included) under
    "cpu <class>": on a loaded machine, waiting for a core inflates the wall time alone."""
    from bridge.db import open_database
    from bridge.directory.search import search_directory

    db = await open_database(url, create=True)
    times: dict[str, list[float]] = defaultdict(list)
    try:
        async with db.sessions() as session:
            for measured in (False, True):  # one round to warm caches, one measured
                for kind, query in mix:
                    cpu = time.process_time()
                    started = time.perf_counter()
                    await search_directory(session, query, limit=10)
                    elapsed = (time.perf_counter() - started) * 1000
                    used = (time.process_time() - cpu) * 1000
                    if measured:
                        for key in (kind, "all"):
                            times[key].append(elapsed)
                            times[f"cpu {key}"].append(used)
    finally:
        await db.close()
    return times


def time_raw(database: Path, mix: list[tuple[str, str]]) -> dict[str, list[float]]:
    """The raw FTS5 baseline for the same plans (count + first page in index order): wall
    milliseconds under "all", processor milliseconds under "cpu all"."""
    from bridge.directory.query import phrases_to_look_up, plan_query, to_fts5

    raw = sqlite3.connect(database)
    times: dict[str, list[float]] = defaultdict(list)
    try:
        for measured in (False, True):
            for _, query in mix:
                keys = phrases_to_look_up(query)
                marks = ",".join("?" * len(keys)) or "''"
                sql = f"SELECT key FROM directory_place WHERE key IN ({marks})"
                plan = plan_query(query, {r[0] for r in raw.execute(sql, keys)})
                if plan.empty:
                    continue
                cpu = time.process_time()
                started = time.perf_counter()
                if plan.identifiers:
                    raw.execute(
                        "SELECT * FROM directory_practitioner WHERE rpps = ?",
                        (next(iter(plan.identifiers)),),
                    ).fetchall()
                else:
                    match = to_fts5(plan.expression())
                    raw.execute(
                        "SELECT count(*) FROM directory_fts WHERE directory_fts MATCH ?", (match,)
                    ).fetchone()
                    raw.execute(
                        "SELECT p.* FROM directory_fts f JOIN directory_practitioner p "
                        "ON p.id = f.rowid WHERE directory_fts MATCH ? ORDER BY f.rowid LIMIT 10",
                        (match,),
                    ).fetchall()
                if measured:
                    times["all"].append((time.perf_counter() - started) * 1000)
                    times["cpu all"].append((time.process_time() - cpu) * 1000)
    finally:
        raw.close()
    return times


async def on_postgres(source: Path, mix: list[tuple[str, str]]) -> dict[str, Any] | None:
    """Import `source` into a fresh PostgreSQL database and time the mix; None if none answers."""
    import asyncpg  # type: ignore[import-untyped]
    from sqlalchemy.engine import make_url

    from bridge.db import open_database
    from bridge.directory.importer import import_directory
    from tests.bot_commands_support import postgres_admin_url

    admin = make_url(postgres_admin_url()).set(drivername="postgresql")
    try:
        conn = await asyncpg.connect(admin.render_as_string(hide_password=False), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        print(f"PostgreSQL: not measured ({exc!r})", flush=True)
        return None
    name = f"caducee_bench_{uuid.uuid4().hex[:12]}"
    await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = admin.set(drivername="postgresql+asyncpg", database=name)
        text = url.render_as_string(hide_password=False)
        db = await open_database(text, create=True)
        started = time.perf_counter()
        try:
            await import_directory(db, source)
        finally:
            await db.close()
        seconds = time.perf_counter() - started
        return {"import_s": seconds, "times": await time_ours(text, mix)}
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def report(label: str, times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Print and return p50/p95/p99 overall and per class, wall time then processor time."""
    figures = {}
    for kind in ("all", *CLASSES):
        if times.get(kind):
            cut = percentiles(times[kind])
            figures[kind] = {k: round(v, 3) for k, v in cut.items()}
            line = (
                f"  {label} {kind:<18} n={len(times[kind]):<4} p50 {cut['p50']:6.2f} ms  "
                f"p95 {cut['p95']:6.2f} ms  p99 {cut['p99']:6.2f} ms"
            )
            if times.get(f"cpu {kind}"):
                cpu = percentiles(times[f"cpu {kind}"])
                figures[f"cpu {kind}"] = {k: round(v, 3) for k, v in cpu.items()}
                line += (
                    f"   | CPU p50 {cpu['p50']:6.2f}  p95 {cpu['p95']:6.2f}  "
                    f"p99 {cpu['p99']:6.2f} ms"
                )
            print(line, flush=True)
    return figures


def slowest(
    mix: list[tuple[str, str]],
    times: dict[str, list[float]],
    *,
    clock: str = "cpu",
    count: int = 10,
) -> None:
    """Print the queries that cost the most (the p95/p99 tail to work on); `times` comes from
    `time_ours`, whose lists follow the mix's order. `clock` is "cpu" (this process's
    processor time: SQLite runs here) or "wall" (PostgreSQL works in its own processes)."""
    key = "cpu all" if clock == "cpu" else "all"
    ranked = sorted(zip(times[key], mix, strict=True), reverse=True)[:count]
    label = "processor" if clock == "cpu" else "wall"
    print(f"  slowest {len(ranked)} ({label} time):", flush=True)
    for used, (kind, query) in ranked:
        print(f"    {used:6.2f} ms  {kind:<18} {query}", flush=True)
