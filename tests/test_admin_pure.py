"""Pure rules of onboarding: Matrix IDs from names, display names, bulk files, audit details."""

from __future__ import annotations

import pytest

from bridge.admin.audit import clean_detail
from bridge.admin.bulk import MAX_LINES, parse_bulk
from bridge.admin.handlers import check_password, check_rpps
from bridge.admin.localpart import MAX_LOCALPART, base_localpart, candidates
from bridge.admin.model import AdminError, Practitioner
from bridge.directory.model import RppsId


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        ("ANNE-SOPHIE", "MARTIN-LÉGER", "anne-sophie.martin-leger"),
        ("Inès", "HADDAD", "ines.haddad"),
        ("JEAN PIERRE", "D'ALEMBERT", "jean-pierre.dalembert"),
        ("Zoë", "Œillet", "zoe.oeillet"),
        ("", "DUPONT", "dupont"),
        ("李", "王", "praticien"),
        ("Marie.", "St. Clair", "marie.st-clair"),
    ],
)
def test_localparts_are_readable_lowercase_ascii(first: str, last: str, expected: str) -> None:
    assert base_localpart(first, last) == expected


def test_long_names_are_cut_leaving_room_for_a_counter() -> None:
    base = base_localpart("A" * 50, "B" * 50)
    assert len(base) <= MAX_LOCALPART - 4
    assert all(len(c) <= MAX_LOCALPART for c in candidates(base))


def test_candidates_number_homonyms_from_two() -> None:
    assert list(candidates("jean.dupont", limit=3)) == [
        "jean.dupont",
        "jean.dupont2",
        "jean.dupont3",
    ]


def test_account_display_name_is_the_directory_s() -> None:
    doctor = Practitioner(
        RppsId("10009999995"), "Docteur", "ANNE-SOPHIE", "MARTIN-LÉGER", "Médecin"
    )
    assert doctor.display_name == "Dr Anne-Sophie MARTIN-LÉGER"


def test_bulk_file_with_header_semicolons_and_homeservers() -> None:
    text = "\ufeffRPPS;homeserver\n10009999995;hs-b.test\n\n10008888884;\n"
    items, errors = parse_bulk(text)
    assert errors == []
    assert [(i.line, i.rpps, i.homeserver) for i in items] == [
        (2, "10009999995", "hs-b.test"),
        (4, "10008888884", None),
    ]


def test_bulk_file_without_header() -> None:
    items, errors = parse_bulk("10009999995\n10008888884,hs-a.test\n")
    assert errors == []
    assert [(i.line, i.homeserver) for i in items] == [(1, None), (2, "hs-a.test")]


def test_bulk_errors_name_their_lines() -> None:
    text = "rpps,homeserver\n10009999995\n1234\n10009999995\n10008888884,not a server\n,\n"
    items, errors = parse_bulk(text)
    assert [str(e) for e in errors] == [
        "line 3: '1234' is not an RPPS (11 digits) or ADELI (9) number",
        "line 4: 10009999995 is already on line 2",
        "line 5: 'not a server' is not a homeserver name",
    ]
    assert [i.line for i in items] == [2]


def test_bulk_refuses_unknown_header_and_empty_files() -> None:
    _, errors = parse_bulk("name,rpps\nx,10009999995\n")
    assert errors[0].line == 1 and "header" in errors[0].message
    _, errors = parse_bulk("rpps\n\n")
    assert [str(e) for e in errors] == ["line 1: the file lists no practitioner"]
    _, errors = parse_bulk("10009999995,hs.test,extra\n")
    assert [str(e) for e in errors] == ["line 1: unexpected extra value 'extra'"]


def test_bulk_refuses_huge_files() -> None:
    _, errors = parse_bulk("10009999995\n" * (MAX_LINES + 1))
    assert "too many lines" in errors[0].message


def test_rpps_and_password_checks_explain_themselves() -> None:
    assert check_rpps(" 10009999995 ") == "10009999995"
    with pytest.raises(AdminError, match="not an RPPS"):
        check_rpps("10009999995; DROP TABLE")
    with pytest.raises(AdminError, match="at least 12"):
        check_password("short")
    check_password("a long enough passphrase")


@pytest.mark.parametrize("key", ["access_token", "password", "activation_url", "body", "Secret"])
def test_audit_refuses_details_that_could_hold_secrets(key: str) -> None:
    with pytest.raises(ValueError, match="secret or content"):
        clean_detail({key: "x"})


def test_audit_details_are_bounded() -> None:
    assert clean_detail({"rpps": "1" * 500})["rpps"] == "1" * 199 + "…"
