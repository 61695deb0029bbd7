"""``tunelab ui``: the MLflow server for a search's tracking database, and the URL of its runs table.

``ui_server`` says what to start (nothing, when the search tracks to a server that already serves the
UI), ``serve`` starts it. How the runs table looks once it is open is ``_ui``'s business.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

from tunelab.search import _paths
from tunelab.search import _ui

HOST = "127.0.0.1"  # one person's UI: this machine only


@dataclasses.dataclass(frozen=True)
class UiServer:
    """What ``tunelab ui`` starts.

    Attributes:
        tracking_uri: the search's tracking store (or the results root's database).
        url: the runs table's URL (the experiment list without a search).
        command: the ``mlflow server`` command line; empty when the store is already a server.
        port: the port it listens on (on ``HOST``).
    """

    tracking_uri: str
    url: str
    command: list[str]
    port: int

    @property
    def remote(self) -> bool:
        """Whether the search tracks to a server, which serves the UI itself: nothing to start."""
        return not self.command


def ui_server(storage: Path, name: str | None, port: int) -> UiServer:
    """The MLflow server for search ``name`` under ``storage`` (None: every search of the results
    root's default database), on ``127.0.0.1:port``.

    Args:
        storage: the results root.
        name: a search's name, or None.
        port: the server's port.

    Raises:
        spaces.SpecError: no search of that name under ``storage``.
    """
    uri = _paths.tracking_uri(Path(storage), name)
    if uri.startswith(("http://", "https://")):  # a tracking server already serves the UI
        return UiServer(uri, uri, [], port)
    exp_id = _paths.read_state(Path(storage), name)["experiment_id"] if name else None
    # One person's UI: one worker (and none of the server's background jobs: ``serve``).
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", HOST, "--port", str(port), "--workers", "1"]
    return UiServer(uri, _ui.runs_url(f"http://{HOST}:{port}", exp_id), command, port)


def serve(server: UiServer, open_browser: bool = False) -> int:
    """Run the server: in place of this process (it never returns), or, to open the runs table in a
    web browser once the server answers, as a child until it ends (Ctrl-C stops it).

    Args:
        server: from ``ui_server``, not ``remote``.
        open_browser: open ``server.url`` in a browser.

    Returns:
        The server's exit status (``open_browser`` only).
    """
    # None of the server's background jobs (GenAI evaluation, trace archival): they start a dozen
    # processes and take minutes to come up on a small machine.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if open_browser:
        return serve_and_open(server.command, server.url, server.port)
    os.execv(server.command[0], server.command)


def serve_and_open(cmd: list[str], url: str, port: int, timeout_s: float = 60.0) -> int:
    """Start the MLflow server ``cmd``, open ``url`` in a web browser once it answers, and wait for the
    server (Ctrl-C stops it). Returns its exit status."""
    import socket
    import subprocess
    import webbrowser

    proc = subprocess.Popen(cmd)
    try:
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    webbrowser.open(url)
                    break
            time.sleep(0.3)
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()
