"""Every endpoint of the server-server API, not a list of examples: each federation servlet
that Synapse mounts is called by the outsider (hs_c, with its own key) on hs_a and hs_b, and
each answers "Federation denied". A Synapse upgrade that adds an endpoint is tried too.

The few servlets that need no server signature are named here on purpose (the test fails
when that set changes): what an anonymous caller may get from them is in the guard's README.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import aiohttp
import pytest
from synapse.federation.transport.server import SERVLET_GROUPS
from synapse.federation.transport.server._base import BaseFederationServlet

from deploy.local.federation import Homeserver
from tests.federation_signing import SignedFederationClient
from tests.test_outsiders_synapse import Target, denied, http, targets

__all__ = ["http", "targets"]  # module-scoped fixtures shared with the channel tests

pytestmark = pytest.mark.slow

UNSIGNED = {"OpenIdUserInfo", "On3pidBindServlet", "FederationVersionServlet"}
"""Servlets Synapse serves without X-Matrix: a user-issued OpenID token check, identity-server
callbacks for third-party invitations (which the guard refuses to create), the version."""

_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def servlets() -> Iterator[type[BaseFederationServlet]]:
    for classes in SERVLET_GROUPS.values():
        yield from classes


def endpoints() -> Iterator[tuple[str, str, str]]:
    """(servlet name, HTTP method, path template) for every mounted federation servlet."""
    for servlet in servlets():
        if not servlet.REQUIRE_AUTH:
            continue
        template = servlet.PREFIX + servlet.PATH.rstrip("$").removesuffix("/?")
        for method in ("GET", "PUT", "POST", "DELETE"):
            if getattr(servlet, f"on_{method}", None) is not None:
                yield servlet.__name__, method, template


def concrete(template: str, target: Target) -> str:
    values = {
        "room_id": target.room_id,
        "event_id": target.event_id,
        "user_id": target.user.user_id,
        "media_id": target.media_id,
        "query_type": "profile",
    }
    return _GROUP.sub(lambda m: quote(values.get(m[1], uuid.uuid4().hex), safe=""), template)


def test_the_servlets_without_signature_are_the_known_few() -> None:
    assert {s.__name__ for s in servlets() if not s.REQUIRE_AUTH} == UNSIGNED
    assert len(list(endpoints())) > 30, "the enumeration found Synapse's servlets"


@pytest.mark.parametrize("member", ["a", "b"])
async def test_every_signed_endpoint_denies_the_outsider(
    member: str,
    targets: dict[str, Target],
    hs_c: Homeserver,
    http: aiohttp.ClientSession,
) -> None:
    target = targets[member]
    outsider = SignedFederationClient.of(hs_c)
    answered: list[str] = []
    for name, method, template in endpoints():
        body = {} if method in ("PUT", "POST") else None
        uri = concrete(template, target)
        reply = await outsider.request(http, method, target.hs, uri, body)
        if "/unstable/" in template and reply.body.get("errcode") == "M_UNRECOGNIZED":
            continue  # an experimental feature this homeserver does not mount, for anyone
        try:
            denied(reply, hs_c.server_name)
        except AssertionError:
            answered.append(f"{name} {method} {uri}: {reply.status} {reply.body}")
    assert not answered, "\n".join(answered)
