"""The linear probe as the bar tuning must beat: the verdict (study.results.confirmed), the
Leaderboard's and Architectures' pieces of it as plain data, the console's lines, and a page."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from report_fixture import EVIL, make_study

from study.report import architectures, build_report, load_study
from study.report.leaderboard import probe_bar
from study.results import confirmed
from study.results.schema import TRIALS
from study.results.tables import read_table
from study.run.summary import print_summary

RANK = {"metric": "val_acc", "mode": "max"}


def probe(model: str, val: float, test: float, lo: float, hi: float, **extra) -> dict:
    row = {"kind": "probe", "model": model, "val_acc": val, "test_acc": test, "n_train": 257}
    return row | {"test_acc_ci_low": lo, "test_acc_ci_high": hi, "probe_c": 0.1} | extra


def trials(test: float, lo: float, hi: float) -> pd.DataFrame:
    """A best tuned trial `a` scored on test, a better-on-val one never scored, one below."""
    return pd.DataFrame(
        {
            "trial_id": ["a", "b", "c"],
            "status": ["finished", "finished", "stopped"],
            "val_acc_max": [0.6, 0.7, 0.5],
            "test_acc": [test, None, 0.2],
            "test_acc_ci_low": [lo, None, 0.1],
            "test_acc_ci_high": [hi, None, 0.3],
        }
    )


@pytest.mark.parametrize(
    ("tuned", "words"),
    [
        ((0.80, 0.66, 0.90), "beats it beyond the noise: their exact 95 % test intervals do not"),
        ((0.55, 0.41, 0.69), "is within the noise of it (tuning has not shown"),
        ((0.10, 0.04, 0.20), "falls short of it beyond the noise"),
    ],
)
def test_the_verdict_compares_exact_intervals(tuned, words) -> None:
    df = confirmed.table([probe("mobilenet_v1_025", 0.5, 0.48, 0.34, 0.62)])
    lines, verdict = confirmed.probe_summary(df, trials(*tuned), RANK)
    assert lines == [
        "linear probe on frozen mobilenet_v1_025 features (logistic regression, C=0.1 chosen on "
        "val): val acc 0.500, test acc 0.480 (exact 95 % CI 0.340–0.620, 257 train images)"
    ]
    assert words in verdict
    # the best tuned trial is the best by validation among those scored on test: a, not b
    assert "best tuned trial a scores" in verdict and "0.480 (0.340–0.620)" in verdict


def test_the_bar_is_the_best_probe_on_val_and_a_failed_one_is_said() -> None:
    df = confirmed.table(
        [
            probe("weak_on_val", 0.3, 0.9, 0.8, 0.95),  # best on test: not what chooses
            probe("best_on_val", 0.6, 0.5, 0.36, 0.64),
            {"kind": "probe", "model": "timm/resnet50", "error": "FileNotFoundError: gone"},
            {"kind": "seed", "trial_id": "a", "model": "m", "val_acc": 0.9, "test_acc": 0.9},
        ]
    )
    assert confirmed.probes(df)["model"].tolist() == ["best_on_val", "weak_on_val"]
    lines, verdict = confirmed.probe_summary(df, trials(0.55, 0.41, 0.69), RANK)
    assert len(lines) == 3 and "timm/resnet50 features failed: FileNotFoundError: gone" in lines[2]
    assert verdict.startswith("the best_on_val probe (best on val) scores 0.500")
    # nothing tuned on the test split yet; every probe failed; no probe at all
    untested = trials(0.5, 0.4, 0.6).assign(test_acc=float("nan"))
    assert "no tuned trial was scored" in confirmed.probe_summary(df, untested, RANK)[1]
    failed = df[df["model"] == "timm/resnet50"]
    assert confirmed.probe_summary(failed, trials(0.5, 0.4, 0.6), RANK)[1] == ""
    assert confirmed.probe_summary(df[df["kind"] == "seed"], None, RANK) == ([], "")
    assert confirmed.probe_summary(None, None, RANK) == ([], "")


def test_architectures_rows_of_the_probes() -> None:
    columns = ["family", "variant", "trials", "best max val acc", "test acc", "ci low", "ci high"]
    df = confirmed.table([probe("mobilenet_v1_025", 0.5, 0.48, 0.34, 0.62)])
    rows = architectures.probe_rows(df, columns)
    assert rows.to_dict("records") == [
        {
            "family": "mobilenet_v1_025",
            "variant": architectures.PROBE_VARIANT,
            "trials": 0,
            "best max val acc": 0.5,
            "test acc": 0.48,
            "ci low": 0.34,
            "ci high": 0.62,
        }
    ]
    assert architectures.probe_rows(None, columns).empty


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """The report's fixture study with a probe of a backbone whose name is HTML."""
    sd = make_study(tmp_path)
    confirmed.write(str(sd), [probe(EVIL, 0.4, 0.45, 0.3, 0.6)], (confirmed.PROBE,))
    return sd


def test_the_leaderboard_bar_and_the_page(study: Path, tmp_path: Path) -> None:
    d = load_study(str(study))
    bar = probe_bar(d)
    assert bar.startswith('<p class="verdict"><b>The bar:</b>') and EVIL not in bar
    assert "&lt;img src=x onerror=alert(1)&gt; probe (best on val) scores 0.450" in bar
    page = build_report(str(study), str(tmp_path / "page")).read_text()
    assert page.count("The bar:") == 2  # the Leaderboard and the Architectures section
    assert architectures.PROBE_VARIANT in page and EVIL not in page
    assert 'id="confirmed"' not in page  # probe rows alone are no confirmation section
    load_study(str(make_study(tmp_path, "plain")))  # no confirm.parquet: no bar, no error
    assert probe_bar(load_study(str(tmp_path / "plain"))) == ""


def test_confirmation_rewrites_its_rows_and_keeps_the_probes(study: Path) -> None:
    confirmed.write(str(study), [{"kind": "refit", "trial_id": "t1", "model": "m"}], ("refit",))
    confirmed.write(str(study), [], confirmed.RETRAINED)  # a rerun without --refit
    kinds = read_table(study, "confirm.parquet")["kind"].tolist()
    assert kinds == ["probe"]


def test_the_console_prints_the_bar(study: Path, capsys) -> None:
    best = read_table(study, TRIALS).dropna(subset=["test_acc"]).sort_values("val_acc_max").iloc[-1]
    manifest = {"classes": ["a", "b", "c", "d"], "counts": {"val": 80}}
    print_summary(str(study), manifest, RANK)
    out = capsys.readouterr().out
    assert "\nthe linear probe: the bar tuning must beat\n" in out
    assert f"  linear probe on frozen {EVIL} features (logistic regression, C=0.1" in out
    assert f"the best tuned trial {best['trial_id']} scores {best['test_acc']:.3f}" in out
