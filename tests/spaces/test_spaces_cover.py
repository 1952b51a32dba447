"""Every shipped space runs a study whose trials take every categorical choice at least once.

A choice that only some trials sample (a mixed-type `freeze`, a head width that exists only with
two head layers) once broke the results writer or errored every trial that drew it; the one
random sample the pre-flight used to build missed most of them. Here each shipped space runs its
covering trials (`study.spaces.cover_space`) through the real CLI at smoke size, in one Ray
instance shared by all spaces.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import ray
from conftest import MANGA_CLASSES, face_png, joined_ray

from study.data import prepare
from study.models.backbones import MOBILENET_FILE, find_weights
from study.results.schema import TRIALS
from study.results.tables import decode_json_columns, read_table
from study.run import __main__ as run
from study.run.overrides import resolve
from study.spaces.cover import (
    MAX_INT_CHOICES,
    choices,
    cover_space,
    covering_params,
    describe_hyperparameters,
)
from study.spaces.loader import list_spaces, load_space

FERG_CHARACTERS = ("aia", "bonnie", "jules", "malcolm", "mery", "ray")
FERG_EMOTIONS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")


@pytest.fixture(scope="module")
def ray_cluster(shared_ray):
    """This process joins the test head for every study of this module (run_study leaves a
    caller's Ray up): no Ray of its own to start."""
    start = time.monotonic()
    with joined_ray(shared_ray):
        yield
    print(f"\ncover studies: {time.monotonic() - start:.0f} s")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Tiny toon, manga-layout and FERG-layout data sets, prepared once for the module."""
    tmp = tmp_path_factory.mktemp("cover")
    manga = tmp / "manga" / "Manga Facial Expressions"
    for c, cls in enumerate(MANGA_CLASSES):
        for i in range(4):
            face_png(manga / cls / f"{cls}_{i}.png", seed=c * 10 + i, size=32)
    ferg = tmp / "ferg" / "FERG_DB_256"
    for ci, ch in enumerate(FERG_CHARACTERS):
        for ei, em in enumerate(FERG_EMOTIONS):
            face_png(ferg / ch / f"{ch}_{em}" / f"{ch}_{em}_0.png", seed=ci * 10 + ei, size=32)
    d = tmp / "data"
    prepare("toon", source="tiny", data_dir=d, seed=0)
    prepare("manga", source=tmp / "manga", data_dir=d)
    prepare("ferg", source=tmp / "ferg", data_dir=d)
    return d


def _key(value) -> str:
    return json.dumps(value)  # tells 1 from True from 1.0, as the cover does


def _pairs(hyperparameters: dict[str, dict]) -> set[tuple[str, str]]:
    """(param, choice) of every categorical and small int parameter, as study.json has them."""
    out = set()
    for p, spec in hyperparameters.items():
        if spec["kind"] == "categorical":
            out |= {(p, _key(c)) for c in spec["choices"]}
        elif spec["kind"] == "int" and spec["high"] - spec["low"] < MAX_INT_CHOICES:
            out |= {(p, _key(v)) for v in range(spec["low"], spec["high"] + 1)}
    return out


@pytest.mark.parametrize("name", list_spaces())
def test_cover_takes_every_choice_in_few_trials(name) -> None:
    space = load_space(name)
    cover = cover_space(space.fn, space.settings)
    sampled = {(p, _key(v)) for params in cover.params for p, v in params.items()}
    assert _pairs(describe_hyperparameters(space)) <= sampled
    most = max(len(choices(d) or []) for d in cover.distributions.values())
    assert len(cover.params) <= most + 3  # about the widest choice, not the product
    # the settings' starting points come first, as the study enqueues them
    for point, params in zip(space.settings.starting_points, cover.params, strict=False):
        assert {k: params[k] for k in point} == point


NESTED = {"a": ["x", "y", "z"], "b": [1, 2, 3, 4, 5], "c": ["p", "q"]}


def _nested(trial):
    """c exists only when b == 5, b only when a == "z": 1 in 30 random trials reach c == "q"."""
    cfg = {"a": trial.suggest_categorical("a", NESTED["a"])}
    if cfg["a"] == "z":
        cfg["b"] = trial.suggest_categorical("b", NESTED["b"])
        if cfg["b"] == 5:
            cfg["c"] = trial.suggest_categorical("c", NESTED["c"])
    return cfg


def test_cover_reaches_nested_conditional_choices_quietly(capfd) -> None:
    params = covering_params(_nested)
    assert {(p, _key(v)) for d in params for p, v in d.items()} == {
        (p, _key(c)) for p, cs in NESTED.items() for c in cs
    }
    assert len(params) == 8  # the fewest: x, y, then z with each b, and b == 5 with each c
    assert "A new study created" not in capfd.readouterr().err


def test_cover_names_a_choice_it_cannot_reach() -> None:
    seen = []

    def once(trial):  # "y" only on the first call: its other choices can never be reached
        if not seen:
            seen.append(trial.suggest_categorical("y", [1, 2, 3]))
        return {}

    with pytest.raises(ValueError, match=r"parameter 'y' never took the choice [123]"):
        cover_space(once, max_trials=20)


BROKEN = {
    "syntax": ("def space(trial)\n    return {}\n", ["line 3", "syntax error"]),
    "import": ("import no_such_module_here\n", ["line 3", "no_such_module_here"]),
    "none": ("def space(trial):\n    return None\n", ["must return a dict, got None"]),
    "raises": (
        "def space(trial):\n    raise RuntimeError('boom')\n",
        ["RuntimeError: boom"],
    ),
    # on one branch only, that one random sample (the old pre-flight's) rarely meets
    "rare_branch": (
        "def space(trial):\n"
        "    lr = 1e-3\n"
        "    if trial.suggest_categorical('a', ['x', 'y', 'z']) == 'z':\n"
        "        if trial.suggest_categorical('b', [1, 2, 3, 4, 5]) == 5:\n"
        "            lr = 'fast' if trial.suggest_categorical('c', ['p', 'q']) == 'q' else lr\n"
        "    return {'model': 'vanilla_cnn', 'width': 8, 'depth': 3, 'lr': lr}\n",
        ["'c': 'q'", "config lr='fast': expected a value of type float"],
    ),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_space_is_one_line_before_ray(case, data_dir, tmp_path, capsys) -> None:
    body, words = BROKEN[case]
    path = tmp_path / f"broken_{case}.py"
    header = "from study.spaces.settings import SpaceSettings\n"
    header += "SETTINGS = SpaceSettings(dataset='toon', description='broken')\n"
    path.write_text(header + body)
    args = ["--space", str(path), "--data-dir", str(data_dir), "--storage", str(tmp_path / "s")]
    assert run.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert str(path) in err
    for word in words:
        assert word in err
    assert not (tmp_path / "s").exists()  # stopped before the study (and Ray) started


SPACE_FILE = """
from search_spaces.{name} import SETTINGS as SHIPPED, space  # noqa: F401
from search_spaces.{name} import *  # noqa: F403 (NEEDS_INIT_FROM, GRID: what the runner reads)

SETTINGS = SHIPPED.override(num_samples={n}, starting_points={points!r}, sampler="random")
"""


@pytest.mark.study
@pytest.mark.parametrize("name", list_spaces())
def test_every_choice_of_every_space_runs(name, ray_cluster, data_dir, tmp_path) -> None:
    space = load_space(name)
    cover = cover_space(space.fn, space.settings)
    configs = [space.module.space(optuna.trial.FixedTrial(p)) for p in cover.params]
    if any(c.get("model") == "mobilenet_v1_025" and c.get("pretrained") for c in configs):
        try:  # the one real ImageNet checkpoint is read in place: skip cleanly where it is absent
            find_weights(MOBILENET_FILE)
        except FileNotFoundError as e:
            pytest.skip(str(e))
    wanted = {(p, _key(c)) for p, d in cover.distributions.items() for c in choices(d) or []}
    path = tmp_path / f"cover_{name}.py"
    path.write_text(SPACE_FILE.format(name=name, n=len(cover.params), points=cover.params))
    args = ["--space", str(path), "--smoke-test", "--num-samples", str(len(cover.params))]
    # one trial at a time, all in one worker: a second worker would start (importing torch)
    # only to be dropped when the first worker ends a trial and takes the next one (reuse_actors)
    # no linear probe: it trains no choice of the space (tests/evaluation/test_probe.py has it)
    args += ["--max-epochs", "1", "--max-concurrent", "1", "--no-report", "--no-probe"]
    args += ["--data-dir", str(data_dir), "--storage", str(tmp_path / "s"), "--name", "cover"]
    if getattr(space.module, "NEEDS_INIT_FROM", None):  # a transfer space: a toon study first
        src = ["--space", "demo", "--smoke-test", "--num-samples", "1", "--max-epochs", "1"]
        src += ["--data-dir", str(data_dir), "--storage", str(tmp_path / "s"), "--name", "src"]
        assert run.main([*src, "--no-report"]) == 0
        args += ["--init-from", str(tmp_path / "s" / "src")]
    assert run.main(args) == 0
    assert ray.is_initialized()  # the module's Ray, reused

    trials = decode_json_columns(read_table(tmp_path / "s" / "cover", TRIALS))
    assert len(trials) == len(cover.params)
    assert not trials["status"].isin(["errored", "running"]).any(), trials["status_reason"]
    # what Optuna sampled: every pair, each trial exactly one covering params dict
    sampled = [dict(s) for s in trials["config/suggested"]]
    assert sorted(map(_key, sampled)) == sorted(map(_key, cover.params))
    assert wanted <= {(p, _key(v)) for s in sampled for p, v in s.items()}
    # ... and each choice in its own config/<param> column, unless --smoke-test replaces it
    smoke = resolve(run.parse_args(args), space)[2]
    shown = {
        (p, _key(v))
        for p in cover.distributions
        if p not in smoke
        for v in trials[f"config/{p}"].tolist()
        if v is not pd.NA
    }
    assert {(p, c) for p, c in wanted if p not in smoke} <= shown
