"""How a practitioner is stored and indexed: the words that find them and the row that shows them.

Shared by the importer (which writes them) and the search (which reads and queries them), so
that the index and the queries cannot drift apart. Pure code.

Index words ("tokens") are plain lowercase ASCII words, identical for SQLite FTS5 and
PostgreSQL tsvector, so both back ends match exactly the same practitioners:
- name words: the folded last and first names, split ("martin", "leger", "anne", "sophie");
- tagged words for everything else, which start with a digit so that no name word or name
  prefix can ever meet them: `9s<specialty code>`, `9p<profession code>`, `9c<city>`,
  `9z<postcode>`, `9d<department>`. (RPPS/ADELI numbers are found through the register's
  own unique index instead: 1.7 million one-practitioner words would double the cost of
  building the word index.)

Name words are also indexed the other ways doctors type them (`name_words`):
- joined: "N'Guessan" gives "n", "guessan" and "nguessan"; "De La Fontaine" gives "delafontaine"
  and "lafontaine" too; "Le Guen" gives "leguen";
- `9l<surname>`: the whole surname joined ("9lmartin", "9laitalimartin"), so that a query can
  rank a practitioner whose surname IS the word typed ("martin") before one whose surname only
  contains it (AÏT-ALI-MARTIN), and a surname that starts with it before a first name;

Beside the rows, an import learns its `Vocabulary`, stored in tables of their own:
- every name word, with for a joined run the length of its first word: a long prefix typed
  ("sanchez") is matched as the words it begins (`directory_word`), and a run beginning with a
  whole word that already begins with the prefix ("sanchezadam") adds nobody, so it is left out;
- each surname word of five letters or more with one letter deleted (`directory_typo`), the
  deletion neighbourhood of symmetric-delete spelling correction (SymSpell): a query word and
  a surname word are one edit apart (a letter missing, extra, wrong, or two swapped) exactly
  when one equals the other with a letter deleted, or both do with a letter deleted each. The
  query's variants are looked up there, the same way on SQLite and PostgreSQL, and the surname
  words found are matched as plain words, so a typo finds the same practitioners on both back
  ends. (Indexed per practitioner, these variants were 40 % of the word index's size.)

A practitioner with several activity lines becomes ONE row: the words of all their activities
together (a search for "cardio lyon" finds them if any activity is a cardiology one in Lyon),
and the activities themselves encoded in one text column (fields joined by U+001F, activities
by U+001E): a results page is then one indexed read, without a join per result.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from bridge.directory.model import PractitionerRecord, RecordRow, RppsId
from bridge.directory.vocabulary import fold

SPECIALTY = "9s"
PROFESSION = "9p"
CITY = "9c"
POSTCODE = "9z"
DEPARTMENT = "9d"
SURNAME = "9l"
TYPO_MIN_LETTERS = 5
"""Shorter words are not typo-tolerant: one edit away from a four-letter name is too many
other names."""

FIELD_SEP = "\x1f"
ACTIVITY_SEP = "\x1e"

_CITY_SUFFIX = re.compile(r"(?: \d+ ?(?:er|e|eme)? arrondissement| cedex(?: \d+)?)+$")
_CITY_WORDS = {"st": "saint", "ste": "sainte"}


def words(text: str) -> list[str]:
    """The index words of a free text: folded, split, ASCII only (both back ends agree)."""
    return [w for w in fold(text).split() if w.isascii()]


def deletions(word: str) -> list[str]:
    """The word with one letter deleted, each way (duplicates removed, order kept)."""
    return list(dict.fromkeys(word[:i] + word[i + 1 :] for i in range(len(word))))


def name_words(last: str, first: str) -> list[str]:
    """The index words of a folded name (`words` joined by spaces): see the module docstring."""
    return list(dict.fromkeys([*surname_words(last), *first.split()]))


def surname_words(last: str) -> list[str]:
    """The index words of a folded surname: its words, joined runs and the `9l` word."""
    found = list(_runs(last.split()))
    if found:
        found.append(SURNAME + last.replace(" ", ""))
    return list(dict.fromkeys(found))


def _runs(surname: list[str]) -> Iterator[str]:
    """The surname's words, then its runs of two words or more joined."""
    yield from surname
    for start in range(len(surname) - 1):
        for end in range(start + 2, len(surname) + 1):
            yield "".join(surname[start:end])


@dataclass(slots=True)
class Vocabulary:
    """What an import learns besides the practitioners (see the module docstring).

    `words`: name word -> 0 for a word of a name, else (a joined run only) the length of the
    shortest first word it was joined from. `surnames`: surname words long enough for typos.
    """

    cities: set[str] = field(default_factory=set)
    words: dict[str, int] = field(default_factory=dict)
    surnames: set[str] = field(default_factory=set)

    def add_surname(self, last: str) -> None:
        """A folded surname (words joined by spaces)."""
        surname = last.split()
        known = self.words
        for word in surname:
            known[word] = 0
            if len(word) >= TYPO_MIN_LETTERS:
                self.surnames.add(word)
        for start in range(len(surname) - 1):
            head = len(surname[start])
            for end in range(start + 2, len(surname) + 1):
                run = "".join(surname[start:end])
                if known.get(run, head + 1) > head:
                    known[run] = head

    def add_first(self, first: str) -> None:
        for word in first.split():
            self.words[word] = 0

    def update(self, other: Vocabulary) -> None:
        self.cities |= other.cities
        self.surnames |= other.surnames
        known = self.words
        for word, head in other.words.items():
            if known.get(word, head + 1) > head:
                known[word] = head

    def take(self) -> Vocabulary:
        """What was learnt since the last `take` (this one is then empty)."""
        taken = Vocabulary(self.cities, self.words, self.surnames)
        self.cities, self.words, self.surnames = set(), {}, set()
        return taken

    def typo_rows(self) -> Iterator[tuple[str, str]]:
        """(variant, surname word): each surname word with a letter deleted, each way."""
        for word in self.surnames:
            for variant in deletions(word):
                yield variant, word


def surname_key(last: str) -> str:
    """The folded surname joined ("AÏT-ALI-MARTIN" → "aitalimartin")."""
    return "".join(words(last))


def city_key(city: str) -> str:
    """The folded name of a city without arrondissement or CEDEX ("Lyon 2e Arrondissement",
    "LYON CEDEX 02" → "lyon"), with "st"/"ste" spelled out, so people and mail agree."""
    key = _CITY_SUFFIX.sub("", " ".join(words(city)))
    return " ".join(_CITY_WORDS.get(w, w) for w in key.split())


def city_token(key: str) -> str:
    return CITY + key.replace(" ", "")


PractitionerRow = str
"""One practitioner ready to store, as one line of text: the fields of `ROW_FIELDS` joined by
U+001D. `name_key` comes first and is the folded last name, tab, folded first name, tab,
RPPS, so sorting the lines as plain strings gives the directory's order. (A line, not a
tuple: the importer writes 1.7 million of them to temporary files and reads them back, and
text is several times cheaper to write, read and sort than pickled tuples.)"""

ROW_SEP = "\x1d"
ROW_FIELDS = (
    "name_key",
    "rpps",
    "id_type",
    "last_name",
    "first_name",
    "title",
    "profession_code",
    "profession",
    "activities",
    "tokens",
)
NAME_KEY, RPPS, ACTIVITIES, TOKENS = 0, 1, 8, 9
STORED = slice(RPPS, None)
"""The fields of `ROW_FIELDS` that `directory_practitioner` stores: all but the name key,
which only puts the rows in order before they are numbered (the table's order is its ids)."""
STORED_FIELDS = ROW_FIELDS[STORED]
HEAD = 7
"""A practitioner's identity: the first `HEAD` fields of a record row (RPPS to profession),
taken from their first line."""
Gathering = tuple[str, tuple[str, ...], list[str], list[str]]
"""A practitioner being gathered (`Grouper.current`): RPPS, identity, activities, words."""


def field_columns(rows: str) -> list[list[str]]:
    """`PractitionerRow`s joined by `ROW_SEP`, as one list per field of `ROW_FIELDS`: every
    field cut at once at C speed, then taken column by column (a split per row was 2 s of
    the build on the whole register)."""
    cells = rows.split(ROW_SEP)
    return [cells[i :: len(ROW_FIELDS)] for i in range(len(ROW_FIELDS))]


class Grouper:
    """Gathers consecutive record rows of the same practitioner into one `PractitionerRow`.

    The register lists a practitioner's activities one after another; should the same
    identifier come back later in a file, the store merges the two rows (`merge_rows`).
    This runs 2.2 million times per import, hence the memos: the register repeats the same
    names, places and specialties, so each is folded and turned into words once (the memos
    are bounded by the register's vocabulary, not by the file's size). An extract's lines
    are gathered as they are parsed (`ExtractParser.gather_text`), without a record row per line
    in between; other sources feed record rows (`feed`). Both go through the same state:
    the practitioner being gathered, then `finish` and the memos' `place` and `kind`.
    """

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self.places: dict[tuple[str, str, str], str] = {}
        """(postcode, city, department) → its index words (`place` fills it)."""
        self.kinds: dict[tuple[str, str], str] = {}
        """(profession code, specialty code) → its index words (`kind` fills it)."""
        self._spelled: dict[str, str] = {}
        self._firsts: set[str] = set()
        self.current: Gathering = ("", (), [], [])
        """The practitioner being gathered: their RPPS, identity (`HEAD` fields), activities
        and index words so far; empty RPPS when nobody is."""
        self.vocabulary = Vocabulary()
        """Every city key and name word seen (`Vocabulary`)."""

    def _name(self, text: str) -> str:
        found = self._names.get(text)
        if found is None:
            found = self._names[text] = " ".join(words(text))
        return found

    def place(self, postcode: str, city: str, department: str) -> str:
        """The index words of a place (memoised in `places`)."""
        key = city_key(city)
        if key:
            self.vocabulary.cities.add(key)
        parts = [
            POSTCODE + postcode if postcode else "",
            city_token(key) if key else "",
            DEPARTMENT + department.lower() if department else "",
        ]
        found = self.places[postcode, city, department] = " ".join(p for p in parts if p)
        return found

    def kind(self, profession_code: str, specialty_code: str) -> str:
        """The index words of a profession and specialty (memoised in `kinds`)."""
        found = PROFESSION + profession_code
        if specialty_code:
            found += " " + SPECIALTY + specialty_code.lower()
        self.kinds[profession_code, specialty_code] = found
        return found

    def feed(self, rows: Iterable[RecordRow]) -> list[PractitionerRow]:
        """Add rows in file order; returns the practitioners completed by them."""
        done: list[PractitionerRow] = []
        places = self.places
        kinds = self.kinds
        rpps, head, activities, tokens = self.current
        for row in rows:
            activity = FIELD_SEP.join(row[7:16])
            if row[0] != rpps:
                if rpps:
                    done.append(self.finish(head, activities, tokens))
                rpps = row[0]
                head = row[:HEAD]
                activities = [activity]
                tokens = []
            elif activity in activities:
                continue
            else:
                activities.append(activity)
            place = places.get((row[11], row[12], row[13]))
            if place is None:
                place = self.place(row[11], row[12], row[13])
            kind = kinds.get((row[5], row[7]))
            if kind is None:
                kind = self.kind(row[5], row[7])
            tokens.append(kind)
            tokens.append(place)
        self.current = (rpps, head, activities, tokens)
        return done

    def flush(self) -> list[PractitionerRow]:
        """The last practitioner, once the input is exhausted."""
        rpps, head, activities, tokens = self.current
        if not rpps:
            return []
        self.current = ("", (), [], [])
        return [self.finish(head, activities, tokens)]

    def finish(
        self, head: tuple[str, ...], activities: list[str], tokens: list[str]
    ) -> PractitionerRow:
        """One practitioner's row: `head` holds the `HEAD` fields of their first line,
        `activities` their distinct activities (fields joined by `FIELD_SEP`), `tokens`
        the index words of each activity's profession and place."""
        last = self._name(head[2])
        first = self._name(head[3])
        spelled = self._spelled.get(last)
        if spelled is None:
            spelled = self._spelled[last] = " ".join(surname_words(last))
            self.vocabulary.add_surname(last)
        if first not in self._firsts:
            self._firsts.add(first)
            self.vocabulary.add_first(first)
        tokens.append(spelled)
        tokens.append(first)
        return ROW_SEP.join(
            (
                last + "\t" + first + "\t" + head[0],
                *head,
                ACTIVITY_SEP.join(activities),
                " ".join(tokens),
            )
        )


def merge_rows(first: PractitionerRow, second: PractitionerRow) -> PractitionerRow:
    """One practitioner whose lines were not consecutive in the file: both rows in one."""
    one, two = first.split(ROW_SEP), second.split(ROW_SEP)
    activities = one[ACTIVITIES].split(ACTIVITY_SEP)
    activities += [a for a in two[ACTIVITIES].split(ACTIVITY_SEP) if a not in activities]
    one[ACTIVITIES] = ACTIVITY_SEP.join(activities)
    one[TOKENS] += " " + two[TOKENS]
    return ROW_SEP.join(one)


@dataclass(frozen=True, slots=True)
class Activity:
    """One practice of a practitioner, as stored (see `PractitionerRecord` for the fields)."""

    specialty_code: str
    specialty: str
    mode: str
    organisation: str
    postcode: str
    city: str
    department_code: str
    department: str
    country: str


def decode_activities(text: str) -> list[Activity]:
    return [Activity(*a.split(FIELD_SEP)) for a in text.split(ACTIVITY_SEP)] if text else []


def to_records(
    rpps: str,
    id_type: str,
    last_name: str,
    first_name: str,
    title: str,
    profession_code: str,
    profession: str,
    activities: str,
) -> Iterator[PractitionerRecord]:
    """The stored practitioner back as register records, one per activity."""
    for a in decode_activities(activities):
        yield PractitionerRecord(
            rpps=RppsId(rpps),
            id_type=id_type,
            last_name=last_name,
            first_name=first_name,
            title=title,
            profession_code=profession_code,
            profession=profession,
            specialty_code=a.specialty_code,
            specialty=a.specialty,
            mode=a.mode,
            organisation=a.organisation,
            postcode=a.postcode,
            city=a.city,
            department_code=a.department_code,
            department=a.department,
            country=a.country,
        )
