"""Finding and opening what an admin hands to `caducee directory import`.

The register is published as a bare `.txt` or as a `.zip` holding the Personne_activite file
with its SavoirFaire companion; FHIR exports come as `.json` (Bundle) or `.ndjson`. This module
only locates and opens files (streaming, never reading them whole) and says clearly what is
wrong with a path; parsing is in `rpps`/`fhir`.
"""

from __future__ import annotations

import codecs
import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

ACTIVITY_MARK = "personne_activite"
SAVOIR_FAIRE_MARK = "savoirfaire"
FHIR_SUFFIXES = (".json", ".ndjson")


class SourceError(Exception):
    """The path cannot be imported; the message says why, for the admin."""


@dataclass(frozen=True, slots=True)
class Source:
    """An input located on disk: its kind and, for a register extract, where each part is."""

    path: Path
    kind: str  # "rpps" or "fhir"
    member: str | None = None  # the activity file inside a zip
    savoir_faire: Path | None = None  # beside a .txt
    savoir_faire_member: str | None = None  # inside the zip
    size: int | None = None  # uncompressed size of the activity text, for progress


def _is_activity(name: str) -> bool:
    return ACTIVITY_MARK in Path(name).name.lower().replace("-", "_")


def _is_savoir_faire(name: str) -> bool:
    lowered = Path(name).name.lower().replace("_", "").replace("-", "")
    return SAVOIR_FAIRE_MARK in lowered and lowered.endswith(".txt")


def locate(path: Path) -> Source:
    """Check `path` and find its parts.

    Raises:
        SourceError: missing, unreadable, unknown kind, or a zip without the activity file.
    """
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    if path.is_dir():
        raise SourceError(f"{path} is a folder: give the extract's .txt or .zip file")
    suffix = path.suffix.lower()
    if suffix in FHIR_SUFFIXES:
        return Source(path, "fhir", size=path.stat().st_size)
    if suffix == ".zip":
        return _locate_zip(path)
    if suffix in (".txt", ".csv"):
        return Source(path, "rpps", savoir_faire=_savoir_faire_beside(path), size=_size(path))
    raise SourceError(
        f"{path}: expected the register extract (.txt or .zip) or FHIR (.json or .ndjson)"
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror}") from None


def _savoir_faire_beside(path: Path) -> Path | None:
    """The SavoirFaire file next to the extract, preferring the one with the same date stamp."""
    candidates = sorted(p for p in path.parent.glob("*.txt") if _is_savoir_faire(p.name))
    if not candidates:
        return None
    stamp = path.stem.rsplit("_", 1)[-1]
    same = [p for p in candidates if p.stem.rsplit("_", 1)[-1] == stamp]
    return (same or candidates)[-1]


def _locate_zip(path: Path) -> Source:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile:
        raise SourceError(f"{path}: not a valid zip archive") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror}") from None
    activity = [i for i in infos if _is_activity(i.filename) and not i.is_dir()]
    if not activity:
        names = ", ".join(i.filename for i in infos[:5]) or "nothing"
        raise SourceError(f"{path}: no Personne_activite file in the archive (it holds {names})")
    savoir_faire = [i.filename for i in infos if _is_savoir_faire(i.filename)]
    return Source(
        path,
        "rpps",
        member=activity[0].filename,
        savoir_faire_member=savoir_faire[0] if savoir_faire else None,
        size=activity[0].file_size,
    )


SNIFF_BYTES = 1 << 16
LEGACY_ENCODING = "cp1252"
"""What a register file that is not UTF-8 was saved as: re-saved on Windows (a superset of
Latin-1 for every letter of French names)."""


def encoding_of(sample: bytes) -> str:
    """How to read a register file, from its first bytes: UTF-8, unless most of its
    non-ASCII bytes are not UTF-8, then Windows-1252 ("MARTIN-LÉGER" saved in Latin-1 reads
    right instead of failing on every accented line).

    Most, not any: a UTF-8 file with one damaged byte near its start (a disk or transfer
    error) was read whole as Windows-1252, its header's "Prénom" became "PrÃ©nom" and the
    import was refused for a missing column. Read as UTF-8, it loses the damaged line only,
    reported with its number (a BOM is skipped by the parser)."""
    text = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(sample, final=False)
    damaged = text.count("\ufffd")
    letters = len(text) - len(text.encode("ascii", "ignore")) - damaged
    return "utf-8" if letters >= damaged else LEGACY_ENCODING


def decoded(binary: IO[bytes], encoding: str = "utf-8") -> io.TextIOWrapper:
    """A register file's text: undecodable bytes become U+FFFD so that the parser reports
    the line instead of the whole import failing on the first bad byte; line ends are
    left as they are (the parser's blocks make them "\n")."""
    return io.TextIOWrapper(binary, encoding=encoding, errors="replace", newline="")


def _sniff(source: Source) -> str:
    if source.member is None:
        with source.path.open("rb") as raw:
            return encoding_of(raw.read(SNIFF_BYTES))
    with zipfile.ZipFile(source.path) as archive, archive.open(source.member) as member:
        return encoding_of(member.read(SNIFF_BYTES))


@contextmanager
def open_activity(source: Source) -> Iterator[TextIO]:
    """The activity text, streamed (its `encoding` says how it was decoded)."""
    with open_activity_bytes(source) as (raw, encoding), decoded(raw, encoding) as text:
        yield text


@contextmanager
def open_activity_bytes(source: Source) -> Iterator[tuple[IO[bytes], str]]:
    """The activity file's bytes, streamed, and the encoding to decode them with (as
    `open_activity` does, undecodable bytes as U+FFFD): for processes that decode their
    own share of the file."""
    encoding = _sniff(source)
    if source.member is None:
        with source.path.open("rb") as raw:
            yield raw, encoding
        return
    with zipfile.ZipFile(source.path) as archive, archive.open(source.member) as member:
        yield member, encoding


@contextmanager
def open_savoir_faire(source: Source) -> Iterator[TextIO | None]:
    """The SavoirFaire text when there is one, else None."""
    if source.savoir_faire is not None:
        with source.savoir_faire.open("rb") as raw, decoded(raw) as text:
            yield text
    elif source.savoir_faire_member is not None:
        with (
            zipfile.ZipFile(source.path) as archive,
            archive.open(source.savoir_faire_member) as member,
            decoded(member) as text,
        ):
            yield text
    else:
        yield None
