"""The transformer autoencoder family (`tae`): its named configurations, the served score, the two players of
its adversarial objective, export and checkpoints; and the contamination used to test its robustness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model import families
from model.families.tae import CONFIGS, NAME
from model.families.tae.modules import TransformerAutoencoder, discriminator_loss, generator_loss

TINY = {"window_size": 16, "stride": 4, "channels": 3, "d_model": 16, "n_heads": 2, "enc_layers": 1,
        "dec_layers": 1, "d_ff": 32, "latent_dim": 8, "noise_dim": 4}


def model(config: str = "robust", **changes: object) -> TransformerAutoencoder:
    torch.manual_seed(0)
    fam = families.get(NAME)
    return fam.build(fam.config({**CONFIGS[config]["model"], **TINY, **changes}))  # type: ignore[return-value]


def test_registered_with_its_named_configurations() -> None:
    fam = families.get(NAME)
    assert NAME in families.names() and not fam.supervised and set(fam.configs) == {"robust", "gan-cnn", "plain"}
    robust = fam.config(CONFIGS["robust"]["model"])
    assert (robust.d_model, robust.enc_layers, robust.dec_layers, robust.window_size, robust.stride) == (
        128, 4, 2, 128, 32)
    assert robust.generator and robust.adversary == "pooled"
    gan = fam.config(CONFIGS["gan-cnn"]["model"])
    assert (gan.window_size, gan.adversary, gan.w_rec, gan.w_adversarial, gan.disc_lr) == (100, "cnn", 50.0, 0.05,
                                                                                           1e-5)
    assert CONFIGS["gan-cnn"]["train"] == {"epochs": 30, "batch_size": 64, "lr": 1e-4, "weight_decay": 0.0}
    plain = fam.config(CONFIGS["plain"]["model"])
    assert not plain.adversarial and plain.mask_ratio == 0 and not plain.generator
    with pytest.raises(ValueError, match="adversary"):
        fam.config(adversary="mlp")
    with pytest.raises(ValueError, match="unknown"):
        fam.config(e_layers=2)


@pytest.mark.parametrize("config", ["robust", "gan-cnn", "plain"])
def test_scores_are_the_reconstruction_error_in_range_and_deterministic_when_served(config: str) -> None:
    m = model(config).eval()
    x = torch.randn(3, 16, 3)
    with torch.no_grad():
        score, share = m.forward_with_contrib(x)
        recon, z = m.reconstruct(x)
        again, _ = m.reconstruct(x)
    assert score.shape == (3, 16) and z.shape == (3, 8) and bool(((score >= 0) & (score < 1)).all())
    torch.testing.assert_close(recon, again, rtol=0, atol=0)  # no noise when serving
    err = (recon - x).pow(2)
    torch.testing.assert_close(score, err.mean(-1) / (1 + err.mean(-1)))
    torch.testing.assert_close(share, err / err.sum(-1, keepdim=True))
    torch.testing.assert_close(m(x), score)


def test_the_loss_has_the_parts_its_configuration_names() -> None:
    x = torch.randn(8, 16, 3)
    _, robust = generator_loss(model("robust").train(), x)
    assert set(robust) == {"reconstruction", "masked", "contrastive", "adversarial"}
    _, gan = generator_loss(model("gan-cnn").train(), x)
    assert set(gan) == {"reconstruction", "adversarial"}
    total, plain = generator_loss(model("plain").train(), x)
    assert set(plain) == {"reconstruction"}
    assert float(total.detach()) == pytest.approx(plain["reconstruction"])  # the plain autoencoder: MSE alone


def test_the_total_is_the_weighted_sum_of_the_parts() -> None:
    m = model("robust", w_rec=2.0, w_masked=0.5, w_contrastive=0.25, w_adversarial=3.0).train()
    torch.manual_seed(5)
    total, parts = generator_loss(m, torch.randn(8, 16, 3))
    want = (2.0 * parts["reconstruction"] + 0.5 * parts["masked"] + 0.25 * parts["contrastive"]
            + 3.0 * parts["adversarial"])
    assert float(total.detach()) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("config", ["robust", "gan-cnn"])
def test_the_generator_and_the_discriminator_steps_move_only_their_own_parameters(config: str) -> None:
    """Through the training loop's own epoch: the model's optimizer holds everything but the discriminator,
    the adversary's optimizer the discriminator alone, and each step leaves the other side as it was."""

    from training.train import TrainConfig, _epoch, _Second

    fam = families.get(NAME)
    m = model(config)
    adversary = fam.adversary(m)
    assert adversary is not None and m.discriminator is not None
    disc = {id(p) for p in adversary.parameters}
    assert disc == {id(p) for p in m.discriminator.parameters()}
    gen_params = m.generator_parameters()
    assert not disc & {id(p) for p in gen_params} and len(gen_params) + len(disc) == len(list(m.parameters()))

    def snapshot() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return [p.detach().clone() for p in gen_params], [p.detach().clone() for p in adversary.parameters]

    def moved(before: list[torch.Tensor], params: list[torch.nn.Parameter]) -> bool:
        return any(not torch.equal(b, p.detach()) for b, p in zip(before, params, strict=True))

    x, y = torch.randn(16, 16, 3), torch.zeros(16, 16)
    tc = TrainConfig(epochs=1, batch_size=16, progress=False)
    # The model's step alone (the adversary steps every 2nd step; one batch is one step).
    opt = torch.optim.AdamW(gen_params, lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    gen_before, disc_before = snapshot()
    second = _Second(families.Adversary(adversary.parameters, adversary.loss, adversary.lr, every=2),
                     torch.optim.Adam(adversary.parameters, lr=1e-2))
    _, parts = _epoch(m, fam, x, y, lambda xb, yb: fam.loss(m, xb, yb), opt, sched, tc,
                      torch.Generator().manual_seed(0), "test", second)
    assert moved(gen_before, gen_params) and not moved(disc_before, adversary.parameters)
    assert "discriminator" not in parts and "adversarial" in parts
    # The discriminator's step alone: its loss reaches no generator parameter.
    gen_before, disc_before = snapshot()
    for p in m.parameters():
        p.grad = None
    d_loss = discriminator_loss(m, x)
    d_loss.backward()
    assert all(p.grad is None for p in gen_params)
    second.opt.step()
    assert moved(disc_before, adversary.parameters) and not moved(gen_before, gen_params)


def test_training_records_each_part_and_the_discriminator_per_epoch() -> None:
    from evaluation.series import Series
    from training.datasets import as_normal
    from training.train import TrainConfig, train

    t = np.arange(600)[:, None]
    series = [as_normal(Series("a", np.sin(t / (4 + np.arange(3))) + 0.05 * np.random.default_rng(0).normal(
        size=(600, 3))))]
    fam = families.get(NAME)
    cfg = fam.config({**CONFIGS["robust"]["model"], **TINY})
    ckpt = train(series, cfg, TrainConfig(epochs=2, batch_size=16, lr=1e-3, family=NAME, progress=False,
                                          normalization="zscore", scope="global", threshold_percentile=99))
    history = ckpt.metrics["history"]
    assert len(history) == 2
    assert set(history[0]["parts"]) == {"reconstruction", "masked", "contrastive", "adversarial", "discriminator"}
    assert all(np.isfinite(v) for h in history for v in h["parts"].values())


def test_the_bundle_matches_pytorch_and_the_checkpoint_round_trips(tmp_path: Path) -> None:
    from model.bundle import CONTRIB_NAME, load_bundle
    from model.families.checkpoint import Checkpoint, load_checkpoint
    from model.families.export import export_bundle
    from model.normalize import Normalizer

    m = model("robust").eval()
    norm = Normalizer("zscore", "global").fit(np.random.default_rng(0).normal(size=(200, 3)))
    ckpt = Checkpoint(m, norm, threshold=0.3, family=NAME)
    ckpt.save(tmp_path / "tae.pt")
    again = load_checkpoint(tmp_path / "tae.pt")
    assert again.family == NAME and again.config == m.cfg and again.normalizer == norm
    assert again.model.discriminator is not None  # the adversary travels with the weights (finetuning)
    for a, b in zip(again.model.state_dict().values(), m.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    windows = np.random.default_rng(1).normal(size=(5, 16, 3))
    x = torch.from_numpy(norm.transform(windows))
    with torch.no_grad():
        want_score, want_share = m.forward_with_contrib(x)
    directory, manifest = export_bundle(again, tmp_path / "bundle")
    assert manifest.onnx["contrib"] == CONTRIB_NAME and manifest.family == NAME
    bundle = load_bundle(directory)
    np.testing.assert_allclose(bundle.score_windows(windows), want_score.numpy(), atol=1e-5, rtol=1e-4)
    packed = bundle.score_windows_packed(windows)
    np.testing.assert_allclose(packed[..., 1:], want_share.numpy(), atol=1e-4, rtol=1e-3)


def test_contamination_reaches_its_share_of_windows_and_touches_only_what_it_reports() -> None:
    from training.synth import contaminate, window_share

    rng = np.random.default_rng(0)
    clean = np.sin(np.arange(2000)[:, None] / (5 + np.arange(6))) + 0.05 * rng.normal(size=(2000, 6))
    for share in (0.02, 0.05, 0.10):
        dirty, touched = contaminate(clean, share, 128, 32, np.random.default_rng(1))
        got = window_share(touched, 128, 32)
        assert share <= got < share + 0.15, (share, got)
        changed = (dirty != clean).any(axis=1)
        assert not changed[~touched].any() and changed.any()  # nothing outside the reported points
    same, touched = contaminate(clean, 0.0, 128, 32, rng)
    np.testing.assert_array_equal(same, clean)
    assert not touched.any()
    with pytest.raises(ValueError, match="share"):
        contaminate(clean, 1.0, 128, 32, rng)
