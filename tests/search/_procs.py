"""What the tests that start real servers (a Ray head, an MLflow server) and run the CLI share."""

from __future__ import annotations

import socket

# A PTB search small enough for these tests, as `tunelab` command-line options.
TINY_SETS = ["--set", "hidden_size=32", "--set", "train_fraction=0.01", "--set", "eval_fraction=0.05",
             "--set", "budget.max_concurrent=2"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
