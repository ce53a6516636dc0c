"""``poselab cluster validate FILE...``: offline checks of Ray cluster-launcher YAMLs and KubeRay manifests.

Nothing is launched and no cloud API is called. A file is one of

* a **cluster-launcher config** (``ray up``; a mapping with ``cluster_name`` and ``provider``): it is
  checked against the installed Ray's own cluster schema (``ray/autoscaler/ray-schema.json``) after
  Ray's own ``prepare_config`` (the provider's defaults merged in, as ``ray up`` does), then by Ray's
  ``validate_config``, and by the project's rules below;
* a **KubeRay manifest** (one or more YAML documents, at least one with ``apiVersion: ray.io/...`` and
  ``kind: RayCluster | RayJob | RayService``; ``ConfigMap``, ``Secret``, ``Service`` and
  ``PersistentVolumeClaim`` documents may come along), checked by the project's rules below.

Anything else is an error naming the file.

Project rules, launcher configs:

* ``head_node_type`` names one of ``available_node_types`` (the ``local`` provider has neither: Ray
  makes its single node type itself and refuses both);
* every node type: ``min_workers <= max_workers``, and both ``<=`` the cluster ``max_workers``;
* a GPU node type (``gpu`` in its name, a GPU instance / machine type, or accelerators in its
  ``node_config``) declares a ``GPU`` resource;
* the head's and every worker type's setup commands install the project (``uv sync``, or
  ``pip install`` of the checkout: ``.``, ``-e .``, ``-r FILE``, ``poselab``);
* Ray token authentication is on: the commands set ``RAY_AUTH_MODE=token`` and name the token
  (``RAY_AUTH_TOKEN[_PATH]`` or ``~/.ray/auth_token``), never ``RAY_AUTH_MODE=disabled``;
* no ingress from anywhere (``0.0.0.0/0``, ``::/0``) to the dashboard (8265), the GCS (6379) or
  MLflow (5000) in the provider's security group, and no dashboard bound to ``0.0.0.0``.

The install and token rules do not apply to the ``fake_multinode`` provider, whose "nodes" are
processes on the calling machine started from its environment (no setup or start commands run).

Project rules, KubeRay manifests: ``metadata.name``; RayJob ``spec.entrypoint`` and
``spec.rayClusterSpec``; the head group's ``rayStartParams`` and containers with an ``image``; every
worker group with a ``groupName`` (unique), ``minReplicas <= maxReplicas``, ``replicas`` within them,
containers with an ``image``; GPU groups (``gpu`` in the name, ``num-gpus`` in ``rayStartParams`` or a
GPU request) with an ``nvidia.com/gpu`` limit on the Ray container; autoscaling groups (min < max)
need ``enableInTreeAutoscaling: true``; token authentication (``authOptions.mode: token`` or
``RAY_AUTH_MODE=token`` on every Ray container); no ``LoadBalancer`` / ``NodePort`` head service or
Service exposing 8265, 6379 or 5000.

Errors name the file and the dotted key: ``clusters/aws.yaml: available_node_types.gpu_1x.min_workers
(3) > max_workers (2)``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROTECTED_PORTS = {8265: "dashboard", 6379: "GCS", 5000: "MLflow"}
KUBERAY_KINDS = ("RayCluster", "RayJob", "RayService")
COMPANION_KINDS = ("ConfigMap", "Secret", "Service", "PersistentVolumeClaim")
# installs the project: `uv sync`, or `pip install` of the checkout (., -e ., -r FILE) or of poselab
INSTALL_RE = re.compile(r"\buv\s+sync\b|\bpip3?\s+install\b[^;&|\n]*?(\s(-e\s+)?\.(/|\s|$)|\s-r\s|\bposelab\b)")
# instance / machine types with GPUs: AWS p3/p4d/p5/g4dn/g5/g6..., GCP a2/a3/a4/g2/g4, Azure NC/ND/NV
GPU_INSTANCE_RE = re.compile(r"^(p\d|g\d|gr\d)[a-z]*\.|^(a2|a3|a4|g2|g4)-|^standard_n[cdv]", re.IGNORECASE)
ANYWHERE = {"0.0.0.0/0", "::/0"}
NO_SETUP_PROVIDERS = ("fake_multinode", "fake_multinode_docker")


class ClusterFileError(ValueError):
    """A file that is not a cluster-launcher config or a KubeRay manifest."""


@dataclass
class Report:
    """The outcome for one file: ``kind`` (``launcher`` / ``kuberay``), a summary, and the errors."""

    path: str
    kind: str = ""
    summary: str = ""
    errors: list[str] = field(default_factory=list)
    context: str = ""  # which document of a multi-document manifest, appended to its messages

    def error(self, key: str, message: str) -> None:
        if self.context:
            message = f"{message} [{self.context}]"
        if not key:
            self.errors.append(f"{self.path}: {message}")
        else:  # "key (3) > max_workers (2)" reads as one statement; otherwise "key: message"
            self.errors.append(f"{self.path}: {key}{' ' if message.startswith('(') else ': '}{message}")

    @property
    def ok(self) -> bool:
        return not self.errors


def _dotted(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts)


def _commands(value: Any) -> list[str]:
    return [str(c) for c in value] if isinstance(value, list) else []


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


# ------------------------------------------------------------------------------------------ detection
def load_documents(path: Path) -> list[Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ClusterFileError(f"cannot read: {e.strerror or e}") from None
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise ClusterFileError(f"not valid YAML: {e}") from None


def file_kind(docs: Sequence[Any]) -> str:
    """``launcher``, ``kuberay``, or raises :class:`ClusterFileError`."""
    if any(isinstance(d, Mapping) and str(d.get("apiVersion", "")).startswith("ray.io/") for d in docs):
        return "kuberay"
    if len(docs) == 1 and isinstance(docs[0], Mapping) and "provider" in docs[0] and "cluster_name" in docs[0]:
        return "launcher"
    raise ClusterFileError("unknown file type: neither a Ray cluster-launcher config (cluster_name + provider) "
                           "nor a KubeRay manifest (apiVersion ray.io/..., kind RayCluster/RayJob/RayService)")


# ------------------------------------------------------------------------------------------ launcher
def _ray_checks(cfg: dict[str, Any], report: Report) -> None:
    """Ray's own preparation and validation: ``prepare_config`` (the provider's defaults, as ``ray up``
    merges them), the bundled JSON schema (every violation with its key), then ``validate_config``."""
    import ray.autoscaler
    from ray.autoscaler._private import util as ray_util

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    quiet = logging.getLogger("ray.autoscaler")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # prepare_config logs the defaults it fills in at INFO
    printed = io.StringIO()  # Ray's cli_logger prints its warnings and aborts to stdout
    try:
        with contextlib.redirect_stdout(printed):
            prepared = ray_util.prepare_config(copy.deepcopy(cfg))
    except FileNotFoundError:  # no defaults file for this provider in the wheel (fake_multinode): as written
        prepared = copy.deepcopy(cfg)
    except BaseException as e:  # noqa: BLE001 - Ray aborts through click exceptions / SystemExit
        said = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", printed.getvalue()).split())
        report.error("", f"Ray's prepare_config rejected it: {type(e).__name__}: {e} {said}".rstrip())
        return
    finally:
        quiet.setLevel(level)
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - jsonschema is a dependency of ray[default]
        jsonschema = None
    if jsonschema is not None:
        validator = jsonschema.Draft7Validator(schema)
        schema_errors = sorted(validator.iter_errors(prepared), key=lambda e: list(map(str, e.absolute_path)))
        for e in schema_errors:
            report.error(_dotted(e.absolute_path) or "(top level)", f"{e.message} (Ray {_ray_version()} schema)")
        if schema_errors:
            return
    try:
        ray_util.validate_config(prepared)
    except Exception as e:  # noqa: BLE001 - jsonschema.ValidationError, ValueError, RuntimeError
        report.error("", f"Ray's validate_config: {getattr(e, 'message', None) or e}")


def _ray_version() -> str:
    import ray

    return ray.__version__


def _is_gpu_type(name: str, node: Mapping[str, Any]) -> bool:
    if "gpu" in name.lower():
        return True
    nc = node.get("node_config") or {}
    if not isinstance(nc, Mapping):
        return False
    for key in ("InstanceType", "machineType", "vmSize", "azure_arm_parameters"):
        value = nc.get(key)
        if isinstance(value, Mapping):
            value = value.get("vmSize")
        if isinstance(value, str) and GPU_INSTANCE_RE.search(value.rsplit("/", 1)[-1]):
            return True
    return bool(nc.get("guestAccelerators") or nc.get("accelerators"))


def _ports_of(perm: Mapping[str, Any]) -> set[int]:
    if str(perm.get("IpProtocol", "tcp")) == "-1":
        return set(PROTECTED_PORTS)
    lo, hi = _as_int(perm.get("FromPort")), _as_int(perm.get("ToPort"))
    if lo is None and hi is None:
        return set()
    lo, hi = (lo if lo is not None else hi), (hi if hi is not None else lo)
    if lo == -1 or hi == -1:
        return set(PROTECTED_PORTS)
    return {p for p in PROTECTED_PORTS if lo <= p <= hi}


def _open_to_anywhere(perm: Mapping[str, Any]) -> bool:
    cidrs = [r.get("CidrIp") for r in perm.get("IpRanges") or [] if isinstance(r, Mapping)]
    cidrs += [r.get("CidrIpv6") for r in perm.get("Ipv6Ranges") or [] if isinstance(r, Mapping)]
    return any(c in ANYWHERE for c in cidrs)


def _check_launcher_rules(cfg: Mapping[str, Any], report: Report) -> None:
    provider = cfg.get("provider") if isinstance(cfg.get("provider"), Mapping) else {}
    ptype = str(provider.get("type", ""))
    max_workers = _as_int(cfg.get("max_workers"))
    types = cfg.get("available_node_types")

    # -- node types
    if ptype == "local":
        for key in ("available_node_types", "head_node_type"):
            if key in cfg:
                report.error(key, "not allowed with the local (on-premises) provider: Ray makes its single node "
                                  "type from provider.head_ip / worker_ips")
        ips = provider.get("worker_ips")
        if "coordinator_address" not in provider and not isinstance(ips, list):
            report.error("provider.worker_ips", "the local provider needs head_ip and worker_ips (or a "
                                                "coordinator_address)")
        elif isinstance(ips, list) and max_workers is not None and max_workers > len(ips):
            report.error("max_workers", f"({max_workers}) > the {len(ips)} provider.worker_ips")
        lo = _as_int(cfg.get("min_workers"))
        if lo is not None and max_workers is not None and lo > max_workers:
            report.error("min_workers", f"({lo}) > max_workers ({max_workers})")
    elif not isinstance(types, Mapping) or not types:
        report.error("available_node_types", "missing: declare the head, CPU and GPU node types")
        types = {}
    else:
        head = cfg.get("head_node_type")
        if head is None:
            report.error("head_node_type", "missing (must name one of available_node_types)")
        elif head not in types:
            report.error("head_node_type", f"{head!r} is not one of available_node_types ({', '.join(map(str, types))})")
        total_min = 0
        for name, node in types.items():
            key = f"available_node_types.{name}"
            if not isinstance(node, Mapping):
                report.error(key, "must be a mapping with node_config and resources")
                continue
            lo = _as_int(node.get("min_workers", 0))
            hi = _as_int(node.get("max_workers", max_workers if max_workers is not None else 0))
            if lo is not None and hi is not None and lo > hi:
                report.error(f"{key}.min_workers", f"({lo}) > max_workers ({hi})")
            if max_workers is not None:
                if lo is not None and lo > max_workers:
                    report.error(f"{key}.min_workers", f"({lo}) > the cluster max_workers ({max_workers})")
                if hi is not None and hi > max_workers and name != head:
                    report.error(f"{key}.max_workers", f"({hi}) > the cluster max_workers ({max_workers})")
            if name != head:
                total_min += lo or 0
            resources = node.get("resources")
            if _is_gpu_type(str(name), node):
                gpus = _as_int(resources.get("GPU")) if isinstance(resources, Mapping) else None
                if not gpus:
                    report.error(f"{key}.resources.GPU", "a GPU node type must declare its GPUs (resources: {GPU: N})")
        if max_workers is not None and total_min > max_workers:
            report.error("max_workers", f"({max_workers}) < the sum of the worker types' min_workers ({total_min})")

    # -- commands
    setup = _commands(cfg.get("setup_commands"))
    head_cmds = setup + _commands(cfg.get("head_setup_commands"))
    worker_cmds = setup + _commands(cfg.get("worker_setup_commands"))
    start_cmds = _commands(cfg.get("head_start_ray_commands")) + _commands(cfg.get("worker_start_ray_commands"))
    every = (_commands(cfg.get("initialization_commands")) + head_cmds + worker_cmds + start_cmds
             + [c for node in (types.values() if isinstance(types, Mapping) else []) if isinstance(node, Mapping)
                for c in _commands(node.get("worker_setup_commands"))])
    if ptype not in NO_SETUP_PROVIDERS:
        if not any(INSTALL_RE.search(c) for c in head_cmds):
            report.error("setup_commands", "no command installs the project on the head (uv sync --locked, or "
                                           "pip install of the checkout, in setup_commands or head_setup_commands)")
        if not any(INSTALL_RE.search(c) for c in worker_cmds):
            report.error("setup_commands", "no command installs the project on the workers (uv sync --locked, "
                                           "or pip install of the checkout, in setup_commands or "
                                           "worker_setup_commands)")
        for name, node in (types.items() if isinstance(types, Mapping) else []):
            own = node.get("worker_setup_commands") if isinstance(node, Mapping) else None
            if own is not None and name != cfg.get("head_node_type") and not any(
                    INSTALL_RE.search(c) for c in _commands(own)):
                report.error(f"available_node_types.{name}.worker_setup_commands",
                             "replaces the global setup commands but installs nothing (uv sync / pip install)")
        text = "\n".join(every) + "\n" + "\n".join(map(str, (cfg.get("file_mounts") or {}).keys()))
        if re.search(r"RAY_AUTH_MODE=[\"']?disabled", text):
            report.error("setup_commands", "RAY_AUTH_MODE=disabled: Ray token authentication must stay on")
        if not re.search(r"RAY_AUTH_MODE=[\"']?token", text):
            report.error("head_start_ray_commands", "token authentication is not configured: no RAY_AUTH_MODE=token "
                                                    "in the setup or start commands")
        elif not re.search(r"RAY_AUTH_TOKEN|auth_token", text):
            report.error("head_start_ray_commands", "RAY_AUTH_MODE=token but no token source (RAY_AUTH_TOKEN, "
                                                    "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)")

    # -- ingress
    sg = provider.get("security_group")
    perms = sg.get("IpPermissions") if isinstance(sg, Mapping) else None
    for i, perm in enumerate(perms if isinstance(perms, list) else []):
        if isinstance(perm, Mapping) and _open_to_anywhere(perm) and _ports_of(perm):
            names = ", ".join(f"{p} ({PROTECTED_PORTS[p]})" for p in sorted(_ports_of(perm)))
            report.error(f"provider.security_group.IpPermissions.{i}",
                         f"opens {names} to the internet; keep them to the cluster's network (ray dashboard / "
                         f"ssh port-forward)")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for i, c in enumerate(_commands(cfg.get(key))):
            if re.search(r"--dashboard-host[= ]+[\"']?0\.0\.0\.0", c):
                report.error(f"{key}.{i}", "binds the dashboard to 0.0.0.0; keep the default 127.0.0.1 and use "
                                           "`ray dashboard` (an ssh port-forward)")


def validate_launcher(cfg: Any, report: Report) -> None:
    if not isinstance(cfg, dict):
        report.error("", "a cluster-launcher config must be a mapping")
        return
    _check_launcher_rules(cfg, report)
    _ray_checks(cfg, report)
    types = cfg.get("available_node_types")
    provider = cfg.get("provider") if isinstance(cfg.get("provider"), Mapping) else {}
    if isinstance(types, Mapping):
        nodes = f"node types {', '.join(map(str, types))}"
    else:
        ips = provider.get("worker_ips")
        nodes = f"{len(ips)} worker machines" if isinstance(ips, list) else "coordinator pool"
    report.summary = f"ray up config, provider {provider.get('type')}, {nodes}, " \
                     f"max_workers {cfg.get('max_workers', 'default')}"


# ------------------------------------------------------------------------------------------ KubeRay
def _get(obj: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(obj, Mapping):
            obj = obj.get(k)
        elif isinstance(obj, list) and isinstance(k, int) and 0 <= k < len(obj):
            obj = obj[k]
        else:
            return None
    return obj


def _quantity(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().strip('"'))
        except ValueError:
            return None
    return None


def _check_pod_template(template: Any, key: str, report: Report, *, gpu: bool) -> bool:
    """Containers with images; the GPU limit on the Ray container (index 0). Returns whether every
    container sets RAY_AUTH_MODE=token."""
    containers = _get(template, "spec", "containers")
    if not isinstance(containers, list) or not containers:
        report.error(f"{key}.template.spec.containers", "missing: at least the Ray container")
        return False
    env_token = True
    for i, c in enumerate(containers):
        if not isinstance(c, Mapping) or not c.get("image"):
            report.error(f"{key}.template.spec.containers.{i}.image", "missing")
        env = {e.get("name"): e.get("value") for e in (c.get("env") or []) if isinstance(e, Mapping)} \
            if isinstance(c, Mapping) else {}
        if i == 0 and env.get("RAY_AUTH_MODE") != "token":
            env_token = False
        if i == 0 and env.get("RAY_AUTH_MODE") == "disabled":
            report.error(f"{key}.template.spec.containers.{i}.env", "RAY_AUTH_MODE=disabled: token auth must stay on")
    if gpu:
        limit = _quantity(_get(containers, 0, "resources", "limits", "nvidia.com/gpu"))
        if not limit:
            report.error(f"{key}.template.spec.containers.0.resources.limits.nvidia.com/gpu",
                         "a GPU group must request its GPUs (limits: nvidia.com/gpu: N)")
    return env_token


def _check_ray_cluster_spec(spec: Any, key: str, report: Report) -> str:
    if not isinstance(spec, Mapping):
        report.error(key, "missing")
        return ""
    head = spec.get("headGroupSpec")
    token_everywhere = True
    if not isinstance(head, Mapping):
        report.error(f"{key}.headGroupSpec", "missing")
    else:
        if not isinstance(head.get("rayStartParams"), Mapping):
            report.error(f"{key}.headGroupSpec.rayStartParams", "missing (a mapping, may be {})")
        token_everywhere &= _check_pod_template(head.get("template"), f"{key}.headGroupSpec", report, gpu=False)
        stype = head.get("serviceType") or _get(head, "headService", "spec", "type")
        if stype in ("LoadBalancer", "NodePort"):
            report.error(f"{key}.headGroupSpec.serviceType",
                         f"{stype} exposes the dashboard and the GCS; use kubectl port-forward")
    groups = spec.get("workerGroupSpecs", [])
    if not isinstance(groups, list):
        report.error(f"{key}.workerGroupSpecs", "must be a list")
        groups = []
    names: set[str] = set()
    autoscaled = False
    for i, g in enumerate(groups):
        gk = f"{key}.workerGroupSpecs.{i}"
        if not isinstance(g, Mapping):
            report.error(gk, "must be a mapping")
            continue
        name = g.get("groupName")
        if not name:
            report.error(f"{gk}.groupName", "missing")
        elif name in names:
            report.error(f"{gk}.groupName", f"{name!r} is used by another worker group")
        names.add(str(name or ""))
        lo, hi, n = _as_int(g.get("minReplicas", 0)), _as_int(g.get("maxReplicas")), g.get("replicas")
        if hi is None:
            report.error(f"{gk}.maxReplicas", "missing (an integer)")
        elif lo is None:
            report.error(f"{gk}.minReplicas", "must be an integer")
        else:
            if lo > hi:
                report.error(f"{gk}.minReplicas", f"({lo}) > maxReplicas ({hi})")
            autoscaled |= lo < hi
            if n is not None and (_as_int(n) is None or not lo <= _as_int(n) <= hi):
                report.error(f"{gk}.replicas", f"({n}) outside [minReplicas {lo}, maxReplicas {hi}]")
        params = g.get("rayStartParams", {})
        if not isinstance(params, Mapping):
            report.error(f"{gk}.rayStartParams", "must be a mapping")
            params = {}
        containers = _get(g, "template", "spec", "containers")
        requested = [_get(c, "resources", part, "nvidia.com/gpu") for c in (containers or [])
                     for part in ("limits", "requests")] if isinstance(containers, list) else []
        gpu = ("gpu" in str(name or "").lower() or bool(_quantity(params.get("num-gpus")))
               or any(_quantity(q) for q in requested))
        token_everywhere &= _check_pod_template(g.get("template"), gk, report, gpu=gpu)
    if autoscaled and spec.get("enableInTreeAutoscaling") is not True:
        report.error(f"{key}.enableInTreeAutoscaling", "worker groups scale (minReplicas < maxReplicas) but the "
                                                       "autoscaler is off: set it to true")
    mode = _get(spec, "authOptions", "mode")
    if mode == "disabled" or (mode != "token" and not token_everywhere):
        report.error(f"{key}.authOptions.mode", "Ray token authentication must be on (authOptions: {mode: token}, "
                                                "or RAY_AUTH_MODE=token with the token from a Secret on every Ray "
                                                "container)")
    return f"{len(groups)} worker group{'s' if len(groups) != 1 else ''} ({', '.join(sorted(n for n in names if n))})"


def validate_kuberay(docs: Sequence[Any], report: Report) -> None:
    summaries = []
    for d, doc in enumerate(docs):
        report.context = f"document {d + 1}: {_get(doc, 'kind')} {_get(doc, 'metadata', 'name')}" if len(docs) > 1 else ""
        if not isinstance(doc, Mapping):
            report.error("(document)", "must be a mapping")
            continue
        kind, api = doc.get("kind"), str(doc.get("apiVersion", ""))
        name = _get(doc, "metadata", "name")
        if not name:
            report.error("metadata.name", "missing")
        if api.startswith("ray.io/"):
            if kind not in KUBERAY_KINDS:
                report.error("kind", f"{kind!r} is not one of {', '.join(KUBERAY_KINDS)}")
                continue
            spec = doc.get("spec")
            if not isinstance(spec, Mapping):
                report.error("spec", "missing")
                continue
            if kind == "RayCluster":
                summaries.append(f"RayCluster {name}: {_check_ray_cluster_spec(spec, 'spec', report)}")
            elif kind == "RayJob":
                if not isinstance(spec.get("entrypoint"), str) or not spec["entrypoint"].strip():
                    report.error("spec.entrypoint", "missing (the command the job runs)")
                if "rayClusterSpec" not in spec:
                    report.error("spec.rayClusterSpec", "missing (the cluster the job creates)")
                else:
                    groups = _check_ray_cluster_spec(spec["rayClusterSpec"], "spec.rayClusterSpec", report)
                    summaries.append(f"RayJob {name}: {groups}")
            else:
                groups = _check_ray_cluster_spec(spec.get("rayClusterConfig"), "spec.rayClusterConfig",
                                                 report)
                summaries.append(f"RayService {name}: {groups}")
        elif kind in COMPANION_KINDS:
            if kind == "Service":
                stype = _get(doc, "spec", "type")
                ports = {_as_int(_get(p, "port")) for p in (_get(doc, "spec", "ports") or [])}
                exposed = sorted(p for p in ports if p in PROTECTED_PORTS)
                if stype in ("LoadBalancer", "NodePort") and exposed:
                    report.error("spec.type", f"{stype} exposes {exposed} outside the cluster")
            summaries.append(f"{kind} {name}")
        else:
            report.error("kind", f"{kind!r} (apiVersion {api!r}) is not a KubeRay resource or one of "
                                          f"{', '.join(COMPANION_KINDS)}")
    report.context = ""
    report.summary = "KubeRay: " + "; ".join(summaries)


# ------------------------------------------------------------------------------------------ entry points
def validate_file(path: str | Path) -> Report:
    report = Report(str(path))
    if Path(path).suffix.lower() not in CONFIG_SUFFIXES:
        report.error("", "unknown file type: expected a cluster-launcher YAML or a KubeRay manifest "
                         "(.yaml / .yml / .json)")
        return report
    try:
        docs = load_documents(Path(path))
        report.kind = file_kind(docs)
    except ClusterFileError as e:
        report.error("", str(e))
        return report
    if report.kind == "launcher":
        validate_launcher(docs[0], report)
    else:
        validate_kuberay(docs, report)
    return report


CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; a directory stands for the YAML/JSON files under it (sorted, recursively: so
    ``clusters/*`` covers ``clusters/kuberay/``; other files there, such as a Dockerfile, are not configs).
    A directory without any is an error (it names the directory)."""
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in CONFIG_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{path}: a directory without cluster YAML/JSON files")
            out.extend(found)
        else:
            out.append(path)
    return out


def validate_files(paths: Sequence[str | Path], out=None, err=None) -> int:
    """Validate every file (directories: the YAML/JSON files under them); print one OK line per valid
    file and every error; 0 if all are valid."""
    out, err = out or sys.stdout, err or sys.stderr
    paths = expand_paths(paths)
    failed = 0
    for path in paths:
        report = validate_file(path)
        if report.ok:
            print(f"OK {report.path} ({report.summary})", file=out)
        else:
            failed += 1
            for line in report.errors:
                print(line, file=err)
    if failed:
        print(f"{failed} of {len(paths)} file{'s' if len(paths) != 1 else ''} invalid", file=err)
    return 1 if failed else 0


def _run_validate(args: argparse.Namespace) -> int:
    return validate_files(args.files)


def add_cluster_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``cluster validate FILE...`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "cluster", help="cluster configs: `cluster validate FILE...` checks ray up YAMLs and KubeRay manifests",
        description="Cluster configuration tools (docs/clusters.md).")
    sub = p.add_subparsers(dest="cluster_command", metavar="SUBCOMMAND")
    v = sub.add_parser(
        "validate", help="check cluster-launcher YAMLs and KubeRay manifests offline",
        description="Check Ray cluster-launcher YAMLs against the installed Ray's cluster schema and the "
                    "project's rules (node types, worker bounds, GPU resources, project install, token "
                    "authentication, no dashboard/GCS/MLflow ports open to the internet), and KubeRay manifests "
                    "(RayCluster/RayJob/RayService) against the project's rules. Launches nothing. Prints one "
                    "OK line per valid file; exits 1 naming the file and the key of every problem.")
    v.add_argument("files", nargs="+", metavar="FILE", help="cluster YAML files or directories of them, e.g. "
                                                            "clusters/* (directories are searched recursively)")
    v.set_defaults(func=_run_validate)

    def _usage(args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(func=_usage)
    return p
