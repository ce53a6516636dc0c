"""`poselab cluster validate`: every file in clusters/ passes (globbed, so new files are covered), and a
broken copy of each file fails with a message naming the file and the broken key. In-process, offline:
no Ray cluster is started and no cloud API is called."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.cluster import INSTALL_RE, file_kind

REPO = Path(__file__).resolve().parents[2]
CLUSTER_FILES = sorted(p for p in (REPO / "clusters").rglob("*") if p.suffix in (".yaml", ".yml"))

Docs = list  # the YAML documents of one file


def load(path: Path) -> Docs:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


# ------------------------------------------------------------------------------------ launcher breakages
def _worker_types(cfg: dict) -> list[str]:
    return [t for t in cfg.get("available_node_types", {}) if t != cfg.get("head_node_type")]


def _gpu_types(cfg: dict) -> list[str]:
    return [t for t, n in cfg.get("available_node_types", {}).items() if "GPU" in n.get("resources", {})]


def drop_head_type(docs: Docs):
    cfg = docs[0]
    if "available_node_types" not in cfg:
        return None
    del cfg["available_node_types"][cfg["head_node_type"]]
    return "head_node_type"


def worker_min_above_max(docs: Docs):
    cfg = docs[0]
    if not _worker_types(cfg):
        return None
    name = _worker_types(cfg)[0]
    node = cfg["available_node_types"][name]
    node["max_workers"] = 2
    node["min_workers"] = 3
    return f"available_node_types.{name}.min_workers"


def worker_max_above_cluster_max(docs: Docs):
    cfg = docs[0]
    if not _worker_types(cfg):
        return None
    name = _worker_types(cfg)[-1]
    cfg["available_node_types"][name]["max_workers"] = cfg["max_workers"] + 1
    return f"available_node_types.{name}.max_workers"


def gpu_type_without_gpu(docs: Docs):
    cfg = docs[0]
    if not _gpu_types(cfg):
        return None
    name = _gpu_types(cfg)[0]
    del cfg["available_node_types"][name]["resources"]["GPU"]
    return f"available_node_types.{name}.resources.GPU"


def no_project_install(docs: Docs):
    cfg = docs[0]
    keys = ("setup_commands", "head_setup_commands", "worker_setup_commands")
    if not any(INSTALL_RE.search(str(c)) for k in keys for c in cfg.get(k, [])):
        return None  # nothing to remove (fake_multinode: no setup runs)
    for k in keys:
        cfg[k] = [c for c in cfg.get(k, []) if not INSTALL_RE.search(str(c))]
    return "setup_commands"


def no_auth_token(docs: Docs):
    cfg = docs[0]
    text = yaml.safe_dump(cfg)
    if "RAY_AUTH_MODE=token" not in text:
        return None
    for k in ("setup_commands", "head_setup_commands", "worker_setup_commands", "head_start_ray_commands",
              "worker_start_ray_commands", "initialization_commands"):
        cfg[k] = [str(c).replace("export RAY_AUTH_MODE=token", "") for c in cfg.get(k, [])]
    return "head_start_ray_commands"


def dashboard_open_to_internet(docs: Docs):
    cfg = docs[0]
    if cfg["provider"]["type"] == "aws":
        cfg["provider"]["security_group"]["IpPermissions"] = [
            {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
        return "provider.security_group.IpPermissions.0"
    starts = cfg.get("head_start_ray_commands", [])
    for i, c in enumerate(starts):
        if "ray start --head" in c:
            starts[i] = c.replace("--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0")
            return f"head_start_ray_commands.{i}"
    return None


def ray_schema_violation(docs: Docs):
    docs[0]["idle_timeout_minutes"] = "soon"  # Ray's schema: a number
    return "idle_timeout_minutes"


def local_provider_with_node_types(docs: Docs):
    cfg = docs[0]
    if cfg["provider"]["type"] != "local":
        return None
    cfg["head_node_type"] = "head"
    cfg["available_node_types"] = {"head": {"resources": {}, "node_config": {}}}
    return "available_node_types"


def local_min_above_max(docs: Docs):
    cfg = docs[0]
    if cfg["provider"]["type"] != "local":
        return None
    cfg["min_workers"] = cfg["max_workers"] + 1
    return "min_workers"


LAUNCHER_BREAKAGES: list[Callable[[Docs], str | None]] = [
    drop_head_type, worker_min_above_max, worker_max_above_cluster_max, gpu_type_without_gpu, no_project_install,
    no_auth_token, dashboard_open_to_internet, ray_schema_violation, local_provider_with_node_types,
    local_min_above_max]


# ------------------------------------------------------------------------------------ KubeRay breakages
def _ray_doc(docs: Docs) -> tuple[dict, dict, str]:
    """The first ray.io document, its cluster spec and the spec's dotted key."""
    doc = next(d for d in docs if str(d.get("apiVersion", "")).startswith("ray.io/"))
    if doc["kind"] == "RayJob":
        return doc, doc["spec"]["rayClusterSpec"], "spec.rayClusterSpec"
    if doc["kind"] == "RayService":
        return doc, doc["spec"]["rayClusterConfig"], "spec.rayClusterConfig"
    return doc, doc["spec"], "spec"


def group_without_name(docs: Docs):
    _, spec, key = _ray_doc(docs)
    del spec["workerGroupSpecs"][0]["groupName"]
    return f"{key}.workerGroupSpecs.0.groupName"


def group_min_above_max(docs: Docs):
    _, spec, key = _ray_doc(docs)
    group = spec["workerGroupSpecs"][0]
    group["minReplicas"] = group["maxReplicas"] + 1
    return f"{key}.workerGroupSpecs.0.minReplicas"


def group_replicas_out_of_range(docs: Docs):
    _, spec, key = _ray_doc(docs)
    group = spec["workerGroupSpecs"][0]
    group["replicas"] = group["maxReplicas"] + 1
    return f"{key}.workerGroupSpecs.0.replicas"


def gpu_group_without_gpu_limit(docs: Docs):
    _, spec, key = _ray_doc(docs)
    for i, group in enumerate(spec["workerGroupSpecs"]):
        limits = group["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {})
        if "nvidia.com/gpu" in limits:
            del limits["nvidia.com/gpu"]
            return f"{key}.workerGroupSpecs.{i}.template.spec.containers.0.resources.limits.nvidia.com/gpu"
    return None


def head_without_image(docs: Docs):
    _, spec, key = _ray_doc(docs)
    del spec["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    return f"{key}.headGroupSpec.template.spec.containers.0.image"


def head_without_ray_start_params(docs: Docs):
    _, spec, key = _ray_doc(docs)
    del spec["headGroupSpec"]["rayStartParams"]
    return f"{key}.headGroupSpec.rayStartParams"


def autoscaler_off(docs: Docs):
    _, spec, key = _ray_doc(docs)
    spec["enableInTreeAutoscaling"] = False
    return f"{key}.enableInTreeAutoscaling"


def auth_off(docs: Docs):
    _, spec, key = _ray_doc(docs)
    spec.pop("authOptions", None)
    return f"{key}.authOptions.mode"


def head_service_load_balancer(docs: Docs):
    _, spec, key = _ray_doc(docs)
    spec["headGroupSpec"]["serviceType"] = "LoadBalancer"
    return f"{key}.headGroupSpec.serviceType"


def no_metadata_name(docs: Docs):
    doc, _, _ = _ray_doc(docs)
    del doc["metadata"]["name"]
    return "metadata.name"


def job_without_entrypoint(docs: Docs):
    doc, _, _ = _ray_doc(docs)
    if doc["kind"] != "RayJob":
        return None
    del doc["spec"]["entrypoint"]
    return "spec.entrypoint"


def job_without_cluster_spec(docs: Docs):
    doc, _, _ = _ray_doc(docs)
    if doc["kind"] != "RayJob":
        return None
    del doc["spec"]["rayClusterSpec"]
    return "spec.rayClusterSpec"


KUBERAY_BREAKAGES: list[Callable[[Docs], str | None]] = [
    group_without_name, group_min_above_max, group_replicas_out_of_range, gpu_group_without_gpu_limit,
    head_without_image, head_without_ray_start_params, autoscaler_off, auth_off, head_service_load_balancer,
    no_metadata_name, job_without_entrypoint, job_without_cluster_spec]


def breakages(path: Path) -> list[tuple[Path, Callable[[Docs], str | None]]]:
    """The breakages that apply to ``path`` (those returning a key on a copy of it)."""
    docs = load(path)
    pool = LAUNCHER_BREAKAGES if file_kind(docs) == "launcher" else KUBERAY_BREAKAGES
    return [(path, f) for f in pool if f(copy.deepcopy(docs)) is not None]


BROKEN = [case for path in CLUSTER_FILES for case in breakages(path)]


def run_validate(*paths: Path, capsys) -> tuple[int, str, str]:
    rc = main(["cluster", "validate", *map(str, paths)])
    out = capsys.readouterr()
    return rc, out.out, out.err


# ------------------------------------------------------------------------------------------------ tests
def test_the_expected_cluster_files_exist():
    names = {str(p.relative_to(REPO)) for p in CLUSTER_FILES}
    assert {"clusters/aws.yaml", "clusters/gcp.yaml", "clusters/onprem.yaml", "clusters/fake-multinode.yaml",
            "clusters/kuberay/raycluster.yaml", "clusters/kuberay/rayjob.yaml"} <= names


def test_every_cluster_file_is_valid(capsys):
    rc, out, err = run_validate(*CLUSTER_FILES, capsys=capsys)
    assert rc == 0, err
    assert err == ""
    lines = out.strip().splitlines()
    assert len(lines) == len(CLUSTER_FILES)  # one OK line per file
    for path, line in zip(CLUSTER_FILES, lines):
        assert line.startswith(f"OK {path} (")


def test_the_issue_command_validates_the_directory_glob(capsys, tmp_path):
    """`poselab cluster validate clusters/*`: the shell gives the kuberay/ directory too, which stands for
    the manifests in it (its Dockerfile is not a config); a directory without configs is an error."""
    rc, out, err = run_validate(*sorted((REPO / "clusters").iterdir()), capsys=capsys)
    assert rc == 0, err
    assert sorted(line.split()[1] for line in out.strip().splitlines()) == sorted(map(str, CLUSTER_FILES))
    rc, _, err = run_validate(tmp_path, capsys=capsys)
    assert rc == 2 and f"{tmp_path}: a directory without cluster YAML/JSON files" in err


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: str(p.relative_to(REPO / "clusters")))
def test_every_cluster_file_has_broken_copies_checked(path):
    assert len(breakages(path)) >= 4  # the parametrised test below breaks it in at least four ways


@pytest.mark.parametrize("path,breakage", BROKEN,
                         ids=[f"{p.relative_to(REPO / 'clusters')}-{f.__name__}" for p, f in BROKEN])
def test_a_broken_copy_fails_naming_the_file_and_key(path, breakage, tmp_path, capsys):
    docs = load(path)
    key = breakage(docs)
    broken = tmp_path / path.name
    broken.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    rc, out, err = run_validate(broken, capsys=capsys)
    assert rc == 1
    assert out == ""  # no OK line for a broken file
    assert f"{broken}: {key}" in err, err
    assert re.search(rf"^{re.escape(str(broken))}: {re.escape(key)}[:\s]", err, re.M), err


def test_valid_and_broken_files_together(tmp_path, capsys):
    good = REPO / "clusters" / "aws.yaml"
    docs = load(good)
    docs[0]["available_node_types"]["gpu_1x"].update(min_workers=3, max_workers=2)
    bad = tmp_path / "aws.yaml"
    bad.write_text(yaml.safe_dump_all(docs))
    rc, out, err = run_validate(good, bad, capsys=capsys)
    assert rc == 1
    assert out.strip() == f"OK {good} (" + out.strip().split(" (", 1)[1]
    assert f"{bad}: available_node_types.gpu_1x.min_workers (3) > max_workers (2)" in err
    assert "1 of 2 files invalid" in err


def test_unknown_files_are_errors_naming_the_file(tmp_path, capsys):
    not_yaml = tmp_path / "Dockerfile"
    not_yaml.write_text("FROM scratch\n")
    other = tmp_path / "deployment.yaml"
    other.write_text(yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}))
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("key: [unclosed\n")
    rc, out, err = run_validate(not_yaml, other, garbage, tmp_path / "missing.yaml", capsys=capsys)
    assert rc == 1 and out == ""
    assert f"{not_yaml}: unknown file type" in err
    assert f"{other}: unknown file type" in err
    assert f"{garbage}: not valid YAML" in err
    assert f"{tmp_path / 'missing.yaml'}: cannot read" in err


def test_ray_schema_errors_name_nested_keys(tmp_path, capsys):
    docs = load(REPO / "clusters" / "gcp.yaml")
    docs[0]["available_node_types"]["cpu_worker"]["bogus_field"] = 1  # Ray's schema forbids unknown keys
    bad = tmp_path / "gcp.yaml"
    bad.write_text(yaml.safe_dump_all(docs))
    rc, _, err = run_validate(bad, capsys=capsys)
    assert rc == 1
    assert f"{bad}: available_node_types.cpu_worker: Additional properties are not allowed" in err
    assert "schema" in err


def test_cluster_subcommand_is_in_the_poselab_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "cluster" in capsys.readouterr().out
