"""Training: the loss falls, seeds reproduce, finetuning freezes the encoder, the threshold comes
from the validation tails only."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from evaluation.detect import TorchScorer, score_series
from evaluation.series import Series, load_series
from model.errors import DataError
from model.families.anomalybert.config import ModelConfig
from model.families.anomalybert.modules import AnomalyBERT
from model.normalize import Normalizer
from tests.bundles import TINY
from training.calibrate import DEFAULT_THRESHOLD_BETA, best_f1_threshold, best_fbeta_threshold, normal_rate_threshold
from training.synth import write_scenarios
from training.train import TrainConfig, holdout_scores, prepare, split_point, train

FAST = TrainConfig(epochs=3, batch_size=32, lr=3e-3, seed=0, progress=False)


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> list[Series]:
    directory = tmp_path_factory.mktemp("synth")
    write_scenarios(directory, 240, seed=2)  # a seed whose validation tails hold anomalous points
    return load_series(directory, labels=True)


def _loss(model: AnomalyBERT, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return nn.BCEWithLogitsLoss()(model.logits(x), y).item()


def test_training_reduces_the_loss(series: list[Series]) -> None:
    data = prepare(series, TINY, Normalizer(scope="window"), FAST.val_fraction)
    torch.manual_seed(FAST.seed)
    before = _loss(AnomalyBERT(TINY), data.x, data.y)  # the same initial weights `train` starts from
    ckpt = train(series, TINY, FAST)
    after = _loss(ckpt.model, data.x, data.y)
    assert after < 0.7 * before
    history = ckpt.metrics["history"]
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(h["val_roc_auc"] is not None for h in history)


def test_same_seed_same_weights_other_seed_other_weights(series: list[Series]) -> None:
    one = dataclasses.replace(FAST, epochs=1)
    a, b = train(series, TINY, one), train(series, TINY, one)
    c = train(series, TINY, dataclasses.replace(one, seed=1))
    for k, v in a.model.state_dict().items():
        torch.testing.assert_close(v, b.model.state_dict()[k], rtol=0, atol=0)
    assert any(not torch.equal(v, c.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    assert a.threshold == b.threshold


def test_finetuning_keeps_the_encoder_and_trains_a_new_head(series: list[Series], tmp_path: Path) -> None:
    base = train(series, TINY, dataclasses.replace(FAST, epochs=1))
    base.save(tmp_path / "base.pt")
    tc = dataclasses.replace(FAST, epochs=2, finetune=str(tmp_path / "base.pt"))
    tuned = train(series[:3], ModelConfig(), tc)
    assert tuned.config == TINY  # the checkpoint's shape wins over the config passed in
    for k, v in base.model.encoder.state_dict().items():
        torch.testing.assert_close(tuned.model.encoder.state_dict()[k], v, rtol=0, atol=0)
    for k, v in base.model.head.state_dict().items():
        assert not torch.allclose(tuned.model.head.state_dict()[k], v)
    assert tuned.training_data["settings"]["finetune"] == str(tmp_path / "base.pt")


def test_threshold_is_the_best_f_beta_on_the_held_out_tails(series: list[Series]) -> None:
    ckpt = train(series, TINY, FAST)
    holdouts = prepare(series, TINY, Normalizer(scope="window"), FAST.val_fraction).holdouts
    scores, _, label = holdout_scores(TorchScorer(ckpt), holdouts, TINY)
    assert len(label) == sum(len(s) - split_point(len(s), 16, 0.2) for s in series)
    expected, details = best_fbeta_threshold(scores, label, DEFAULT_THRESHOLD_BETA)
    assert ckpt.threshold == pytest.approx(expected)
    assert ckpt.calibration["method"] == "best_fbeta_validation" and ckpt.calibration["beta"] == 0.25
    assert ckpt.calibration["f_beta"] == pytest.approx(details["f_beta"])
    # beta = 1 is best F1; a precision-weighted threshold is never below it.
    f1_ckpt = train(series, TINY, dataclasses.replace(FAST, threshold_beta=1.0))
    assert f1_ckpt.threshold == pytest.approx(best_f1_threshold(scores, label)[0])
    assert f1_ckpt.calibration["method"] == "best_f1_validation"


def test_f_beta_threshold_on_a_hand_computed_case() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.9])
    label = np.array([0, 1, 0, 1, 1])
    # Flagging >= 0.2: precision 3/4, recall 1, F1 0.857 (the best F1); >= 0.4: precision 1, recall 2/3,
    # F1 0.8 but F0.25 = 1.0625 * (2/3) / (1/16 + 2/3) = 0.971, the best F0.25.
    t1, d1 = best_f1_threshold(scores, label)
    assert t1 == 0.2 and d1["f1"] == pytest.approx(6 / 7)
    t, d = best_fbeta_threshold(scores, label, 0.25)
    assert t == 0.4 and d["f_beta"] == pytest.approx(1.0625 * (2 / 3) / (1 / 16 + 2 / 3))
    assert d["precision"] == 1.0 and d["recall"] == pytest.approx(2 / 3) and d["f1"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="beta"):
        best_fbeta_threshold(scores, label, 0.0)


def test_normal_rate_threshold_on_a_hand_computed_case() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 0.5])
    label = np.array([0, 1, 0, 1, 1, 0])
    # Normal scores 0.5, 0.3, 0.1. A budget of one normal point in three: just above 0.3, which flags
    # 0.4, 0.5 and 0.9: precision 2/3, recall 2/3.
    t, d = normal_rate_threshold(scores, label, 0.34)
    assert t == np.nextafter(0.3, 1.0) and d["method"] == "normal_rate_validation"
    assert d["normal_rate"] == pytest.approx(1 / 3) and d["precision"] == pytest.approx(2 / 3)
    assert d["recall"] == pytest.approx(2 / 3) and d["max_normal_rate"] == 0.34
    # No normal point may be flagged: just above the highest normal score.
    t0, d0 = normal_rate_threshold(scores, label, 0.2)
    assert t0 == np.nextafter(0.5, 1.0) and d0["normal_rate"] == 0.0 and d0["precision"] == 1.0
    with pytest.raises(ValueError, match="max_normal_rate"):
        normal_rate_threshold(scores, label, 0.0)
    assert normal_rate_threshold(scores, np.ones(6, int), 0.1)[1]["method"] == "default"


def test_threshold_is_calibrated_and_recorded_at_the_chosen_score_lag(series: list[Series]) -> None:
    tc = dataclasses.replace(FAST, epochs=1, score_lag=4)
    ckpt = train(series, TINY, tc)
    holdouts = prepare(series, TINY, Normalizer(scope="window"), tc.val_fraction).holdouts
    scores, _, label = holdout_scores(TorchScorer(ckpt), holdouts, TINY, score_lag=4)
    assert ckpt.calibration["score_lag"] == 4
    assert ckpt.threshold == pytest.approx(best_fbeta_threshold(scores, label, DEFAULT_THRESHOLD_BETA)[0])
    assert train(series, TINY, dataclasses.replace(FAST, epochs=1)).calibration["score_lag"] == 15
    with pytest.raises(ValueError, match="score_lag"):
        train(series, TINY, dataclasses.replace(FAST, epochs=1, score_lag=16))


def test_held_out_scores_equal_full_series_detection(series: list[Series]) -> None:
    """The lead-in trick scores the tail exactly as `detect` scores the whole series."""
    cfg = dataclasses.replace(TINY, stride=3)
    torch.manual_seed(0)
    from model.families.checkpoint import Checkpoint

    scorer = TorchScorer(Checkpoint(AnomalyBERT(cfg).eval(), Normalizer(scope="window")))
    holdouts = prepare(series, cfg, Normalizer(scope="window"), 0.3).holdouts
    got, _, _ = holdout_scores(scorer, holdouts[:1], cfg)
    full = score_series(scorer, series[0].values, cfg.window_size, cfg.stride)
    tail = full[split_point(len(series[0]), cfg.window_size, 0.3):]
    np.testing.assert_allclose(got, tail[~np.isnan(tail)], atol=1e-6)


def test_global_normalizer_is_fitted_on_the_training_heads_only(series: list[Series]) -> None:
    s = dataclasses.replace(series[0], values=series[0].values.copy())
    s.values[-1] = 1e9  # in the held-out tail
    norm = Normalizer("minmax", "global")
    prepare([s], TINY, norm, 0.2)
    assert norm.offset[0] + norm.scale[0] == pytest.approx(s.values[:split_point(len(s), 16, 0.2)].max())


def test_without_validation_the_threshold_falls_back(series: list[Series]) -> None:
    ckpt = train(series[:2], TINY, dataclasses.replace(FAST, epochs=1, val_fraction=0.0))
    assert ckpt.threshold == 0.5 and ckpt.calibration["method"] == "default"
    assert ckpt.metrics["val_roc_auc"] is None


def test_unlabelled_or_short_series_are_refused(series: list[Series]) -> None:
    unlabelled = dataclasses.replace(series[0], probability=None, labels=None)
    with pytest.raises(DataError, match="labels"):
        train([unlabelled], TINY, FAST)
    s = series[0]
    short = dataclasses.replace(s, values=s.values[:10], probability=s.probability[:10],  # type: ignore[index]
                                labels=s.labels[:10])  # type: ignore[index]
    with pytest.raises(DataError, match="shorter than the model's window"):
        train([short], TINY, FAST)


@pytest.mark.parametrize("scope", ["global", "series"])
def test_recalibrate_on_the_training_data_gives_the_trained_threshold(series: list[Series], scope: str) -> None:
    from training.train import recalibrate

    kind = "zscore"
    tc = dataclasses.replace(FAST, epochs=1, score_lag=4, normalization=kind, scope=scope, halflife=30.0)
    ckpt = train(series, TINY, tc)
    again = recalibrate(ckpt, series, 4, DEFAULT_THRESHOLD_BETA)
    assert again.threshold == pytest.approx(ckpt.threshold)
    assert again.normalizer == ckpt.normalizer  # a global normalizer keeps the model's fitted statistics
    other = recalibrate(ckpt, series, 0, 1.0)
    assert other.calibration["score_lag"] == 0 and other.calibration["method"] == "best_f1_validation"
    assert other.calibration["recalibrated"]["previous_threshold"] == ckpt.threshold
    if scope == "series":
        # Training with the blend gives the same weights (the loss sees the encoder alone) and the threshold
        # that recalibrating the unblended model with the blend gives.
        blended = train(series, dataclasses.replace(TINY, deviation_blend=0.5), tc)
        for k, v in ckpt.model.state_dict().items():
            assert torch.equal(blended.model.state_dict()[k], v)
        assert recalibrate(ckpt, series, 4, DEFAULT_THRESHOLD_BETA, deviation_blend=0.5).threshold == \
            pytest.approx(blended.threshold)
    else:
        with pytest.raises(ValueError, match="series normalization scope"):
            recalibrate(ckpt, series, 4, DEFAULT_THRESHOLD_BETA, deviation_blend=0.5)
