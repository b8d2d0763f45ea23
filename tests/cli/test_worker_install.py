"""What a worker-only install (no torch, no pandas) can do: simulated by hiding those modules from a fresh
interpreter, which then fails to import them exactly as it would where they are not installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Run the CLI with the train extra's modules made unimportable.
HIDE = (
    "import sys\n"
    "class Hide:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'pandas', 'sklearn', 'scipy', 'matplotlib', 'onnx'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, Hide())\n"
    "from tools.cli import main\n"
    "sys.argv = ['anomalybert'] + sys.argv[1:]\n"
    "main()\n"
)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HIDE, *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_generate_and_detect_need_neither_torch_nor_pandas(tmp_path: Path) -> None:
    gen = run("generate", "-o", "data", "-s", "point_anomaly", "-n", "300", "--seed", "1", cwd=tmp_path)
    assert gen.returncode == 0, gen.stderr
    det = run("detect", "-i", "data/point_anomaly.csv", "-n", "3", "--format", "json", cwd=tmp_path)
    assert det.returncode == 0, det.stderr
    assert det.stdout.count('"score"') == 3


def test_commands_that_need_the_train_extra_say_so_in_one_line(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i % 7},0\n" for i in range(100))
    (tmp_path / "d.csv").write_text("timestamp,value,anomaly_tag\n" + rows)
    for args in (("train", "-d", "d.csv", "-o", "m.pt"), ("plot", "--input", "d.csv", "--output", "p.png")):
        out = run(*args, cwd=tmp_path)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "needs the 'train' extra" in lines[0] and "Traceback" not in out.stderr
