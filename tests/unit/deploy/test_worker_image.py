"""The worker image holds only what `deploy/worker.Dockerfile` copies. Without Docker, the same file set is
copied to a temporary directory and the worker is imported and started up from it alone."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _copied() -> list[str]:
    text = (ROOT / "deploy" / "worker.Dockerfile").read_text()
    return [src for line in text.splitlines() if (m := re.match(r"COPY\s+(?!--)(\S+)\s+\S+\s*$", line))
            for src in [m.group(1)] if not src.startswith(("deploy/", "pyproject", "README"))]


def test_the_worker_image_copies_no_training_evaluation_tool_or_family_code() -> None:
    copied = _copied()
    assert copied == ["model/*.py", "model/default", "stream"]
    top = [p.name for p in (ROOT / "model").glob("*.py")]
    assert "checkpoint.py" not in top and "export.py" not in top  # the torch parts live in model/families


def test_the_worker_starts_from_the_copied_files_alone(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "model").mkdir(parents=True)
    for f in (ROOT / "model").glob("*.py"):
        shutil.copy(f, app / "model" / f.name)
    shutil.copytree(ROOT / "model" / "default", app / "model" / "default")
    shutil.copytree(ROOT / "stream", app / "stream", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import sys, stream, stream.cli, stream.app, stream.agents, stream.processor, stream.reload\n"
        "from model.bundle import load_bundle\nfrom model.serving import serve\n"
        "served = serve(load_bundle('model/default'))\n"
        "assert stream.__file__.startswith(sys.argv[1]), stream.__file__\n"
        "heavy = ('torch', 'pandas', 'training', 'evaluation', 'tools', 'model.families')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "print(served.lag, bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(app)], cwd=app, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0].endswith("[]")
    help_out = subprocess.run([sys.executable, "-m", "stream", "worker", "--help"], cwd=app, capture_output=True,
                              text=True, timeout=120)
    assert help_out.returncode == 0 and "--model" in help_out.stdout, help_out.stderr
