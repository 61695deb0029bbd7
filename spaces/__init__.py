"""The catalogue of search files and their loader/compiler (imports no torch).

``load(path, overrides)`` reads and validates one search file into a ``Search``; the YAML files beside
this module are the catalogue, one per experiment family.
"""

from pathlib import Path

from spaces._errors import SpecError
from spaces._loader import Search, load, load_all
from spaces._schema import Spec
from spaces._space import CompiledSpace, condition_holds

CATALOGUE = Path(__file__).resolve().parent

__all__ = ["CATALOGUE", "CompiledSpace", "Search", "Spec", "SpecError", "condition_holds", "load", "load_all"]
