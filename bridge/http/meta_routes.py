"""Routes about the service itself: health for supervisors, the OpenAPI description for clients.

Both are public: a load balancer or a developer must reach them without a token, and they
reveal nothing about practitioners or users.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from importlib import resources
from typing import Any, Final

import yaml
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from bridge.common.api import API_PREFIX
from bridge.http.auth import public
from bridge.http.errors import M_UNAVAILABLE, ApiError
from bridge.http.keys import DATABASE

logger = logging.getLogger(__name__)

HEALTH_PATH: Final = f"{API_PREFIX}/health"
OPENAPI_YAML_PATH: Final = f"{API_PREFIX}/openapi.yaml"
OPENAPI_JSON_PATH: Final = f"{API_PREFIX}/openapi.json"


@cache
def openapi_text() -> str:
    return resources.files("bridge.http").joinpath("openapi.yaml").read_text(encoding="utf-8")


@cache
def openapi_document() -> dict[str, Any]:
    document = yaml.safe_load(openapi_text())
    assert isinstance(document, dict)
    return document


@public
async def health(request: web.Request) -> web.Response:
    """200 when the bridge can reach its database, 503 otherwise (supervisors restart it)."""
    try:
        async with request.app[DATABASE].engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        logger.warning("Health check: database unreachable (%s)", type(exc).__name__)
        raise ApiError(503, M_UNAVAILABLE, "Database unreachable") from None
    return web.json_response({"status": "ok"})


@public
async def openapi_yaml(request: web.Request) -> web.Response:
    return web.Response(text=openapi_text(), content_type="application/yaml")


@public
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(text=json.dumps(openapi_document()), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get(HEALTH_PATH, health, name="health")
    app.router.add_get(OPENAPI_YAML_PATH, openapi_yaml, name="openapi_yaml")
    app.router.add_get(OPENAPI_JSON_PATH, openapi_json, name="openapi_json")
