"""Offline batch retraining: the user's telemetry in, a gated candidate bundle published to the registry out.

Unlabelled telemetry (the common case) is trained self-supervised: anomalies of the 8 synthetic kinds
are injected into the user's own signal and their labels used (AnomalyBERT's "data degradation").
Labelled data (`anomaly_tag` / `probability`) is used as given. Each series' tail is held out as the
gate slice; the candidate is published only if it is not worse than the current model there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.detect import score_series
from evaluation.series import Series, data_files
from model.errors import DataError
from model.normalize import Normalizer
from training.calibrate import DEFAULT_THRESHOLD_BETA, best_f1_threshold, roc_auc
from training.synth import MIN_SAMPLES, inject_anomalies

log = logging.getLogger(__name__)

WindowScorer = Callable[[np.ndarray], np.ndarray]
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def _read_table(path: Path) -> Any:
    import pandas as pd

    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise DataError(f"{path}: not a readable table ({str(e).strip().splitlines()[0]})") from e


def _to_series(name: str, frame: Any, where: str) -> Series:
    import pandas as pd

    values = pd.to_numeric(frame["value"], errors="coerce").to_numpy(np.float64)
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise DataError(f"{where}: series {name!r}: value {frame['value'].iloc[bad]!r} is not a finite number")
    s = Series(name=name, timestamps=frame["timestamp"].to_numpy(), values=values)
    if "probability" in frame or "anomaly_tag" in frame:
        prob = frame["probability"] if "probability" in frame else frame["anomaly_tag"]
        s.probability = pd.to_numeric(prob, errors="coerce").fillna(0).clip(0, 1).to_numpy(np.float64)
        tag = frame["anomaly_tag"] if "anomaly_tag" in frame else prob >= 0.5
        s.labels = pd.to_numeric(tag, errors="coerce").fillna(0).to_numpy().astype(np.int8)
    return s


def load_tables(paths: list[Path], series_ids: set[str] | None = None) -> list[Series]:
    """Series from CSV/Parquet files with `timestamp, value[, series_id][, anomaly_tag, probability]`.

    Rows are grouped by `series_id` (or the file name when absent) and kept in file order.
    """
    out: list[Series] = []
    for path in [f for p in paths for f in data_files(Path(p), TABLE_SUFFIXES)]:
        frame = _read_table(path)
        missing = {"timestamp", "value"} - set(frame.columns)
        if missing:
            raise DataError(f"{path}: missing column(s) {sorted(missing)} (found {sorted(map(str, frame.columns))})")
        groups = frame.groupby("series_id", sort=False) if "series_id" in frame else [(path.stem, frame)]
        for sid, part in groups:
            if series_ids is None or str(sid) in series_ids:
                out.append(_to_series(str(sid), part.reset_index(drop=True), str(path)))
    if not out:
        raise DataError("no series left to train on" + (f" (series ids {sorted(series_ids)})" if series_ids else ""))
    return out


def degrade(series: list[Series], rng: np.random.Generator, copies: int,
            true_spans: Callable[[Series], np.ndarray | None] | None = None) -> list[Series]:
    """Labelled series as given; each unlabelled one as `copies` versions with injected anomalies. `true_spans`
    gives a series' points known to be anomalous (alerts an operator marked true), labelled 1 in every copy."""
    out: list[Series] = []
    for s in series:
        if s.probability is not None:
            out.append(s)
            continue
        known = true_spans(s) if true_spans is not None else None
        for k in range(copies):
            values, prob = inject_anomalies(s.values, rng)
            if known is not None:
                prob = np.maximum(prob, known.astype(np.float64))
            out.append(Series(name=f"{s.name}#inj{k}", timestamps=s.timestamps, values=values, probability=prob,
                              labels=(prob >= 0.5).astype(np.int8)))
    return out


def split_gate(series: list[Series], fraction: float, min_points: int) -> tuple[list[Series], list[Series]]:
    """Cut each series in time: the head trains, the tail (`fraction`, at least `min_points`) is the gate slice.

    A series too short for both parts is left out with a warning (a fleet's new or sparse series should not
    stop a retrain); when none is long enough the run stops with a one-line error."""
    heads, tails, short = [], [], []
    for s in series:
        n_tail = max(int(round(fraction * len(s))), min_points)
        if len(s) - n_tail < min_points:
            short.append(f"{s.name!r} ({len(s)})")
            continue
        heads.append(_slice(s, 0, len(s) - n_tail))
        tails.append(_slice(s, len(s) - n_tail, len(s)))
    need = max(2 * min_points, int(np.ceil(min_points / (1 - fraction)))) if fraction < 1 else 0
    if not heads:
        raise DataError(f"every series is too short to train and hold out a gate slice (at least about {need} "
                        f"points each): {', '.join(short[:5])}{' ...' if len(short) > 5 else ''}")
    if short:
        log.warning("left out %d series too short to train and hold out a gate slice (at least about %d points "
                    "each): %s%s", len(short), need, ", ".join(short[:5]), " ..." if len(short) > 5 else "")
    return heads, tails


def _slice(s: Series, a: int, b: int) -> Series:
    return replace(s, timestamps=s.timestamps[a:b], values=s.values[a:b],
                   probability=None if s.probability is None else s.probability[a:b],
                   labels=None if s.labels is None else s.labels[a:b])


@dataclass
class GateResult:
    """One model's figures on the gate slice."""

    roc_auc: float | None
    best_f1: float
    n_points: int
    n_anomalous: int


def gate_metrics(score_windows: WindowScorer, gate: list[Series], window_size: int, stride: int,
                 normalizer: Normalizer | None = None) -> GateResult:
    """ROC-AUC and best F1 (over thresholds) of per-point scores, computed as `detect` scores them."""
    scores, labels = [], []
    for s in gate:
        sc = score_series(score_windows, s.values, window_size, stride, normalizer=normalizer)
        ok = ~np.isnan(sc)
        scores.append(sc[ok])
        labels.append(s.labels[ok])  # type: ignore[index]
    y, x = np.concatenate(labels), np.concatenate(scores)
    _, cal = best_f1_threshold(x, y)
    return GateResult(roc_auc(x, y), float(cal.get("f1", 0.0)), int(len(y)), int(y.sum()))


def not_worse(candidate: GateResult, current: GateResult, tolerance: float = 0.0) -> bool:
    """The gate: the candidate's ROC-AUC and best F1 are each at least the current model's (minus tolerance)."""
    if candidate.roc_auc is None or current.roc_auc is None:
        return candidate.best_f1 >= current.best_f1 - tolerance
    return (candidate.roc_auc >= current.roc_auc - tolerance
            and candidate.best_f1 >= current.best_f1 - tolerance)


@dataclass
class RetrainPlan:
    """What `retrain` was asked to do."""

    epochs: int = 5
    seed: int = 0
    finetune: bool = True
    copies: int = 4
    gate_fraction: float = 0.2
    tolerance: float = 0.0
    lr: float = 2e-3
    batch_size: int = 64
    progress: bool | None = None
    model_overrides: dict[str, Any] = field(default_factory=dict)
    family: str | None = None  # None: the current model's family
    feedback: list[Any] = field(default_factory=list)  # training.feedback.Verdict: operators' verdicts on alerts


def prepare_data(raw: list[Series], plan: RetrainPlan, window_size: int,
                 fed: dict[str, list[Any]] | None = None) -> tuple[list[Series], list[Series]]:
    """(training series, gate series), both labelled; unlabelled input gets injected anomalies. `fed`: the
    operators' verdicts per series (`training.feedback.matched`): each fed-back alert is added as labelled
    segments of its own, and alerts marked true are anomalies in every injected copy of their series."""
    from training.feedback import feedback_segments, label_true_spans

    min_points = max(window_size * 2, MIN_SAMPLES)
    heads, tails = split_gate(raw, plan.gate_fraction, min_points)
    train_rng, gate_rng = np.random.default_rng([plan.seed, 1]), np.random.default_rng([plan.seed, 2])
    fed = fed or {}
    train = degrade(heads, train_rng, plan.copies, lambda s: label_true_spans(s, fed.get(s.name, [])))
    # The segments come from the whole series: most verdicts are on recent alerts, which lie in the gate slice.
    train += feedback_segments(raw, fed, window_size, plan.copies)
    # The gate slice gets one injected version per series, from its own generator: both models are
    # judged on exactly the same points and labels.
    return train, degrade(tails, gate_rng, 1)


@dataclass
class RetrainOutcome:
    """The candidate, both models' gate figures and the decision."""

    candidate: Any  # model.families.checkpoint.Checkpoint
    current: GateResult
    new: GateResult
    accepted: bool
    base_version: str
    # On the fed-back alerts (training.feedback.FeedbackPrecision), current and candidate; None without feedback.
    feedback: tuple[Any, Any] | None = None


def _threshold_beta(current: Any) -> float:
    """The F-beta the current model's threshold was chosen with (best F1 for older bundles)."""
    cal = current.manifest.calibration
    if cal.method == "best_f1_validation":
        return 1.0
    return float(cal.details.get("beta", DEFAULT_THRESHOLD_BETA))


def _keep_per_series_calibration(candidate: Any, current: Any) -> Any:
    """A candidate of a model served through a per-series calibration is served the same way: the same
    calibration and the current threshold on its scale (a tail probability means the same for any raw score),
    instead of the F-beta threshold training chose on raw scores (recorded under `trained`)."""
    from dataclasses import replace

    cal = current.manifest.calibration
    if cal.per_series is None:
        return candidate
    kept = {"method": cal.method, **{k: v for k, v in cal.details.items() if k not in ("recalibrated", "trained")},
            "per_series": cal.per_series.model_dump(), "score_lag": candidate.calibration.get("score_lag"),
            "trained": {"threshold": candidate.threshold, **candidate.calibration}}
    return replace(candidate, threshold=current.threshold, calibration=kept)


def run_retrain(raw: list[Series], current_dir: Path, plan: RetrainPlan) -> RetrainOutcome:
    """Train a candidate (finetuning the current model, or from scratch) and gate it against the current one."""
    from evaluation.detect import TorchScorer
    from model import families
    from model.bundle import CHECKPOINT_FILE, load_bundle
    from model.serving import default_lag as serve_default_lag
    from training.train import TrainConfig, train

    current = load_bundle(current_dir)
    base_ckpt = current.directory / CHECKPOINT_FILE
    if plan.finetune and not base_ckpt.is_file():
        raise DataError(f"the current model {current.version} has no {CHECKPOINT_FILE} to finetune; "
                        "use --from-scratch")
    name = plan.family or current.manifest.family
    if plan.finetune and name != current.manifest.family:
        raise DataError(f"finetuning continues the current model's family ({current.manifest.family}); "
                        f"use --from-scratch to train a {name} model")
    family = families.get(name)
    # A new family starts from its own defaults, in the served window and channels.
    base = current.manifest.model if name == current.manifest.family else {
        "window_size": current.window_size, "stride": current.stride, "channels": current.channels}
    cfg = family.config(base, **({} if plan.finetune else plan.model_overrides))
    from training.feedback import matched

    fed = matched(raw, plan.feedback) if plan.feedback else {}
    train_series, gate = prepare_data(raw, plan, cfg.window_size, fed)
    # The candidate's threshold is calibrated at the lag the current model is served with.
    lag = min(serve_default_lag(current.manifest), cfg.window_size - 1)
    tc = TrainConfig(family=name, epochs=plan.epochs, batch_size=plan.batch_size, lr=plan.lr, seed=plan.seed,
                     normalization=current.normalizer.kind, scope=current.normalizer.scope,
                     halflife=current.normalizer.halflife, threshold_beta=_threshold_beta(current),
                     finetune=str(base_ckpt) if plan.finetune else None, progress=plan.progress,
                     score_lag=max(lag, cfg.stride - 1))
    log.info("retraining on %d series (%d points), gate slice %d series",
             len(train_series), sum(len(s) for s in train_series), len(gate))
    candidate = _keep_per_series_calibration(train(train_series, cfg, tc), current)
    candidate.training_data["base_version"] = current.version
    current_result = gate_metrics(current.score_windows, gate, current.window_size, current.stride,
                                  current.normalizer)
    new_result = gate_metrics(TorchScorer(candidate), gate, cfg.window_size, cfg.stride, candidate.normalizer)
    candidate.metrics["gate"] = {"candidate": new_result.__dict__, "current": current_result.__dict__,
                                 "base_version": current.version}
    feedback = _feedback_precision(current.directory, candidate, raw, fed) if fed else None
    if feedback is not None:
        candidate.metrics["gate"]["feedback"] = {"current": feedback[0].__dict__, "candidate": feedback[1].__dict__}
    return RetrainOutcome(candidate, current_result, new_result,
                          not_worse(new_result, current_result, plan.tolerance), current.version, feedback)


def _feedback_precision(current_dir: Path, candidate: Any, raw: list[Series], fed: dict[str, list[Any]]) -> tuple:
    """Both models on the fed-back alerts, served as `detect` serves them (the candidate has trained on them)."""
    import tempfile

    from training.feedback import feedback_precision

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "candidate.pt"
        candidate.save(path)
        return feedback_precision(current_dir, raw, fed), feedback_precision(path, raw, fed)


async def read_topic(kafka: Any, topic: str, since_ms: int | None, until_ms: int | None,
                     max_points: int | None, series_ids: set[str] | None, channels: int = 1,
                     max_id_length: int = 256) -> list[Series]:
    """A bounded read of the telemetry topic (no consumer group, nothing committed): from `since_ms`
    (or the start) to the end offsets seen at the start, stopping at `max_points`; points whose `ts` is
    past `until_ms` are left out. Each message is validated by the worker's own parser
    (`stream.records.parse_telemetry`, `channels` values each): what the worker dead-letters is skipped
    here (and counted), so retraining learns from exactly the points the worker scores."""

    from aiokafka import AIOKafkaConsumer, TopicPartition

    from stream.errors import InvalidRecord
    from stream.kafka import client_options
    from stream.records import parse_telemetry

    consumer = AIOKafkaConsumer(**client_options(kafka), group_id=None, enable_auto_commit=False)
    await consumer.start()
    points: dict[str, list[tuple[int, tuple[float, ...]]]] = {}
    skipped = 0
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not parts:
            raise DataError(f"topic {topic!r} does not exist or has no partitions")
        consumer.assign(parts)
        end = await consumer.end_offsets(parts)
        await _seek_start(consumer, parts, since_ms)
        remaining = {tp for tp in parts if await consumer.position(tp) < end[tp]}
        n = 0
        while remaining and (max_points is None or n < max_points):
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for records in batch.values():
                for r in records[:None if max_points is None else max(0, max_points - n)]:
                    try:
                        msg = parse_telemetry(r.value, r.key, channels, max_id_length)
                    except InvalidRecord:
                        skipped += 1
                        continue
                    if (series_ids is None or msg.series_id in series_ids) \
                            and (until_ms is None or msg.ts <= until_ms):
                        points.setdefault(msg.series_id, []).append((msg.ts, msg.channels))
                        n += 1
            # Done with a partition once past the end seen at the start. Records of the last fetch beyond
            # it are kept: some brokers report an end offset inside the last multi-record batch.
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    if not points:
        raise DataError(f"no usable points read from topic {topic!r}")
    log.info("read %d points of %d series from %s (%d invalid messages skipped, as the worker dead-letters them)",
             sum(map(len, points.values())), len(points), topic, skipped)
    return [_points_series(sid, pts) for sid, pts in points.items()]


async def _seek_start(consumer: Any, parts: list[Any], since_ms: int | None) -> None:
    if since_ms is None:
        await consumer.seek_to_beginning(*parts)
        return
    found = await consumer.offsets_for_times({tp: since_ms for tp in parts})
    for tp in parts:
        if found.get(tp) is None:
            await consumer.seek_to_end(tp)
        else:
            consumer.seek(tp, found[tp].offset)


def _points_series(sid: str, pts: list[tuple[int, tuple[float, ...]]]) -> Series:
    """The points the worker accepts, in arrival order: a point whose ts is not newer than the last accepted
    one is a duplicate or late point, left out as the worker leaves it out."""
    ts: list[int] = []
    values: list[tuple[float, ...]] = []
    for t, v in pts:
        if not ts or t > ts[-1]:
            ts.append(t)
            values.append(v)
    matrix = np.array(values, dtype=np.float64)
    return Series(name=sid, timestamps=np.array(ts, dtype=np.int64),
                  values=matrix[:, 0] if matrix.shape[1] == 1 else matrix)


def publish_candidate(candidate: Any, registry: Path) -> tuple[str, Path]:
    """Export the candidate and publish it to the registry as current; returns (version, bundle path)."""
    import tempfile

    from model.families.export import export_bundle
    from model.registry import Registry

    reg = Registry(registry)
    registry.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".candidate-", dir=registry) as tmp:
        directory, _ = export_bundle(candidate, Path(tmp) / "bundle")
        version = reg.publish(directory, promote=True)
    return version, reg.path(version)


async def announce(kafka: Any, version: str, path: Path) -> None:
    """Tell every worker on the compacted `model-updates` topic that `version` is current."""
    from aiokafka import AIOKafkaProducer

    from model.bundle import MODEL_FILE, sha256_file
    from stream.kafka import client_options, ensure_topics
    from stream.records import ModelUpdate, to_json

    topic = kafka.topics.model_updates
    await ensure_topics(kafka, [topic], compacted=[topic])
    producer = AIOKafkaProducer(**client_options(kafka), acks="all")
    await producer.start()
    try:
        body = ModelUpdate(version=version, uri=str(path.resolve()), sha256=sha256_file(path / MODEL_FILE))
        await producer.send_and_wait(topic, to_json(body), key=b"current")
    finally:
        await producer.stop()
