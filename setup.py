"""The package layout, which pyproject.toml cannot express: one import name, ``tunelab``, over the
repository's top-level folders. ``api/`` is ``tunelab`` itself (``tunelab.run``, ``tunelab.report``),
``search/`` is ``tunelab.search``, ``trainables/rnn/`` is ``tunelab.trainables.rnn``, and so on. Every
subpackage is found, none listed by hand; folders of data (the notebooks, the curve banks) are
packages too, as setuptools treats them, and pyproject.toml's package-data says which files they ship.

The top package's folder is not named ``tunelab/`` on purpose: a folder of that name at the root of
the checkout would shadow the installed package for anything run from there (Python puts the current
folder first on its path), and its subpackages, which live beside it, would not be found."""

from setuptools import find_namespace_packages, setup

FOLDERS = ("search", "spaces", "trainables", "analysis")

packages, package_dir = ["tunelab"], {"tunelab": "api"}
for folder in FOLDERS:
    package_dir[f"tunelab.{folder}"] = folder
    found = find_namespace_packages(folder, exclude=["*__pycache__*"])
    packages += [f"tunelab.{folder}"] + [f"tunelab.{folder}.{p}" for p in found]

setup(packages=packages, package_dir=package_dir)
