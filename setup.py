"""The package list, which pyproject.toml alone cannot say: the spaces users edit live in the
top-level folder search_spaces/, and are installed as `study.search_spaces`, so that an install
puts one top-level package in site-packages (`study`) and none of a name another project could
also use. Everything else about the distribution is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["study", "study.*"]), "study.search_spaces"],
    package_dir={"study.search_spaces": "search_spaces"},
)
