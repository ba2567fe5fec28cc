"""Running the bridge: listeners, access log, orderly shutdown.

The access log names the method, the path *without* its query string, the status and the
time: search text may identify a patient's doctor and OpenID tokens must never be written down.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from sqlalchemy.exc import SQLAlchemyError

from bridge.config import BridgeConfig
from bridge.db import DatabaseError, DatabaseMissingError, safe_url
from bridge.http.app import create_app
from bridge.http.metrics import METRICS, create_metrics_app
from bridge.registry.keys import KeyFileError

logger = logging.getLogger(__name__)

METRICS_HOST: Final = "127.0.0.1"


class StartupError(Exception):
    """The bridge cannot start; the message is for the operator.

    `missing` is set when no initialised database was found (what `DatabaseMissingError`
    names), so that the command can say which configuration to initialise.
    """

    def __init__(self, message: str, missing: str | None = None) -> None:
        super().__init__(message)
        self.missing = missing


class PathOnlyAccessLogger(AbstractAccessLogger):
    """One line per request, without query strings, headers or client addresses."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %.1fms", request.method, request.path, response.status, time * 1000
        )


async def serve(config: BridgeConfig, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (or SIGINT/SIGTERM when none is given); raise StartupError."""
    app = create_app(config, create_database=False)  # created by `caducee bridge init`
    runner = web.AppRunner(
        app, access_log_class=PathOnlyAccessLogger, handle_signals=False, shutdown_timeout=10
    )
    metrics_runner: web.AppRunner | None = None
    try:
        await runner.setup()  # opens and migrates the database
    except DatabaseMissingError as exc:
        await runner.cleanup()
        raise StartupError(str(exc), missing=exc.what) from None
    except (DatabaseError, KeyFileError) as exc:
        await runner.cleanup()  # closes what the contexts before the failing one opened
        raise StartupError(str(exc)) from None
    except (SQLAlchemyError, OSError) as exc:
        await runner.cleanup()
        raise StartupError(
            f"cannot open the database {safe_url(config.effective_database_url)}: "
            f"{type(exc).__name__}"
        ) from None
    try:
        try:
            await web.TCPSite(runner, config.listen_host, config.listen_port).start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {config.listen_host}:{config.listen_port}: {exc.strerror}"
            ) from None
        if config.metrics_port is not None:
            metrics_runner = web.AppRunner(create_metrics_app(app[METRICS]), access_log=None)
            await metrics_runner.setup()
            try:
                await web.TCPSite(metrics_runner, METRICS_HOST, config.metrics_port).start()
            except OSError as exc:
                raise StartupError(
                    f"cannot listen for metrics on {METRICS_HOST}:{config.metrics_port}: "
                    f"{exc.strerror}"
                ) from None
        logger.info(
            "Bridge for %s listening on http://%s:%s",
            config.server_name,
            config.listen_host,
            config.listen_port,
        )
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        logger.info("Bridge stopping")
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()
