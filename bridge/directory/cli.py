"""`caducee directory import|search|changes`: the directory from the command line.

For admins and scripts. Failures print one line starting "Error:" saying what is wrong (and,
for a rejected file, the first offending line numbers), never a traceback. Exit status: 0 done,
1 the import or search could not run (nothing changed), 2 bad usage or configuration. No
command here creates the database, not even `import`: a mistyped `--db` or a failed mount
would otherwise fill a new directory that the bridge never reads. `caducee bridge init`
creates it.

The safety valve: an import that would remove more than `--max-shrink` percent of the
directory (5 by default) is refused with the figures unless `--allow-shrink` is given, and a
file without any practitioner never replaces the directory.

The database is the one given by `--db`, else `CADUCEE_BRIDGE_DB`, else the bridge
configuration file's `database_url` (`--config`), else SQLite in ./data/bridge.db.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from bridge.common.exits import fail, os_reason, usage_error
from bridge.directory.generations import DEFAULT_MAX_SHRINK
from bridge.directory.model import DEFAULT_MAX_ERRORS

if TYPE_CHECKING:  # imported by the commands that use them: `caducee --help` stays quick
    from rich.progress import Progress, TaskID

    from bridge.db import Database
    from bridge.directory.importer import ImportReport
    from bridge.directory.search import SearchPage

directory_app = typer.Typer(
    help="The practitioner directory: import the national register, search it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class ChangeKind(StrEnum):
    """What `directory changes --kind` lists, as the import recorded it."""

    new = "new"
    changed = "changed"
    disappeared = "disappeared"


DB_ENV = "CADUCEE_BRIDGE_DB"
T = TypeVar("T")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help=f"Database URL (default: ${DB_ENV}, else the --config file's, else SQLite in "
        "./data/bridge.db under the current folder).",
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Bridge configuration file to take the database from."),
]


def database_url(db: str | None, config: Path | None) -> str:
    """Where the directory lives, by the precedence in the module docstring."""
    if db:
        return db
    if os.environ.get(DB_ENV):
        return os.environ[DB_ENV]
    if config is not None:
        from bridge.config import ConfigError, load_config

        try:
            return load_config(config).effective_database_url
        except ConfigError as exc:
            raise usage_error(str(exc)) from None
    from bridge.db import DEFAULT_DATABASE_URL

    return DEFAULT_DATABASE_URL


def _run(url: str, work: Callable[[Database], Awaitable[T]], config: Path | None = None) -> T:
    import asyncio

    from bridge.db import (
        DatabaseError,
        DatabaseMissingError,
        missing_message,
        open_database,
        safe_url,
    )

    async def main() -> T:
        try:
            db = await open_database(url)
        except DatabaseMissingError as exc:
            raise fail(missing_message(exc.what, config or "CONFIG")) from None
        except DatabaseError as exc:
            raise fail(str(exc)) from None
        except Exception as exc:  # driver errors: unreachable server, bad credentials
            raise fail(f"cannot open the database {safe_url(url)}: {exc}") from None
        try:
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(main())


class _Progress:
    """A rich bar on a terminal; a line every few seconds otherwise (logs, CI)."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last = 0.0

    def started(self, total: int | None) -> None:
        if self._tty:
            from rich.progress import Progress

            bar = Progress(transient=True)
            bar.start()
            self._task = bar.add_task("Reading", total=total)
            self._bar = bar
        else:
            typer.echo("reading the file…", err=True)

    def advanced(self, done: int, lines: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, description=f"{lines:,} lines")
        elif time.monotonic() - self._last > 5:
            self._last = time.monotonic()
            typer.echo(f"{lines:,} lines read", err=True)

    def phase(self, text: str) -> None:
        self.stop()
        typer.echo(f"{text}…", err=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _print_report(report: ImportReport) -> None:
    typer.echo(
        f"Imported {report.source}: {report.lines:,} lines, {report.practitioners:,} "
        f"practitioners in {report.seconds:.1f} s."
    )
    if report.initial:
        typer.echo("First import: every practitioner is new.")
    else:
        typer.echo(
            f"New: {report.new:,}  changed: {report.changed:,}  "
            f"disappeared from the register: {report.disappeared:,}"
        )
        if report.disappeared:
            typer.echo("  (list them with: caducee directory changes --kind disappeared)")
    if report.errors:
        typer.echo(f"{report.errors} malformed lines skipped, e.g.:")
        for error in report.first_errors[:5]:
            typer.echo(f"  line {error.line}: {error.message}")
    if report.warnings:
        typer.echo(f"{report.warnings} warnings, e.g.:")
        for warning in report.first_warnings[:5]:
            where = f"line {warning.line}: " if warning.line else ""
            typer.echo(f"  {where}{warning.message}")


@directory_app.command("import")
def import_command(
    path: Annotated[
        Path,
        typer.Argument(help="PS_LibreAcces_Personne_activite .txt/.zip, or FHIR .json/.ndjson."),
    ],
    max_errors: Annotated[
        int,
        typer.Option(min=0, help="Give up (changing nothing) past this many malformed lines."),
    ] = DEFAULT_MAX_ERRORS,
    max_shrink: Annotated[
        float,
        typer.Option(
            min=0,
            max=100,
            help="Refuse (changing nothing) an import removing more than this percentage "
            "of the directory.",
        ),
    ] = DEFAULT_MAX_SHRINK * 100,
    allow_shrink: Annotated[
        bool,
        typer.Option(
            "--allow-shrink",
            help="Confirm that the register really shrank past --max-shrink (the "
            "departed practitioners' accounts can then be locked).",
        ),
    ] = False,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Replace the directory with an RPPS extract (.txt/.zip) or FHIR R4 file; atomic.

    Reports who is new, changed or gone from the register.
    """
    from bridge.directory.importer import (
        DirectoryImportError,
        ImportAbortedError,
        import_directory,
    )

    url = database_url(db, config)
    progress = _Progress()

    async def work(database: Database) -> ImportReport:
        try:
            return await import_directory(
                database,
                path,
                max_errors=max_errors,
                max_shrink=None if allow_shrink else max_shrink / 100,
                progress=progress,
            )
        except ImportAbortedError as exc:
            progress.stop()
            for error in exc.errors[:10]:
                typer.echo(f"  line {error.line}: {error.message}", err=True)
            raise fail(str(exc)) from None
        except DirectoryImportError as exc:
            progress.stop()
            raise fail(f"{exc} (the directory is unchanged)") from None
        except (OSError, UnicodeError) as exc:
            progress.stop()
            raise fail(
                f"cannot read {path}: {os_reason(exc)} (the directory is unchanged)"
            ) from None
        finally:
            progress.stop()

    _print_report(_run(url, work, config))
    if config is not None:  # the homeservers' admin access comes with the bridge config
        from bridge.admin.after_import import run_after_import

        for line in run_after_import(config):
            typer.echo(line)
    else:
        typer.echo(
            "Departed practitioners are locked after an import run with --config "
            "(or: caducee admin lock-departed)."
        )


@directory_app.command("search")
def search_command(
    query: Annotated[str, typer.Argument(help='As a doctor types it: "cardio lyon", "mart leg".')],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Results per page.")] = 10,
    offset: Annotated[int, typer.Option(min=0, help="Results to skip.")] = 0,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Search the directory the way the bot does."""
    from bridge.directory import store
    from bridge.directory.search import search_directory

    async def work(database: Database) -> SearchPage:
        async with database.sessions() as session:
            if await store.last_import(session) is None:
                raise fail(_NEVER_IMPORTED)
            return await search_directory(session, query, limit=limit, offset=offset)

    page = _run(database_url(db, config), work, config)
    if as_json:
        payload = {
            "total": page.total,
            "more": page.more,
            "limit": limit,
            "offset": offset,
            "results": [
                {
                    "rpps": r.rpps,
                    "display_name": r.display_name,
                    "profession": r.profession,
                    "specialty": r.specialty,
                    "city": r.city,
                    "postcode": r.postcode,
                    "matrix_id": r.matrix_id,
                }
                for r in page.results
            ],
        }
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    if not page.results:
        typer.echo(f"No practitioner found ({page.total} matches).")
        return
    plus = "+" if page.more else ""
    typer.echo(f"{page.total:,}{plus} matches; {offset + 1}–{offset + len(page.results)}:")
    for number, r in enumerate(page.results, offset + 1):
        what = ", ".join(x for x in (r.profession, r.specialty) if x)
        where = " ".join(x for x in (r.postcode, r.city) if x)
        matrix = f"  {r.matrix_id}" if r.matrix_id else ""
        typer.echo(f"{number:>4}. {r.display_name} — {what} — {where} — RPPS {r.rpps}{matrix}")


_NEVER_IMPORTED = "the directory has never been imported: run `caducee directory import FILE` first"


@directory_app.command("changes")
def changes_command(
    kind: Annotated[
        ChangeKind, typer.Option(help="Which practitioners to list.")
    ] = ChangeKind.disappeared,
    limit: Annotated[int, typer.Option(min=0, help="List at most this many (0: all).")] = 1000,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Who appeared, changed or disappeared at the last import."""
    from bridge.directory import store

    async def work(database: Database) -> list[str]:
        async with database.sessions() as session:
            last = await store.last_import(session)
            if last is None:
                raise fail(_NEVER_IMPORTED)
            # The first import lists no one as new: everyone is.
            new = 0 if last.initial else last.new
            total = {"new": new, "changed": last.changed, "disappeared": last.disappeared}
            found = await store.changes(
                session,
                last.import_id,
                kind.value,
                limit=limit or max(total[kind.value], 1),
            )
            header = f"Import #{last.import_id} ({last.source}, {last.finished_at}): {kind.value}"
            lines = [header] + [f"  {c.rpps}  {c.last_name} {c.first_name}" for c in found]
            if len(found) < total[kind.value]:
                lines.append(
                    f"… {len(found):,} of {total[kind.value]:,} shown: --limit 0 lists them all"
                )
            return lines

    for line in _run(database_url(db, config), work, config):
        typer.echo(line)
