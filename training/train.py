"""Training and finetuning, for every model family: labelled series in, a checkpoint with a validation-chosen
threshold out.

The loop, the split, validation and the threshold are shared; the family (`model.families`) gives the model
and its objective (`Family.build`, `Family.objective`/`loss`, `Family.finetune`).

Each series is split in time: the head (`1 - val_fraction`) gives the training windows, the tail is held
out. Validation scores the held-out points exactly as `detect` does (overlapping windows, averaged),
reports BCE loss and ROC-AUC per epoch, and picks the threshold (best F1) on those points only.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler, OneCycleLR

from evaluation.detect import TorchScorer, score_series
from evaluation.series import Series, require_length
from model import families
from model.errors import DataError
from model.families.checkpoint import Checkpoint, load_checkpoint
from model.normalize import DEFAULT_HALFLIFE, Normalizer
from model.windows import check_lag, make_windows
from training.calibrate import DEFAULT_THRESHOLD_BETA, bce, best_fbeta_threshold, normal_rate_threshold, roc_auc

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation settings; the model's shape lives in its family's config."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    val_fraction: float = 0.2
    seed: int = 0
    normalization: str = "minmax"
    scope: str = "window"
    halflife: float = DEFAULT_HALFLIFE  # series scope: half-life of the running statistics, in points
    family: str = families.DEFAULT_FAMILY  # ignored when finetuning: the checkpoint's family
    finetune: str | None = None  # checkpoint to finetune (AnomalyBERT: its encoder is kept frozen)
    score_lag: int | None = None  # lag of the validation scores and the threshold; None = the family's default
    threshold_beta: float = DEFAULT_THRESHOLD_BETA  # the threshold maximizes F-beta on validation
    # else: the threshold is this percentile of the scores of every training point, heads and validation tails
    # alike (the Anomaly Transformer's rule, on train and validation data only; for unlabelled normal data)
    threshold_percentile: float | None = None
    progress: bool | None = None  # progress bar: None = only on a terminal

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
        if not self.threshold_beta > 0:
            raise ValueError(f"threshold_beta must be > 0, got {self.threshold_beta}")
        if self.threshold_percentile is not None and not 0 < self.threshold_percentile < 100:
            raise ValueError(f"threshold_percentile must be in (0, 100), got {self.threshold_percentile}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass
class EpochStats:
    """What one epoch reports; val fields are None without held-out points (or without both classes)."""

    epoch: int
    train_loss: float
    val_loss: float | None
    val_roc_auc: float | None
    seconds: float
    # The epoch's mean of each named part of the family's loss (unweighted), and `discriminator` for a family
    # with an adversary; empty for a family whose loss is one number.
    parts: dict[str, float] = field(default_factory=dict)


@dataclass
class Holdout:
    """The held-out tail of one series, with the lead-in needed to score it exactly as `detect` would."""

    values: np.ndarray  # (T',) from the first window that covers the tail to the end
    first: int  # index in `values` of the first held-out point
    probability: np.ndarray  # (T' - first,)
    label: np.ndarray  # (T' - first,)


@dataclass
class Prepared:
    """Training windows (normalized) plus the held-out tails."""

    x: torch.Tensor  # (N, W, C) float32, normalized
    y: torch.Tensor  # (N, W) float32, probability targets
    holdouts: list[Holdout] = field(default_factory=list)


def split_point(n: int, window_size: int, val_fraction: float) -> int:
    """Index of the first held-out point; the head keeps at least one full window when it can."""
    cut = n - int(round(val_fraction * n))
    return max(cut, min(n, window_size))


def _holdout(s: Series, values: np.ndarray, cut: int, cfg: Any) -> Holdout | None:
    if cut >= len(s):
        return None
    # Start on the series' window grid so the windows here are exactly the full series' windows.
    start = max(0, cut - cfg.window_size + 1) // cfg.stride * cfg.stride
    assert s.probability is not None and s.labels is not None
    return Holdout(values[start:], cut - start, s.probability[cut:], s.labels[cut:])


def prepare(series: list[Series], cfg: Any, normalizer: Normalizer, val_fraction: float) -> Prepared:
    """Split every series in time, fit the normalizer on the training heads only, build the windows."""
    if any(s.probability is None for s in series):
        raise DataError("training and calibration need labels: every file must carry 'probability' or "
                        "'anomaly_tag'")
    require_length(series, cfg.window_size)
    cuts = [split_point(len(s), cfg.window_size, val_fraction) for s in series]
    normalizer.fit(np.concatenate([s.values[:c] for s, c in zip(series, cuts, strict=True)]))
    # The series scope standardizes point by point with running statistics, over the whole series in
    # order (as the worker does), so the held-out tail continues the statistics of the head.
    prepared = [normalizer.prepare_series(s.values) for s in series]
    xs, ys = [], []
    for s, values, cut in zip(series, prepared, cuts, strict=True):
        assert s.probability is not None
        xs.append(make_windows(values[:cut], cfg.window_size, cfg.stride))  # (N, W, 1)
        ys.append(make_windows(s.probability[:cut], cfg.window_size, cfg.stride)[..., 0])  # (N, W)
    holdouts = [h for s, v, c in zip(series, prepared, cuts, strict=True)
                if (h := _holdout(s, v, c, cfg)) is not None]
    x = torch.from_numpy(normalizer.transform(np.concatenate(xs)))
    y = torch.from_numpy(np.concatenate(ys).astype(np.float32))
    return Prepared(x, y, holdouts)


def holdout_scores(scorer: Callable[[np.ndarray], np.ndarray], holdouts: list[Holdout],
                   cfg: Any, score_lag: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, probability, label) of every held-out point that a window covers, each point's score
    aggregated at `score_lag` as the worker would (None: every covering window). The holdout values are
    already prepared (`Normalizer.prepare_series`)."""
    parts = []
    for h in holdouts:
        scores = score_series(scorer, h.values, cfg.window_size, cfg.stride, score_lag)[h.first:]
        ok = ~np.isnan(scores)
        parts.append((scores[ok], h.probability[ok], h.label[ok]))
    if not parts:
        return np.empty(0), np.empty(0), np.empty(0, np.int8)
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def percentile_threshold(scorer: Callable[[np.ndarray], np.ndarray], series: list[Series], normalizer: Normalizer,
                         cfg: Any, lag: int, percentile: float) -> tuple[float, dict[str, Any]]:
    """The `percentile` of the scores of every point of the training series (training heads and validation
    tails alike, at `lag`, as the worker aggregates them): no labels needed, no test data seen."""
    parts = [score_series(scorer, normalizer.prepare_series(s.values), cfg.window_size, cfg.stride, lag)
             for s in series]
    scores = np.concatenate(parts)
    scores = scores[np.isfinite(scores)]
    threshold = float(np.percentile(scores, percentile))
    return threshold, {"method": "percentile_train_val", "percentile": percentile, "n_points": int(len(scores)),
                       "flagged_share": float((scores >= threshold).mean())}


def fingerprint(series: list[Series]) -> str:
    """sha256 over the values and labels, in order: identifies the training data."""
    h = hashlib.sha256()
    for s in series:
        h.update(np.ascontiguousarray(s.values, np.float64).tobytes())
        if s.probability is not None:
            h.update(np.ascontiguousarray(s.probability, np.float64).tobytes())
    return h.hexdigest()


def _model(cfg: Any, tc: TrainConfig) -> tuple[families.Family, nn.Module, Normalizer]:
    if tc.finetune is None:
        family = families.get(tc.family)
        return family, family.build(cfg), Normalizer(kind=tc.normalization, scope=tc.scope,  # type: ignore[arg-type]
                                                     halflife=tc.halflife)
    base = load_checkpoint(tc.finetune)
    family = families.get(base.family)
    # Same kind and scope as the model was trained with; refitted on the new data.
    return family, family.finetune(base.model), Normalizer(kind=base.normalizer.kind, scope=base.normalizer.scope,
                                                           halflife=base.normalizer.halflife)


class _Parts:
    """Running means of named loss parts over an epoch's batches, weighted by batch size."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, parts: dict[str, float], n: int) -> None:
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * n
            self.counts[k] = self.counts.get(k, 0) + n

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


@dataclass
class _Second:
    """The adversary's optimizer and schedule (`families.Adversary`)."""

    adversary: families.Adversary
    opt: torch.optim.Optimizer


def _epoch(model: nn.Module, family: families.Family, inputs: torch.Tensor, y: torch.Tensor,
           batch_loss: Callable[[torch.Tensor, torch.Tensor], Any], opt: torch.optim.Optimizer,
           sched: LRScheduler, tc: TrainConfig, gen: torch.Generator, label: str,
           second: _Second | None = None) -> tuple[float, dict[str, float]]:
    """One pass over the training batches (cut from `inputs`, the family's objective): the mean loss and the
    means of its named parts. With `second`, the adversary steps after every `every`-th model step, on the
    same batch."""
    from tqdm import tqdm

    family.train_mode(model, tc.finetune is not None)
    order = torch.randperm(len(inputs), generator=gen)
    total, n, parts = 0.0, 0, _Parts()
    params = [p for group in opt.param_groups for p in group["params"]]
    with tqdm(total=len(order), desc=label, unit="win", leave=False, disable=_disable(tc)) as bar:
        for step, i in enumerate(range(0, len(order), tc.batch_size), 1):
            idx = order[i:i + tc.batch_size]
            out = batch_loss(inputs[idx], y[idx])
            loss, named = out if isinstance(out, tuple) else (out, {})
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            if second is not None and step % second.adversary.every == 0:
                second.opt.zero_grad(set_to_none=True)
                d_loss = second.adversary.loss(inputs[idx])
                d_loss.backward()
                nn.utils.clip_grad_norm_(second.adversary.parameters, 1.0)
                second.opt.step()
                named = {**named, "discriminator": float(d_loss.detach())}
            parts.add(named, len(idx))
            total += loss.item() * len(idx)
            n += len(idx)
            bar.update(len(idx))
            bar.set_postfix(loss=f"{total / n:.4f}")
    return total / n, parts.means()


def _disable(tc: TrainConfig) -> bool | None:
    return None if tc.progress is None else not tc.progress


def train(series: list[Series], cfg: Any, tc: TrainConfig,
          on_epoch: Callable[[EpochStats], None] | None = None) -> Checkpoint:
    """Train (or finetune) on labelled series; returns a checkpoint whose threshold was chosen on the
    held-out tails. The same data, config and seed give the same weights."""
    torch.manual_seed(tc.seed)
    family, model, normalizer = _model(cfg, tc)
    cfg = model.cfg
    family.check(cfg, normalizer)
    lag = family.default_lag(cfg) if tc.score_lag is None else tc.score_lag
    check_lag(cfg.window_size, cfg.stride, lag)
    data = prepare(series, cfg, normalizer, tc.val_fraction)  # every series fills a training window
    adversary = family.adversary(model) if tc.finetune is None else None
    theirs = {id(p) for p in adversary.parameters} if adversary else set()
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in theirs]
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    second = _Second(adversary, torch.optim.Adam(adversary.parameters, lr=adversary.lr)) if adversary else None
    # One cycle: a short warm-up to `lr`, then cosine decay; clearly better than a constant rate in the
    # few thousand steps a CPU affords.
    steps = tc.epochs * -(-len(data.x) // tc.batch_size)
    sched = OneCycleLR(opt, max_lr=tc.lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(tc.seed)
    scorer = TorchScorer(Checkpoint(model, normalizer, family=family.name))
    log.info("training on %d windows, %d held-out series tails, %d parameters (%d trainable)",
             len(data.x), len(data.holdouts), sum(p.numel() for p in model.parameters()),
             sum(p.numel() for p in params))
    inputs, batch_loss = family.objective(model, data.x, tc.finetune is not None)
    history: list[EpochStats] = []
    for epoch in range(1, tc.epochs + 1):
        t0 = time.perf_counter()
        family.begin_epoch(model, epoch, tc.epochs)
        train_loss, parts = _epoch(model, family, inputs, data.y, batch_loss, opt, sched, tc, gen,
                                   f"epoch {epoch}/{tc.epochs}", second)
        model.eval()
        scores, prob, label = holdout_scores(scorer, data.holdouts, cfg, lag)
        stats = EpochStats(epoch, train_loss, bce(scores, prob) if len(scores) else None,
                           roc_auc(scores, label), time.perf_counter() - t0, parts)
        history.append(stats)
        log.info("epoch %d: %s", epoch, stats)
        if on_epoch:
            on_epoch(stats)
    if tc.threshold_percentile is not None:
        threshold, calibration = percentile_threshold(scorer, series, normalizer, cfg, lag, tc.threshold_percentile)
    else:
        threshold, calibration = best_fbeta_threshold(scores, label, tc.threshold_beta)
    calibration["score_lag"] = lag
    return Checkpoint(
        model=model.eval(), normalizer=normalizer, threshold=threshold, calibration=calibration, family=family.name,
        metrics={"val_loss": history[-1].val_loss, "val_roc_auc": history[-1].val_roc_auc,
                 "train_loss": history[-1].train_loss, "history": [asdict(h) for h in history]},
        training_data={"n_series": len(series), "n_points": int(sum(len(s) for s in series)),
                       "n_train_windows": len(data.x), "sha256": fingerprint(series),
                       "settings": {k: v for k, v in asdict(tc).items() if k != "progress"} | {"family": family.name}},
    )


def recalibrate(ckpt: Checkpoint, series: list[Series], score_lag: int | None, beta: float,
                val_fraction: float = 0.2, deviation_halflife: float | None = None,
                max_normal_rate: float | None = None, per_series: str | None = None,
                tail_probability: float = 1e-3, novelty: tuple[int, int, float] | bool | None = None,
                **blend: float) -> Checkpoint:
    """The same model with its threshold chosen again: best F-beta at `score_lag` on the validation tails
    of `series` (split as `train` splits them), or, with `max_normal_rate`, the lowest threshold that flags
    at most that share of their normal points. With the training data and split the F-beta threshold is
    the one `train --score-lag L --threshold-beta B` stores, without training again. `blend` (deviation_blend,
    deviation_scale) changes how the served scores blend in the input's deviation first, and
    `deviation_halflife` which deviation they blend in (0: the model input's; > 0: deviation channels with
    their own statistics, `Normalizer.deviation_halflife`); the weights stay.

    `per_series` "tail": serve the scores through the per-series tail sketch (`model.surprise`); the
    threshold is then the surprise of `tail_probability` (a point alerts when it is rarer than that among its
    own series' scores), the same on every series, and the validation tails only report how it does there.
    "none": back to raw scores. None: as the checkpoint is. `novelty` (length, history, rarity): serve the
    larger of the model's and the shape novelty's surprises (`model.novelty`; needs the tail calibration and a
    series-scope normalizer); False: without it; None: as the checkpoint is."""
    family = families.get(ckpt.family)
    if deviation_halflife is not None:
        ckpt = replace(ckpt, normalizer=replace(ckpt.normalizer, deviation_halflife=deviation_halflife))
    if blend:
        ckpt = replace(ckpt, model=family.reconfigure(ckpt.model, **blend))
    family.check(ckpt.config, ckpt.normalizer)
    cfg = ckpt.config
    lag = family.default_lag(cfg) if score_lag is None else score_lag
    check_lag(cfg.window_size, cfg.stride, lag)
    # A copy: `prepare` refits a global normalizer, but the holdouts it returns are raw values for that
    # scope (prepared only for the series scope) and are scored with the checkpoint's own normalizer.
    normalizer = Normalizer.from_dict(ckpt.normalizer.to_dict())
    holdouts = prepare(series, cfg, normalizer, val_fraction).holdouts
    per = ckpt.calibration.get("per_series") if per_series is None else None
    if per_series == "tail":
        from model.bundle import SeriesCalibration

        kept = (ckpt.calibration.get("per_series") or {}).get("novelty")  # unless `novelty` says otherwise
        per = SeriesCalibration(novelty=kept).model_dump()
    if novelty is not None and novelty is not True:
        if per is None:
            raise ValueError("novelty needs a per-series calibration: give per_series tail")
        if novelty and not ckpt.normalizer.pointwise:
            raise ValueError("novelty needs a series-scope (point-by-point) normalizer")
        per = {**per, "novelty": ({"length": novelty[0], "history": novelty[1], "rarity": novelty[2]} if novelty
                                  else None)}
    if per is not None:
        if max_normal_rate is not None:
            raise ValueError("max_normal_rate does not apply to a per-series calibration: give tail_probability")
        return _tail_calibrated(ckpt, holdouts, lag, per, tail_probability, series)
    scores, _, label = holdout_scores(TorchScorer(ckpt), holdouts, cfg, lag)
    if max_normal_rate is not None:
        threshold, calibration = normal_rate_threshold(scores, label, max_normal_rate)
    else:
        threshold, calibration = best_fbeta_threshold(scores, label, beta)
    calibration |= {"score_lag": lag, "val_roc_auc": roc_auc(scores, label),
                    "recalibrated": {"data_sha256": fingerprint(series), "previous_threshold": ckpt.threshold,
                                     "previous": ckpt.calibration}}
    return replace(ckpt, threshold=threshold, calibration=calibration)


def _tail_calibrated(ckpt: Checkpoint, holdouts: list, lag: int, per: dict[str, Any], probability: float,
                     series: list[Series]) -> Checkpoint:
    """`recalibrate` for a per-series calibration: the threshold is the surprise of `probability`."""
    from model.surprise import TailSketch, calibrate_series, surprise_of

    threshold = surprise_of(probability)
    cfg = ckpt.config
    scored, labels = [], []
    shape, scorer = per.get("novelty"), TorchScorer(ckpt)
    for h in holdouts:  # each validation tail calibrated on its own, as the worker calibrates each series
        tail = score_series(scorer, h.values, cfg.window_size, cfg.stride, lag)[h.first:]
        covered = ~np.isnan(tail)  # the points a window covers, as `holdout_scores` keeps them
        raw, label = tail[covered], h.label[covered]
        if shape:  # the held-out part's novelty, against the series' history before it too
            from model.novelty import as_history, combine_surprise, novelty

            found = novelty(as_history(h.values, cfg.channels), shape["length"], shape["history"], start=h.first)
            scored.append(combine_surprise(raw, found[covered], (per["halflife"], per["min_history"]),
                                           shape.get("rarity", 1.0)))
        else:
            scored.append(calibrate_series(raw, TailSketch(per["halflife"], per["min_history"])))
        labels.append(label)
    scores, label = np.concatenate(scored), np.concatenate(labels)
    flagged = np.nan_to_num(scores, nan=0.0) >= threshold
    calibration = {"method": "tail_probability", "tail_probability": probability, "per_series": per,
                   "score_lag": lag, "val_flagged_share": float(flagged.mean()) if len(flagged) else 0.0,
                   "recalibrated": {"data_sha256": fingerprint(series), "previous_threshold": ckpt.threshold,
                                    "previous": ckpt.calibration}}
    return replace(ckpt, threshold=threshold, calibration=calibration)
