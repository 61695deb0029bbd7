"""What can stop a search that is not bad input, as exceptions the CLI turns into exit statuses; free
of Ray, so that the CLI can name them before it imports Ray."""

from __future__ import annotations


class SearchFailed(RuntimeError):
    """The search could not go on; its message is the one line the user sees (exit status 3)."""


class SearchRunningError(ValueError):
    """Another process runs (or resumes, or syncs) the search of that name now (exit status 2)."""
