"""Understanding a search as a doctor types it: "mart leg", "cardio lyon", "MG 13", "10009999995".

Pure code. The query is folded (accents, case, hyphens do not matter), then read left to right,
longest phrase first: numbers (RPPS/ADELI, postcode, department, Paris/Lyon/Marseille
arrondissement), specialty and profession words (the vocabulary maps "cardio", "MG",
"médecin généraliste" to the register's codes), department names, city names present in the
register, and whatever is left is a name word, matched as a prefix ("mart" finds MARTIN).

Every recognised word also matches people whose name is exactly that word ("Nancy Dupont" is
found by "nancy dupont" as well as Dupont in Nancy), but each group of words must match: the
specialty and the place narrow the results, they never widen them.

The result is a `Plan`: a boolean expression over index words (bridge.directory.rows),
rendered for FTS5 or PostgreSQL tsquery from the same tree, so both back ends match the same
practitioners.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bridge.directory import rows as w
from bridge.directory.vocabulary import (
    TITLE_WORDS,
    department_code_for_token,
    match_department,
    profession_codes_for,
    specialty_codes_for,
)

ABBREVIATIONS = {"st": "saint", "ste": "sainte"}
"""Typed for a name word ("st exupery"): the word itself, or the register's spelling."""
MAX_PHRASE = 5
MAX_TERMS = 12
_STOP_WORDS = frozenset({"a", "au", "aux", "d", "de", "des", "du", "en", "et", "l", "la", "le"})
_ARRONDISSEMENT = re.compile(r"^(\d{1,2})(?:e|er|eme)?$")
_ARRONDISSEMENTS = {"paris": ("75", 20), "lyon": ("69", 9), "marseille": ("13", 16)}


@dataclass(frozen=True, slots=True)
class Term:
    word: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Node:
    op: str  # "and" | "or"
    items: tuple[Term | Node, ...]


Expr = Term | Node


@dataclass(slots=True)
class Plan:
    """What to ask the index, and what the query said about place and specialty."""

    groups: list[Expr] = field(default_factory=list)
    name_words: list[str] = field(default_factory=list)
    specialties: set[str] = field(default_factory=set)
    professions: set[str] = field(default_factory=set)
    cities: set[str] = field(default_factory=set)
    postcodes: set[str] = field(default_factory=set)
    departments: set[str] = field(default_factory=set)
    identifiers: set[str] = field(default_factory=set)
    """RPPS/ADELI numbers: looked up by the register's key, not through the word index."""

    @property
    def empty(self) -> bool:
        return not self.groups and not self.identifiers

    def expression(self, *, exact: bool = False) -> Expr:
        """All groups ANDed; with `exact`, name words must be whole words (ranking tier)."""
        groups = [_exact(g) for g in self.groups] if exact else self.groups
        return groups[0] if len(groups) == 1 else Node("and", tuple(groups))

    @property
    def ranks_exact(self) -> bool:
        """Whether ranking changes anything (the query has name words)."""
        return bool(self.name_words)

    def surname_candidates(self) -> list[str]:
        """What the surname may be typed as: each name word, and all of them joined."""
        return list(dict.fromkeys([*self.name_words, "".join(self.name_words)]))

    def tiers(self) -> list[Expr]:
        """The ranking conditions, best first (a match falls in the first it meets, the rest
        after them all): the surname is a word typed (or all of them joined); the surname
        starts with one; every name word is a whole word of the name."""
        candidates = self.surname_candidates()
        exact = _any(w.SURNAME + q for q in candidates)
        starts = tuple(Term(w.SURNAME + q, prefix=True) for q in candidates)
        return [
            exact,
            starts[0] if len(starts) == 1 else Node("or", starts),
            self.expression(exact=True),
        ]

    def typo_words(self) -> list[str]:
        """The name words typed that may carry a typo: a five-letter name typed with a letter
        missing has four letters."""
        return [
            g.word
            for g in self.groups
            if isinstance(g, Term) and g.prefix and len(g.word) >= w.TYPO_MIN_LETTERS - 1
        ]

    def with_typos(self, corrections: Mapping[str, Sequence[str]]) -> Plan | None:
        """The same query with each `typo_words` word one edit away from a name word too
        (see bridge.directory.rows): `corrections` are the surname words found in the typo
        table for each (`typo_keys`); None when no word is long enough."""
        groups: list[Expr] = []
        changed = False
        for group in self.groups:
            if (
                isinstance(group, Term)
                and group.prefix
                and len(group.word) >= w.TYPO_MIN_LETTERS - 1
            ):
                # Typed one letter short, wrong or swapped: the surname words found from the
                # word's variants; one letter extra (six letters or more): one of the word's
                # variants is the name word, whichever it is.
                word = group.word
                terms = [group, *(Term(c) for c in corrections.get(word, ()))]
                if len(word) > w.TYPO_MIN_LETTERS:
                    terms += [Term(v) for v in w.deletions(word)]
                groups.append(Node("or", tuple(dict.fromkeys(terms))))
                changed = True
            else:
                groups.append(group)
        if not changed:
            return None
        return Plan(
            groups,
            list(self.name_words),
            self.specialties,
            self.professions,
            self.cities,
            self.postcodes,
            self.departments,
            self.identifiers,
        )


def typo_keys(word: str) -> list[str]:
    """What to look up in the typo table for a word typed: a surname word with a letter
    deleted equals the word (a letter missing) or one of its own variants (one wrong or two
    swapped: they share one)."""
    return [word, *w.deletions(word)] if len(word) >= w.TYPO_MIN_LETTERS else [word]


def _exact(expr: Expr) -> Expr:
    return Term(expr.word) if isinstance(expr, Term) and expr.prefix else expr


def _any(words: Iterable[str]) -> Expr:
    terms = tuple(Term(x) for x in dict.fromkeys(words))
    return terms[0] if len(terms) == 1 else Node("or", terms)


def _or_name(tagged: list[str], span: list[str]) -> Expr:
    """Tagged words, or the span's words as a name ("nancy": the city, or a Nancy; "mare":
    the place, or MARÉCHAL typed in part)."""
    name: Expr = (
        Term(span[0], prefix=len(span[0]) > 1)
        if len(span) == 1
        else Node("and", tuple(Term(x) for x in span))
    )
    return Node("or", (*(Term(t) for t in dict.fromkeys(tagged)), name))


def city_candidates(tokens: list[str]) -> list[str]:
    """Every phrase of the query that could be a city: looked up in the register's places."""
    found: list[str] = []
    for i in range(len(tokens)):
        for width in range(1, min(MAX_PHRASE, len(tokens) - i) + 1):
            key = w.city_key(" ".join(tokens[i : i + width]))
            if key and not key[0].isdigit():
                found.append(key)
    return list(dict.fromkeys(found))


def query_tokens(text: str) -> list[str]:
    """The folded words of the query, without titles ("Dr"). Stop words stay: they are part
    of place names ("la rochelle", "saint germain en laye"); `plan_query` drops the others."""
    return [t for t in w.words(text) if t not in TITLE_WORDS][: MAX_TERMS * 2]


def _number(token: str, previous_city: str | None, plan: Plan) -> Expr | None:
    arrondissement = _ARRONDISSEMENT.match(token)
    if previous_city in _ARRONDISSEMENTS and arrondissement:
        dept, count = _ARRONDISSEMENTS[previous_city]
        digits = arrondissement.group(1)
        if 1 <= int(digits) <= count:
            postcode = f"{dept}{int(digits):03d}"
            plan.postcodes.add(postcode)
            return Term(w.POSTCODE + postcode)
    if token.isdigit():
        if len(token) in (9, 11):
            plan.identifiers.add(token)
            return None
        if (len(token) == 12 and token[0] == "8") or (len(token) == 10 and token[0] == "0"):
            plan.identifiers.add(token[1:])  # the national id: type digit + RPPS/ADELI
            return None
        if len(token) in (4, 5):
            postcode = token.zfill(5)
            plan.postcodes.add(postcode)
            return Term(w.POSTCODE + postcode)
    department = department_code_for_token(token)
    if department is not None:
        plan.departments.add(department)
        return Term(w.DEPARTMENT + department.lower())
    return Term("9n" + token)  # a number that is nothing we know: matches nobody


def phrases_to_look_up(text: str) -> list[str]:
    """The query's phrases that may be cities: ask the register which are (`plan_query`)."""
    return city_candidates(query_tokens(text))


def plan_query(text: str, cities: set[str] | frozenset[str] = frozenset()) -> Plan:
    """Read a query; `cities` are those of `phrases_to_look_up(text)` the register knows."""
    tokens = query_tokens(text)
    only_stop_words = all(t in _STOP_WORDS for t in tokens)
    plan = Plan()
    previous_city: str | None = None
    i = 0
    while i < len(tokens) and len(plan.groups) < MAX_TERMS:
        token = tokens[i]
        if token[0].isdigit() or department_code_for_token(token) is not None:
            number = _number(token, previous_city, plan)
            if number is not None:
                plan.groups.append(number)
            previous_city = None
            i += 1
            continue
        width, expr, city = _phrase(tokens, i, cities, plan)
        if expr is None and token in _STOP_WORDS and not only_stop_words:
            i += 1  # "le guen", "de la fontaine": the particle is typed or not
            continue
        if expr is None:
            full = ABBREVIATIONS.get(token)
            if full is not None:
                plan.groups.append(Node("or", (Term(token), Term(full))))
            else:
                plan.groups.append(Term(token, prefix=len(token) > 1))
            plan.name_words.append(token)
            i += 1
        else:
            plan.groups.append(expr)
            i += width
        previous_city = city
    return plan


def _phrase(
    tokens: list[str], i: int, cities: set[str] | frozenset[str], plan: Plan
) -> tuple[int, Expr | None, str | None]:
    """The longest phrase at `i` naming a specialty, profession, department or city."""
    for width in range(min(MAX_PHRASE, len(tokens) - i), 0, -1):
        span = tokens[i : i + width]
        phrase = " ".join(span)
        tagged: list[str] = []
        specialties = specialty_codes_for(phrase)
        professions = profession_codes_for(phrase) if not specialties else frozenset()
        if specialties or professions:
            plan.specialties |= specialties
            plan.professions |= professions
            tagged = [w.SPECIALTY + c.lower() for c in sorted(specialties)]
            tagged += [w.PROFESSION + c for c in sorted(professions)]
            return width, _or_name(tagged, span), None
        departments = [m for m in match_department(span) if m[0] == 0 and m[1] == width]
        key = w.city_key(phrase)
        is_city = key in cities
        if departments or is_city:
            for _, _, codes in departments:
                plan.departments |= codes
                tagged += [w.DEPARTMENT + c.lower() for c in sorted(codes)]
            if is_city:
                plan.cities.add(key)
                tagged.append(w.city_token(key))
            return width, _or_name(tagged, span), key if is_city else None
    return 0, None, None


# --- rendering ------------------------------------------------------------------------------


def to_fts5(expr: Expr, expansions: Mapping[str, Sequence[str]] | None = None) -> str:
    """FTS5 MATCH syntax. Words are [a-z0-9] only, so quoting cannot be escaped.

    `expansions`: prefix words given as the index words they begin (all of them), matched
    as whole words: the same practitioners, without merging every posting list first.
    """
    if isinstance(expr, Term):
        if expr.prefix and expansions and expr.word in expansions:
            return "(" + " OR ".join(f'"{x}"' for x in expansions[expr.word]) + ")"
        return f'"{expr.word}"' + ("*" if expr.prefix else "")
    joiner = " AND " if expr.op == "and" else " OR "
    return "(" + joiner.join(to_fts5(i, expansions) for i in expr.items) + ")"


def long_prefixes(expr: Expr, longer_than: int) -> list[str]:
    """The prefix words of the expression longer than `longer_than` letters, once each."""
    if isinstance(expr, Term):
        return [expr.word] if expr.prefix and len(expr.word) > longer_than else []
    return list(dict.fromkeys(w for i in expr.items for w in long_prefixes(i, longer_than)))


def matcher(expr: Expr) -> Callable[[str], bool]:
    """A test of one practitioner's index words that says whether they meet the expression,
    as FTS5 and tsquery decide it: a word matches itself, a prefix any word it begins. The
    test takes the words as stored (separated by spaces) with a space added at each end.
    Built once per query: ranking runs it on up to COUNT_CAP practitioners, where searching
    the text for " word " or " prefix" costs less than splitting it into words."""
    if isinstance(expr, Term):
        needle = " " + expr.word + ("" if expr.prefix else " ")
        return lambda padded: needle in padded
    tests = [matcher(item) for item in expr.items]
    if expr.op == "and":
        return lambda padded: all(test(padded) for test in tests)
    return lambda padded: any(test(padded) for test in tests)


def to_tsquery(expr: Expr) -> str:
    """PostgreSQL tsquery input syntax (lexemes taken as they are, no dictionary)."""
    if isinstance(expr, Term):
        return f"'{expr.word}'" + (":*" if expr.prefix else "")
    joiner = " & " if expr.op == "and" else " | "
    return "(" + joiner.join(to_tsquery(i) for i in expr.items) + ")"
