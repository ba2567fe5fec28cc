"""Pro Santé Connect sign-in end to end: the stand-in PSC, a real Synapse with Caducée's
`oidc_providers` block and mapping provider, and the bridge deciding admission (rule
`register`, doctors only).

Each refusal is tried through the real OpenID Connect exchange, and the exchange itself is
attacked: a state that belongs to another browser, an ID token carrying another nonce, an
ID token signed by a key the issuer never published. Every refusal shows the practitioner a
French and English reason and leaves no loginToken.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import aiohttp
import pytest

from bridge.admin import after_import, audit, departed, directory, handlers
from bridge.admin.model import Actor, AdminError
from tests.admin_support import import_register, services_for
from tests.psc_support import (
    PEOPLE,
    PscSite,
    exchange,
    in_register,
    new_jar,
    signin_audit,
    sso_sign_in,
    start_sso,
    stop_at_callback,
)

pytestmark = pytest.mark.slow
ADMIN = Actor("cli:test")


def assert_refused(result: object, french: str, english: str) -> None:
    from tests.psc_support import SsoResult

    assert isinstance(result, SsoResult)
    assert result.login_token is None, "a refused sign-in must not produce a loginToken"
    assert result.status >= 400, (result.status, result.url)
    assert french in result.error_text and english in result.error_text, result.error_text
    assert "Connexion impossible" in result.text and "Sign-in not possible" in result.text
    assert "sent to you via email" not in result.text  # Synapse's English page is replaced


async def test_a_doctor_of_the_register_gets_an_account_named_and_linked_at_once(
    psc_site: PscSite,
) -> None:
    who = PEOPLE["newcomer"]
    await in_register(psc_site, who)
    result = await sso_sign_in(psc_site, who)
    assert result.login_token, (result.status, result.url, result.text[:2000])
    session = await exchange(psc_site, result.login_token)
    expected = f"@ines.nouvelle:{psc_site.hs.server_name}"
    assert session["user_id"] == expected
    async with psc_site.db.sessions() as db_session:
        assert await directory.link_of_rpps(db_session, who.rpps) == expected
    async with aiohttp.ClientSession() as http:
        url = f"{psc_site.hs.client_url}/_matrix/client/v3/profile/{expected}/displayname"
        headers = {"Authorization": f"Bearer {session['access_token']}"}
        async with http.get(url, headers=headers) as response:
            assert (await response.json())["displayname"] == "Dr Inès NOUVELLE"
    entries = await signin_audit(psc_site, who.rpps)
    assert [(e.outcome, e.target, e.detail["new_account"]) for e in entries] == [
        ("ok", expected, True)
    ]
    assert entries[0].detail["acr"] == "eidas1"
    assert entries[0].actor == f"psc:{who.rpps}" and entries[0].at is not None
    # Who, when, why: never a token of the exchange or of the session it opened.
    recorded = repr(entries)
    for secret in (result.login_token, session["access_token"]):
        assert secret not in recorded
    assert psc_site.standin.client_secret_path.read_text().strip() not in recorded
    # Signing in again lands on the same account, never a second one.
    again = await sso_sign_in(psc_site, who)
    assert again.login_token
    assert (await exchange(psc_site, again.login_token))["user_id"] == expected


async def test_an_onboarded_practitioner_lands_on_their_existing_account(
    psc_site: PscSite,
) -> None:
    who = PEOPLE["onboarded"]
    await in_register(psc_site, who)
    async with aiohttp.ClientSession() as http:
        onboarded = await handlers.onboard(
            services_for(psc_site.db, http, psc_site.hs), ADMIN, who.rpps
        )
    for _ in range(2):  # the first sign-in attaches the identity, the second finds it
        result = await sso_sign_in(psc_site, who)
        assert result.login_token, result.error_text
        assert (await exchange(psc_site, result.login_token))["user_id"] == onboarded.matrix_id
    entries = await signin_audit(psc_site, who.rpps)
    assert [(e.target, e.detail["new_account"]) for e in entries] == [
        (onboarded.matrix_id, False)
    ] * 2
    # Never a duplicate: the register's name belongs to one account on the homeserver.
    async with aiohttp.ClientSession() as http:
        services = services_for(psc_site.db, http, psc_site.hs)
        client = services.client_for(onboarded.matrix_id)
        for suffix in ("", "2", "3"):
            candidate = f"@paul.existant{suffix}:{psc_site.hs.server_name}"
            if candidate != onboarded.matrix_id:
                assert await client.get_user(candidate) is None, candidate
    async with psc_site.db.sessions() as db_session:
        assert await directory.link_of_rpps(db_session, who.rpps) == onboarded.matrix_id


async def test_locked_and_offboarded_practitioners_are_refused(psc_site: PscSite) -> None:
    locked, gone = PEOPLE["locked"], PEOPLE["offboarded"]
    async with aiohttp.ClientSession() as http:
        services = services_for(psc_site.db, http, psc_site.hs)
        for who in (locked, gone):
            await in_register(psc_site, who)
        locked_id = (await handlers.onboard(services, ADMIN, locked.rpps)).matrix_id
        gone_id = (await handlers.onboard(services, ADMIN, gone.rpps)).matrix_id
        await handlers.set_locked(services, ADMIN, locked_id, locked=True)
        await handlers.offboard(services, ADMIN, gone_id)
    assert_refused(await sso_sign_in(psc_site, locked), "verrouillé", "is locked")
    assert_refused(await sso_sign_in(psc_site, gone), "a été fermé", "was closed")
    assert [e.detail["reason"] for e in await signin_audit(psc_site, gone.rpps)] == ["offboarded"]


async def test_a_returning_practitioner_locked_on_the_homeserver_is_refused(
    psc_site: PscSite,
) -> None:
    """Synapse remembers the PSC identity after the first sign-in and skips the mapping of a
    returning user; admission still runs at every sign-in."""
    who = PEOPLE["returning"]
    await in_register(psc_site, who)
    first = await sso_sign_in(psc_site, who)
    assert first.login_token
    user_id = (await exchange(psc_site, first.login_token))["user_id"]
    async with aiohttp.ClientSession() as http:
        await (
            services_for(psc_site.db, http, psc_site.hs)
            .client_for(user_id)
            .set_locked(user_id, True)
        )
    assert_refused(await sso_sign_in(psc_site, who), "verrouillé", "is locked")


async def test_a_struck_off_practitioner_is_refused_after_a_directory_import(
    psc_site: PscSite, tmp_path: Path
) -> None:
    who, other = PEOPLE["struck_off"], PEOPLE["forged"]
    await in_register(psc_site, who)
    first = await sso_sign_in(psc_site, who)
    assert first.login_token, first.error_text
    user_id = (await exchange(psc_site, first.login_token))["user_id"]
    await import_register(
        psc_site.db, tmp_path, [(other.rpps, other.family_name, other.given_name.upper())]
    )
    assert_refused(await sso_sign_in(psc_site, who), "ne figurez plus", "no longer in")
    # By default the import then locks the accounts of those who left (only this one here:
    # the session's other practitioners are not part of this test). They still read the
    # cause, not merely that their account is locked.
    async with aiohttp.ClientSession() as http:
        services = services_for(psc_site.db, http, psc_site.hs)
        await handlers.set_locked(
            services, after_import.ACTOR, user_id, locked=True, reason=departed.REASON
        )
    assert_refused(await sso_sign_in(psc_site, who), "ne figurez plus", "no longer in")
    assert [e.detail.get("reason") for e in await signin_audit(psc_site, who.rpps)] == [
        "left_register",
        "left_register",
        None,
    ]


async def test_unknown_identifier_other_profession_and_weak_assurance_are_refused(
    psc_site: PscSite,
) -> None:
    await in_register(psc_site, PEOPLE["nurse"])
    await in_register(psc_site, PEOPLE["weak"])
    assert_refused(
        await sso_sign_in(psc_site, PEOPLE["unknown"]), "inconnu de l'annuaire", "does not know"
    )
    assert_refused(
        await sso_sign_in(psc_site, PEOPLE["nurse"]), "votre profession", "your profession"
    )
    # The same for one PSC names by ADELI number (`SubjectNameID` 0 + ADELI): read and found.
    await in_register(psc_site, PEOPLE["adeli"])
    assert PEOPLE["adeli"].subject == "0" + PEOPLE["adeli"].rpps
    assert_refused(
        await sso_sign_in(psc_site, PEOPLE["adeli"]), "votre profession", "your profession"
    )
    assert_refused(await sso_sign_in(psc_site, PEOPLE["weak"], acr="faible"), "e-CPS", "e-CPS app")
    # The same doctor at the required level is let in: the refusal was the level alone.
    assert (await sso_sign_in(psc_site, PEOPLE["weak"])).login_token
    reasons = [e.detail.get("reason") for e in await signin_audit(psc_site, PEOPLE["weak"].rpps)]
    assert reasons == [None, "acr_too_low"]
    for who in ("unknown", "nurse", "adeli"):
        entries = await signin_audit(psc_site, PEOPLE[who].rpps)
        assert [e.outcome for e in entries] == ["refused"]


async def test_a_state_from_another_browser_is_refused(psc_site: PscSite) -> None:
    who = PEOPLE["forged"]
    await in_register(psc_site, who)
    async with aiohttp.ClientSession(cookie_jar=new_jar(psc_site)) as victim:
        callback = await stop_at_callback(victim, await start_sso(victim, psc_site), who)
        async with aiohttp.ClientSession(cookie_jar=new_jar(psc_site)) as attacker:
            await start_sso(attacker, psc_site)  # the attacker's own session cookie
            async with attacker.get(callback, allow_redirects=False) as response:
                assert response.status == 400
                page = await response.text()
                assert "loginToken" not in page
                # The practitioner reads why, in French and English.
                assert "Connexion impossible" in page and "Sign-in not possible" in page
                assert "autre navigateur" in page or "another browser" in page, page
        async with aiohttp.ClientSession() as no_cookie, no_cookie.get(callback) as response:
            assert response.status == 400
            assert "loginToken" not in await response.text()
        assert await signin_audit(psc_site, who.rpps) == []
        # The browser that started the sign-in still completes it: only the state was wrong.
        async with victim.get(callback, allow_redirects=False) as response:
            assert "loginToken=" in await response.text()


@pytest.mark.parametrize("forgery", ["nonce", "rogue_key"])
async def test_a_forged_id_token_is_refused(psc_site: PscSite, forgery: str) -> None:
    who = PEOPLE["forged"]
    await in_register(psc_site, who)
    before = len(await signin_audit(psc_site, who.rpps))
    async with aiohttp.ClientSession() as http:
        await psc_site.standin.forge(http, forgery)
        try:
            result = await sso_sign_in(psc_site, who)
        finally:
            await psc_site.standin.forge(http, "none")
    assert result.login_token is None
    assert result.status >= 400
    assert "invalid_token" in result.text
    assert len(await signin_audit(psc_site, who.rpps)) == before
    assert (await sso_sign_in(psc_site, who)).login_token, "unforged, the same sign-in works"


async def test_login_flows_offer_psc_beside_the_password(psc_site: PscSite) -> None:
    """Element Web and Desktop draw their SSO button from these flows; password sign-in
    (activation links, Element X) keeps working on the same homeserver."""
    hs = psc_site.hs
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{hs.client_url}/_matrix/client/v3/login") as response,
    ):
        flows = {flow["type"]: flow for flow in (await response.json())["flows"]}
    assert "m.login.password" in flows and "m.login.token" in flows
    providers = flows["m.login.sso"]["identity_providers"]
    assert [(p["id"], p["name"]) for p in providers] == [("oidc-psc", "Pro Santé Connect")]
    password = secrets.token_urlsafe(16)
    user = await hs.register_user("pw-" + secrets.token_hex(4), password)
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": password,
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{hs.client_url}/_matrix/client/v3/login", json=body) as response,
    ):
        assert response.status == 200


async def test_a_newcomer_never_takes_over_an_account_with_their_name(psc_site: PscSite) -> None:
    """Synapse attaches a PSC identity to an existing account of the chosen localpart
    (`allow_existing_users`, needed for onboarded practitioners): the bridge must never choose
    an unlinked account's ID, even when the practitioner's name gives exactly that ID."""
    who = PEOPLE["homonym"]
    await in_register(psc_site, who)
    squatter = await psc_site.hs.register_user("odile.homonyme", secrets.token_urlsafe(16))
    result = await sso_sign_in(psc_site, who)
    assert result.login_token, result.error_text
    user_id = (await exchange(psc_site, result.login_token))["user_id"]
    assert user_id == f"@odile.homonyme2:{psc_site.hs.server_name}"
    assert user_id != squatter.user_id


async def test_an_account_opened_by_psc_gets_a_password_for_element_x(psc_site: PscSite) -> None:
    """Element X cannot sign in with single sign-on: the admin gives the practitioner a
    one-time password link (`caducee admin password-link`); the password then signs in, and
    the Element Web session PSC opened keeps working (its keys live there)."""
    from urllib.parse import parse_qs, urlsplit

    from bridge.admin.password_link import password_link

    who = PEOPLE["mobile"]
    await in_register(psc_site, who)
    result = await sso_sign_in(psc_site, who)
    assert result.login_token, result.error_text
    web = await exchange(psc_site, result.login_token)
    hs = psc_site.hs
    password = secrets.token_urlsafe(16)
    async with aiohttp.ClientSession() as http:
        services = services_for(psc_site.db, http, hs)
        first = await password_link(services, ADMIN, web["user_id"])
        link = await password_link(services, ADMIN, web["user_id"])  # the first one is revoked
        secret = parse_qs(urlsplit(link.activation_url).query)["token"][0]
        old = parse_qs(urlsplit(first.activation_url).query)["token"][0]
        with pytest.raises(AdminError, match="not valid"):
            await handlers.activate(services, old, password)
        assert await handlers.activate(services, secret, password) == web["user_id"]
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": web["user_id"]},
            "password": password,
        }
        async with http.post(f"{hs.client_url}/_matrix/client/v3/login", json=body) as answer:
            assert answer.status == 200, await answer.text()
        whoami = f"{hs.client_url}/_matrix/client/v3/account/whoami"
        headers = {"Authorization": f"Bearer {web['access_token']}"}
        async with http.get(whoami, headers=headers) as answer:
            assert answer.status == 200, "the PSC session was signed out"
        # Only practitioners' accounts, and not a locked one.
        stranger = await hs.register_user("np-" + secrets.token_hex(4), password)
        with pytest.raises(AdminError, match="not a practitioner's account"):
            await password_link(services, ADMIN, stranger.user_id)
        await handlers.set_locked(services, ADMIN, web["user_id"], locked=True)
        with pytest.raises(AdminError, match="locked"):
            await password_link(services, ADMIN, web["user_id"])
    async with psc_site.db.sessions() as db_session:
        entries = await audit.recent(db_session, limit=50, action="password_link")
    mine = [e for e in entries if e.target == web["user_id"]]
    assert len(mine) == 2 and all(secret not in repr(e) for e in mine)


async def test_the_stand_in_answers_at_pscs_discovery_path_as_psc_does(psc_site: PscSite) -> None:
    """The stand-in publishes its discovery document where PSC does (`wallet-openid-configuration`),
    with the endpoints Caducée writes into Synapse's block, PSC's claims, scope and levels;
    and, like PSC, it refuses an authorization request without PKCE."""
    standin = psc_site.standin
    async with aiohttp.ClientSession() as http:
        async with http.get(standin.endpoints.discovery_url) as answer:
            assert answer.status == 200
            found = await answer.json()
        assert found["issuer"] == standin.issuer
        for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
            assert found[key] == getattr(standin.endpoints, key), key
        assert {"SubjectNameID", "SubjectRefPro"} <= set(found["claims_supported"])
        assert {"openid", "scope_all"} <= set(found["scopes_supported"])
        assert {"eidas1"} <= set(found["acr_values_supported"])
        assert found["code_challenge_methods_supported"] == ["S256"]
        assert "client_secret_post" in found["token_endpoint_auth_methods_supported"]
        no_pkce = {
            "client_id": standin.client_id,
            "response_type": "code",
            "scope": "openid scope_all",
            "redirect_uri": f"{psc_site.hs.client_url}/_synapse/client/oidc/callback",
            "state": "s",
            "nonce": "n",
        }
        async with http.get(
            found["authorization_endpoint"], params=no_pkce, allow_redirects=False
        ) as answer:
            location = answer.headers.get("Location", "")
            assert "error=invalid_request" in location and "requires+PKCE" in location, (
                answer.status,
                location,
            )
