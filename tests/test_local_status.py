"""`caducee local status` checks the processes the demo started, not only that URLs answer.

No homeserver is started: a state file points at a stand-in HTTP server that answers like
a homeserver, and at processes that did or did not come from the demo's state folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.cli import app
from deploy.local.state import STATE_FILE


class _Versions(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/_matrix/client/versions" else 404)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def answering_url() -> Iterator[str]:
    """A URL that answers like a homeserver: what took the port of one that died."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Versions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _status(state_dir: Path, pid: int | None, url: str) -> tuple[int, dict[str, object]]:
    state = {
        "state_dir": str(state_dir),
        "launcher_pid": os.getpid(),  # a launcher that runs
        "homeservers": [
            {
                "name": "a",
                "server_name": "a.test",
                "client_url": url,
                "pid": pid,
                "admin": {"user_id": "@admin:a.test", "password": "x"},
                "demo_accounts": [],
            }
        ],
    }
    (state_dir / STATE_FILE).write_text(json.dumps(state))
    result = CliRunner().invoke(app, ["local", "status", "--json", "--state-dir", str(state_dir)])
    return result.exit_code, json.loads(result.stdout)


def test_a_dead_homeserver_whose_port_answers_is_not_running(
    tmp_path: Path, answering_url: str
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    code, state = _status(tmp_path, dead.pid, answering_url)
    assert code == 1 and state["running"] is False
    [homeserver] = state["homeservers"]  # type: ignore[misc]
    assert homeserver["alive"] is False


def test_a_live_process_that_the_demo_did_not_start_is_not_its_homeserver(
    tmp_path: Path, answering_url: str
) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        code, state = _status(tmp_path, stranger.pid, answering_url)
    finally:
        stranger.kill()
        stranger.wait()
    assert code == 1 and state["running"] is False


def test_the_demos_own_live_process_with_an_answering_url_is_running(
    tmp_path: Path, answering_url: str
) -> None:
    config = tmp_path / "homeserver.yaml"  # as Synapse runs: a file of the state folder
    own = subprocess.Popen([sys.executable, "-c", "import time, sys; time.sleep(60)", str(config)])
    try:
        code, state = _status(tmp_path, own.pid, answering_url)
    finally:
        own.kill()
        own.wait()
    assert code == 0 and state["running"] is True
