"""The self-distilled masked autoencoder (`sdmae`): masking, the two decoders, the margin loss and its warm-up,
mask-last-N scoring, export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model import families
from model.families.sdmae import NAME, SDMAEConfig
from model.families.sdmae.modules import SelfDistilledMAE, margin_loss, ramp, random_mask, sdmae_loss

TINY = {"window_size": 16, "channels": 2, "d_model": 16, "n_heads": 2, "enc_layers": 1, "teacher_layers": 2,
        "student_layers": 1, "d_ff": 32, "score_last": 4}


def model(**changes: object) -> SelfDistilledMAE:
    torch.manual_seed(0)
    return families.get(NAME).build(SDMAEConfig(**{**TINY, **changes}))  # type: ignore[return-value]


def test_registered_with_the_reference_shape() -> None:
    fam = families.get(NAME)
    cfg = fam.config()
    assert NAME in families.names() and not fam.supervised
    assert (cfg.enc_layers, cfg.d_model, cfg.n_heads, cfg.teacher_layers, cfg.student_layers) == (3, 64, 4, 4, 1)
    assert (cfg.mask_ratio, cfg.margin, cfg.lam, cfg.warmup) == (0.6, 1.0, 0.5, 0.2)
    m = model()
    assert len(m.teacher.layers.layers) == 2 and len(m.student.layers.layers) == 1
    with pytest.raises(ValueError, match="score_last"):
        fam.config(window_size=16, score_last=16)
    with pytest.raises(ValueError, match="mask_ratio"):
        fam.config(mask_ratio=1.0)


@pytest.mark.parametrize("ratio", [0.4, 0.6, 0.75])
def test_the_mask_hides_its_ratio_of_every_window(ratio: float) -> None:
    mask = random_mask(200, 50, ratio, torch.Generator().manual_seed(0))
    assert mask.shape == (200, 50)
    assert set(mask.sum(dim=1).tolist()) == {round(ratio * 50)}
    assert mask.float().mean(dim=0).min() > 0.2  # every position gets hidden, not a fixed block


def test_the_teacher_and_the_student_reconstruct_every_channel() -> None:
    m = model().eval()
    x = torch.randn(3, 16, 2)
    teacher, student = m.reconstruct(x, random_mask(3, 16, 0.6))
    assert teacher.shape == student.shape == (3, 16, 2)
    assert not torch.allclose(teacher, student)


def test_the_margin_loss_is_zero_beyond_the_margin_and_linear_below() -> None:
    d = torch.tensor([0.0, 0.25, 0.5, 1.0, 2.0])
    torch.testing.assert_close(margin_loss(d, 1.0), torch.tensor([1.0, 0.75, 0.5, 0.0, 0.0]))
    d = torch.tensor([0.3], requires_grad=True)
    margin_loss(d, 1.0).sum().backward()
    assert d.grad is not None and float(d.grad) == -1.0


def test_the_anomaly_term_is_ramped_in_over_the_first_fifth_of_the_epochs() -> None:
    assert [ramp(e, 10, 0.2) for e in range(1, 6)] == [0.0, 0.5, 1.0, 1.0, 1.0]
    assert [ramp(e, 20, 0.2) for e in (1, 3, 5, 20)] == [0.0, 0.5, 1.0, 1.0]
    assert ramp(1, 10, 0.0) == 1.0
    m = model()
    families.get(NAME).begin_epoch(m, 2, 10)
    assert m.ramp == 0.5
    x, y = torch.randn(4, 16, 2), torch.zeros(4, 16)
    y[:, 8:] = 1.0
    m.ramp = 0.0
    torch.manual_seed(1)
    off, parts = sdmae_loss(m, x, y)
    m.ramp = 1.0
    torch.manual_seed(1)
    on, _ = sdmae_loss(m, x, y)
    assert float((on - off).detach()) == pytest.approx(0.5 * parts["discrepancy_anomalies"], rel=1e-5)


def test_the_served_score_is_the_discrepancy_on_the_hidden_last_timesteps_only() -> None:
    m = model().eval()
    x = torch.randn(3, 16, 2)
    with torch.no_grad():
        score, share = m.forward_with_contrib(x)
        last = torch.zeros(16, dtype=torch.bool)
        last[-4:] = True
        teacher, student = m.reconstruct(x, last)
    d = (teacher - student).pow(2).mean(-1)
    assert bool((score[:, :12] == 0).all())
    torch.testing.assert_close(score[:, 12:], (d / (1 + d))[:, 12:])
    torch.testing.assert_close(share.sum(-1), torch.ones(3, 16))
    # the hidden points' own values do not enter their score: causal in what it judges them by
    y = x.clone()
    y[:, -4:] += 100.0
    with torch.no_grad():
        torch.testing.assert_close(m(y), score)


def test_the_bundle_matches_pytorch_and_the_checkpoint_round_trips(tmp_path: Path) -> None:
    from model.bundle import load_bundle
    from model.families.checkpoint import Checkpoint, load_checkpoint
    from model.families.export import export_bundle
    from model.normalize import Normalizer

    m = model().eval()
    norm = Normalizer("zscore", "global").fit(np.random.default_rng(0).normal(size=(200, 2)))
    Checkpoint(m, norm, threshold=0.3, family=NAME).save(tmp_path / "s.pt")
    again = load_checkpoint(tmp_path / "s.pt")
    assert again.family == NAME and again.config == m.cfg
    windows = np.random.default_rng(1).normal(size=(5, 16, 2))
    with torch.no_grad():
        want = m(torch.from_numpy(norm.transform(windows)))
    directory, _ = export_bundle(again, tmp_path / "bundle")
    np.testing.assert_allclose(load_bundle(directory).score_windows(windows), want.numpy(), atol=1e-5, rtol=1e-4)


def test_training_calibrates_at_the_lag_where_a_point_is_among_the_hidden_newest() -> None:
    from evaluation.series import Series
    from training.datasets import as_normal
    from training.train import TrainConfig, train

    values = np.sin(np.arange(300)[:, None] / (4 + np.arange(2))) + np.random.default_rng(0).normal(0, 0.05, (300, 2))
    cfg = families.get(NAME).config({**TINY, "stride": 2})
    ckpt = train([as_normal(Series("a", values))], cfg, TrainConfig(epochs=1, batch_size=32, family=NAME,
                                                                      progress=False, threshold_percentile=99))
    assert ckpt.calibration["score_lag"] == 1  # stride - 1, not window_size - 1
    assert set(ckpt.metrics["history"][0]["parts"]) == {"reconstruction", "discrepancy_normal",
                                                        "discrepancy_anomalies", "ramp"}


def test_the_error_score_sees_the_hidden_points_values_and_both_adds_the_discrepancy() -> None:
    fam = families.get(NAME)
    base = model().eval()
    error = fam.reconfigure(base, score="error")
    both = fam.reconfigure(base, score="both")
    x = torch.randn(2, 16, 2)
    y = x.clone()
    y[:, -1] += 10.0  # a spike at the newest point
    with torch.no_grad():
        torch.testing.assert_close(base(y), base(x))  # the discrepancy cannot see it
        assert bool((error(y)[:, -1] > error(x)[:, -1]).all())  # the teacher's error can
        teacher, student = base.reconstruct(x, base.last)
        d = (teacher - student).pow(2).mean(-1) + (teacher - x).pow(2).mean(-1)
        torch.testing.assert_close(both(x)[:, -4:], (d / (1 + d))[:, -4:])
    with pytest.raises(ValueError, match="score"):
        fam.reconfigure(base, mask_ratio=0.5)
