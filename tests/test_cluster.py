"""cluster.yaml through Ray's own config checks, and a real multi-node study on one machine."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import RAY_TMPDIR

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
WORKERS = ("worker_gpu_spot", "worker_gpu_ondemand")
OVERLAYS = {  # the commented blocks of cluster.yaml and the top-level keys each one replaces
    "gcp": {"provider", "available_node_types"},
    "docker": {"docker", "initialization_commands", "file_mounts", "setup_commands"},
}
TOKEN_MODES = "chmod 700 ~/.ray && chmod 600 ~/.ray/auth_token"


def load_cluster() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def overlay(config: dict[str, Any], name: str) -> dict[str, Any]:
    """A commented block of cluster.yaml, uncommented and laid over the config as it says."""
    lines = CLUSTER_YAML.read_text().splitlines()
    start = max(i for i, ln in enumerate(lines) if ln.startswith(f"# >>> {name}"))
    end = lines.index(f"# <<< {name}")
    body = [
        ln[2:] if ln.startswith("# ") else ln.removeprefix("#") for ln in lines[start + 1 : end]
    ]
    block = yaml.safe_load("\n".join(body))
    assert set(block) == OVERLAYS[name], set(block)
    return {**copy.deepcopy(config), **block}


def variant(name: str) -> dict[str, Any]:
    return load_cluster() if name == "aws" else overlay(load_cluster(), name)


def ray_checked(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does before it touches a cloud: defaults filled in, then the schema check."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.mark.parametrize("name", ["aws", "gcp", "docker"])
def test_cluster_yaml_passes_rays_validation(name: str) -> None:
    prepared = ray_checked(variant(name))
    cloud = "gcp" if name == "gcp" else "aws"
    assert prepared["provider"]["type"] == cloud
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert set(types) == {"head_cpu", *WORKERS}  # the same shape on both clouds
    assert head["resources"].get("GPU", 0) == 0
    spot, ondemand = (types[t] for t in WORKERS)
    # the same machine twice, spot first: same resources and machine, only the market differs
    assert spot["resources"] == ondemand["resources"] and spot["resources"]["GPU"] >= 1
    assert spot["priority"] > ondemand["priority"]
    for worker in (spot, ondemand):
        assert worker["min_workers"] == 0 and worker["max_workers"] == prepared["max_workers"] >= 1
    if cloud == "aws":
        assert spot["node_config"].pop("InstanceMarketOptions") == {"MarketType": "spot"}
        assert spot["node_config"] == ondemand["node_config"]
        assert spot["node_config"]["ImageId"] == head["node_config"]["ImageId"]
    else:
        assert spot["node_config"]["scheduling"]["provisioningModel"] == "SPOT"
        assert "provisioningModel" not in ondemand["node_config"]["scheduling"]
        assert spot["node_config"]["machineType"] == ondemand["node_config"]["machineType"]
        assert "<your-project-id>" in prepared["provider"]["project_id"]


def launches(config: dict[str, Any], availability: dict[str, float]) -> list[tuple[str, int]]:
    """What Ray's own autoscaler (v2, the default for `ray up` since Ray 2.50) launches for two
    pending 1-GPU trials, given each node type's recent launch success (1.0: no failure)."""
    from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig
    from ray.autoscaler.v2.scheduler import ResourceDemandScheduler, SchedulingRequest
    from ray.autoscaler.v2.utils import ResourceRequestUtil
    from ray.core.generated.autoscaler_pb2 import ResourceRequestByCount

    autoscaling = AutoscalingConfig(config, skip_content_hash=True)
    trials = ResourceRequestByCount(request=ResourceRequestUtil.make({"CPU": 1, "GPU": 1}), count=2)
    request = SchedulingRequest(
        disable_launch_config_check=True,
        node_type_configs=autoscaling.get_node_type_configs(),
        max_num_nodes=autoscaling.get_max_num_nodes(),
        resource_requests=[trials],
        recoverable_resource_availabilities=availability,
    )
    reply = ResourceDemandScheduler().schedule(request)
    return [(r.instance_type, r.count) for r in reply.to_launch]


@pytest.mark.parametrize("name", ["aws", "gcp"])
def test_spot_workers_come_first_and_on_demand_ones_when_spot_fails(name: str) -> None:
    config = variant(name)
    types = config["available_node_types"]
    config["available_node_types"] = dict(reversed(types.items()))  # priority decides, not order
    assert launches(config, {}) == [("worker_gpu_spot", 2)]
    # a spot launch failed (no capacity): the same machines on demand, not a stalled study
    assert launches(config, {"worker_gpu_spot": 0.0}) == [("worker_gpu_ondemand", 2)]


def test_gpu_workers_reach_the_study_bucket_only() -> None:
    """Workers run user space code and decode untrusted images: not the autoscaler's profile
    (EC2 and S3 full access) and not GCP's cloud-platform scope."""
    aws = load_cluster()["available_node_types"]
    for t in WORKERS:
        assert aws[t]["node_config"]["IamInstanceProfile"] == {"Name": "study-worker"}
    assert aws["head_cpu"]["node_config"]["IamInstanceProfile"] == {"Name": "study-head"}
    gcp = variant("gcp")["available_node_types"]
    for t in WORKERS:
        (account,) = gcp[t]["node_config"]["serviceAccounts"]
        assert account["email"].startswith("study-worker@")
        assert account["scopes"] == ["https://www.googleapis.com/auth/devstorage.read_write"]
    # the AWS policies the README has you create: the worker's touches the bucket and nothing
    # else; the head's passes the worker role only (never a role of its own choosing)
    worker = json.loads((REPO / "deploy/aws/worker-policy.json").read_text())["Statement"]
    assert {a.split(":")[0] for s in worker for a in _list(s["Action"])} == {"s3"}
    assert {r for s in worker for r in _list(s["Resource"])} == {
        "arn:aws:s3:::<bucket>",
        "arn:aws:s3:::<bucket>/*",
    }
    head = json.loads((REPO / "deploy/aws/head-policy.json").read_text())["Statement"]
    passes = [s for s in head if "iam:PassRole" in _list(s["Action"])]
    worker_role = "arn:aws:iam::<account-id>:role/study-worker"
    assert [_list(s["Resource"]) for s in passes] == [[worker_role]]
    assert all("*" not in a for s in head for a in _list(s["Action"]))


def _list(x: str | list[str]) -> list[str]:
    return [x] if isinstance(x, str) else x


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda c: c.update(max_worker=4), "max_worker"),  # a typo'd top-level key
        (lambda c: c["available_node_types"]["worker_gpu_spot"].update(min_worker=1), "min_worker"),
        (
            lambda c: c["available_node_types"]["worker_gpu_spot"]["resources"].update(GPU=0.5),
            "0.5",
        ),
        (lambda c: c.update(head_node_type="head"), "head_node_type"),
        (
            lambda c: c["available_node_types"]["worker_gpu_ondemand"].update(min_workers=9),
            "max_workers",
        ),
        (lambda c: c["available_node_types"]["worker_gpu_spot"].update(priority="high"), "high"),
    ],
)
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
    assert "--disable-usage-stats" in head_start  # Ray reads this, not RAY_DISABLE_USAGE_STATS
    commands = [c for k, v in config.items() if k.endswith("_commands") for c in v]
    assert not [c for c in commands if "0.0.0.0" in c]  # nothing Ray starts binds every address
    # a group of our own (deploy/aws/security_group.py makes it), no extra inbound rules (ports)
    assert config["provider"]["security_group"] == {"GroupName": "study-cluster"}


@pytest.mark.parametrize("name", ["aws", "gcp", "docker"])
def test_every_node_keeps_the_token_readable_by_its_user_only(name: str) -> None:
    """`ray get-auth-token --generate` writes the file 0644 and rsync keeps the mode: the setup
    of every node (after file_mounts copied it) makes it 600 in a 700 folder."""
    config = variant(name)
    token = [r for r, local in config["file_mounts"].items() if local == "~/.ray/auth_token"]
    assert token and token[0].endswith("/.ray/auth_token")
    assert config["setup_commands"][-1] == TOKEN_MODES


SECRET_PATTERNS = [
    r"AKIA[0-9A-Z]{16}",
    r"aws_secret_access_key",
    r"aws_session_token",
    r"BEGIN [A-Z ]*PRIVATE KEY",
    r"\"type\":\s*\"service_account\"",
    r"^\s*ssh_private_key:",
    r"RAY_AUTH_TOKEN=",
]


def test_cluster_yaml_holds_no_credentials() -> None:
    text = CLUSTER_YAML.read_text()
    for pattern in SECRET_PATTERNS:
        assert not re.search(pattern, text, re.MULTILINE), pattern
    assert set(load_cluster()["auth"]) == {"ssh_user"}


def test_nodes_install_the_lock_and_nothing_unpinned() -> None:
    """Every node: the lock with its hashes, then the mounted checkout without dependencies; no
    other pip install anywhere (a head setup or a block that resolves open ranges again)."""
    for name in ("aws", "gcp", "docker"):
        config = variant(name)
        commands = [c for k, v in config.items() if k.endswith("_commands") for c in v]
        pip = [c for c in commands if "pip install" in c]
        if name == "docker":
            assert pip == []  # the image has it all
            continue
        project = next(r for r, local in config["file_mounts"].items() if local == ".")
        home = project.replace("/home/ubuntu", "~")
        assert pip == [
            f"~/venv/bin/pip install -q --require-hashes -r {home}/deploy/requirements-cluster.txt",
            f"~/venv/bin/pip install -q --no-deps --no-build-isolation -e {home}",
        ], pip
        assert config["head_setup_commands"] == [] and config["worker_setup_commands"] == []


# --- SSH from one CIDR (moto: Ray's own AWS bootstrap against a mocked EC2) -----------------------


def bootstrapped(tmp_path: Path, monkeypatch, ssh_cidr: str | None) -> dict[str, Any]:
    """Ray's AWS bootstrap of cluster.yaml in a mocked account: the security group of each node
    type and that group's inbound rules. With ssh_cidr, deploy/aws/security_group.py made the
    group first."""
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    import importlib.util

    from ray.autoscaler._private.aws.config import bootstrap_aws

    fake = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    # (HOME: Ray writes the key pair it makes under ~/.ssh)
    for key, value in {**fake, "AWS_DEFAULT_REGION": "us-west-2", "HOME": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    spec = importlib.util.spec_from_file_location("sg", REPO / "deploy/aws/security_group.py")
    sg_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sg_script)
    with moto.mock_aws():
        iam = boto3.client("iam")
        for role in ("study-head", "study-worker"):  # made once from deploy/aws/ (cluster.md)
            trust = (REPO / "deploy/aws/ec2-trust.json").read_text()
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
            iam.create_instance_profile(InstanceProfileName=role)
            iam.add_role_to_instance_profile(InstanceProfileName=role, RoleName=role)
        if ssh_cidr is not None:
            assert sg_script.main(["--ssh-cidr", ssh_cidr]) == 0
        config = bootstrap_aws(ray_checked(load_cluster()))
        ec2 = boto3.client("ec2", region_name="us-west-2")
        groups = {
            t: tuple(n["node_config"]["SecurityGroupIds"])
            for t, n in config["available_node_types"].items()
        }
        (ids,) = set(groups.values())
        (group,) = ec2.describe_security_groups(GroupIds=list(ids))["SecurityGroups"]
    return {"name": group["GroupName"], "id": group["GroupId"], "rules": group["IpPermissions"]}


def test_ssh_is_open_to_the_given_cidr_only(tmp_path: Path, monkeypatch) -> None:
    group = bootstrapped(tmp_path, monkeypatch, "203.0.113.7/32")
    assert group["name"] == "study-cluster"
    ssh = [r for r in group["rules"] if r.get("FromPort") == 22]
    assert [r["IpRanges"] for r in ssh] == [[{"CidrIp": "203.0.113.7/32"}]]
    within = [r for r in group["rules"] if r["IpProtocol"] == "-1"]
    assert [[p["GroupId"] for p in r["UserIdGroupPairs"]] for r in within] == [[group["id"]]]
    assert len(group["rules"]) == 2  # nothing else from outside


def test_without_the_group_ray_would_open_ssh_to_everyone(tmp_path: Path, monkeypatch) -> None:
    """Why the group is made first (docs/security.md): left to itself, Ray's bootstrap makes it
    with SSH from 0.0.0.0/0, and cluster.yaml cannot narrow that."""
    group = bootstrapped(tmp_path, monkeypatch, None)
    ssh = [r for r in group["rules"] if r.get("FromPort") == 22]
    assert [r["IpRanges"] for r in ssh] == [[{"CidrIp": "0.0.0.0/0"}]]


def test_the_ssh_cidr_must_be_one() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("sg", REPO / "deploy/aws/security_group.py")
    sg_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sg_script)
    assert sg_script.cluster_settings() == ("us-west-2", "study-cluster")
    for bad in ("0.0.0.0/0", "203.0.113.7/33", "my laptop", "203.0.113.7/24"):  # (host bits set)
        with pytest.raises(SystemExit):
            sg_script.main(["--ssh-cidr", bad])


# --- a multi-node study on one machine -------------------------------------------------------


@pytest.mark.study
@pytest.mark.timeout(180)
def test_trials_spread_over_two_worker_nodes(
    tiny_toon: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """A head with no CPUs and two 1-CPU workers: the smoke study's two 1-CPU trials can only run
    one per worker, and trials.parquet's `node` column (recorded by each trial) shows both. On a
    cluster the test evaluation stays a Ray task (study.evaluation.test_split.evaluates_here)."""
    import ray
    from ray import tune
    from ray.cluster_utils import Cluster

    from study.run import __main__ as run

    # a new actor per trial: a trial that ended before the other's actor started would hand the
    # other its actor (reuse_actors), and both would run on one node
    config = tune.TuneConfig
    monkeypatch.setattr(tune, "TuneConfig", lambda **kw: config(**{**kw, "reuse_actors": False}))

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        workers = {
            name: cluster.add_node(num_cpus=1, resources={name: 1})
            for name in ("worker_a", "worker_b")
        }
        cluster.wait_for_nodes()
        # the cluster is named in this test process's own Ray temp dir (conftest.RAY_TMPDIR),
        # where a plain ray.init() of a test running in parallel does not look
        assert (Path(RAY_TMPDIR) / "ray" / "ray_current_cluster").read_text() == cluster.address
        assert cluster.head_node.get_session_dir_path().startswith(RAY_TMPDIR)
        ray.init(address=cluster.address)
        try:  # the custom resource names each node, Ray's node table gives its id
            by_resource = {
                name: n["NodeID"]
                for n in ray.nodes()
                if n["Alive"]
                for name in workers
                if name in n["Resources"]
            }
        finally:
            ray.shutdown()
        assert by_resource == {name: w.node_id for name, w in workers.items()}
        rc = run.main(
            [
                "--space",
                "demo",
                "--smoke-test",
                "--address",
                cluster.address,
                "--cpus-per-trial",
                "1",
                "--data-dir",
                str(tiny_toon),
                "--storage",
                str(tmp_path / "s"),
                "--name",
                "multi",
                "--no-report",
            ]
        )
        assert rc == 0
        assert not ray.is_initialized()  # the study's own connection, closed at its end
        assert "Grad-CAM of the best (as a Ray task)" in capsys.readouterr().out
    finally:
        ray.shutdown()
        cluster.shutdown()
    trials = pd.read_parquet(tmp_path / "s" / "multi" / "trials.parquet")
    assert len(trials) == 2 and set(trials["status"]) <= {"finished", "stopped"}
    ran_on = {node.split(":")[-1] for node in trials["node"]}
    assert ran_on == {node_id[:12] for node_id in by_resource.values()}, trials["node"]
