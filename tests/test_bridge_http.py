"""The bridge's HTTP shell: authentication, parameter errors, error shape, OpenAPI, metrics."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml
from aiohttp import web

from bridge.directory.importer import import_directory
from bridge.directory.store import link_matrix_id
from bridge.http.auth import BEARER_EXEMPT, TokenCache, UserId, server_of
from bridge.http.directory_routes import SEARCH_PATH, parse_search_params
from bridge.http.errors import ApiError
from bridge.http.federation import delegated_base_url, direct_base_url, split_server_name
from bridge.http.meta_routes import openapi_document
from tests.bridge_http_support import (
    OTHER_SERVICE_TOKEN,
    SERVICE_TOKEN,
    OpenIdIssuer,
    bridge_config,
    running_bridge,
    running_issuer,
)
from tests.directory_support import BACKENDS, demo_extract, directory_database, search

BOT = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
OPENAPI_PREFIX = "/_caducee/v1"


async def error_body(response: aiohttp.ClientResponse) -> dict[str, Any]:
    body = await response.json()
    assert set(body) == {"errcode", "error"}, body
    return dict(body)


# --- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "errcode", "message"),
    [
        ({}, "M_MISSING_PARAM", "'q' is required"),
        ({"q": "   "}, "M_INVALID_PARAM", "'q' must not be empty"),
        ({"q": "x" * 201}, "M_INVALID_PARAM", "'q' is too long"),
        ({"q": "a", "limit": "0"}, "M_INVALID_PARAM", "'limit' must be between 1 and 50"),
        ({"q": "a", "limit": "51"}, "M_INVALID_PARAM", "'limit' must be between 1 and 50"),
        ({"q": "a", "limit": "ten"}, "M_INVALID_PARAM", "'limit' must be a whole number"),
        ({"q": "a", "limit": "2.5"}, "M_INVALID_PARAM", "'limit' must be a whole number"),
        ({"q": "a", "offset": "-1"}, "M_INVALID_PARAM", "'offset' must be between 0"),
    ],
)
def test_bad_search_parameters_are_named(
    params: dict[str, str], errcode: str, message: str
) -> None:
    with pytest.raises(ApiError) as info:
        parse_search_params(params)
    assert info.value.status == 400
    assert info.value.errcode == errcode
    assert message in info.value.message


def test_search_parameters_defaults_and_whitespace() -> None:
    params = parse_search_params({"q": "  mart   leg "})
    assert (params.query, params.limit, params.offset) == ("mart leg", 10, 0)
    params = parse_search_params({"q": "cardio", "limit": "50", "offset": "20"})
    assert (params.limit, params.offset) == (50, 20)


def test_token_cache_expires_and_stays_bounded() -> None:
    now = [0.0]
    cache = TokenCache(ttl_seconds=60, max_entries=3, clock=lambda: now[0])
    cache.put("a.test", "tok", UserId("@u:a.test"))
    assert cache.get("a.test", "tok") == "@u:a.test"
    assert cache.get("b.test", "tok") is None  # same token, other issuer: not the same entry
    now[0] = 60.0
    assert cache.get("a.test", "tok") is None
    for i in range(5):
        cache.put("a.test", f"t{i}", UserId(f"@u{i}:a.test"))
    assert len(cache) == 3
    assert cache.get("a.test", "t0") is None
    assert cache.get("a.test", "t4") == "@u4:a.test"
    assert TokenCache(ttl_seconds=0).get("a.test", "x") is None


def test_server_of_user_ids() -> None:
    assert server_of("@alice:localhost:8481") == "localhost:8481"
    assert server_of("@alice:example.org") == "example.org"
    for bad in ("alice:example.org", "@:example.org", "@alice", "@alice:bad host"):
        assert server_of(bad) is None


def test_federation_base_urls_follow_server_discovery_without_network() -> None:
    assert split_server_name("[::1]:8448") == ("[::1]", 8448)
    assert direct_base_url("localhost:8481") == "https://localhost:8481"
    assert direct_base_url("10.0.0.1") == "https://10.0.0.1:8448"
    assert direct_base_url("example.org") is None  # needs .well-known
    assert delegated_base_url("matrix.example.org") == "https://matrix.example.org:8448"
    assert delegated_base_url("matrix.example.org:443") == "https://matrix.example.org:443"
    assert delegated_base_url("not a host") is None


# --- the running application -----------------------------------------------------------------


async def test_health_is_public_and_checks_the_database(tmp_path: Path) -> None:
    async with running_bridge(bridge_config(tmp_path)) as client:
        response = await client.get(f"{OPENAPI_PREFIX}/health")
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_search_without_token_is_401_missing_token(tmp_path: Path) -> None:
    async with running_bridge(bridge_config(tmp_path)) as client:
        response = await client.get(SEARCH_PATH, params={"q": "martin"})
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert (await error_body(response))["errcode"] == "M_MISSING_TOKEN"
        response = await client.get(
            SEARCH_PATH, params={"q": "martin"}, headers={"Authorization": "Basic Ym90OmJvdA=="}
        )
        assert response.status == 401
        assert (await error_body(response))["errcode"] == "M_MISSING_TOKEN"


async def test_unknown_token_is_401_unknown_token(tmp_path: Path) -> None:
    issuer = OpenIdIssuer()
    async with running_issuer(issuer) as hs_url:
        config = bridge_config(tmp_path, homeserver_url=hs_url)
        async with running_bridge(config) as client:
            response = await client.get(
                SEARCH_PATH,
                params={"q": "martin"},
                headers={"Authorization": f"Bearer {SERVICE_TOKEN[:-1]}x"},
            )
            assert response.status == 401
            assert (await error_body(response))["errcode"] == "M_UNKNOWN_TOKEN"
    assert issuer.calls == 1  # not a service token: the homeserver was asked


async def test_parameter_errors_reach_the_client_as_400(tmp_path: Path) -> None:
    async with running_bridge(bridge_config(tmp_path)) as client:
        for params, message in (
            ({}, "'q' is required"),
            ({"q": ""}, "'q' must not be empty"),
            ({"q": "a", "limit": "500"}, "'limit' must be between 1 and 50"),
            ({"q": "a", "offset": "-3"}, "'offset' must be between 0"),
        ):
            response = await client.get(SEARCH_PATH, params=params, headers=BOT)
            assert response.status == 400, params
            assert message in (await error_body(response))["error"]


async def test_unknown_route_and_wrong_method_answer_matrix_json(tmp_path: Path) -> None:
    async with running_bridge(bridge_config(tmp_path)) as client:
        response = await client.get(f"{OPENAPI_PREFIX}/nothing-here", headers=BOT)
        assert response.status == 404
        assert (await error_body(response))["errcode"] == "M_UNRECOGNIZED"
        response = await client.post(SEARCH_PATH, headers=BOT)
        assert response.status == 405
        assert "GET" in response.headers["Allow"]
        assert (await error_body(response))["errcode"] == "M_UNRECOGNIZED"


def _failing_route(app: web.Application) -> None:
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret detail at /srv/bridge/secret_module.py line 42")

    app.router.add_get(f"{OPENAPI_PREFIX}/test/boom", boom)


async def test_unexpected_error_is_500_without_trace_and_logged_without_query(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_bridge(bridge_config(tmp_path), extra_routes=(_failing_route,)) as client:
        with caplog.at_level(logging.ERROR, logger="bridge.http.errors"):
            response = await client.get(
                f"{OPENAPI_PREFIX}/test/boom", params={"q": "patient-name"}, headers=BOT
            )
        assert response.status == 500
        text = await response.text()
        assert "Traceback" not in text and "secret" not in text and ".py" not in text
        assert (await error_body(response)) == {
            "errcode": "M_UNKNOWN",
            "error": "Internal server error",
        }
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"{OPENAPI_PREFIX}/test/boom" in logged
    assert "patient-name" not in logged
    assert any(r.exc_info for r in caplog.records)  # the operator gets the traceback


async def test_routes_under_the_api_prefix_require_a_token_by_default(tmp_path: Path) -> None:
    async with running_bridge(bridge_config(tmp_path), extra_routes=(_failing_route,)) as client:
        response = await client.get(f"{OPENAPI_PREFIX}/test/boom")
        assert response.status == 401


def _console_like_subapps(app: web.Application) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="page")

    own_auth = web.Application()
    own_auth[BEARER_EXEMPT] = True
    own_auth.router.add_get("/page", page)
    app.add_subapp("/console/", own_auth)
    plain = web.Application()
    plain.router.add_get("/page", page)
    app.add_subapp("/_caducee/v1/sub/", plain)


async def test_only_flagged_subapps_skip_bearer_auth(tmp_path: Path) -> None:
    config = bridge_config(tmp_path)
    async with running_bridge(config, extra_routes=(_console_like_subapps,)) as client:
        assert (await client.get("/console/page")).status == 200
        assert (await client.get(f"{OPENAPI_PREFIX}/sub/page")).status == 401
        assert (await client.get(f"{OPENAPI_PREFIX}/sub/page", headers=BOT)).status == 200


def openapi_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "put", "delete", "patch"}
    }


async def test_openapi_is_public_valid_and_lists_every_route(tmp_path: Path) -> None:
    async with running_bridge(bridge_config(tmp_path)) as client:
        response = await client.get(f"{OPENAPI_PREFIX}/openapi.yaml")
        assert response.status == 200
        document = yaml.safe_load(await response.text())
        json_response = await client.get(f"{OPENAPI_PREFIX}/openapi.json")
        assert await json_response.json() == document
        served = {  # the JSON API (HTML pages such as the console are not part of it)
            (route.method, route.resource.canonical)
            for route in client.app.router.routes()
            if route.method != "HEAD"
            and route.resource is not None
            and route.resource.canonical.startswith("/_caducee/")
        }
    assert document["openapi"].startswith("3.1")
    assert openapi_routes(document) == served
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    assert {f"{OPENAPI_PREFIX}/{p}" for p in ("health", "openapi.yaml", "openapi.json")} <= {
        path
        for path, item in document["paths"].items()
        if item.get("get", {}).get("security") == []
    }


async def test_routes_answer_without_token_exactly_when_documented_public(tmp_path: Path) -> None:
    """The OpenAPI `security: []` marks and the auth middleware agree, route by route."""
    document = openapi_document()
    async with running_bridge(bridge_config(tmp_path)) as client:
        for path, item in document["paths"].items():
            for method, operation in item.items():
                if "{" in path or method not in {"get", "post", "put", "delete", "patch"}:
                    continue
                response = await client.request(method.upper(), path)
                documented_public = operation.get("security", document["security"]) == []
                assert (response.status == 401) is not documented_public, (method, path)


def openapi_validator(schema_name: str) -> jsonschema.protocols.Validator:
    document = openapi_document()
    schema = {"$ref": f"#/components/schemas/{schema_name}", **document}
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_search_over_http_returns_the_directory_page_in_the_documented_shape(
    backend: str, tmp_path: Path
) -> None:
    async with directory_database(backend, tmp_path) as db:
        await import_directory(db, demo_extract(tmp_path, lines=300))
        async with db.sessions.begin() as session:
            await link_matrix_id(session, "10009999995", "@anne:clinic.test", visible=True)
            await link_matrix_id(session, "10001111110", "@paul:clinic.test", visible=False)
        expected = await search(db, "martin", limit=5, offset=0)
        url = db.engine.url.render_as_string(hide_password=False)
        async with running_bridge(bridge_config(tmp_path, database_url=url)) as client:
            response = await client.get(
                SEARCH_PATH, params={"q": "  Martin ", "limit": "5"}, headers=BOT
            )
            assert response.status == 200, await response.text()
            body = await response.json()
            second = await client.get(
                SEARCH_PATH, params={"q": "martin", "limit": "1", "offset": "1"}, headers=BOT
            )
            second_body = await second.json()
    openapi_validator("SearchPage").validate(body)
    assert (body["total"], body["limit"], body["offset"]) == (expected.total, 5, 0)
    assert [r["rpps"] for r in body["results"]] == [r.rpps for r in expected.results]
    by_rpps = {r["rpps"]: r for r in body["results"]}
    assert by_rpps["10009999995"]["matrix_id"] == "@anne:clinic.test"
    assert by_rpps["10009999995"]["city"] and by_rpps["10009999995"]["postcode"] == "69002"
    assert by_rpps["10001111110"]["matrix_id"] is None  # hidden by the practitioner
    assert second_body["results"][0]["rpps"] == body["results"][1]["rpps"]
    assert second_body["total"] == body["total"]


async def test_search_of_an_empty_directory_is_an_empty_page(tmp_path: Path) -> None:
    async with running_bridge(bridge_config(tmp_path)) as client:
        response = await client.get(SEARCH_PATH, params={"q": "martin"}, headers=BOT)
        assert response.status == 200
        assert await response.json() == {
            "total": 0,
            "more": False,
            "limit": 10,
            "offset": 0,
            "results": [],
        }


async def test_every_configured_service_token_is_accepted(tmp_path: Path) -> None:
    async with running_bridge(bridge_config(tmp_path)) as client:
        for token in (SERVICE_TOKEN, OTHER_SERVICE_TOKEN):
            response = await client.get(
                SEARCH_PATH, params={"q": "x"}, headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status == 200


# --- OpenID checks against a stand-in issuer (reactions the real homeserver rarely shows) ----


async def test_openid_user_of_own_server_is_accepted_and_cached(tmp_path: Path) -> None:
    issuer = OpenIdIssuer(tokens={"good": "@alice:clinic.test"})
    async with (
        running_issuer(issuer) as hs_url,
        running_bridge(bridge_config(tmp_path, homeserver_url=hs_url)) as client,
    ):
        for _ in range(3):
            response = await client.get(
                SEARCH_PATH, params={"q": "x"}, headers={"Authorization": "Bearer good"}
            )
            assert response.status == 200
    assert issuer.calls == 1


async def test_openid_server_header_is_case_insensitive(tmp_path: Path) -> None:
    """Server names are host names: `CLINIC.TEST` is the bridge's own server, checked with
    its own homeserver, not looked up in public DNS."""
    issuer = OpenIdIssuer(tokens={"good": "@alice:clinic.test"})
    async with (
        running_issuer(issuer) as hs_url,
        running_bridge(bridge_config(tmp_path, homeserver_url=hs_url)) as client,
    ):
        response = await client.get(
            SEARCH_PATH,
            params={"q": "x"},
            headers={"Authorization": "Bearer good", "X-Caducee-Matrix-Server": "CLINIC.TEST"},
        )
        assert response.status == 200
    assert issuer.calls == 1


async def test_openid_cache_can_be_disabled(tmp_path: Path) -> None:
    issuer = OpenIdIssuer(tokens={"good": "@alice:clinic.test"})
    async with running_issuer(issuer) as hs_url:
        config = bridge_config(tmp_path, homeserver_url=hs_url, openid_cache_seconds=0)
        async with running_bridge(config) as client:
            for _ in range(2):
                response = await client.get(
                    SEARCH_PATH, params={"q": "x"}, headers={"Authorization": "Bearer good"}
                )
                assert response.status == 200
    assert issuer.calls == 2


async def test_server_vouching_for_another_servers_user_is_refused(tmp_path: Path) -> None:
    issuer = OpenIdIssuer(tokens={"sneaky": "@mallory:evil.test"})
    async with (
        running_issuer(issuer) as hs_url,
        running_bridge(bridge_config(tmp_path, homeserver_url=hs_url)) as client,
    ):
        response = await client.get(
            SEARCH_PATH, params={"q": "x"}, headers={"Authorization": "Bearer sneaky"}
        )
        assert response.status == 403
        assert (await error_body(response))["errcode"] == "M_FORBIDDEN"


async def test_disallowed_server_is_refused_before_it_is_contacted(tmp_path: Path) -> None:
    issuer = OpenIdIssuer(tokens={"tok": "@eve:other.test"})
    async with running_issuer(issuer) as hs_url:
        config = bridge_config(tmp_path, openid_server_urls={"other.test": hs_url})
        async with running_bridge(config) as client:
            response = await client.get(
                SEARCH_PATH,
                params={"q": "x"},
                headers={"Authorization": "Bearer tok", "X-Caducee-Matrix-Server": "other.test"},
            )
            assert response.status == 403
            assert "other.test" in (await error_body(response))["error"]
            response = await client.get(
                SEARCH_PATH,
                params={"q": "x"},
                headers={"Authorization": "Bearer tok", "X-Caducee-Matrix-Server": "a b"},
            )
            assert response.status == 400
    assert issuer.calls == 0


async def test_homeserver_without_openid_resource_is_503_not_401(tmp_path: Path) -> None:
    issuer = OpenIdIssuer(tokens={"good": "@alice:clinic.test"}, serve_openid=False)
    async with (
        running_issuer(issuer) as hs_url,
        running_bridge(bridge_config(tmp_path, homeserver_url=hs_url)) as client,
    ):
        response = await client.get(
            SEARCH_PATH, params={"q": "x"}, headers={"Authorization": "Bearer good"}
        )
        assert response.status == 503
        assert (await error_body(response))["errcode"] == "M_UNAVAILABLE"


async def test_unreachable_homeserver_is_503(tmp_path: Path) -> None:
    async with running_bridge(bridge_config(tmp_path)) as client:  # homeserver_url: port 9
        response = await client.get(
            SEARCH_PATH, params={"q": "x"}, headers={"Authorization": "Bearer whatever"}
        )
        assert response.status == 503
