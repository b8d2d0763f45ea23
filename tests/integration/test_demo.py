"""`anomalybert demo` end to end (shortened) and `anomalybert plot` on a file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.stream_support import ROOT
from tools.cli import cli

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
def test_demo_prints_alerts_and_writes_plots(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALYBERT_")}
    out = subprocess.run(
        [sys.executable, "-m", "tools.cli", "demo", "--rate", "0", "--output-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ALERT   open" in out.stdout and "ALERT closed" in out.stdout
    assert "done:" in out.stdout
    # alerts against the demo's own labels (`tools.demo.alert_quality`): what a person sees in the plots
    quality = re.findall(r"anomalies alerted (\d+)/(\d+), alerts on an anomaly (\d+)/(\d+)", out.stdout)
    assert len(quality) == 3, out.stdout
    alerted, anomalies, on, alerts = (sum(int(q[k]) for q in quality) for k in range(4))
    assert anomalies > 0 and alerts > 0
    assert on / alerts >= 0.8, f"precision {on}/{alerts}"
    assert alerted / anomalies >= 0.2, f"recall {alerted}/{anomalies}"
    plots = sorted(tmp_path.glob("demo-*.png"))
    assert len(plots) == 3
    assert all(p.read_bytes().startswith(PNG) and p.stat().st_size > 20_000 for p in plots)


def test_plot_scores_a_file_with_the_shipped_model(tmp_path: Path) -> None:
    data = tmp_path / "data"
    res = CliRunner().invoke(cli, ["generate", "--output-dir", str(data), "--scenario", "point_anomaly",
                                   "--n-samples", "400", "--seed", "1"])
    assert res.exit_code == 0, res.output
    png = tmp_path / "plot.png"
    res = CliRunner().invoke(cli, ["plot", "--input", str(data / "point_anomaly.csv"), "--output", str(png)])
    assert res.exit_code == 0, res.output
    assert png.read_bytes().startswith(PNG)


def test_plot_needs_an_input(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["plot", "--output", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "give --input" in res.output
