"""The catalogue of search files and their loader/compiler (imports no torch).

``load(path, overrides)`` reads and validates one search file into a ``Search``; the YAML files beside
this module are the catalogue, one per experiment family, which ``load`` also finds by name
(``load("ptb_smoke")``) when no file of that name exists.
"""

from tunelab.spaces._errors import SpecError
from tunelab.spaces._loader import Search, apply_override, catalogue, find, load, load_all
from tunelab.spaces._paths import CATALOGUE
from tunelab.spaces._schema import POPULATION_SCHEDULERS, Spec
from tunelab.spaces._space import CompiledSpace, condition_holds

__all__ = ["CATALOGUE", "POPULATION_SCHEDULERS", "CompiledSpace", "Search", "Spec", "SpecError", "apply_override", "catalogue", "condition_holds",
           "find", "load", "load_all"]
