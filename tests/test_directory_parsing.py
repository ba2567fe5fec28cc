"""Reading the register's extract and reading a doctor's query: pure code, no database."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bridge.directory import parallel
from bridge.directory.model import ParseError, ParseWarning, PractitionerRecord
from bridge.directory.query import Node, Term, phrases_to_look_up, plan_query, to_fts5, to_tsquery
from bridge.directory.rows import (
    ACTIVITIES,
    ROW_FIELDS,
    ROW_SEP,
    TOKENS,
    Grouper,
    city_key,
    decode_activities,
)
from bridge.directory.rpps import (
    ExtractFormatError,
    ExtractParser,
    iter_records,
    luhn_ok,
    normalise_column,
    read_blocks,
    read_header,
    text_lines,
)
from bridge.directory.savoir_faire import SpecialtyIndex
from tests.bench.rpps_synth import (
    ALT_HEADER_SPELLINGS,
    HEADER_52,
    HEADER_56,
    generate,
    header_line,
)
from tests.directory_support import EXAMPLE_LINE


def records(lines: list[str]) -> list[PractitionerRecord | ParseError | ParseWarning]:
    return list(iter_records(lines))


def test_example_line_of_the_documentation_is_read_field_by_field() -> None:
    [record] = records([header_line(HEADER_52), EXAMPLE_LINE])
    assert record == PractitionerRecord(
        rpps="10009999995",  # type: ignore[arg-type]
        id_type="8",
        last_name="MARTIN-LÉGER",
        first_name="ANNE-SOPHIE",
        title="Docteur",
        profession_code="10",
        profession="Médecin",
        specialty_code="SM04",
        specialty="Cardiologie et maladies vasculaires",
        mode="Libéral",
        organisation="CABINET DR MARTIN-LÉGER",
        postcode="69002",
        city="Lyon 2e Arrondissement",
        department_code="69",
        department="Rhône",
        country="",
    )


@pytest.mark.parametrize(
    "header",
    [
        list(HEADER_52),
        [ALT_HEADER_SPELLINGS.get(c, c) for c in HEADER_52],
        [c.upper() for c in HEADER_52],
    ],
    ids=["as-documented", "alternative-spellings", "upper-case"],
)
def test_header_variants_map_columns_by_name(header: list[str]) -> None:
    [record] = records([header_line(header), EXAMPLE_LINE])
    assert isinstance(record, PractitionerRecord)
    assert (record.department_code, record.title) == ("69", "Docteur")


def test_56_column_extract_with_columns_in_another_order() -> None:
    columns = list(HEADER_56)
    values = [*EXAMPLE_LINE.split("|")[:52], "F1", "Fonction", "G1", "Genre"]
    order = list(reversed(range(len(columns))))
    line = "|".join(values[i] for i in order) + "|"
    [record] = records([header_line([columns[i] for i in order]), line])
    assert isinstance(record, PractitionerRecord)
    assert (record.rpps, record.city, record.specialty_code) == (
        "10009999995",
        "Lyon 2e Arrondissement",
        "SM04",
    )


def test_spelling_variants_normalise_to_one_name() -> None:
    assert normalise_column("Code Département (structure)") == normalise_column(
        "Code département (coord. structure)"
    )
    assert normalise_column("Libellé civilité d'exercice") == normalise_column(
        "LIBELLE CIVILITE EXERCICE"
    )


def test_missing_required_column_is_named() -> None:
    header = [c for c in HEADER_52 if c != "Nom d'exercice"]
    with pytest.raises(ExtractFormatError, match="Nom d'exercice"):
        read_header(header_line(header))


def test_a_file_that_is_not_an_extract_says_so() -> None:
    with pytest.raises(ExtractFormatError, match="not the header of a register extract"):
        read_header("name;city;phone\n")


def test_malformed_lines_are_reported_with_their_line_number() -> None:
    bad_columns = "8|10009999995|MARTIN|"
    no_id = EXAMPLE_LINE.replace("8|10009999995|", "8||", 1)
    items = records([header_line(HEADER_52), EXAMPLE_LINE, bad_columns, EXAMPLE_LINE, no_id])
    errors = [i for i in items if isinstance(i, ParseError)]
    assert [(e.line, e.message.split(",")[0]) for e in errors] == [
        (3, "expected 52 fields separated by '|'"),
        (5, "empty “Identifiant PP” is not a number"),
    ]
    assert sum(isinstance(i, PractitionerRecord) for i in items) == 2


def test_rpps_failing_its_check_digit_is_a_warning_not_a_rejection() -> None:
    assert luhn_ok("10009999995") and not luhn_ok("10009999996")
    line = EXAMPLE_LINE.replace("10009999995", "10009999996")
    items = records([header_line(HEADER_52), line])
    assert [type(i).__name__ for i in items] == ["ParseWarning", "PractitionerRecord"]
    assert isinstance(items[0], ParseWarning) and items[0].line == 2


def test_partial_address_takes_postcode_and_city_from_bureau_cedex() -> None:
    line = EXAMPLE_LINE.replace("|69002|69382|Lyon 2e Arrondissement|", "||||").replace(
        "|69|Rhône|", "|||"
    )
    [record] = records([header_line(HEADER_52), line])
    assert isinstance(record, PractitionerRecord)
    assert (record.postcode, record.city, record.department_code, record.department) == (
        "69002",
        "LYON",
        "69",
        "Rhône",
    )


def test_specialty_comes_from_savoir_faire_when_the_columns_are_absent() -> None:
    header = [c for c in HEADER_52 if "savoir-faire" not in c]
    values = EXAMPLE_LINE.split("|")
    dropped = {HEADER_52.index(c) for c in HEADER_52 if "savoir-faire" in c}
    line = "|".join(v for i, v in enumerate(values) if i not in dropped)
    savoir_faire = [
        "Identification nationale PP|Code type savoir-faire|Code savoir-faire|"
        "Libellé savoir-faire|\n",
        "810009999995|CEX|CEX1|Une compétence|\n",
        "810009999995|S|SM04|Cardiologie et maladies vasculaires|\n",
    ]
    index = SpecialtyIndex.from_lines(savoir_faire)
    assert index("810009999995") == ("SM04", "Cardiologie et maladies vasculaires")
    assert index("899999999999") is None
    parser = ExtractParser(read_header(header_line(header)), index)
    rows, errors, _ = parser.parse([line], 2)
    assert not errors and rows[0][7:9] == ("SM04", "Cardiologie et maladies vasculaires")


def test_lines_of_one_practitioner_become_one_row_with_all_places() -> None:
    second = EXAMPLE_LINE.replace(
        "69002 LYON|69002|69382|Lyon 2e Arrondissement", "|69100||Villeurbanne"
    )
    parser = ExtractParser(read_header(header_line(HEADER_52)))
    rows, _, _ = parser.parse([EXAMPLE_LINE, second], 2)
    grouper = Grouper()
    done = grouper.feed(rows) + grouper.flush()
    assert len(done) == 1
    row = done[0].split(ROW_SEP)
    words = row[TOKENS].split()
    assert {"martin", "leger", "anne", "sophie", "9clyon", "9cvilleurbanne", "9ssm04"} <= set(words)
    assert [a.city for a in decode_activities(row[ACTIVITIES])] == [
        "Lyon 2e Arrondissement",
        "Villeurbanne",
    ]


def test_city_keys_ignore_arrondissements_cedex_and_saint_abbreviations() -> None:
    assert city_key("Lyon 2e Arrondissement") == "lyon"
    assert city_key("PARIS CEDEX 15") == "paris"
    assert city_key("ST-ÉTIENNE") == city_key("Saint-Étienne") == "saint etienne"


# --- queries -------------------------------------------------------------------------------


def test_name_words_are_prefixes_in_any_order() -> None:
    plan = plan_query("Mart Lég")
    assert plan.groups == [Term("mart", prefix=True), Term("leg", prefix=True)]
    assert to_fts5(plan.expression()) == '("mart"* AND "leg"*)'
    assert to_fts5(plan.expression(exact=True)) == '("mart" AND "leg")'
    assert to_tsquery(plan.expression()) == "('mart':* & 'leg':*)"


def test_specialty_and_city_narrow_and_also_match_names() -> None:
    assert "lyon" in phrases_to_look_up("cardio lyon")
    plan = plan_query("cardio lyon", {"lyon"})
    specialty, city = plan.groups
    assert isinstance(specialty, Node) and Term("9ssm04") in specialty.items
    assert city == Node("or", (Term("9clyon"), Term("lyon", prefix=True)))
    assert plan.name_words == []


def test_numbers_become_identifiers_postcodes_departments_or_arrondissements() -> None:
    assert plan_query("10009999995").identifiers == {"10009999995"}
    assert plan_query("810009999995").identifiers == {"10009999995"}
    assert plan_query("0123456789").identifiers == {"123456789"}
    assert plan_query("10009999995").groups == []
    assert plan_query("69002").groups == [Term("9z69002")]
    assert plan_query("MG 13").groups[1] == Term("9d13")
    assert plan_query("2A").groups == [Term("9d2a")]
    assert plan_query("paris 15e", {"paris"}).groups[1] == Term("9z75015")


def test_titles_and_empty_queries() -> None:
    assert plan_query("Dr Dupont").groups == [Term("dupont", prefix=True)]
    assert plan_query("  -- ' ").empty


def test_names_are_indexed_joined_whole_and_one_letter_off() -> None:
    from bridge.directory.rows import Vocabulary, deletions, name_words

    found = name_words("de la fontaine", "helene")
    assert {"de", "la", "fontaine", "delafontaine", "lafontaine", "helene"} <= set(found)
    assert "9ldelafontaine" in found
    assert not [x for x in found if x.startswith("9t")]  # typo variants: their own table
    assert deletions("anna") == ["nna", "ana", "ann"]
    vocabulary = Vocabulary()
    vocabulary.add_surname("de la fontaine")
    vocabulary.add_surname("le guen")
    vocabulary.add_first("helene")
    typos = set(vocabulary.typo_rows())
    assert ("fntaine", "fontaine") in typos and ("fontain", "fontaine") in typos
    assert not [v for v, word in typos if word in ("le", "guen")]  # too short
    # A joined run remembers its shortest first word: "lafontaine" from "la", and a run
    # that is also a plain word elsewhere is a plain word (0).
    assert vocabulary.words["delafontaine"] == 2 and vocabulary.words["fontaine"] == 0
    vocabulary.add_surname("delafontaine")
    assert vocabulary.words["delafontaine"] == 0
    other = Vocabulary(words={"leguen": 1, "fontaine": 3})
    vocabulary.update(other)
    assert vocabulary.words["leguen"] == 1 and vocabulary.words["fontaine"] == 0


def test_particles_abbreviations_and_typos_in_queries() -> None:
    plan = plan_query("st exupery")
    assert plan.groups[0] == Node("or", (Term("st"), Term("saint")))
    assert plan_query("le guen").groups == [Term("guen", prefix=True)]
    assert plan_query("le").groups == [Term("le", prefix=True)]  # alone: what was typed
    from bridge.directory.query import typo_keys

    plan = plan_query("matrin")
    assert plan.typo_words() == ["matrin"]
    assert "marin" in typo_keys("matrin")  # "martin" minus t, "matrin" minus t
    typos = plan.with_typos({"matrin": ["martin"]})
    assert typos is not None
    [group] = typos.groups
    assert isinstance(group, Node) and Term("martin") in group.items
    assert Term("matrn") in group.items  # one letter extra: a variant may be the name
    assert plan_query("paul").typo_words() == ["paul"]  # a 5-letter name, minus one
    assert typo_keys("paul") == ["paul"]
    assert plan_query("luc").with_typos({}) is None


# Ends of lines as the register's files have them: Windows, old Mac, mixed, a blank line,
# a last line without an end, a line longer than a block.
_MIXED = "a|1\r\nb|2\rc|3\n\nd|" + "x" * 100 + "\r\n\r" + "e|5"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 4096])
def test_blocks_end_lines_where_reading_the_file_line_by_line_does(size: int) -> None:
    expected = [line.rstrip("\r\n") for line in io.StringIO(_MIXED, newline="")]
    blocks = list(read_blocks(io.StringIO(_MIXED, newline=""), size))
    assert all(block.endswith("\n") for block in blocks)
    assert [line for block in blocks for line in text_lines(block)] == expected
    assert sum(block.count("\n") for block in blocks) == len(expected)


@pytest.mark.parametrize("block_lines", [1, 7, 1000])
def test_gathering_lines_as_they_are_parsed_gives_what_parsing_then_gathering_gives(
    tmp_path: Path, block_lines: int
) -> None:
    """An extract's lines are gathered inside the parser's loop (`gather_text`); the
    record rows of other sources through `Grouper.feed`. Both must give the same rows,
    counts, errors, warnings and vocabulary, whatever the blocks the file comes in."""
    generate(tmp_path / "extract.txt", lines=400, seed=11)
    header, *lines = (tmp_path / "extract.txt").read_text(encoding="utf-8").splitlines(True)
    fails_luhn = EXAMPLE_LINE.replace("10009999995", "10009999996")
    # Hard cases among generated lines: the same activity twice, a practitioner whose lines
    # surround a broken line and a blank one, a check digit that fails, a line too short.
    lines[10:10] = [
        EXAMPLE_LINE + "\n",
        EXAMPLE_LINE + "\n",
        "8|not a number" + "|" * 51 + "\n",
        "\n",
        EXAMPLE_LINE.replace("69002|69382|Lyon 2e", "69100||Villeurbanne") + "\n",
        fails_luhn + "\n",
        "8|10001|too short\n",
    ]
    blocks = ["".join(lines[i : i + block_lines]) for i in range(0, len(lines), block_lines)]
    layout = read_header(header)

    parser, grouper = ExtractParser(layout), Grouper()
    fed: list[str] = []
    fed_records, fed_errors, fed_warnings = 0, [], []
    line_no = 2
    for block in blocks:
        rows, errors, warnings = parser.parse_text(block, line_no)
        fed += grouper.feed(rows)
        fed_records += len(rows)
        fed_errors += errors
        fed_warnings += warnings
        line_no += block.count("\n")
    fed += grouper.flush()

    parser, gatherer = ExtractParser(layout), Grouper()
    gathered: list[str] = []
    records, all_errors, all_warnings = 0, [], []
    line_no = 2
    for block in blocks:
        done, count, errors, warnings = parser.gather_text(block, line_no, gatherer)
        gathered += done
        records += count
        all_errors += errors
        all_warnings += warnings
        line_no += block.count("\n")
    gathered += gatherer.flush()

    assert gathered == fed
    assert (records, all_errors, all_warnings) == (fed_records, fed_errors, fed_warnings)
    assert gatherer.vocabulary == grouper.vocabulary
    assert [e.line for e in all_errors] == [14, 18]
    assert [w.line for w in all_warnings] == [17]
    martin = [row for row in gathered if "\t10009999995" in row.partition(ROW_SEP)[0]]
    assert len(martin) == 1 and len(decode_activities(martin[0].split(ROW_SEP)[ACTIVITIES])) == 2


@pytest.mark.parametrize(
    ("lines", "cut_before"),
    [
        (["A", "B", "B"], 1),
        (["A", "B", "", "B"], 1),  # a blank line between one practitioner's lines
        (["A", "B", "broken|line|", "B"], 1),  # a broken one
        (["A", "B", "B", ""], 1),  # a blank last line
        (["A", "", "B"], 2),
        (["B", "", "B"], None),  # one practitioner: the block is kept whole
        (["", "broken|line|"], None),
    ],
)
def test_a_block_is_cut_before_its_last_practitioner_whatever_lies_between_their_lines(
    lines: list[str], cut_before: int | None
) -> None:
    """Blocks go to parsing processes cut between practitioners; a line without an
    identifier between two lines of one practitioner must not cut them apart (each half
    would be gathered by another process)."""
    rpps = {"A": "10001111118", "B": "10002222226"}
    text = [EXAMPLE_LINE.replace("10009999995", rpps[x]) if x in rpps else x for x in lines]
    block = "".join(line + "\n" for line in text).encode()
    column = read_header(header_line(HEADER_52)).positions["rpps"]
    expected = (
        0 if cut_before is None else len("".join(t + "\n" for t in text[:cut_before]).encode())
    )
    assert parallel.cut_point(block, column) == expected


def test_control_characters_in_a_line_never_cut_a_stored_row() -> None:
    # A name holding the separators the directory stores rows with, a tab, a NUL: each
    # becomes a space, the line is one record with its fields where they belong.
    cells = EXAMPLE_LINE.split("|")
    at = cells.index("MARTIN-LÉGER")
    cells[at] = "MAR\x1dTIN\x1e-\x1fLÉ\tGER\x00"
    parser = ExtractParser(read_header(header_line(HEADER_52)))
    rows, errors, _ = parser.parse_text("|".join(cells) + "\n", 2)
    assert errors == []
    assert rows[0][2] == "MAR TIN - LÉ GER "
    grouper = Grouper()
    [row] = grouper.feed(rows) + grouper.flush()
    fields = row.split(ROW_SEP)
    assert len(fields) == len(ROW_FIELDS)
    assert len(decode_activities(fields[ACTIVITIES])) == 1


@pytest.mark.parametrize("control", [*range(0x0A), *range(0x0B, 0x20), 0x7F])
def test_every_control_character_alone_in_a_block_becomes_a_space(control: int) -> None:
    # Each one alone, anywhere in the block: the block's search must find every one of them.
    block = "a|1\nb|2" + chr(control) + "x\nc|3\n"
    assert text_lines(block) == ["a|1", "b|2 x", "c|3"]
