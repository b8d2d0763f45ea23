"""The family registry and the one function that turns a bundle into what is served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from model import families
from model.bundle import DEFAULT_BUNDLE_DIR, MANIFEST_FILE, load_bundle
from model.errors import BundleError
from model.serving import default_lag, serve
from tests.bundles import tiny_bundle
from tests.stream_support import spike_bundle
from tools.cli import cli


def test_anomalybert_is_the_default_and_unknown_families_are_named() -> None:
    assert families.get().name == "anomalybert" and "anomalybert" in families.names()
    with pytest.raises(ValueError, match="unknown model family 'nope' \\(known: .*anomalybert"):
        families.get("nope")


def test_family_config_rejects_unknown_fields() -> None:
    fam = families.get("anomalybert")
    assert fam.config({"window_size": 32}, d_model=None).window_size == 32  # None: not given
    with pytest.raises(ValueError, match="unknown model config keys"):
        fam.config(hidden=3)


def test_a_registered_family_is_found_and_a_nameless_one_refused() -> None:
    class Nameless(families.Family):
        pass

    with pytest.raises(ValueError, match="needs a name"):
        families.register(Nameless())


def test_train_names_an_unknown_family_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", "--family", "nope", "--data", str(tmp_path), "--output",
                                      str(tmp_path / "m.pt")])
    assert result.exit_code == 2 and "unknown model family 'nope'" in result.output
    assert "Traceback" not in result.output


def test_serve_takes_the_override_then_the_manifest_then_the_calibration(tmp_path: Path) -> None:
    bundle = load_bundle(tiny_bundle(tmp_path / "b"))  # window 16, no score_lag anywhere
    assert bundle.manifest.score_lag is None and serve(bundle).lag == 15
    assert serve(bundle, 0).lag == 0
    with pytest.raises(ValueError, match=r"score_lag must be in \[0, 15\].*window_size=16"):
        serve(bundle, 16)
    default = load_bundle(DEFAULT_BUNDLE_DIR)
    assert default_lag(default.manifest) == default.manifest.calibration.details["score_lag"]
    served = serve(default)
    assert served.geometry.pointwise and served.geometry.input_channels == default.input_channels


def test_a_manifest_score_lag_wins_over_the_calibration_and_is_checked(tmp_path: Path) -> None:
    d = tiny_bundle(tmp_path / "b")
    m = json.loads((d / MANIFEST_FILE).read_text())
    m["calibration"]["details"]["score_lag"] = 3
    (d / MANIFEST_FILE).write_text(json.dumps(m))
    assert serve(load_bundle(d)).lag == 3
    m["score_lag"] = 5
    (d / MANIFEST_FILE).write_text(json.dumps(m))
    assert serve(load_bundle(d)).lag == 5
    for bad, why in (({"score_lag": 16}, "exceeds window_size - 1"), ({"input_channels": 2}, "input_channels 2")):
        (d / MANIFEST_FILE).write_text(json.dumps(m | bad))
        with pytest.raises(BundleError, match=why):
            load_bundle(d)


def test_a_bundle_loads_without_any_family_config(tmp_path: Path) -> None:
    bundle = load_bundle(spike_bundle(tmp_path / "s", channels=2))
    assert bundle.manifest.family == "test-spike" and bundle.manifest.model == {}
    assert serve(bundle).geometry.channels == 2


def test_a_served_stride_raises_the_default_lag_and_respects_what_the_graph_scores(tmp_path: Path) -> None:
    d = tiny_bundle(tmp_path / "b")  # window 16, stride 1
    m = json.loads((d / MANIFEST_FILE).read_text())
    m["score_lag"] = 0
    (d / MANIFEST_FILE).write_text(json.dumps(m))
    bundle = load_bundle(d)
    assert serve(bundle).geometry.stride == 1 and serve(bundle).lag == 0
    g = serve(bundle, stride=4).geometry
    assert (g.stride, g.lag) == (4, 3)  # every point covered when final: lag >= stride - 1
    assert serve(bundle, 9, stride=4).lag == 9
    with pytest.raises(ValueError, match="score_lag"):
        serve(bundle, 2, stride=4)  # an explicit lag below stride - 1 leaves points unscored: refused
    # a graph that scores only a window's last 8 points (sdmae's score_last) cannot skip more than 8
    (d / MANIFEST_FILE).write_text(json.dumps(m | {"model": {**m["model"], "score_last": 8}}))
    with pytest.raises(ValueError, match=r"stride must be in \[1, 8\]"):
        serve(load_bundle(d, verify=False), stride=9)
    assert serve(load_bundle(d, verify=False), stride=8).lag == 7
