"""The directory's vocabulary: folding, specialty/profession words, departments and postcodes."""

from __future__ import annotations

import pytest

from bridge.directory.vocabulary import (
    DEPARTMENTS,
    PROFESSIONS,
    SPECIALTIES,
    department_code_for_token,
    department_for_postcode,
    fold,
    match_department,
    match_profession,
    match_specialty,
    profession_codes_for,
    specialty_codes_for,
)


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("MARTIN-LÉGER", "martin leger"),
        ("Anne-Sophie", "anne sophie"),
        ("D'ARTAGNAN", "d artagnan"),
        ("  Lyon 2e   Arrondissement ", "lyon 2e arrondissement"),
        ("FRANÇOIS Œuvre Æsop", "francois oeuvre aesop"),
        ("Žižek–Ødegaard", "zizek odegaard"),
        ("Saint-Étienne (Loire)", "saint etienne loire"),
        ("a’b«c»", "a b c"),
        ("", ""),
        ("---", ""),
    ],
)
def test_fold_lowercases_strips_accents_and_punctuation(raw: str, folded: str) -> None:
    assert fold(raw) == folded


def test_fold_is_idempotent() -> None:
    text = "Hélène MARTIN-LÉGER, Cardiologie & maladies vasculaires"
    assert fold(fold(text)) == fold(text)


def test_register_code_tables_hold_the_known_codes() -> None:
    assert SPECIALTIES["SM54"] == "Médecine générale"
    assert SPECIALTIES["SM04"] == "Cardiologie et maladies vasculaires"
    assert SPECIALTIES["SM49"] == "Santé publique et médecine sociale"
    assert all(f"SM{n:02d}" in SPECIALTIES for n in range(1, 96))
    for code, label in {
        "10": "Médecin",
        "21": "Pharmacien",
        "40": "Chirurgien-Dentiste",
        "50": "Sage-Femme",
        "60": "Infirmier",
        "70": "Masseur-Kinésithérapeute",
        "91": "Orthophoniste",
        "26": "Audioprothésiste",
    }.items():
        assert PROFESSIONS[code] == label
    assert len([c for c in DEPARTMENTS if len(c) == 2]) == 96  # 01-95 without 20, plus 2A/2B
    assert DEPARTMENTS["2A"] == "Corse-du-Sud"
    assert {"971", "972", "973", "974", "976"} <= DEPARTMENTS.keys()


CARDIO = {"SM04", "SM73"}
GENERAL = {"SM54", "SM53", "SM26"}


@pytest.mark.parametrize(
    ("typed", "expected_subset"),
    [
        ("cardio", CARDIO),
        ("cardiologue", CARDIO),
        ("Cardiologues", CARDIO),
        ("cardiologie", CARDIO),
        ("médecin généraliste", GENERAL),
        ("Médecins généralistes", GENERAL),
        ("generaliste", GENERAL),
        ("MG", GENERAL),
        ("médecine générale", GENERAL),
        ("pédiatre", {"SM40"}),
        ("psy", {"SM42"}),
        ("psychiatre", {"SM42"}),
        ("pédopsychiatre", {"SM43", "SM92"}),
        ("dermato", {"SM15"}),
        ("ORL", {"SM39", "SM34"}),
        ("gynéco", {"SM19", "SM20"}),
        ("ophtalmo", {"SM38"}),
        ("radio", {"SM44", "SM74"}),
        ("anesthésiste", {"SM02"}),
        ("urgentiste", {"SM59"}),
        ("chirurgienne", {"SM05", "SM08", "SM14"}),
        ("gastro-entérologue", {"SM24"}),
        ("Cardiologie et maladies vasculaires", {"SM04"}),
    ],
)
def test_specialty_words_doctors_type_map_to_register_codes(
    typed: str, expected_subset: set[str]
) -> None:
    assert expected_subset <= specialty_codes_for(fold(typed))


def test_specialty_words_do_not_swallow_names() -> None:
    for name in ("martin", "mart", "leger", "dupont", "lyon", "medecin"):
        assert specialty_codes_for(name) == frozenset()


def test_match_specialty_prefers_the_longest_phrase() -> None:
    tokens = fold("médecin généraliste Lyon 3").split()
    assert match_specialty(tokens) == [(0, 2, frozenset(GENERAL))]
    tokens = fold("dupont chirurgien orthopédiste marseille").split()
    ((start, end, codes),) = match_specialty(tokens)
    assert (start, end) == (1, 3)
    assert "SM08" in codes
    assert "SM12" not in codes  # not every surgeon, only orthopaedics


def test_match_specialty_finds_several_runs() -> None:
    tokens = fold("cardio ou pneumo").split()
    assert [(s, e) for s, e, _ in match_specialty(tokens)] == [(0, 1), (2, 3)]


def test_professions_match_with_plurals_and_feminine_forms() -> None:
    assert profession_codes_for("kine") == {"70"}
    assert "60" in profession_codes_for(fold("infirmière"))
    assert match_profession(fold("sages-femmes Lille").split()) == [(0, 2, frozenset({"50"}))]
    assert match_profession(fold("chirurgien-dentiste").split())[0][:2] == (0, 2)


@pytest.mark.parametrize(
    ("typed", "code", "width"),
    [
        ("rhône", "69", 1),
        ("bouches-du-rhône", "13", 3),
        ("Seine-Saint-Denis", "93", 3),
        ("seine st denis", "93", 3),
        ("côtes d'armor", "22", 3),
        ("val d'oise", "95", 3),
        ("la réunion", "974", 2),
        ("haute-corse", "2B", 2),
        ("loire-atlantique", "44", 2),
    ],
)
def test_department_names_match_longest_first(typed: str, code: str, width: int) -> None:
    assert match_department(fold(typed).split()) == [(0, width, frozenset({code}))]


def test_department_match_inside_a_query() -> None:
    tokens = fold("pédiatre bouches du rhône").split()
    assert match_department(tokens) == [(1, 4, frozenset({"13"}))]


def test_department_code_tokens() -> None:
    assert department_code_for_token("69") == "69"
    assert department_code_for_token("2a") == "2A"
    assert department_code_for_token("974") == "974"
    assert department_code_for_token("20") is None
    assert department_code_for_token("1") is None
    assert department_code_for_token("lyon") is None


@pytest.mark.parametrize(
    ("postcode", "department"),
    [
        ("69002", "69"),
        ("75015", "75"),
        ("01000", "01"),
        ("1000", "01"),
        ("20000", "2A"),
        ("20137", "2A"),
        ("20200", "2B"),
        ("20600", "2B"),
        ("97411", "974"),
        ("97600", "976"),
        ("98000", ""),
        ("", ""),
        ("SW1A", ""),
        ("750015", ""),
    ],
)
def test_department_for_postcode(postcode: str, department: str) -> None:
    assert department_for_postcode(postcode) == department
