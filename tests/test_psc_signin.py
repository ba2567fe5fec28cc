"""Pro Santé Connect sign-in end to end: the stand-in PSC, a real Synapse with Caducée's
`oidc_providers` block and mapping provider, and the bridge deciding admission.

Each admission rule is tried both ways through the real OpenID Connect exchange, and the
exchange itself is attacked: a replayed or foreign state, an ID token with another nonce, an
ID token signed by a key the issuer never published.
"""

from __future__ import annotations

import pytest

from tests.admin_support import add_practitioner
from tests.psc_support import PEOPLE, PscSite, exchange, sso_sign_in

pytestmark = pytest.mark.slow


async def test_a_practitioner_of_the_register_gets_an_account_named_from_the_register(
    psc_site: PscSite,
) -> None:
    who = PEOPLE["newcomer"]
    await add_practitioner(psc_site.db, who.rpps, who.given_name.upper(), who.family_name)
    result = await sso_sign_in(psc_site, who)
    assert result.login_token, (result.status, result.url, result.text[:2000])
    session = await exchange(psc_site, result.login_token)
    assert session["user_id"] == f"@ines.nouvelle:{psc_site.hs.server_name}"
