"""The deployment files: KubeRay manifests (deploy/kuberay/), the Dockerfile and the job runtime
environment. None of them can run here (no Kubernetes, no Docker), so they are checked for what
would break or weaken them: the KubeRay fields and types, one source for the two manifests,
security settings, and versions that agree with cluster.yaml and pyproject.toml."""

from __future__ import annotations

import copy
import importlib.util
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
KUBERAY = REPO / "deploy" / "kuberay"
DOCKERFILE, DOCKERIGNORE = REPO / "Dockerfile", REPO / ".dockerignore"

# --- the KubeRay CRD, as far as these manifests use it -------------------------------------------
# The operator's CRDs (ray.io_rayclusters.yaml, ray.io_rayjobs.yaml) could not be vendored here, so
# this is a documented subset: the field names and types of the ray.io/v1 API reference of
# KubeRay v1.5-v1.6 ("KubeRay CRD API reference": RayClusterSpec, AuthOptions, AutoscalerOptions,
# HeadGroupSpec, WorkerGroupSpec, RayJobSpec) plus the few PodSpec/Container fields used. Unknown
# fields are errors: the API server would silently prune a misspelt field (for authOptions that
# means token auth off), so a typo has to fail here.

QUANTITY = {
    "anyOf": [
        {"type": "integer", "minimum": 0},
        {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(m|[kMGTPE]i?)?$"},
    ]
}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
INT32 = {"type": "integer", "minimum": 0}


def _obj(props: dict[str, Any], required: tuple[str, ...] = (), closed: bool = True) -> dict:
    return {
        "type": "object",
        "properties": props,
        "required": list(required),
        "additionalProperties": not closed,
    }


CONTAINER = _obj(
    {
        "name": {"type": "string"},
        "image": {"type": "string"},
        "command": {"type": "array"},
        "args": {"type": "array"},
        "env": {
            "type": "array",
            "items": _obj(
                {
                    "name": {"type": "string"},
                    "value": {"type": "string"},
                    "valueFrom": {"type": "object"},
                },
                ("name",),
            ),
        },
        "resources": _obj(
            {
                "limits": {"type": "object", "additionalProperties": QUANTITY},
                "requests": {"type": "object", "additionalProperties": QUANTITY},
            }
        ),
        "ports": {
            "type": "array",
            "items": _obj(
                {
                    "containerPort": {"type": "integer"},
                    "name": {"type": "string"},
                    "protocol": {"type": "string"},
                },
                ("containerPort",),
            ),
        },
        "securityContext": {"type": "object"},
        "volumeMounts": {
            "type": "array",
            "items": _obj(
                {"name": {"type": "string"}, "mountPath": {"type": "string"}}, ("name", "mountPath")
            ),
        },
    },
    ("name", "image"),
    closed=False,
)  # a Container has many more fields; these are checked
POD_TEMPLATE = _obj(
    {
        "metadata": _obj({"labels": STR_MAP, "annotations": STR_MAP}),
        "spec": _obj(
            {
                "containers": {"type": "array", "minItems": 1, "items": CONTAINER},
                "serviceAccountName": {"type": "string"},
                "tolerations": {"type": "array"},
                "volumes": {"type": "array"},
                "securityContext": {"type": "object"},
            },
            ("containers",),
            closed=False,
        ),
    },
    ("spec",),
)
GROUP_COMMON = {
    "rayStartParams": STR_MAP,
    "template": POD_TEMPLATE,
    "resources": STR_MAP,
    "labels": STR_MAP,
}
RAY_CLUSTER_SPEC = _obj(
    {
        "authOptions": _obj(
            {
                "mode": {"enum": ["disabled", "token"]},
                "secretName": {"type": "string"},
                "enableK8sTokenAuth": {"type": "boolean"},
            }
        ),
        "autoscalerOptions": _obj(
            {
                "resources": {"type": "object"},
                "image": {"type": "string"},
                "imagePullPolicy": {"type": "string"},
                "securityContext": {"type": "object"},
                "idleTimeoutSeconds": INT32,
                "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]},
                "version": {"enum": ["v1", "v2"]},
                "env": {"type": "array"},
                "envFrom": {"type": "array"},
                "volumeMounts": {"type": "array"},
            }
        ),
        "enableInTreeAutoscaling": {"type": "boolean"},
        "gcsFaultToleranceOptions": {"type": "object"},
        "headGroupSpec": _obj(
            {
                **GROUP_COMMON,
                "headService": {"type": "object"},
                "enableIngress": {"type": "boolean"},
                "serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
            },
            ("template",),
        ),
        "headServiceAnnotations": STR_MAP,
        "managedBy": {"type": "string"},
        "rayVersion": {"type": "string"},
        "suspend": {"type": "boolean"},
        "upgradeStrategy": {"type": "object"},
        "workerGroupSpecs": {
            "type": "array",
            "items": _obj(
                {
                    **GROUP_COMMON,
                    "groupName": {"type": "string"},
                    "suspend": {"type": "boolean"},
                    "replicas": INT32,
                    "minReplicas": INT32,
                    "maxReplicas": INT32,
                    "idleTimeoutSeconds": INT32,
                    "scaleStrategy": {"type": "object"},
                    "numOfHosts": INT32,
                },
                ("groupName", "template"),
            ),
        },
    },
    ("headGroupSpec",),
)
OBJECT_META = _obj(
    {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": STR_MAP,
        "annotations": STR_MAP,
    },
    ("name",),
)
RAY_CLUSTER = _obj(
    {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayCluster"},
        "metadata": OBJECT_META,
        "spec": RAY_CLUSTER_SPEC,
    },
    ("apiVersion", "kind", "metadata", "spec"),
)
RAY_JOB = _obj(
    {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayJob"},
        "metadata": OBJECT_META,
        "spec": {
            **_obj(
                {
                    "activeDeadlineSeconds": INT32,
                    "backoffLimit": INT32,
                    "rayClusterSpec": RAY_CLUSTER_SPEC,
                    "submitterPodTemplate": POD_TEMPLATE,
                    "metadata": STR_MAP,
                    "clusterSelector": STR_MAP,
                    "submitterConfig": {"type": "object"},
                    "managedBy": {"type": "string"},
                    "deletionStrategy": {"type": "object"},
                    "entrypoint": {"type": "string"},
                    "runtimeEnvYAML": {"type": "string"},
                    "jobId": {"type": "string"},
                    "submissionMode": {
                        "enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]
                    },
                    "entrypointResources": {"type": "string"},
                    "entrypointNumCpus": {"type": "number"},
                    "entrypointNumGpus": {"type": "number"},
                    "ttlSecondsAfterFinished": INT32,
                    "shutdownAfterJobFinishes": {"type": "boolean"},
                    "suspend": {"type": "boolean"},
                },
                ("entrypoint",),
            ),
            # a RayJob runs on a cluster it creates or on one it selects
            "oneOf": [{"required": ["rayClusterSpec"]}, {"required": ["clusterSelector"]}],
        },
    },
    ("apiVersion", "kind", "metadata", "spec"),
)


def load(name: str) -> dict[str, Any]:
    docs = list(yaml.safe_load_all((KUBERAY / name).read_text()))
    assert len(docs) == 1, f"{name}: one object expected"
    return docs[0]


def render_module():
    spec = importlib.util.spec_from_file_location("render", KUBERAY / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ray_pin() -> str:
    """The Ray version cluster.yaml installs (laptop, cluster and image must agree)."""
    setup = " ".join(yaml.safe_load((REPO / "cluster.yaml").read_text())["setup_commands"])
    return re.search(r"ray\[[a-z,]+\]==([0-9.]+)", setup).group(1)


@pytest.mark.parametrize(
    ("name", "schema"), [("raycluster.yaml", RAY_CLUSTER), ("rayjob.yaml", RAY_JOB)]
)
def test_kuberay_manifests_match_the_crd_fields(name: str, schema: dict) -> None:
    jsonschema.validate(load(name), schema)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda s: s.update(workerGroupSpec=s.pop("workerGroupSpecs")), "workerGroupSpec"),
        (lambda s: s["authOptions"].update(mode="tokens"), "tokens"),
        (lambda s: s["workerGroupSpecs"][0].pop("groupName"), "groupName"),
        (lambda s: s["workerGroupSpecs"][0].update(maxReplicas="four"), "four"),
        (
            lambda s: s["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
            "0 is not of type",
        ),
        (
            lambda s: s["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"][
                "limits"
            ].update({"nvidia.com/gpu": "one"}),
            "one",
        ),
    ],
)
def test_broken_manifests_fail_the_schema(edit, words: str) -> None:
    """The check above can fail: plausible mistakes are rejected with the field named."""
    cluster = load("raycluster.yaml")
    edit(cluster["spec"])
    with pytest.raises(jsonschema.ValidationError) as e:
        jsonschema.validate(cluster, RAY_CLUSTER)
    assert words in str(e.value)


def test_rayjob_is_rendered_from_the_raycluster() -> None:
    """One source: rayjob.yaml is what render.py makes of raycluster.yaml right now."""
    assert (KUBERAY / "rayjob.yaml").read_text() == render_module().render(), (
        "deploy/kuberay/rayjob.yaml is stale: run python deploy/kuberay/render.py"
    )
    assert load("rayjob.yaml")["spec"]["rayClusterSpec"] == load("raycluster.yaml")["spec"]


def test_rayjob_runs_the_study_cli_and_then_frees_the_cluster() -> None:
    from study.run import __main__ as run

    spec = load("rayjob.yaml")["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    argv = shlex.split(spec["entrypoint"])
    assert argv[:3] == ["python", "-m", "study.run"]
    a = run.parse_args(argv[3:])  # every flag exists; a typo would exit here
    assert a.space == "googlenet_manga" and a.address == "auto" and a.gpus_per_trial >= 1
    assert a.storage.startswith("s3://") and a.data_dir.startswith("s3://")  # the cluster goes


def test_raycluster_scales_gpu_workers_with_auth_on_and_the_dashboard_private() -> None:
    cluster = load("raycluster.yaml")
    spec = cluster["spec"]
    assert spec["rayVersion"] == ray_pin()
    assert spec["authOptions"]["mode"] == "token"
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP" and head.get("enableIngress") is False
    assert head.get("headService", {}).get("spec", {}).get("type", "ClusterIP") == "ClusterIP"
    assert head["rayStartParams"]["num-cpus"] == "0"  # no trials on the head
    (gpu,) = spec["workerGroupSpecs"]
    assert gpu["minReplicas"] == 0 <= gpu["replicas"] <= gpu["maxReplicas"] >= 1
    (worker,) = gpu["template"]["spec"]["containers"]
    assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    # workers (user code, untrusted images) run under their own bucket-only account
    accounts = {
        head["template"]["spec"]["serviceAccountName"],
        gpu["template"]["spec"]["serviceAccountName"],
    }
    assert accounts == {"study-head", "study-worker"}
    for group in (head, gpu):
        pod = group["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            # the token comes from the operator's Secret, never from this file
            assert not [
                e for e in c.get("env", []) if e["name"] == "RAY_AUTH_TOKEN" and "value" in e
            ]
    # nothing in deploy/kuberay exposes a Service (the dashboard) outside the cluster
    for path in KUBERAY.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc.get("kind") == "Service":
                assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", path


# --- the container image -------------------------------------------------------------------------


def dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE))


def test_dockerfile_builds_on_rays_image_at_the_pinned_versions() -> None:
    text = DOCKERFILE.read_text()
    args = dockerfile_args()
    assert args["RAY_VERSION"] == ray_pin()
    assert re.search(
        r"^FROM rayproject/ray:\$\{RAY_VERSION\}-\$\{PYTHON_TAG\}-\$\{CUDA_TAG\}$",
        text,
        re.MULTILINE,
    )
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert args["PYTHON_TAG"] == "py311" and requires["requires-python"] == ">=3.11"
    assert re.fullmatch(r"cu\d{3}", args["CUDA_TAG"])
    # the extras it installs exist
    extras = re.search(r'pip install "\.\[([a-z0-9,]+)\]"', text).group(1).split(",")
    assert set(extras) <= set(requires["optional-dependencies"]), extras


def test_dockerfile_runs_as_non_root_and_holds_no_secrets() -> None:
    text = DOCKERFILE.read_text()
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^ENV RAY_AUTH_MODE=token", text, re.MULTILINE)
    for secret in (
        "RAY_AUTH_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "PASSWORD",
        "auth_token",
        "credentials",
        ".pem",
        "id_rsa",
    ):
        instructions = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
        assert not [ln for ln in instructions if secret in ln], secret
    # the build context is an allow-list: only what the package needs, never data or tokens
    ignore = [ln for ln in DOCKERIGNORE.read_text().splitlines() if ln and ln[0] != "#"]
    assert ignore[0] == "*"  # everything out, then the allow-list
    allowed = {ln[1:].rstrip("/") for ln in ignore if ln.startswith("!")}
    copied = [
        src
        for line in re.findall(r"^COPY .*$", text, re.MULTILINE)
        for src in line.split()[1:-1]
        if not src.startswith("--")
    ]
    assert copied and {c.rstrip("/") for c in copied} <= allowed, copied
    assert all((REPO / c).exists() for c in copied)
    assert "**/auth_token" in ignore and "**/.ray/" in ignore


def test_cluster_yaml_docker_block_runs_the_same_image_as_kuberay() -> None:
    from test_cluster import load_cluster, overlay

    docker = overlay(load_cluster(), "docker")
    image = load("raycluster.yaml")["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert docker["docker"]["image"] == image["image"]
    # the token goes to the image user's home (ray, /home/ray), where Ray looks for it
    assert docker["file_mounts"] == {"/home/ray/.ray/auth_token": "~/.ray/auth_token"}
    assert docker["setup_commands"] == [] and docker["head_setup_commands"] == []


def test_job_runtime_env_is_one_ray_accepts() -> None:
    from ray.runtime_env import RuntimeEnv

    env = yaml.safe_load((REPO / "deploy" / "runtime_env.yaml").read_text())
    RuntimeEnv(**copy.deepcopy(env), working_dir=str(REPO))  # Ray's own validation
    assert "/.git/" in env["excludes"]


# --- the README's cluster commands ---------------------------------------------------------------


# the README and the docs/ pages its commands moved to (docs/cluster.md: the cluster commands)
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def readme_blocks() -> list[str]:
    """The shell blocks of the README and docs/, continuation lines joined, comments dropped."""
    text = "\n".join(p.read_text() for p in DOCS)
    blocks = re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
    out = []
    for block in blocks:
        joined = block.replace("\\\n", " ")
        out.append("\n".join(re.sub(r"\s+#\s.*$", "", ln) for ln in joined.splitlines()))
    return out


def test_readme_study_commands_use_options_that_exist() -> None:
    """Every `python -m study.run ...` the README shows parses with the CLI (placeholders such
    as `...` and `<bucket>` aside), so a renamed option cannot leave the docs behind."""
    from study.run import __main__ as run

    commands = [
        m.group(1)
        for block in readme_blocks()
        for m in re.finditer(r"python -m study\.run ([^\n\"]*)", block)
    ]
    assert len(commands) >= 8
    for cmd in commands:
        argv = [t for t in shlex.split(cmd, comments=True) if t != "..."]
        if argv and argv[0] in ("--list",):
            continue
        run.parse_args(argv)  # SystemExit (exit 2) on an unknown option


def test_readme_ray_commands_carry_token_auth_and_no_usage_report() -> None:
    text = "\n".join(p.read_text() for p in DOCS)
    assert "RAY_DISABLE_USAGE_STATS" not in text  # Ray reads RAY_USAGE_STATS_ENABLED
    cluster = (REPO / "docs" / "cluster.md").read_text()
    section = cluster[cluster.index("## Running on any Ray cluster") :]
    section = section[: section.index("\n## ", 1)]
    assert "export RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0" in section
    assert 'pip install -e ".[cluster]"' in section
    for block in readme_blocks():
        for line in block.splitlines():
            if re.search(r"\bray (start|job submit|status)\b", line):
                # token mode set in that block (export) or on the line itself
                assert "RAY_AUTH_MODE=token" in block or "cluster.yaml" in block, line
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(r.startswith("ray[default]") for r in extras["optional-dependencies"]["cluster"])
    assert any(r.startswith("ray[default]") for r in extras["optional-dependencies"]["test"])
