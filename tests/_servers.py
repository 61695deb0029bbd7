"""Real servers for the tests that need a team's setup: PostgreSQL and an MLflow server with logins.

``Postgres`` runs Debian's PostgreSQL (``/usr/lib/postgresql/*/bin``, installed by ``.ci/run``) from a
fresh ``initdb`` in a temporary folder, on a free port of 127.0.0.1, as its own non-root user
(PostgreSQL refuses to run as root; when the suite runs as root the server runs as ``postgres``, the
user Debian's package creates). ``MlflowAuth`` runs ``mlflow server --app-name basic-auth`` on it,
with the tracking store and the users' store in two databases of that server. Both are stopped by
their process id. ``bench/analysis_load.py`` uses ``Postgres`` too.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

PG_USER = "tunelab"  # the database superuser initdb creates (not an OS user)
TEAM_USER = ("alice", "alice-s3cret-pw")  # the login the session's MLflow server gives a researcher


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin() -> Path:
    """The newest installed PostgreSQL's binaries, or a RuntimeError saying how to install them."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                           "apt-get install -y postgresql (.ci/run does)")
    return Path(found[-1]).parent


class Postgres:
    """A throwaway PostgreSQL server: ``start()``, ``create_database(name)``, ``uri(db)``, ``stop()``."""

    def __init__(self):
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.folder: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._os_user = "postgres" if os.geteuid() == 0 else None

    def uri(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> Postgres:
        bin_ = pg_bin()
        self.folder = Path(tempfile.mkdtemp(prefix="tunelab-pg-"))
        data, pwfile = self.folder / "data", self.folder / "pw"
        pwfile.write_text(self.password + "\n")
        if self._os_user:
            entry = pwd.getpwnam(self._os_user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        self._run([str(bin_ / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}",
                   "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        pwfile.unlink()
        # fsync off: a test database need not survive a crash, and it makes the server much quicker.
        self.proc = subprocess.Popen(
            [str(bin_ / "postgres"), "-D", str(data), "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={self.folder}", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, user=self._os_user, start_new_session=True)
        deadline = time.time() + 60
        while not self._ready():
            if time.time() > deadline or self.proc.poll() is not None:
                out = self._drain()
                self.stop()
                raise RuntimeError(f"PostgreSQL did not start:\n{out}")
            time.sleep(0.2)
        return self

    def _run(self, cmd: list[str]) -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True, user=self._os_user, cwd=self.folder)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        try:
            self.connect().close()
            return True
        except Exception:  # still starting: "the database system is starting up"
            return False

    def connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user=PG_USER, password=self.password,
                               dbname=database, autocommit=True)

    def create_database(self, name: str) -> str:
        """Create database ``name``; returns its SQLAlchemy URI."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.uri(name)

    def _drain(self) -> str:
        if self.proc is None or self.proc.stdout is None:
            return ""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.stdout.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # PostgreSQL's "fast shutdown"
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


class MlflowAuth:
    """``mlflow server --app-name basic-auth`` on 127.0.0.1, its stores in PostgreSQL databases.

    Attributes:
        uri: the server's tracking URI (http://127.0.0.1:PORT).
        admin: (username, password) of the admin user the auth app creates on its first start.
    """

    def __init__(self, backend_uri: str, auth_db_uri: str, folder: Path):
        self.backend_uri, self.auth_db_uri, self.folder = backend_uri, auth_db_uri, folder  # PostgreSQL URIs
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.admin = ("admin", secrets.token_urlsafe(16))
        self.proc: subprocess.Popen | None = None

    def start(self) -> MlflowAuth:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "basic_auth.ini"
        # auth_cache_ttl_seconds: a login is checked (PBKDF2) once a minute, not on every request; the
        # analysis' client path sends many requests at once to this one-worker server.
        config.write_text("[mlflow]\ndefault_permission = READ\nauth_cache_ttl_seconds = 60\n"
                          f"database_uri = {self.auth_db_uri}\nadmin_username = {self.admin[0]}\n")
        env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_PASSWORD": self.admin[1],
               "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
               # no job runner (GenAI jobs): fewer processes to start on a 2-core CI machine
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
            env.pop(key, None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1", "--backend-store-uri", self.backend_uri,
             "--artifacts-destination", str(self.folder / "artifacts")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.folder)
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (OSError, urllib.error.HTTPError):
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                out = self._drain()
                raise RuntimeError(f"mlflow server did not come up:\n{out}")
            time.sleep(0.5)

    def create_user(self, username: str, password: str) -> None:
        """A login for ``username``, made by the admin through the auth app's REST API (the request
        ``mlflow.server.get_app_client("basic-auth", uri).create_user`` sends, without importing MLflow's
        server modules)."""
        token = base64.b64encode(f"{self.admin[0]}:{self.admin[1]}".encode()).decode()
        req = urllib.request.Request(
            f"{self.uri}/api/2.0/mlflow/users/create", method="POST",
            data=json.dumps({"username": username, "password": password}).encode(),
            headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200, r.read()

    def _drain(self) -> str:
        if self.proc is None or self.proc.stdout is None:
            return ""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.stdout.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
