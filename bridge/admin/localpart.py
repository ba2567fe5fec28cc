"""Matrix localparts for practitioners: readable, derived from the register's name, unique.

"ANNE-SOPHIE" "MARTIN-LÉGER" → `anne-sophie.martin-leger`; if taken, `anne-sophie.martin-leger2`,
then 3, and so on. Pure: the caller asks the homeserver which candidate is free. A deactivated
account keeps its ID forever (Matrix IDs are never reused), so a returning practitioner with the
same name gets the next free one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

MAX_LOCALPART = 64
"""Far below Matrix's 255-byte user ID limit; long names are cut at a word boundary if they can."""
FALLBACK = "praticien"

_NOT_ALLOWED = re.compile(r"[^a-z0-9.\-]+")


def _ascii_word(text: str) -> str:
    text = text.lower().replace("ß", "ss").replace("œ", "oe").replace("æ", "ae")
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    plain = plain.replace("'", "").replace("’", "")
    plain = _NOT_ALLOWED.sub("-", plain.replace(".", "-"))
    return re.sub(r"-{2,}", "-", plain).strip("-")


def base_localpart(first_name: str, last_name: str) -> str:
    """`first.last` in lowercase ASCII (only `a-z 0-9 . -`, valid in every Matrix version)."""
    parts = [p for p in (_ascii_word(first_name), _ascii_word(last_name)) if p]
    base = ".".join(parts) or FALLBACK
    if len(base) > MAX_LOCALPART - 4:  # room for a counter
        base = base[: MAX_LOCALPART - 4].rstrip(".-")
    return base


def candidates(base: str, limit: int = 100) -> Iterator[str]:
    """`base`, `base2`, `base3`, ... (`limit` candidates in all)."""
    yield base
    for n in range(2, limit + 1):
        yield f"{base}{n}"


def user_id(localpart: str, server_name: str) -> str:
    return f"@{localpart}:{server_name}"
