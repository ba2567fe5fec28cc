"""Who may sign in with Pro Santé Connect: the federation's admission rule. Pure.

The bridge gathers the facts (the register, the directory link, the account's state) and
this module decides. Two rules, chosen per federation:

- `members`: only practitioners the federation already knows: onboarded (their RPPS is linked
  to an account) or listed by an admin in the bridge's configuration;
- `register`: any practitioner of the current register whose profession is in the configured
  list (doctors, profession code `10`, by default).

Whatever the rule, these are always refused, in this order: a level of assurance below
`eidas1`; an account that was offboarded; a practitioner who left the register (even when the
import has locked their account since); an identifier the directory does not know; an account
that is locked. Each refusal has a stable reason id (written to the
audit log) and a message in French and English that the sign-in page shows.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from bridge.psc.claims import REQUIRED_ACR

Rule = Literal["members", "register"]
AccountState = Literal["pending", "active", "locked", "deactivated"]
Reason = Literal[
    "acr_too_low",
    "offboarded",
    "locked",
    "left_register",
    "unknown_identifier",
    "not_member",
    "profession_not_admitted",
    "other_homeserver",
    "no_new_accounts_here",
]


@dataclass(frozen=True, slots=True)
class Facts:
    """What the bridge knows about one identifier at the moment of a sign-in."""

    identifier: str
    acr: str | None
    in_register: bool
    profession_codes: Collection[str]
    """The register's profession codes for this practitioner (empty when not in it)."""
    linked_matrix_id: str | None
    account_state: AccountState | None
    """State of the account last opened for this identifier (None: never had one)."""
    listed: bool = False
    """Listed by an admin as a member (the `members` rule admits them before onboarding)."""
    server_name: str = ""
    """The homeserver the practitioner is signing in to."""
    opens_accounts: bool = True
    """Whether that homeserver is where the federation opens new PSC accounts."""


@dataclass(frozen=True, slots=True)
class Admitted:
    matrix_id: str | None
    """The existing account to land on; None: open a new one."""

    @property
    def new_account(self) -> bool:
        return self.matrix_id is None


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Reason
    message_fr: str
    message_en: str

    @property
    def message(self) -> str:
        """Both languages in one line (Synapse shows a single text on its error page)."""
        return f"{self.message_fr} / {self.message_en}"


_CONTACT_FR = "Contactez l'administrateur de votre fédération."
_CONTACT_EN = "Please contact your federation's administrator."

REFUSALS: dict[Reason, Refused] = {
    "acr_too_low": Refused(
        "acr_too_low",
        "Connexion refusée : identifiez-vous avec l'application e-CPS ou votre carte CPS "
        "(niveau eIDAS substantiel requis).",
        "Sign-in refused: sign in with the e-CPS app or your CPS card (eIDAS substantial "
        "level required).",
    ),
    "offboarded": Refused(
        "offboarded",
        f"Connexion refusée : votre compte a été fermé par la fédération. {_CONTACT_FR}",
        f"Sign-in refused: your account was closed by the federation. {_CONTACT_EN}",
    ),
    "locked": Refused(
        "locked",
        f"Connexion refusée : votre compte est verrouillé. {_CONTACT_FR}",
        f"Sign-in refused: your account is locked. {_CONTACT_EN}",
    ),
    "left_register": Refused(
        "left_register",
        "Connexion refusée : vous ne figurez plus au répertoire national des professionnels "
        f"de santé (RPPS). {_CONTACT_FR}",
        "Sign-in refused: you are no longer in the national register of health "
        f"professionals (RPPS). {_CONTACT_EN}",
    ),
    "unknown_identifier": Refused(
        "unknown_identifier",
        f"Connexion refusée : votre identifiant national est inconnu de l'annuaire. {_CONTACT_FR}",
        f"Sign-in refused: the directory does not know your national identifier. {_CONTACT_EN}",
    ),
    "not_member": Refused(
        "not_member",
        "Connexion refusée : cette fédération est réservée à ses membres et vous n'y êtes pas "
        f"inscrit. {_CONTACT_FR}",
        f"Sign-in refused: this federation is for its members only, and you are not one. "
        f"{_CONTACT_EN}",
    ),
    "other_homeserver": Refused(
        "other_homeserver",
        "Connexion refusée : votre compte est sur un autre serveur de la fédération ; "
        "connectez-vous sur celui-ci.",
        "Sign-in refused: your account is on another homeserver of the federation; sign in there.",
    ),
    "no_new_accounts_here": Refused(
        "no_new_accounts_here",
        "Connexion refusée : ce serveur n'ouvre pas de compte par Pro Santé Connect. "
        f"{_CONTACT_FR}",
        f"Sign-in refused: this homeserver opens no accounts through Pro Santé Connect. "
        f"{_CONTACT_EN}",
    ),
    "profession_not_admitted": Refused(
        "profession_not_admitted",
        f"Connexion refusée : cette fédération n'est pas ouverte à votre profession. {_CONTACT_FR}",
        f"Sign-in refused: this federation is not open to your profession. {_CONTACT_EN}",
    ),
}


def decide(facts: Facts, rule: Rule, professions: Collection[str]) -> Admitted | Refused:
    """Admit (to an existing or a new account) or refuse, with the first reason that applies."""
    if facts.acr != REQUIRED_ACR:
        return REFUSALS["acr_too_low"]
    if facts.account_state == "deactivated":
        return REFUSALS["offboarded"]
    if not facts.in_register:
        # Before `locked`: an import locks the accounts of those who left the register, and
        # the practitioner should read the cause (struck off), not only its consequence.
        known = facts.linked_matrix_id is not None or facts.account_state is not None
        return REFUSALS["left_register" if known else "unknown_identifier"]
    if facts.account_state == "locked":
        return REFUSALS["locked"]
    if facts.linked_matrix_id is not None:
        if facts.linked_matrix_id.partition(":")[2] != facts.server_name:
            return REFUSALS["other_homeserver"]
        return Admitted(facts.linked_matrix_id)
    if rule == "members" and not facts.listed:
        return REFUSALS["not_member"]
    if rule == "register" and not set(facts.profession_codes) & set(professions):
        return REFUSALS["profession_not_admitted"]
    if not facts.opens_accounts:
        return REFUSALS["no_new_accounts_here"]
    return Admitted(None)
