"""Typed keys of the console and the activation pages (see bridge.http.keys for the others)."""

from __future__ import annotations

import jinja2
from aiohttp import web

from bridge.admin.services import AdminServices
from bridge.console.ratelimit import SignInLimiter

ADMIN_SERVICES: web.AppKey[AdminServices] = web.AppKey("caducee_admin_services", AdminServices)
"""Built at start-up from the database and HTTP client the bridge opens (cleanup_ctx)."""
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("caducee_templates", jinja2.Environment)
LIMITER: web.AppKey[SignInLimiter] = web.AppKey("caducee_signin_limiter", SignInLimiter)

ADMIN_USER: web.RequestKey[str] = web.RequestKey("caducee_admin_user", str)
"""The signed-in admin's Matrix ID, set by the console's middleware."""
SESSION_SECRET: web.RequestKey[str] = web.RequestKey("caducee_session_secret", str)
