"""cluster.yaml through Ray's own config checks, and a real multi-node study on one machine."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
GCP_BEGIN, GCP_END = "# >>> gcp", "# <<< gcp"


def load_cluster() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def gcp_variant(config: dict[str, Any]) -> dict[str, Any]:
    """The commented GCP block, uncommented and laid over the AWS config as its comment says."""
    lines = CLUSTER_YAML.read_text().splitlines()
    start = max(i for i, ln in enumerate(lines) if ln.startswith(GCP_BEGIN))
    end = lines.index(GCP_END)
    body = [ln.removeprefix("# ").removeprefix("#") for ln in lines[start + 1:end]]
    gcp = yaml.safe_load("\n".join(body))
    assert set(gcp) == {"provider", "available_node_types", "head_setup_commands"}, set(gcp)
    return {**copy.deepcopy(config), **gcp}


def ray_checked(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does before it touches a cloud: defaults filled in, then the schema check."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.mark.parametrize("variant", ["aws", "gcp"])
def test_cluster_yaml_passes_rays_validation(variant: str) -> None:
    config = load_cluster() if variant == "aws" else gcp_variant(load_cluster())
    prepared = ray_checked(config)
    assert prepared["provider"]["type"] == variant
    types = prepared["available_node_types"]
    head, worker = types[prepared["head_node_type"]], types["worker_gpu"]
    assert set(types) == {"head_cpu", "worker_gpu"}  # the same shape on both clouds
    assert head["resources"].get("GPU", 0) == 0
    assert worker["resources"]["GPU"] >= 1 and worker["min_workers"] == 0
    assert worker["max_workers"] == prepared["max_workers"] >= 1
    node = worker["node_config"]
    if variant == "aws":
        assert node["InstanceMarketOptions"]["MarketType"] == "spot"
        assert node["ImageId"] == head["node_config"]["ImageId"]
    else:
        assert node["scheduling"]["provisioningModel"] == "SPOT"
        assert "<your-project-id>" in prepared["provider"]["project_id"]


@pytest.mark.parametrize(("edit", "words"), [
    (lambda c: c.update(max_worker=4), "max_worker"),  # a typo'd top-level key
    (lambda c: c["available_node_types"]["worker_gpu"].update(min_worker=1), "min_worker"),
    (lambda c: c["available_node_types"]["worker_gpu"]["resources"].update(GPU=0.5), "0.5"),
    (lambda c: c.update(head_node_type="head"), "head_node_type"),
    (lambda c: c["available_node_types"]["worker_gpu"].update(min_workers=9), "max_workers"),
])
def test_broken_edits_fail_rays_validation(edit, words: str) -> None:
    """The check above can fail: the edits a person plausibly makes by mistake are rejected."""
    import jsonschema

    config = load_cluster()
    edit(config)
    with pytest.raises((jsonschema.ValidationError, ValueError)) as e:
        ray_checked(config)
    assert words in str(e.value)


def test_cluster_yaml_keeps_auth_on_and_the_dashboard_private() -> None:
    config = load_cluster()
    head_start = " ".join(config["head_start_ray_commands"])
    worker_start = " ".join(config["worker_start_ray_commands"])
    for cmd in (head_start, worker_start):
        assert "RAY_AUTH_MODE=token ray start" in cmd
    assert any("export RAY_AUTH_MODE=token" in c for c in config["initialization_commands"])
    # every node gets the token from your machine, never from this file
    mounts = config["file_mounts"]
    token_remote = [r for r, local in mounts.items() if local == "~/.ray/auth_token"]
    assert token_remote and token_remote[0].endswith("/.ray/auth_token")
    assert "--dashboard-host=127.0.0.1" in head_start
    commands = [c for k, v in config.items() if k.endswith("_commands") for c in v]
    assert not [c for c in commands if "0.0.0.0" in c]  # nothing Ray starts binds every address
    assert "security_group" not in config["provider"]  # no extra inbound rules (ports) opened


SECRET_PATTERNS = [r"AKIA[0-9A-Z]{16}", r"aws_secret_access_key", r"aws_session_token",
                   r"BEGIN [A-Z ]*PRIVATE KEY", r"\"type\":\s*\"service_account\"",
                   r"^\s*ssh_private_key:", r"RAY_AUTH_TOKEN="]


def test_cluster_yaml_holds_no_credentials() -> None:
    text = CLUSTER_YAML.read_text()
    for pattern in SECRET_PATTERNS:
        assert not re.search(pattern, text, re.MULTILINE), pattern
    assert set(load_cluster()["auth"]) == {"ssh_user"}


def test_setup_installs_the_mounted_project_at_the_pyprojects_versions() -> None:
    config = load_cluster()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    setup = " ".join(config["setup_commands"])
    # the install reads the mounted checkout's pyproject.toml, so its version ranges apply
    project_remote = next(r for r, local in config["file_mounts"].items() if local == ".")
    assert f"pip install -q -e {project_remote.replace('/home/ubuntu', '~')} " in setup
    # the Ray pin (needed: laptop and cluster must run the same Ray) is inside pyproject's range
    pin = re.search(r'"(ray\[[a-z,]+\]==[0-9.]+)"', setup)
    assert pin, setup
    ray_req = next(Requirement(d) for d in pyproject["project"]["dependencies"]
                   if Requirement(d).name == "ray")
    pinned = Requirement(pin.group(1))
    assert ray_req.specifier.contains(next(iter(pinned.specifier)).version)
    assert {"default", "tune"} <= pinned.extras


# --- a multi-node study on one machine -------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_toon(tmp_path_factory) -> Path:
    from study.data import prepare

    d = tmp_path_factory.mktemp("data")
    prepare("toon", source="tiny", data_dir=d, seed=0)
    return d


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_trials_spread_over_two_worker_nodes(tiny_toon: Path, tmp_path: Path) -> None:
    """A head with no CPUs and two 1-CPU workers: the smoke study's two 1-CPU trials can only run
    one per worker, and trials.parquet's `node` column (recorded by each trial) shows both."""
    import ray
    from ray.cluster_utils import Cluster

    from study import run

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        workers = {name: cluster.add_node(num_cpus=1, resources={name: 1})
                   for name in ("worker_a", "worker_b")}
        cluster.wait_for_nodes()
        ray.init(address=cluster.address)
        try:  # the custom resource names each node, Ray's node table gives its id
            by_resource = {name: n["NodeID"] for n in ray.nodes() if n["Alive"]
                           for name in workers if name in n["Resources"]}
        finally:
            ray.shutdown()
        assert by_resource == {name: w.node_id for name, w in workers.items()}
        rc = run.main(["--space", "demo", "--smoke-test", "--address", cluster.address,
                       "--cpus-per-trial", "1", "--data-dir", str(tiny_toon),
                       "--storage", str(tmp_path / "s"), "--name", "multi", "--no-report"])
        assert rc == 0
    finally:
        ray.shutdown()
        cluster.shutdown()
    trials = pd.read_parquet(tmp_path / "s" / "multi" / "trials.parquet")
    assert len(trials) == 2 and set(trials["status"]) <= {"finished", "stopped"}
    ran_on = {node.split(":")[-1] for node in trials["node"]}
    assert ran_on == {node_id[:12] for node_id in by_resource.values()}, trials["node"]
