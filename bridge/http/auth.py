"""Who may call the bridge's API: the bot (service tokens) and Matrix users (OpenID tokens).

Every request carries `Authorization: Bearer <token>`. The token is either

- a service token from the configuration (the bot, scripts), compared in constant time; or
- a Matrix OpenID token, which a user's client obtains from its own homeserver with
  `POST /_matrix/client/v3/user/{userId}/openid/request_token`. The bridge asks the issuing
  homeserver who owns it (`GET /_matrix/federation/v1/openid/userinfo`), as integration
  managers do. By default the token is taken to come from the bridge's own homeserver; a client
  of another allowed server says which with the `X-Caducee-Matrix-Server` header.

A server that is not allowed is refused (403) before the bridge contacts it, so the header
cannot make the bridge reach arbitrary hosts. The running bridge allows the configured
`openid_allowed_servers` plus the federation's own homeservers as the registry lists them
(`RegistryServerPolicy`): a homeserver onboarded with `caducee admin` can use the API, and one
removed cannot use it any more, within `REGISTRY_CACHE_SECONDS` (even with a token already
checked). A server may only vouch for its own users. Positive answers are remembered briefly
(bounded), so a busy client does not cost one homeserver round trip per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Final, Literal, NewType, Protocol

import aiohttp
from aiohttp import web

from bridge.config import BridgeConfig
from bridge.guard.ids import is_valid_server_name, user_id_server
from bridge.http.errors import (
    M_FORBIDDEN,
    M_INVALID_PARAM,
    M_MISSING_TOKEN,
    M_UNAVAILABLE,
    M_UNKNOWN_TOKEN,
    ApiError,
    Handler,
)
from bridge.http.federation import FederationResolver
from bridge.http.keys import CONFIG

logger = logging.getLogger(__name__)

UserId = NewType("UserId", str)

SERVER_HEADER: Final = "X-Caducee-Matrix-Server"
USERINFO_PATH: Final = "/_matrix/federation/v1/openid/userinfo"
CACHE_MAX_ENTRIES: Final = 10_000
REGISTRY_CACHE_SECONDS: Final = 15.0
REGISTRY_READ_TIMEOUT_SECONDS: Final = 5.0
"""How long the registry's list of our homeservers is reused before it is read again."""
USERINFO_TIMEOUT: Final = aiohttp.ClientTimeout(total=10)

SERVER_POLICY: web.AppKey[ServerPolicy] = web.AppKey("caducee_server_policy")
"""Which servers' users may call the API: the configured ones and the registry's own homeservers."""
OPENID_VERIFIER: web.AppKey[OpenIdVerifier] = web.AppKey("caducee_openid_verifier")
REQUESTER: web.RequestKey[Requester] = web.RequestKey("caducee_requester")
"""Who is calling, set by the auth middleware on every authenticated request."""


@dataclass(frozen=True, slots=True)
class Requester:
    """The authenticated caller of one request."""

    kind: Literal["service", "user"]
    name: str
    """Service token name, or the Matrix user ID."""
    user_id: UserId | None = None


class ServerPolicy(Protocol):
    """Decides which homeservers' users may use the API."""

    async def is_allowed(self, server_name: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class StaticServerPolicy:
    servers: frozenset[str]

    async def is_allowed(self, server_name: str) -> bool:
        return server_name in self.servers


class RegistryServerPolicy:
    """The configured servers, plus the servers `load` returns (the federation's own homeservers
    in the registry), read again at most every `cache_seconds`.

    When the registry cannot be read, the last list read stays in force (only the configured
    servers before the first read) and the read is tried again after `cache_seconds`: a
    database hiccup neither opens the API to anyone nor locks out the configured servers.
    """

    def __init__(
        self,
        static: Collection[str],
        load: Callable[[], Awaitable[Collection[str]]],
        *,
        cache_seconds: float = REGISTRY_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._static = frozenset(s.lower() for s in static)
        self._load = load
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._registered: frozenset[str] = frozenset()
        self._expires: float | None = None
        self._lock = asyncio.Lock()
        self._failing = False

    async def is_allowed(self, server_name: str) -> bool:
        name = server_name.lower()
        if name in self._static:
            return True
        return name in await self._registered_servers()

    async def _registered_servers(self) -> frozenset[str]:
        if self._expires is not None and self._clock() < self._expires:
            return self._registered
        async with self._lock:  # concurrent requests wait for one read
            if self._expires is not None and self._clock() < self._expires:
                return self._registered
            try:
                async with asyncio.timeout(REGISTRY_READ_TIMEOUT_SECONDS):  # a stuck database
                    loaded = await self._load()  # must not hold every OpenID request
                self._registered = frozenset(s.lower() for s in loaded)
            except Exception as exc:  # database down, timeout: keep the last list read
                if not self._failing:
                    logger.warning(
                        "Cannot read the registry's homeservers (%s); keeping the last list "
                        "read (%d server(s))",
                        type(exc).__name__,
                        len(self._registered),
                    )
                self._failing = True
            else:
                if self._failing:
                    logger.warning("The registry's homeservers are readable again")
                self._failing = False
            self._expires = self._clock() + self._cache_seconds
            return self._registered


def server_of(user_id: str) -> str | None:
    """The server name part of a Matrix user ID (`@local:server[:port]`), None if malformed."""
    return user_id_server(user_id)


def bearer_token(request: web.Request) -> str:
    """The token of the `Authorization: Bearer` header; tokens in URLs are not accepted."""
    header = request.headers.get("Authorization")
    if header is None:
        raise ApiError(401, M_MISSING_TOKEN, "Missing access token (Authorization: Bearer ...)")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, M_MISSING_TOKEN, "Authorization header must be 'Bearer <token>'")
    return token


class TokenCache:
    """Bounded, time-limited memory of tokens already checked (keys are hashes, not tokens)."""

    def __init__(
        self,
        ttl_seconds: float,
        max_entries: int = CACHE_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, UserId]] = OrderedDict()

    @staticmethod
    def _key(server_name: str, token: str) -> bytes:
        return hashlib.sha256(f"{server_name}\0{token}".encode()).digest()

    def get(self, server_name: str, token: str) -> UserId | None:
        key = self._key(server_name, token)
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, user_id = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return user_id

    def put(self, server_name: str, token: str, user_id: UserId) -> None:
        if self._ttl <= 0:
            return
        key = self._key(server_name, token)
        self._entries[key] = (self._clock() + self._ttl, user_id)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class OpenIdVerifier:
    """Checks OpenID tokens with the homeserver that issued them."""

    def __init__(
        self,
        config: BridgeConfig,
        policy: ServerPolicy,
        http: aiohttp.ClientSession,
        resolver: FederationResolver,
    ) -> None:
        self._config = config
        self._policy = policy
        self._http = http
        self._resolver = resolver
        self._cache = TokenCache(config.openid_cache_seconds)

    async def _base_url(self, server_name: str) -> str:
        if server_name == self._config.server_name.lower():
            return self._config.homeserver_url
        for name, url in self._config.openid_server_urls.items():
            if name.lower() == server_name:
                return url
        return await self._resolver.base_url(server_name)

    async def verify(self, token: str, server_name: str) -> UserId:
        """The user owning `token` on `server_name`; ApiError 401/403/503 otherwise."""
        server_name = server_name.lower()  # server names are host names: one spelling only
        if not await self._policy.is_allowed(server_name):
            raise ApiError(
                403, M_FORBIDDEN, f"Users of {server_name} are not allowed to use this service"
            )
        cached = self._cache.get(server_name, token)
        if cached is not None:
            return cached
        user_id = await self._ask_homeserver(token, server_name)
        if server_of(user_id) != server_name:
            logger.warning("Server %s vouched for a user of another server", server_name)
            raise ApiError(403, M_FORBIDDEN, "The token's user does not belong to its server")
        self._cache.put(server_name, token, user_id)
        return user_id

    async def _ask_homeserver(self, token: str, server_name: str) -> UserId:
        unavailable = ApiError(
            503, M_UNAVAILABLE, f"Cannot check the token with {server_name} right now; retry later"
        )
        try:
            url = await self._base_url(server_name) + USERINFO_PATH
            async with self._http.get(
                url, params={"access_token": token}, timeout=USERINFO_TIMEOUT
            ) as response:
                status = response.status
                body = await response.json(content_type=None) if status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.warning("OpenID check with %s failed: %s", server_name, type(exc).__name__)
            raise unavailable from None
        if status == 200 and isinstance(body, dict) and isinstance(body.get("sub"), str):
            return UserId(body["sub"])
        if status in (401, 403):
            raise ApiError(401, M_UNKNOWN_TOKEN, "Unknown or expired access token")
        # 404: the homeserver's listener does not serve the `openid` resource (configuration).
        logger.warning("OpenID userinfo on %s answered HTTP %s", server_name, status)
        raise unavailable


_PUBLIC_HANDLERS: set[Handler] = set()

BEARER_EXEMPT: web.AppKey[bool] = web.AppKey("caducee_bearer_exempt", bool)
"""Set on a sub-application that authenticates its users itself (the console's sessions)."""


def public(handler: Handler) -> Handler:
    """Mark a route handler as reachable without a token (health, OpenAPI, manifest)."""
    _PUBLIC_HANDLERS.add(handler)
    return handler


def _needs_bearer(request: web.Request) -> bool:
    match_info = request.match_info
    if match_info.http_exception is not None:
        return False  # 404/405: nothing to protect, answer the routing error
    if match_info.handler in _PUBLIC_HANDLERS:
        return False
    return not any(app.get(BEARER_EXEMPT, False) for app in match_info.apps)


async def authenticate(request: web.Request) -> Requester:
    """Identify the caller from the bearer token, or raise ApiError 401/403/503."""
    token = bearer_token(request)
    config = request.app[CONFIG]
    service = config.service_token_for(token)
    if service is not None:
        return Requester(kind="service", name=service.name)
    server_name = request.headers.get(SERVER_HEADER, config.server_name).strip()
    if not is_valid_server_name(server_name):
        raise ApiError(400, M_INVALID_PARAM, f"{SERVER_HEADER} must be a Matrix server name")
    user_id = await request.app[OPENID_VERIFIER].verify(token, server_name)
    return Requester(kind="user", name=user_id, user_id=user_id)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Deny by default: every route needs a bearer token unless marked `public` or served by a
    sub-application flagged `BEARER_EXEMPT` (which then answers for its own authentication)."""
    if _needs_bearer(request):
        request[REQUESTER] = await authenticate(request)
    return await handler(request)
