"""Which Synapse process answers which URL: the one route table of the production deployment.

The reverse proxy (Caddyfile, generated from this table by `caducee deploy caddyfile`) and the
test topology's proxy both route with it, so what the tests exercise is what Caddy does. The
generic worker's patterns are those Synapse's worker documentation lists for
`synapse.app.generic_worker` (client and federation traffic it can serve); everything else of
Matrix goes to the main process. The admin API is never routed: server administration happens
on the internal network only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Upstream(StrEnum):
    """Where a request goes."""

    BLOCKED = "blocked"  # answered 404 by the proxy itself
    WORKER = "worker"  # the generic worker's HTTP listener (client + federation)
    FEDERATION = "federation"  # the main process's federation listener
    MAIN = "main"  # the main process's client listener


@dataclass(frozen=True)
class RouteGroup:
    """Patterns that go to one upstream; `methods` empty means any method."""

    name: str
    upstream: Upstream
    patterns: tuple[str, ...]
    methods: tuple[str, ...] = ()
    reason: str = ""

    @property
    def regex(self) -> str:
        """One anchored alternation, in the RE2 subset that both Python and Caddy accept."""
        return "^(?:" + "|".join(p.removeprefix("^") for p in self.patterns) + ")"


_V = "(api/v1|r0|v3|unstable)"  # client API versions, as in Synapse's worker documentation

ROUTE_GROUPS: tuple[RouteGroup, ...] = (
    RouteGroup(
        "admin",
        Upstream.BLOCKED,
        ("^/_synapse/admin(/|$)",),
        reason="the admin API stays on the internal network",
    ),
    RouteGroup(
        "sync",
        Upstream.WORKER,
        (
            "^/_matrix/client/(r0|v3)/sync$",
            "^/_matrix/client/(api/v1|r0|v3)/events$",
            "^/_matrix/client/(api/v1|r0|v3)/initialSync$",
            "^/_matrix/client/(api/v1|r0|v3)/rooms/[^/]+/initialSync$",
        ),
        reason="long-polling syncs are the heaviest client load",
    ),
    RouteGroup(
        "federation_in",
        Upstream.WORKER,
        (
            "^/_matrix/federation/v1/version$",
            "^/_matrix/federation/v1/event/",
            "^/_matrix/federation/v1/state/",
            "^/_matrix/federation/v1/state_ids/",
            "^/_matrix/federation/v1/backfill/",
            "^/_matrix/federation/v1/get_missing_events/",
            "^/_matrix/federation/v1/publicRooms",
            "^/_matrix/federation/v1/query/",
            "^/_matrix/federation/v1/make_join/",
            "^/_matrix/federation/v1/make_leave/",
            "^/_matrix/federation/(v1|v2)/send_join/",
            "^/_matrix/federation/(v1|v2)/send_leave/",
            "^/_matrix/federation/v1/make_knock/",
            "^/_matrix/federation/v1/send_knock/",
            "^/_matrix/federation/(v1|v2)/invite/",
            "^/_matrix/federation/v1/event_auth/",
            "^/_matrix/federation/v1/timestamp_to_event/",
            "^/_matrix/federation/v1/exchange_third_party_invite/",
            "^/_matrix/federation/v1/user/devices/",
            "^/_matrix/key/v2/query",
            "^/_matrix/federation/v1/hierarchy/",
            "^/_matrix/federation/v1/send/",
        ),
        reason="inbound federation from the member homeservers",
    ),
    RouteGroup(
        "client",
        Upstream.WORKER,
        (
            f"^/_matrix/client/{_V}/createRoom$",
            f"^/_matrix/client/{_V}/publicRooms$",
            f"^/_matrix/client/{_V}/rooms/.*/joined_members$",
            f"^/_matrix/client/{_V}/rooms/.*/context/.*$",
            f"^/_matrix/client/{_V}/rooms/.*/members$",
            f"^/_matrix/client/{_V}/rooms/.*/state$",
            "^/_matrix/client/v1/rooms/.*/hierarchy$",
            "^/_matrix/client/(v1|unstable)/rooms/.*/relations/",
            "^/_matrix/client/v1/rooms/.*/threads$",
            "^/_matrix/client/(r0|v3|unstable)/account/3pid$",
            "^/_matrix/client/(r0|v3|unstable)/account/whoami$",
            "^/_matrix/client/(r0|v3|unstable)/account/deactivate$",
            "^/_matrix/client/(r0|v3)/delete_devices$",
            f"^/_matrix/client/{_V}/devices(/|$)",
            "^/_matrix/client/versions$",
            f"^/_matrix/client/{_V}/voip/turnServer$",
            f"^/_matrix/client/{_V}/rooms/.*/event/",
            f"^/_matrix/client/{_V}/joined_rooms$",
            "^/_matrix/client/v1/rooms/.*/timestamp_to_event$",
            "^/_matrix/client/(api/v1|r0|v3|unstable/.*)/rooms/.*/aliases",
            f"^/_matrix/client/{_V}/search$",
            "^/_matrix/client/(r0|v3|unstable)/user/.*/filter(/|$)",
            f"^/_matrix/client/{_V}/directory/room/.*$",
            "^/_matrix/client/(r0|v3|unstable)/capabilities$",
            "^/_matrix/client/(r0|v3|unstable)/notifications$",
        ),
        reason="client reads and room administration",
    ),
    RouteGroup(
        "encryption",
        Upstream.WORKER,
        (
            "^/_matrix/client/(r0|v3|unstable)/keys/query$",
            "^/_matrix/client/(r0|v3|unstable)/keys/changes$",
            "^/_matrix/client/(r0|v3|unstable)/keys/claim$",
            "^/_matrix/client/(r0|v3|unstable)/room_keys/",
            "^/_matrix/client/(r0|v3|unstable)/keys/upload",
            f"^/_matrix/client/{_V}/keys/device_signing/upload$",
            f"^/_matrix/client/{_V}/keys/signatures/upload$",
        ),
        reason="end-to-end encryption keys (every conversation is encrypted)",
    ),
    RouteGroup(
        "login",
        Upstream.WORKER,
        (
            f"^/_matrix/client/{_V}/login$",
            "^/_matrix/client/(r0|v3|unstable)/register$",
            "^/_matrix/client/(r0|v3|unstable)/register/available$",
            "^/_matrix/client/v1/register/m.login.registration_token/validity$",
            "^/_matrix/client/(r0|v3|unstable)/password_policy$",
        ),
        reason="sign-in (registration is closed by the homeserver configuration)",
    ),
    RouteGroup(
        "sending",
        Upstream.WORKER,
        (
            f"^/_matrix/client/{_V}/rooms/.*/redact",
            f"^/_matrix/client/{_V}/rooms/.*/send",
            f"^/_matrix/client/{_V}/rooms/.*/state/",
            f"^/_matrix/client/{_V}/rooms/.*/(join|invite|leave|ban|unban|kick)$",
            f"^/_matrix/client/{_V}/join/",
            f"^/_matrix/client/{_V}/knock/",
            f"^/_matrix/client/{_V}/profile/",
        ),
        reason="sending events",
    ),
    RouteGroup(
        "user_directory",
        Upstream.WORKER,
        ("^/_matrix/client/(r0|v3|unstable)/user_directory/search$",),
        reason="user search (limited to people who share a room)",
    ),
    RouteGroup(
        "reads",
        Upstream.WORKER,
        (
            f"^/_matrix/client/{_V}/pushrules/",
            "^/_matrix/client/(r0|v3|unstable)/.*/tags",
            "^/_matrix/client/(r0|v3|unstable)/.*/account_data",
        ),
        methods=("GET",),
        reason="reads the worker may serve; writes go to the streams' writer (main)",
    ),
    RouteGroup(
        "federation_main",
        Upstream.FEDERATION,
        ("^/_matrix/federation/", "^/_matrix/key/"),
        reason="the rest of federation (OpenID userinfo, keys, media) on the main process",
    ),
    RouteGroup(
        "main",
        Upstream.MAIN,
        ("^/_matrix/", "^/_synapse/client/"),
        reason="every other Matrix request: the main process",
    ),
)

_COMPILED = tuple((group, re.compile(group.regex)) for group in ROUTE_GROUPS)


def route(path: str, method: str = "GET") -> Upstream:
    """The upstream for a request path (without query string); BLOCKED when nothing matches."""
    for group, regex in _COMPILED:
        if group.methods and method.upper() not in group.methods:
            continue
        if regex.match(path):
            return group.upstream
    return Upstream.BLOCKED
