"""Where the catalogue is: the search files shipped beside this module (package data in the wheel)."""

from pathlib import Path

CATALOGUE = Path(__file__).resolve().parent
