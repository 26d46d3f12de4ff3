"""A real Prefect server in a process group of its own, for the tests and docs/screenshots.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PREFECT = str(Path(sys.executable).parent / "prefect")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(process: subprocess.Popen) -> None:
    """End a process started with start_new_session=True together with all its children."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def start_prefect_server(home: Path, ui: bool = False, timeout: float = 90) -> tuple[subprocess.Popen, dict[str, str]]:
    """A Prefect server on a free port with its sqlite database and log (``server.log``) in
    ``home``, once ``/health`` answers: its process and the environment that points a client
    at it. ``ui``: serve the UI too (building its static files costs seconds). A server that
    exits or stays unhealthy for ``timeout`` seconds is stopped and a RuntimeError carries
    its log's end."""
    port = free_port()
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_UI_ENABLED": "true" if ui else "false",
    }
    with open(home / "server.log", "w") as log:  # the server keeps its own descriptor
        server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                  env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{env['PREFECT_API_URL']}/health", timeout=2) as answer:
                if answer.status == 200:
                    return server, env
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            stop_group(server)
            raise RuntimeError(f"Prefect server did not become healthy:\n{(home / 'server.log').read_text()[-4000:]}")
        time.sleep(0.5)
