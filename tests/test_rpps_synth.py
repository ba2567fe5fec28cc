"""The synthetic register generator writes the real layout, deterministically."""

from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path

import pytest

from tests.bench.rpps_synth import (
    DEMO_PATH,
    DEMO_PRACTITIONERS,
    SAVOIR_FAIRE_HEADER,
    generate,
    luhn_check_digit,
    luhn_valid,
    write_demo,
)

# Copied from the register's description (rpps-extract.md), in its own notation.
REFERENCE_52 = """Type d'identifiant PP | Identifiant PP | Identification nationale PP | Code civilité d'exercice |
Libellé civilité d'exercice | Code civilité | Libellé civilité | Nom d'exercice | Prénom d'exercice |
Code profession | Libellé profession | Code catégorie professionnelle | Libellé catégorie professionnelle |
Code type savoir-faire | Libellé type savoir-faire | Code savoir-faire | Libellé savoir-faire |
Code mode exercice | Libellé mode exercice | Numéro SIRET site | Numéro SIREN site | Numéro FINESS site |
Numéro FINESS établissement juridique | Identifiant technique de la structure | Raison sociale site |
Enseigne commerciale site | Complément destinataire (coord. structure) |
Complément point géographique (coord. structure) | Numéro Voie (coord. structure) |
Indice répétition voie (coord. structure) | Code type de voie (coord. structure) |
Libellé type de voie (coord. structure) | Libellé Voie (coord. structure) |
Mention distribution (coord. structure) | Bureau cedex (coord. structure) | Code postal (coord. structure) |
Code commune (coord. structure) | Libellé commune (coord. structure) | Code pays (coord. structure) |
Libellé pays (coord. structure) | Téléphone (coord. structure) | Téléphone 2 (coord. structure) |
Télécopie (coord. structure) | Adresse e-mail (coord. structure) | Code Département (structure) |
Libellé Département (structure) | Ancien identifiant de la structure | Autorité d'enregistrement |
Code secteur d'activité | Libellé secteur d'activité | Code section tableau pharmaciens |
Libellé section tableau pharmaciens"""  # noqa: E501 (kept as the reference writes it)
EXPECTED_52 = [c.strip() for c in REFERENCE_52.replace("\n", " ").split(" | ")]
EXTRA_56 = [
    "Code fonction",
    "Libellé fonction",
    "Code genre d'activité",
    "Libellé genre d'activité",
]
REFERENCE_LINE = (
    "8|10009999995|810009999995|DR|Docteur|MME|Madame|MARTIN-LÉGER|ANNE-SOPHIE|10|Médecin|C|"
    "Civil|S|Spécialité ordinale|SM04|Cardiologie et maladies vasculaires|L|Libéral|||||"
    "C1000999999500|CABINET DR MARTIN-LÉGER||||12||R|Rue|DE LA RÉPUBLIQUE||69002 LYON|69002|69382|"
    "Lyon 2e Arrondissement|||||||69|Rhône||CNOM/CNOM/CNOM|SA07|Cabinet individuel|||"
)


def rows(path: Path) -> list[list[str]]:
    """Split a generated file, checking the framing every line must have."""
    raw = path.read_bytes()
    text = raw.decode("utf-8")  # must be valid UTF-8
    assert text.endswith("|\n")
    lines = text.split("\n")[:-1]
    assert all(line.endswith("|") for line in lines)
    return [line[:-1].split("|") for line in lines]


def test_luhn_matches_the_reference_rpps() -> None:
    assert luhn_check_digit("1000999999") == "5"
    assert luhn_valid("10009999995")
    assert not luhn_valid("10009999994")
    assert all(luhn_valid(p.rpps) for p in DEMO_PRACTITIONERS)


def test_reference_line_has_52_columns() -> None:
    assert len(EXPECTED_52) == 52
    assert len(REFERENCE_LINE[:-1].split("|")) == 52


@pytest.mark.parametrize("variant", [52, 56])
def test_every_line_has_the_header_width_and_a_trailing_bar(tmp_path: Path, variant: int) -> None:
    out = tmp_path / "extract.txt"
    result = generate(out, lines=3000, variant=variant, seed=7)
    table = rows(out)
    expected = EXPECTED_52 + (EXTRA_56 if variant == 56 else [])
    assert table[0] == expected
    assert len(table) == 3001 == result.lines + 1
    assert {len(r) for r in table} == {variant}


def test_identifiers_are_valid_rpps_or_adeli_numbers(tmp_path: Path) -> None:
    out = tmp_path / "extract.txt"
    result = generate(out, lines=20_000, seed=11)
    table = rows(out)[1:]
    kinds = Counter(r[0] for r in table)
    assert set(kinds) == {"8", "0"}
    assert 0.10 < kinds["0"] / len(table) < 0.30  # about a fifth of lines are ADELI
    for r in table:
        assert r[2] == r[0] + r[1]
        if r[0] == "8":
            assert len(r[1]) == 11
            assert r[1].startswith("1")
            assert luhn_valid(r[1])
        else:
            assert len(r[1]) == 9
            assert r[1].isdigit()
    per_person = Counter(r[1] for r in table)
    assert len(per_person) == result.practitioners
    assert 1.2 < len(table) / len(per_person) < 1.5  # several activities for some


def test_content_looks_like_the_register(tmp_path: Path) -> None:
    out = tmp_path / "extract.txt"
    generate(out, lines=20_000, seed=3)
    header, *table = rows(out)
    col = {name: i for i, name in enumerate(header)}
    specialties = Counter(r[col["Code savoir-faire"]] for r in table if r[9] == "10")
    assert specialties.most_common(1)[0][0] == "SM54"
    professions = Counter(r[col["Code profession"]] for r in table)
    assert {"10", "60", "21", "40", "70"} <= set(professions)
    names = " ".join(r[col["Nom d'exercice"]] + " " + r[col["Prénom d'exercice"]] for r in table)
    assert "-" in names
    assert any(ch in names for ch in "ÉÈÇË")
    bureau, postcode, commune = col["Bureau cedex (coord. structure)"], 35, 37
    assert postcode == col["Code postal (coord. structure)"]
    assert commune == col["Libellé commune (coord. structure)"]
    cedex_only = [r for r in table if r[bureau] and not r[commune]]
    assert len(cedex_only) > 1000
    assert any(r[bureau].startswith("750") and r[bureau].endswith(" PARIS") for r in cedex_only)
    assert any(r[col["Code pays (coord. structure)"]] == "99132" for r in table)
    arrondissements = {r[commune] for r in table if "Arrondissement" in r[commune]}
    assert any(a.startswith("Lyon") for a in arrondissements)
    assert any(a.startswith("Marseille") for a in arrondissements)
    departments = {r[col["Code Département (structure)"]] for r in table}
    assert {"2A", "2B", "974"} & departments


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a, b, c = (tmp_path / f"{n}.txt" for n in "abc")
    generate(a, lines=2000, seed=5)
    generate(b, lines=2000, seed=5)
    generate(c, lines=2000, seed=6)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_separate_savoir_faire_moves_the_specialty_columns(tmp_path: Path) -> None:
    inline = tmp_path / "inline.txt"
    generate(inline, lines=4000, seed=9)
    split_dir = tmp_path / "split"
    split_dir.mkdir()
    result = generate(split_dir, lines=4000, seed=9, separate_savoir_faire=True)
    activity_path, sf_path = result.paths
    assert sf_path.name.startswith("PS_LibreAcces_SavoirFaire_")
    with_sf, without_sf = rows(inline), rows(activity_path)
    assert without_sf[0] == with_sf[0]
    assert all(r[13:17] == ["", "", "", ""] for r in without_sf[1:])
    assert [r[:13] + r[17:] for r in with_sf] == [r[:13] + r[17:] for r in without_sf]
    sf = rows(sf_path)
    assert sf[0] == list(SAVOIR_FAIRE_HEADER)
    assert {len(r) for r in sf} == {13}
    expected = {(r[2], *r[13:17]) for r in with_sf[1:] if r[15]}
    assert {(r[2], *r[9:13]) for r in sf[1:]} == expected
    assert result.savoir_faire_lines == len(sf) - 1


def test_zip_holds_the_same_files(tmp_path: Path) -> None:
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    plain = generate(plain_dir, lines=1500, seed=4, variant=56, separate_savoir_faire=True)
    archive = tmp_path / "extract.zip"
    generate(archive, lines=1500, seed=4, variant=56, separate_savoir_faire=True, zip_output=True)
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == sorted(p.name for p in plain.paths)
        for path in plain.paths:
            assert zf.read(path.name) == path.read_bytes()


def test_alt_header_uses_other_spellings_only_in_the_header(tmp_path: Path) -> None:
    normal, alt = tmp_path / "n.txt", tmp_path / "a.txt"
    generate(normal, lines=500, seed=1)
    generate(alt, lines=500, seed=1, alt_header=True)
    header = rows(alt)[0]
    assert "Libellé civilité exercice" in header
    assert "Code département (coord. structure)" in header
    assert "Code postal (coord. Structure)" in header
    assert len(header) == 52
    assert rows(alt)[1:] == rows(normal)[1:]


def test_committed_demo_extract_is_what_the_generator_writes(tmp_path: Path) -> None:
    regenerated = tmp_path / "demo.txt"
    write_demo(regenerated)
    committed = Path(__file__).resolve().parent.parent / DEMO_PATH
    assert committed.read_bytes() == regenerated.read_bytes()
    table = rows(committed)
    assert 55 <= len({r[1] for r in table[1:]}) <= 70
    by_id = {r[1]: r for r in table[1:]}
    anne = by_id["10009999995"]
    assert anne[7:9] == ["MARTIN-LÉGER", "ANNE-SOPHIE"]
    assert anne[15] == "SM04"
    assert anne[37] == "Lyon 2e Arrondissement"
    assert anne[:17] == REFERENCE_LINE.split("|")[:17]
    jean = by_id["10008888884"]
    assert (jean[7], jean[8], jean[15], jean[35]) == ("DUPONT", "JEAN", "SM54", "13001")


def test_specialty_columns_can_leave_the_activity_file_altogether(tmp_path: Path) -> None:
    inline = tmp_path / "inline.txt"
    generate(inline, lines=3000, seed=2, variant=56)
    moved_dir = tmp_path / "moved"
    moved_dir.mkdir()
    result = generate(
        moved_dir,
        lines=3000,
        seed=2,
        variant=56,
        separate_savoir_faire=True,
        drop_specialty_columns=True,
    )
    moved = rows(result.paths[0])
    assert {len(r) for r in moved} == {52}
    assert not any("savoir-faire" in c for c in moved[0])
    assert [r[:13] + r[17:] for r in rows(inline)] == moved
    assert result.savoir_faire_lines > 0
