"""Errors as the bridge's clients see them: Matrix-style `{"errcode", "error"}` JSON.

Handlers raise `ApiError`; the middleware here turns it - and anything else that escapes - into
a JSON body. An unexpected exception is logged on the server with its traceback and answered
with a generic 500: a client never sees a stack trace, a file path or an SQL statement.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

M_INVALID_PARAM: Final = "M_INVALID_PARAM"
M_MISSING_PARAM: Final = "M_MISSING_PARAM"
M_MISSING_TOKEN: Final = "M_MISSING_TOKEN"  # noqa: S105 (an error code)
M_UNKNOWN_TOKEN: Final = "M_UNKNOWN_TOKEN"  # noqa: S105 (an error code)
M_FORBIDDEN: Final = "M_FORBIDDEN"
M_NOT_FOUND: Final = "M_NOT_FOUND"
M_UNRECOGNIZED: Final = "M_UNRECOGNIZED"
M_UNKNOWN: Final = "M_UNKNOWN"
M_UNAVAILABLE: Final = "M_UNAVAILABLE"


class ApiError(Exception):
    """A failure the client can act on: HTTP status, Matrix errcode, human-readable message."""

    def __init__(self, status: int, errcode: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.errcode = errcode
        self.message = message


def error_response(
    status: int, errcode: str, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status, headers=headers)


_HTTP_ERRCODES: Final = {
    404: (M_UNRECOGNIZED, "Unrecognized request"),
    405: (M_UNRECOGNIZED, "Method not allowed on this endpoint"),
    413: ("M_TOO_LARGE", "Request too large"),
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: every failure leaves the bridge as Matrix-style JSON."""
    try:
        return await handler(request)
    except ApiError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.errcode, exc.message, headers=headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are not errors
        errcode, message = _HTTP_ERRCODES.get(exc.status, (M_UNKNOWN, exc.reason))
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, errcode, message, headers=headers)
    except Exception:
        # The path only (no query string: it may hold search text or a token).
        logger.exception("Unhandled error serving %s %s", request.method, request.path)
        return error_response(500, M_UNKNOWN, "Internal server error")
