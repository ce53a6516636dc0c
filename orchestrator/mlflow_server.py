"""A local MLflow tracking server on loopback, for runs that log from several processes at once.

Concurrent writers to one SQLite file can fail with "database is locked"; an MLflow server
serialises them. :class:`LocalTrackingServer` starts ``mlflow server`` on 127.0.0.1 (a free port)
over a SQLite store, waits until it answers, and stops it (and its workers) on exit.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalTrackingServer:
    """``with LocalTrackingServer("sqlite:////abs/mlflow.db") as uri: ...`` -> ``http://127.0.0.1:PORT``.

    Args:
        backend_uri: the SQLite store the server fronts.
        artifacts_dir: where proxied artifacts go (default: ``mlartifacts`` next to the database).
        port: default: a free port.
        startup_timeout_s: how long to wait for the server to answer ``/health``.
    """

    def __init__(self, backend_uri: str, artifacts_dir: str | Path | None = None, port: int | None = None,
                 startup_timeout_s: float = 90.0) -> None:
        if not backend_uri.startswith("sqlite:///"):
            raise ValueError(f"LocalTrackingServer fronts a SQLite store, got {backend_uri}")
        self.backend_uri = backend_uri
        db = Path(backend_uri[len("sqlite:///"):])
        self.artifacts_dir = Path(artifacts_dir or db.parent / "mlartifacts").resolve()
        self.port = port or free_port()
        self.startup_timeout_s = startup_timeout_s
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_path = db.parent / f"mlflow-server-{self.port}.log"

    def start(self) -> str:
        """Launch the server and wait until it answers; returns its URI."""
        self.launch()
        return self.wait_ready()

    def launch(self) -> None:
        """Launch the server without waiting (overlap its start-up, ~10-30 s, with other work)."""
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
               "--artifacts-destination", str(self.artifacts_dir), "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", "1"]
        self._log_file = open(self.log_path, "w")
        # No background job runner (MLflow 3's huey consumers: ~8 extra processes we do not use).
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        # its own process group, so stop() also ends the server's worker processes
        self.process = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True,
                                        env=env)

    def wait_ready(self) -> str:
        """Wait until the launched server answers ``/health``; returns its URI."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log_file.close()
                raise RuntimeError(f"mlflow server exited with code {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        log.info("MLflow server at %s (store %s)", self.uri, self.backend_uri)
                        return self.uri
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer on {self.uri} within {self.startup_timeout_s:g} s; "
                           f"see {self.log_path}")

    def stop(self) -> None:
        """Stop the server and every process of its group (uvicorn can outlive the ``mlflow server``
        process when a graceful shutdown hangs on open connections, so the group is killed after the
        polite signal)."""
        if self.process is None:
            return
        pgid = self.process.pid  # start_new_session: the group id is the server's pid
        try:
            os.killpg(pgid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.warning("mlflow server %d did not exit", self.process.pid)
        self._log_file.close()
        self.process = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
