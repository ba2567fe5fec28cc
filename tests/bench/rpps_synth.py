"""A realistic synthetic RPPS extract, for benchmarks, tests and the local demo.

The real register ("PS_LibreAcces_Personne_activite", about 2.2 M activity lines) is public but
large and changes daily; benchmarks need the same shape, deterministic by seed:

- the real layout: UTF-8, `|`-separated, a trailing `|` on every line (header included), the
  exact 52-column header of the reference (or the 56-column one, or its alternative spellings);
- practitioners with French names (accents, cedillas, hyphens: MARTIN-LÉGER, ANNE-SOPHIE),
  RPPS numbers (11 digits, starting with 1, valid Luhn check digit) and ~20 % ADELI lines;
- ~1.3 activity lines per practitioner, professions and specialties weighted as in the register
  (general practice dominates), real communes weighted by population (Paris, Lyon and Marseille
  arrondissements), partial addresses (empty commune with "75015 PARIS" in `Bureau cedex`),
  a few foreign practices (`Code pays` 99132 Royaume-Uni);
- optionally, the specialty columns left empty and written instead to a separate SavoirFaire
  file, one line per practitioner and specialty, with this header (13 columns + trailing `|`)::

    Type d'identifiant PP|Identifiant PP|Identification nationale PP|Nom d'exercice|
    Prénom d'exercice|Code profession|Libellé profession|Code catégorie professionnelle|
    Libellé catégorie professionnelle|Code type savoir-faire|Libellé type savoir-faire|
    Code savoir-faire|Libellé savoir-faire|

  keyed by `Identification nationale PP` like the activity file;
- optionally inside a .zip, as the register ships it.

Usage: ``python -m tests.bench.rpps_synth OUT --lines N [--variant 56] [--zip]
[--separate-savoir-faire [--drop-specialty-columns]] [--alt-header] [--seed S]``;
``--demo`` rewrites the demo extract.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tests.bench.rpps_synth_fields import (
    ALT_HEADER_SPELLINGS,
    HEADER_52,
    HEADER_56,
    SAVOIR_FAIRE_HEADER,
    FixedPractitioner,
    LineFactory,
    luhn_check_digit,
    luhn_valid,
)

__all__ = [
    "ALT_HEADER_SPELLINGS",
    "DEMO_PRACTITIONERS",
    "HEADER_52",
    "HEADER_56",
    "SAVOIR_FAIRE_HEADER",
    "FixedPractitioner",
    "Generated",
    "generate",
    "luhn_check_digit",
    "luhn_valid",
    "write_extract",
]

STAMP = "202601051200"
ACTIVITY_NAME = f"PS_LibreAcces_Personne_activite_{STAMP}.txt"
SAVOIR_FAIRE_NAME = f"PS_LibreAcces_SavoirFaire_{STAMP}.txt"
DEMO_PATH = Path("deploy/local/demo/PS_LibreAcces_Personne_activite_demo.txt")
_CHUNK_LINES = 20_000


@dataclass
class Generated:
    """What a generation wrote: files, counts and how long it took."""

    paths: list[Path]
    lines: int
    practitioners: int
    savoir_faire_lines: int
    seconds: float
    ids: list[str] = field(default_factory=list)  # only when asked: every `Identifiant PP`


def _zip_entry(name: str) -> zipfile.ZipInfo:
    """An archive member dated like the extract's stamp (fixed, so archives are reproducible)."""
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 5, 12, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def header_line(columns: Sequence[str]) -> str:
    return "|".join(columns) + "|\n"


def write_extract(
    activity: TextIO,
    *,
    lines: int,
    variant: int = 52,
    seed: int = 0,
    savoir_faire: TextIO | None = None,
    drop_specialty_columns: bool = False,
    alt_header: bool = False,
    fixed: Sequence[FixedPractitioner] = (),
    collect_ids: bool = False,
) -> Generated:
    """Write `lines` activity lines (header not counted) to `activity`.

    With `savoir_faire`, the specialties go to that stream instead, and the activity file's
    four specialty columns stay empty, or with `drop_specialty_columns` are left out of the
    header and lines altogether (as in extracts that moved them to the SavoirFaire file).
    `fixed` practitioners come first, as given.
    """
    if variant not in (52, 56):
        raise ValueError("variant must be 52 or 56")
    started = time.perf_counter()
    columns = list(HEADER_52 if variant == 52 else HEADER_56)
    if alt_header:
        columns = [ALT_HEADER_SPELLINGS.get(c, c) for c in columns]
    if savoir_faire is None:
        specialty_columns = "inline"
    else:
        specialty_columns = "absent" if drop_specialty_columns else "empty"
    if specialty_columns == "absent":
        del columns[13:17]
    activity.write(header_line(columns))
    if savoir_faire is not None:
        savoir_faire.write(header_line(SAVOIR_FAIRE_HEADER))
    factory = LineFactory(seed=seed, variant=variant, fixed=fixed)
    written = practitioners = sf_lines = 0
    chunk: list[str] = []
    sf_chunk: list[str] = []
    ids: list[str] = []
    while written < lines:
        person = factory.next_practitioner()
        practitioners += 1
        for line in factory.activity_lines(person, specialty_columns=specialty_columns):
            chunk.append(line)
            written += 1
            if written == lines:
                break
        if collect_ids:
            ids.append(person.id_pp)
        if savoir_faire is not None and person.specialty:
            sf_chunk.append(factory.savoir_faire_line(person))
            sf_lines += 1
        if len(chunk) >= _CHUNK_LINES:
            activity.write("".join(chunk))
            chunk.clear()
            if savoir_faire is not None:
                savoir_faire.write("".join(sf_chunk))
                sf_chunk.clear()
    activity.write("".join(chunk))
    if savoir_faire is not None:
        savoir_faire.write("".join(sf_chunk))
    return Generated([], written, practitioners, sf_lines, time.perf_counter() - started, ids)


def generate(
    out: Path,
    *,
    lines: int,
    variant: int = 52,
    seed: int = 0,
    separate_savoir_faire: bool = False,
    drop_specialty_columns: bool = False,
    zip_output: bool = False,
    alt_header: bool = False,
    fixed: Sequence[FixedPractitioner] = (),
) -> Generated:
    """Write a synthetic extract at `out`.

    `out` is the activity .txt (the SavoirFaire file, if any, goes next to it under its
    register name), a directory (both files under their register names), or with
    `zip_output` the .zip to create (both files inside, as the register ships them).
    """
    with ExitStack() as stack:
        if zip_output:
            archive = stack.enter_context(
                zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)
            )
            raw = stack.enter_context(
                archive.open(_zip_entry(ACTIVITY_NAME), "w", force_zip64=True)
            )
            activity: TextIO = stack.enter_context(io.TextIOWrapper(raw, "utf-8", newline=""))
            # A zip takes one writer at a time: the SavoirFaire file waits in a temporary file.
            sf = stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8", newline=""))
            sf_stream = sf if separate_savoir_faire else None
            paths = [out]
        else:
            activity_path = out / ACTIVITY_NAME if out.is_dir() else out
            sf_path = activity_path.parent / SAVOIR_FAIRE_NAME
            activity = stack.enter_context(
                activity_path.open("w", encoding="utf-8", newline="", buffering=1 << 20)
            )
            sf_stream = None
            paths = [activity_path]
            if separate_savoir_faire:
                sf_stream = stack.enter_context(
                    sf_path.open("w", encoding="utf-8", newline="", buffering=1 << 20)
                )
                paths.append(sf_path)
        result = write_extract(
            activity,
            lines=lines,
            variant=variant,
            seed=seed,
            savoir_faire=sf_stream,
            drop_specialty_columns=drop_specialty_columns,
            alt_header=alt_header,
            fixed=fixed,
        )
        if zip_output and sf_stream is not None:
            activity.close()
            sf_stream.seek(0)
            with archive.open(_zip_entry(SAVOIR_FAIRE_NAME), "w", force_zip64=True) as raw_sf:
                while block := sf_stream.read(1 << 20):
                    raw_sf.write(block.encode("utf-8"))
    result.paths = paths
    return result


# The demo federation's people: the launcher onboards the first ones, the rest make searches
# interesting (a homonym cardiologist in Lyon, a DUPOND next to DUPONT).
DEMO_PRACTITIONERS: tuple[FixedPractitioner, ...] = (
    FixedPractitioner("10009999995", "MARTIN-LÉGER", "ANNE-SOPHIE", "F", "10", "SM04", "69382"),
    FixedPractitioner("10008888884", "DUPONT", "JEAN", "M", "10", "SM54", "13201"),
    FixedPractitioner("10007777773", "FONTAINE", "CLAIRE", "F", "10", "SM40", "75115"),
    FixedPractitioner("10006666662", "BENALI", "KARIM", "M", "10", "SM42", "59350"),
    FixedPractitioner("10005555551", "ROUSSEAU", "ÉMILIE", "F", "60", "", "69383", mode="L"),
    FixedPractitioner("10004444443", "MOREAU", "LUCAS", "M", "10", "SM59", "33063", mode="S"),
    FixedPractitioner("10003333332", "HADDAD", "INÈS", "F", "10", "SM15", "31555"),
    FixedPractitioner("10002222221", "LEFÈVRE", "THOMAS", "M", "10", "SM02", "59350", mode="S"),
    FixedPractitioner("10001111110", "MARTIN", "PAUL", "M", "10", "SM04", "69386"),
    FixedPractitioner("10000123454", "DUPOND", "JEANNE", "F", "10", "SM54", "13206"),
)
DEMO_LINES = 84
DEMO_SEED = 2026


def write_demo(path: Path = DEMO_PATH) -> Generated:
    """Regenerate the committed demo extract (deterministic: same bytes every time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return generate(path, lines=DEMO_LINES, seed=DEMO_SEED, fixed=DEMO_PRACTITIONERS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.rpps_synth", description=__doc__)
    parser.add_argument("out", type=Path, nargs="?", help=".txt, directory, or .zip with --zip")
    parser.add_argument("--lines", type=int, default=2_200_000)
    parser.add_argument("--variant", type=int, choices=(52, 56), default=52)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zip", action="store_true", help="write a .zip as the register ships")
    parser.add_argument("--separate-savoir-faire", action="store_true")
    parser.add_argument(
        "--drop-specialty-columns",
        action="store_true",
        help="with --separate-savoir-faire: leave the 4 specialty columns out (48/52 columns)",
    )
    parser.add_argument("--alt-header", action="store_true", help="other spellings seen in use")
    parser.add_argument("--demo", action="store_true", help=f"rewrite {DEMO_PATH}")
    args = parser.parse_args(argv)
    if args.demo:
        result = write_demo(args.out or DEMO_PATH)
    elif args.out is None:
        parser.error("OUT is required (or --demo)")
    else:
        result = generate(
            args.out,
            lines=args.lines,
            variant=args.variant,
            seed=args.seed,
            separate_savoir_faire=args.separate_savoir_faire,
            drop_specialty_columns=args.drop_specialty_columns,
            zip_output=args.zip,
            alt_header=args.alt_header,
        )
    size = sum(p.stat().st_size for p in result.paths)
    print(
        f"wrote {result.lines} lines ({result.practitioners} practitioners, "
        f"{result.savoir_faire_lines} savoir-faire lines) in {result.seconds:.1f} s, "
        f"{size / 1e6:.0f} MB: {', '.join(map(str, result.paths))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
