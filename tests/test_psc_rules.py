"""Pro Santé Connect sign-in, the pure parts: reading PSC's claims, the admission rule, the
Synapse `oidc_providers` entry and both configurations. No network, no database."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from synapse.module_api.errors import ConfigError

from bridge.psc import claims
from bridge.psc.admission import REFUSALS, Admitted, Facts, Refused, decide
from bridge.psc.config import parse_config
from bridge.psc.endpoints import ENDPOINTS, PscEndpoints, oidc_provider
from bridge.psc.settings import PscSettings

RPPS = "10003456789"


def id_token(payload: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(payload)}.c2ln"


@pytest.mark.parametrize(
    ("subject", "identifier"),
    [("8" + RPPS, RPPS), (" 8" + RPPS + " ", RPPS), ("0123456789", "123456789")],
)
def test_subject_name_id_gives_the_national_identifier(subject: str, identifier: str) -> None:
    assert claims.national_identifier(subject) == identifier


@pytest.mark.parametrize(
    "subject",
    [
        None,
        "",
        RPPS,  # no type prefix
        "9" + RPPS,  # unknown type
        "8" + RPPS + "0",  # too long
        "8" + RPPS[:-1],  # too short
        "8" + RPPS + "\n",  # trailing newline after strip is gone, but embedded ones are not
        "8" + "１" * 11,  # full-width digits
        "8" + "٣" * 11,  # Arabic-Indic digits
        "8" + RPPS[:5] + "\n" + RPPS[5:],
        8 * 10**11,  # a number, not a string
        ["8" + RPPS],
    ],
)
def test_anything_else_is_not_an_identifier(subject: object) -> None:
    if subject == "8" + RPPS + "\n":
        assert claims.national_identifier(subject) == RPPS  # surrounding space is trimmed
        return
    with pytest.raises(claims.ClaimsError):
        claims.national_identifier(subject)


def test_professions_read_from_subject_ref_pro_in_either_encoding() -> None:
    ref = {"exercices": [{"codeProfession": "10"}, {"codeProfession": "60"}, {"x": 1}, "bad"]}
    assert claims.profession_codes({"SubjectRefPro": ref}) == ("10", "60")
    assert claims.profession_codes({"SubjectRefPro": json.dumps(ref)}) == ("10", "60")
    assert claims.profession_codes({"SubjectRefPro": "not json"}) == ()
    assert claims.profession_codes({"SubjectRefPro": {"exercices": "10"}}) == ()
    assert claims.profession_codes({}) == ()


def test_the_signed_id_token_says_the_level_not_userinfo() -> None:
    token = {"id_token": id_token({"acr": "faible"})}
    assert claims.acr_of({"acr": "eidas1"}, token) == "faible"
    assert claims.acr_of({"acr": "eidas1"}, {}) == "eidas1"
    assert claims.acr_of({}, {"id_token": "garbage"}) is None
    assert claims.acr_of({}, {"id_token": "a.!!!.c"}) is None
    assert claims.acr_of({}, {"id_token": id_token({"acr": 3})}) is None


def test_identity_keeps_names_short_and_whole() -> None:
    who = claims.identity(
        {"SubjectNameID": "8" + RPPS, "given_name": " Anne  Marie ", "family_name": "X" * 500},
        {"id_token": id_token({"acr": "eidas1"})},
    )
    assert (who.identifier, who.given_name, who.acr) == (RPPS, "Anne Marie", "eidas1")
    assert len(who.family_name) == claims.MAX_NAME


def facts(**overrides: Any) -> Facts:
    base: dict[str, Any] = {
        "identifier": RPPS,
        "acr": "eidas1",
        "in_register": True,
        "profession_codes": {"10"},
        "linked_matrix_id": None,
        "account_state": None,
        "server_name": "hs.test",
    }
    base.update(overrides)
    return Facts(**base)


CASES: list[tuple[dict[str, Any], str, Admitted | str]] = [
    ({}, "register", Admitted(None)),
    ({"linked_matrix_id": "@a:hs.test"}, "register", Admitted("@a:hs.test")),
    ({"linked_matrix_id": "@a:hs.test"}, "members", Admitted("@a:hs.test")),
    (
        {"linked_matrix_id": "@a:hs.test", "profession_codes": {"60"}},
        "register",
        Admitted("@a:hs.test"),
    ),
    ({}, "members", "not_member"),
    ({"listed": True}, "members", Admitted(None)),
    ({"listed": True, "profession_codes": {"60"}}, "members", Admitted(None)),
    ({"profession_codes": {"60"}}, "register", "profession_not_admitted"),
    ({"profession_codes": set()}, "register", "profession_not_admitted"),
    ({"acr": None}, "register", "acr_too_low"),
    ({"acr": "faible"}, "register", "acr_too_low"),
    ({"acr": "EIDAS1"}, "register", "acr_too_low"),
    ({"acr": "faible", "linked_matrix_id": "@a:hs.test"}, "register", "acr_too_low"),
    ({"account_state": "deactivated"}, "register", "offboarded"),
    ({"account_state": "deactivated", "listed": True}, "members", "offboarded"),
    ({"account_state": "locked", "linked_matrix_id": "@a:hs.test"}, "register", "locked"),
    ({"in_register": False, "linked_matrix_id": "@a:hs.test"}, "register", "left_register"),
    ({"in_register": False, "linked_matrix_id": "@a:hs.test"}, "members", "left_register"),
    (  # locked by the import because they left: the cause is what they read
        {"in_register": False, "linked_matrix_id": "@a:hs.test", "account_state": "locked"},
        "register",
        "left_register",
    ),
    ({"in_register": False, "account_state": "deactivated"}, "register", "offboarded"),
    ({"in_register": False}, "register", "unknown_identifier"),
    ({"in_register": False, "listed": True}, "members", "unknown_identifier"),
    ({"linked_matrix_id": "@a:other.test"}, "register", "other_homeserver"),
    ({"opens_accounts": False}, "register", "no_new_accounts_here"),
    (
        {"opens_accounts": False, "linked_matrix_id": "@a:hs.test"},
        "register",
        Admitted("@a:hs.test"),
    ),
]


@pytest.mark.parametrize(("overrides", "rule", "expected"), CASES)
def test_admission_both_ways(
    overrides: dict[str, Any], rule: str, expected: Admitted | str
) -> None:
    decision = decide(facts(**overrides), rule, ("10",))  # type: ignore[arg-type]
    if isinstance(expected, Admitted):
        assert decision == expected
    else:
        assert isinstance(decision, Refused) and decision.reason == expected


@pytest.mark.parametrize(
    ("codes", "professions", "admitted"),
    [
        ({"10"}, ("10",), True),  # the default: doctors
        ({"60"}, ("10",), False),
        ({"60"}, ("10", "60"), True),  # a federation that also admits nurses
        ({"10"}, ("60",), False),  # ... or nurses only
        ({"21", "10"}, ("10",), True),  # any of the practitioner's professions counts
    ],
)
def test_the_register_rule_admits_the_configured_professions(
    codes: set[str], professions: tuple[str, ...], admitted: bool
) -> None:
    decision = decide(facts(profession_codes=codes), "register", professions)
    if admitted:
        assert decision == Admitted(None)
    else:
        assert isinstance(decision, Refused) and decision.reason == "profession_not_admitted"


def test_every_refusal_speaks_french_and_english_and_names_nobody() -> None:
    for reason, refusal in REFUSALS.items():
        assert refusal.reason == reason
        assert refusal.message_fr.startswith("Connexion refusée")
        assert refusal.message_en.startswith("Sign-in refused")
        assert refusal.message == f"{refusal.message_fr} / {refusal.message_en}"
        assert RPPS not in refusal.message


def test_the_synapse_block_asks_psc_as_psc_requires() -> None:
    block = oidc_provider(
        ENDPOINTS["test"],
        client_id="caducee",
        client_secret_path="/run/secrets/psc",
        bridge_url="http://bridge:8780",
        bridge_token_file="/run/secrets/psc-bridge",
    )
    assert block["discover"] is False
    assert block["issuer"] == "https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet"
    assert block["authorization_endpoint"] == "https://wallet.bas.psc.esante.gouv.fr/auth"
    assert block["token_endpoint"].endswith("/protocol/openid-connect/token")
    assert block["scopes"] == ["openid", "scope_all"]
    assert block["additional_authorization_parameters"] == {"acr_values": "eidas1"}
    assert block["pkce_method"] == "always"
    assert block["user_profile_method"] == "userinfo_endpoint"
    assert "client_secret" not in block  # read from a file by Synapse
    assert ENDPOINTS["production"].issuer.startswith("https://auth.esw.esante.gouv.fr/")
    assert ENDPOINTS["production"].authorization_endpoint.startswith("https://wallet.esw.")


def test_synapse_accepts_the_block_and_loads_the_mapping_provider(tmp_path: Path) -> None:
    from synapse.config.oidc import _parse_oidc_config_dict

    token = tmp_path / "psc-bridge.token"
    token.write_text("t" * 40)
    os.chmod(token, 0o600)
    secret = tmp_path / "client-secret"
    secret.write_text("s" * 40)
    block = oidc_provider(
        PscEndpoints.keycloak("http://127.0.0.1:9/auth/realms/esante-wallet", "http://x/auth"),
        client_id="caducee",
        client_secret_path=str(secret),
        bridge_url="http://127.0.0.1:8780",
        bridge_token_file=str(token),
    )
    parsed = _parse_oidc_config_dict(block, ("oidc_providers", "<item 0>"))
    assert parsed.idp_id == "oidc-psc"
    assert parsed.user_mapping_provider_class.__name__ == "PscMappingProvider"
    assert parsed.user_mapping_provider_config.bridge_url == "http://127.0.0.1:8780"


def _token_file(tmp_path: Path, text: str = "t" * 40, mode: int = 0o600) -> str:
    path = tmp_path / "token"
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def test_mapper_config_refuses_mistakes_naming_the_key(tmp_path: Path) -> None:
    good = {"bridge_url": "http://127.0.0.1:8780", "bridge_token_file": _token_file(tmp_path)}
    config = parse_config(good)
    assert "t" * 40 not in repr(config)
    bad: list[tuple[dict[str, Any], str]] = [
        ({**good, "bridge_urll": "x"}, "bridge_urll"),
        ({**good, "bridge_url": "ftp://x"}, "bridge_url"),
        ({**good, "bridge_url": "http://"}, "bridge_url"),
        ({"bridge_url": good["bridge_url"]}, "bridge_token_file"),
        ({**good, "bridge_token_file": str(tmp_path / "missing")}, "bridge_token_file"),
    ]
    for data, key in bad:
        with pytest.raises(ConfigError, match=key):
            parse_config(data)
    with pytest.raises(ConfigError, match="0600"):
        parse_config({**good, "bridge_token_file": _token_file(tmp_path, mode=0o644)})
    with pytest.raises(ConfigError, match="too short"):
        parse_config({**good, "bridge_token_file": _token_file(tmp_path, "short")})


def test_bridge_psc_settings_are_validated() -> None:
    assert PscSettings().admission == "members"
    assert PscSettings().professions == ("10",)
    for bad in (
        {"members": ["123"]},
        {"members": ["٣" * 11]},
        {"professions": ["médecin"]},
        {"admission": "everyone"},
        {"professions": []},
        {"unknown": 1},
    ):
        with pytest.raises(ValidationError):
            PscSettings.model_validate(bad)


class FakeHttp:
    def __init__(self, answer: object = None, error: Exception | None = None) -> None:
        self.answer, self.error, self.calls = answer, error, 0
        self.bodies: list[Any] = []

    async def post_json_get_json(self, uri: str, body: Any, headers: Any = None) -> object:
        self.calls += 1
        self.bodies.append(body)
        if self.error is not None:
            raise self.error
        return self.answer


def provider(tmp_path: Path, http: FakeHttp) -> Any:
    from unittest.mock import Mock

    from synapse.module_api import ModuleApi

    from bridge.psc.provider import PscMappingProvider

    api = Mock(spec=ModuleApi)
    api.server_name = "hs.test"
    api.http_client = http
    config = parse_config(
        {"bridge_url": "http://127.0.0.1:8780", "bridge_token_file": _token_file(tmp_path)}
    )
    return PscMappingProvider(config, api)


USERINFO = {"SubjectNameID": "8" + RPPS, "given_name": "Anne", "family_name": "MARTIN"}
TOKEN = {"id_token": id_token({"acr": "eidas1"})}


async def test_the_module_fails_closed_when_the_bridge_does_not_answer(tmp_path: Path) -> None:
    from synapse.handlers.sso import MappingException

    for http in (FakeHttp(error=OSError("down")), FakeHttp(answer=["not", "a", "dict"])):
        with pytest.raises(MappingException, match=r"indisponible.*unavailable"):
            await provider(tmp_path, http).get_extra_attributes(USERINFO, TOKEN)
    with pytest.raises(MappingException, match="identifiant national"):
        provider(tmp_path, FakeHttp()).get_remote_user_id({"SubjectNameID": "8" + "１" * 11})


async def test_the_module_shows_the_bridges_refusal_and_asks_once_per_sign_in(
    tmp_path: Path,
) -> None:
    from synapse.handlers.sso import MappingException

    refusal = {"decision": "refuse", "message": REFUSALS["locked"].message}
    with pytest.raises(MappingException) as raised:
        await provider(tmp_path, FakeHttp(refusal)).get_extra_attributes(USERINFO, TOKEN)
    assert str(raised.value) == REFUSALS["locked"].message
    admitted = {"decision": "admit", "localpart": "anne.martin", "display_name": "Dr Anne MARTIN"}
    http = FakeHttp(admitted)
    mapper = provider(tmp_path, http)
    assert await mapper.get_extra_attributes(USERINFO, TOKEN) == {}
    for _ in range(2):  # Synapse maps twice for a new user: look-up, then registration
        attributes = await mapper.map_user_attributes(USERINFO, TOKEN, 0)
        assert attributes["localpart"] == "anne.martin"
        assert attributes["confirm_localpart"] is False
    assert http.calls == 1
    with pytest.raises(MappingException):  # a clash: never guess another ID
        await mapper.map_user_attributes(USERINFO, TOKEN, 1)


async def test_the_module_sends_the_bridge_who_and_never_a_token(tmp_path: Path) -> None:
    """The bridge audits what it receives: the identifier, names, professions, the level and
    the homeserver; not the ID token, the access token or anything else of the exchange."""
    http = FakeHttp({"decision": "admit", "localpart": "anne.martin"})
    token = {**TOKEN, "access_token": "at-" + "s" * 30, "refresh_token": "rt-" + "s" * 30}
    await provider(tmp_path, http).get_extra_attributes({**USERINFO, "sub": "opaque"}, token)
    [body] = http.bodies
    assert set(body) == {
        "identifier",
        "acr",
        "given_name",
        "family_name",
        "profession_codes",
        "server_name",
    }
    sent = json.dumps(body)
    for secret in (token["id_token"], token["access_token"], token["refresh_token"]):
        assert secret not in sent
