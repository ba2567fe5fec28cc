"""FHIR R4 Practitioner / PractitionerRole files become directory records, errors are numbered."""

from __future__ import annotations

import json
from pathlib import Path

from bridge.directory.fhir import FhirLineError, iter_fhir_records
from bridge.directory.model import ParseError, ParseWarning, PractitionerRecord

DATA = Path(__file__).parent / "data" / "fhir"


def split(path: Path) -> tuple[list[PractitionerRecord], list[ParseError], list[ParseWarning]]:
    items = list(iter_fhir_records(path))
    records = [i for i in items if isinstance(i, PractitionerRecord)]
    errors = [i for i in items if isinstance(i, ParseError)]
    warnings = [i for i in items if isinstance(i, ParseWarning)]
    assert len(records) + len(errors) + len(warnings) == len(items)
    return records, errors, warnings


def by_rpps(records: list[PractitionerRecord]) -> dict[str, list[PractitionerRecord]]:
    found: dict[str, list[PractitionerRecord]] = {}
    for record in records:
        found.setdefault(record.rpps, []).append(record)
    return found


def test_bundle_roles_are_joined_with_their_practitioner_and_organisation() -> None:
    records, errors, warnings = split(DATA / "bundle.json")
    assert errors == []
    assert warnings == []
    people = by_rpps(records)
    (anne,) = people["10009999995"]
    assert anne == PractitionerRecord(
        rpps=anne.rpps,
        id_type="8",
        last_name="MARTIN-LÉGER",  # the practising name carried by the role
        first_name="ANNE-SOPHIE",
        title="Docteur",
        profession_code="10",
        profession="Médecin",
        specialty_code="SM04",
        specialty="Cardiologie et maladies vasculaires",
        mode="Libéral",
        organisation="CABINET DR MARTIN-LÉGER",
        postcode="69002",
        city="LYON",
        department_code="69",
        department="Rhône",
        country="",
    )


def test_bundle_tolerates_oids_contained_locations_and_versioned_references() -> None:
    people = by_rpps(split(DATA / "bundle.json")[0])
    (nurse,) = people["132005935"]  # ADELI, from the national id "0" + ADELI
    assert nurse.id_type == "0"
    assert (nurse.profession_code, nurse.profession, nurse.mode) == ("60", "Infirmier", "Salarié")
    assert (nurse.organisation, nurse.postcode, nurse.department_code) == (
        "CENTRE HOSPITALIER DE MARSEILLE",
        "13005",
        "13",
    )


def test_practitioner_without_role_gives_one_record_from_its_qualifications() -> None:
    (jean,) = by_rpps(split(DATA / "bundle.json")[0])["10008888884"]
    assert (jean.last_name, jean.first_name, jean.title) == ("DUPONT", "JEAN", "Docteur")
    assert (jean.profession_code, jean.specialty_code) == ("10", "SM54")
    assert (jean.postcode, jean.city, jean.department) == ("13001", "MARSEILLE", "Bouches-du-Rhône")


def test_role_citing_its_practitioner_by_identifier_with_two_specialties() -> None:
    karim = by_rpps(split(DATA / "bundle.json")[0])["10006666662"]
    assert [r.specialty_code for r in karim] == ["SM42", "SM92"]
    assert {(r.last_name, r.title, r.organisation, r.city) for r in karim} == {
        ("BENALI", "Professeur", "CHU DE LILLE", "LILLE")
    }


def test_inactive_practitioners_are_left_out() -> None:
    assert "10005555551" not in by_rpps(split(DATA / "bundle.json")[0])


def test_ndjson_reports_each_bad_line_with_its_number_and_keeps_the_rest() -> None:
    records, errors, warnings = split(DATA / "practitioners.ndjson")
    assert {e.line for e in errors} == {3, 6, 8, 10}
    messages = {e.line: e.message for e in errors}
    assert "not valid JSON" in messages[3]
    assert "p-unknown" in messages[6] and "not in the file" in messages[6]
    assert "name.0.family" in messages[8]
    assert "no RPPS or ADELI" in messages[10]
    assert [(w.line, "check digit" in w.message) for w in warnings] == [(7, True)]
    people = by_rpps(records)
    assert set(people) == {"10007777773", "10009999994"}


def test_ndjson_role_before_its_practitioner_and_organisation_is_still_joined() -> None:
    (claire,) = by_rpps(split(DATA / "practitioners.ndjson")[0])["10007777773"]
    assert (claire.last_name, claire.first_name, claire.specialty_code) == (
        "FONTAINE",
        "CLAIRE",
        "SM40",
    )
    assert claire.organisation == "CABINET MÉDICAL VAUGIRARD"
    assert (claire.postcode, claire.city, claire.department_code) == ("75015", "PARIS", "75")


def test_resource_failing_validation_is_an_error_not_an_exception() -> None:
    records, errors, _ = split(DATA / "invalid_practitioner.json")
    assert records == []
    (error,) = errors
    assert error.line == 1
    assert "invalid Practitioner" in error.message
    assert "active" in error.message
    assert FhirLineError is ParseError


def test_single_resource_and_array_files(tmp_path: Path) -> None:
    practitioner = {
        "resourceType": "Practitioner",
        "identifier": [{"system": "https://rpps.esante.gouv.fr", "value": "10002222221"}],
        "name": [{"family": "LEFÈVRE", "given": ["THOMAS"]}],
    }
    single = tmp_path / "one.json"
    single.write_text(json.dumps(practitioner, indent=2), encoding="utf-8")
    assert [r.last_name for r in split(single)[0]] == ["LEFÈVRE"]
    array = tmp_path / "many.json"
    array.write_text(json.dumps([practitioner, {"resourceType": "Practitioner", "name": 3}]))
    records, errors, _ = split(array)
    assert len(records) == 1
    assert [e.line for e in errors] == [2]


def test_bundle_errors_carry_the_entry_number(tmp_path: Path) -> None:
    bundle = json.loads((DATA / "bundle.json").read_text(encoding="utf-8"))
    bundle["entry"][2]["resource"]["address"] = "not a list"
    broken = tmp_path / "bundle.json"
    broken.write_text(json.dumps(bundle), encoding="utf-8")
    records, errors, _ = split(broken)
    assert [(e.line, "invalid Organization" in e.message) for e in errors] == [(3, True)]
    (anne,) = by_rpps(records)["10009999995"]
    assert anne.organisation == ""  # the organisation could not be used


def test_r4_elements_dropped_by_r5_are_accepted(tmp_path: Path) -> None:
    role = {
        "resourceType": "PractitionerRole",
        "practitioner": {"identifier": {"system": "http://rpps.fr", "value": "10001111110"}},
        "extension": [
            {
                "url": "https://annuaire.sante.gouv.fr/fhir/StructureDefinition/PractitionerRole-Name",
                "valueHumanName": {"family": "MARTIN", "given": ["PAUL"]},
            }
        ],
        "availableTime": [{"daysOfWeek": ["mon"], "availableStartTime": "09:00:00"}],
        "specialty": [{"coding": [{"code": "SM04"}]}],
    }
    path = tmp_path / "role.json"
    path.write_text(json.dumps(role), encoding="utf-8")
    records, errors, _ = split(path)
    assert errors == []
    assert [(r.last_name, r.specialty_code) for r in records] == [("MARTIN", "SM04")]


def test_unreadable_files_give_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("", encoding="utf-8")
    assert [type(i) for i in iter_fhir_records(empty)] == [ParseError]
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"resourceType": "Bundle", "entry": [\n  {"resource": }\n]}\n')
    (error,) = list(iter_fhir_records(garbage))
    assert isinstance(error, ParseError)
    assert error.line == 2
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(
        '{"resourceType": "Practitioner", "name": [{"family": "LÉGER"}]}'.encode("latin-1")
    )
    (error,) = list(iter_fhir_records(latin1))
    assert isinstance(error, ParseError)
    assert "UTF-8" in error.message


def test_ndjson_line_in_another_encoding_is_reported_alone(tmp_path: Path) -> None:
    def practitioner(rpps: str, family: str) -> str:
        resource = {
            "resourceType": "Practitioner",
            "identifier": [{"system": "https://rpps.esante.gouv.fr", "value": rpps}],
            "name": [{"family": family}],
        }
        return json.dumps(resource, ensure_ascii=False) + "\n"

    path = tmp_path / "mixed.ndjson"
    path.write_bytes(
        practitioner("10009999995", "MARTIN-LÉGER").encode("utf-8")
        + practitioner("10008888884", "DUPONT-LÉVÊQUE").encode("latin-1")
        + practitioner("10007777773", "FONTAINE").encode("utf-8")
    )
    records, errors, _ = split(path)
    assert [r.last_name for r in records] == ["MARTIN-LÉGER", "FONTAINE"]
    assert [(e.line, "UTF-8" in e.message) for e in errors] == [(2, True)]


def test_collection_of_per_practitioner_bundles(tmp_path: Path) -> None:
    inner = json.loads((DATA / "bundle.json").read_text(encoding="utf-8"))
    outer = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Observation"}}, {"resource": inner}],
    }
    path = tmp_path / "collection.json"
    path.write_text(json.dumps(outer), encoding="utf-8")
    records, errors, _ = split(path)
    assert errors == []
    assert set(by_rpps(records)) == set(by_rpps(split(DATA / "bundle.json")[0]))
