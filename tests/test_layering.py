"""pose/ is the library: it must never import the orchestration layer (ray, mlflow)."""

import ast
from pathlib import Path

POSE = Path(__file__).resolve().parents[1] / "pose"


def test_pose_never_imports_ray_or_mlflow():
    offenders = []
    for path in POSE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(POSE.parent)}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in ("ray", "mlflow", "orchestrator")]
    assert not offenders, offenders
    assert len(list(POSE.rglob("*.py"))) > 10  # the scan really saw the package
