"""PostgreSQL as the Optuna storage with any SQLAlchemy the resolver can pick: the postgres extra
brings psycopg 3, every example URL names it (`postgresql+psycopg://`, the same under SQLAlchemy
2.0 and 2.1), and a URL that means another driver gets a line saying how to name the installed
one."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from sqlalchemy.engine import make_url

from study.tuning.optuna_storage import check_optuna_storage

REPO = Path(__file__).resolve().parents[2]
# what a user reads or copies: the docs, the README, the CLI's help and messages
SOURCES = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "study").rglob("*.py")]


def test_the_postgres_extra_brings_psycopg_3_and_sqlalchemy_2() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    postgres = extras["optional-dependencies"]["postgres"]
    reqs = {Requirement(r).name: Requirement(r) for r in postgres}
    assert "binary" in reqs["psycopg"].extras and not reqs["psycopg"].specifier.contains("2.9")
    # the psycopg dialect (postgresql+psycopg) exists from SQLAlchemy 2.0 on
    assert not reqs["sqlalchemy"].specifier.contains("1.4.54")


def test_every_postgresql_example_names_the_psycopg_driver() -> None:
    found = {
        (p.name, m.group(0))
        for p in SOURCES
        # a URL: the scheme and then a host, a user, `...` or a <placeholder> (the prose that
        # explains a plain `postgresql://` is not an example)
        for m in re.finditer(r"postgresql(\+\w+)?://[\w.<$]\S*", p.read_text())
    }
    assert len(found) >= 3  # the docs do show PostgreSQL (cluster.md, the CLI's help, ...)
    plain = {(f, u) for f, u in found if not u.startswith("postgresql+psycopg://")}
    assert plain == set(), plain


def test_the_installed_driver_answers_the_named_url() -> None:
    pytest.importorskip("psycopg", reason="the postgres extra (in the test extra too)")
    dbapi = make_url("postgresql+psycopg://study@db/optuna").get_dialect().import_dbapi()
    assert dbapi.__name__ == "psycopg"


def test_a_url_for_a_missing_driver_says_how_to_name_psycopg() -> None:
    pytest.importorskip("psycopg", reason="the postgres extra (in the test extra too)")
    # what a plain postgresql:// is under SQLAlchemy 2.0: psycopg2, not installed
    with pytest.raises(ValueError) as e:
        check_optuna_storage("postgresql+psycopg2://study:s3cret@db:5432/optuna", "x", False)
    msg = str(e.value)
    assert "No module named 'psycopg2'" in msg and "s3cret" not in msg
    assert msg.endswith("name it, postgresql+psycopg://***@db:5432/optuna)"), msg
