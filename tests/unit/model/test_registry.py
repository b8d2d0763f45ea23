"""Registry: atomic publish, sortable versions, promote and rollback, refusal of bad bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from model.errors import BundleError
from model.registry import Registry
from tests.bundles import tiny_bundle
from tools.cli import cli


@pytest.fixture
def two_bundles(tmp_path: Path) -> tuple[Path, Path]:
    return tiny_bundle(tmp_path / "a", seed=1), tiny_bundle(tmp_path / "b", seed=2)


def test_publish_promote_and_rollback(tmp_path: Path, two_bundles: tuple[Path, Path]) -> None:
    reg = Registry(tmp_path / "reg")
    assert reg.versions() == [] and reg.current() is None
    v1 = reg.publish(two_bundles[0])
    v2 = reg.publish(two_bundles[1])
    assert v1 != v2
    assert reg.current() == v2
    assert set(reg.versions()) == {v1, v2}
    assert reg.load().version == v2
    assert reg.rollback() == v1
    assert reg.current() == v1
    with pytest.raises(BundleError, match="nothing to roll back"):
        reg.rollback()
    reg.promote(v2)
    assert reg.current() == v2
    # no temporary directories left behind
    assert not [p for p in (tmp_path / "reg").iterdir() if p.name.startswith(".")]


def test_publish_refuses_a_corrupt_bundle(tmp_path: Path, two_bundles: tuple[Path, Path]) -> None:
    reg = Registry(tmp_path / "reg")
    v1 = reg.publish(two_bundles[0])
    bad = two_bundles[1]
    (bad / "model.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(BundleError, match="sha256 mismatch"):
        reg.publish(bad)
    assert reg.current() == v1 and reg.versions() == [v1]


def test_promote_refuses_a_tampered_version(tmp_path: Path, two_bundles: tuple[Path, Path]) -> None:
    reg = Registry(tmp_path / "reg")
    v1 = reg.publish(two_bundles[0])
    v2 = reg.publish(two_bundles[1], promote=False)
    manifest = json.loads((reg.path(v2) / "manifest.json").read_text())
    manifest["threshold"] = 7.0  # out of [0, 1]: schema violation
    (reg.path(v2) / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="invalid manifest"):
        reg.promote(v2)
    assert reg.current() == v1


def test_models_cli(tmp_path: Path, two_bundles: tuple[Path, Path]) -> None:
    runner = CliRunner()
    reg = str(tmp_path / "reg")
    out = runner.invoke(cli, ["models", "publish", "--registry", reg, str(two_bundles[0])])
    assert out.exit_code == 0, out.output
    v1 = out.output.split()[1]
    runner.invoke(cli, ["models", "publish", "--registry", reg, str(two_bundles[1])])
    listed = json.loads(runner.invoke(cli, ["models", "list", "--registry", reg, "--format", "json"]).output)
    assert [r["current"] for r in listed].count(True) == 1 and len(listed) == 2
    assert runner.invoke(cli, ["models", "rollback", "--registry", reg]).output.strip() == f"current -> {v1}"
    shown = json.loads(runner.invoke(cli, ["models", "show", "--registry", reg]).output)
    assert shown["version"] == v1
