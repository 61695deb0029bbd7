"""``python -m tunelab``: the same as the ``tunelab`` command."""

from tunelab.search.cli import console

console()
