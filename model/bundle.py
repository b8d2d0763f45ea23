"""The model bundle (numpy + onnxruntime, no torch): manifest schema, atomic write, verified load.

    <bundle>/model.onnx     input "x" float32 (batch, window, input channels) -> "score" float32 (batch, window)
                            (input channels: `channels`, or twice that with deviation channels)
    <bundle>/manifest.json  everything else needed to serve it (see `Manifest`)

The manifest's `model` is the family's own configuration (`model.families`): carried for training and
export, never read here or by the worker. What serving needs is in the manifest's own fields.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from model.errors import BundleError
from model.normalize import Normalizer

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
# Optional: the PyTorch checkpoint the graph was exported from, so `retrain --finetune` can start from
# the served model. Workers never read it.
CHECKPOINT_FILE = "checkpoint.pt"
INPUT_NAME = "x"
OUTPUT_NAME = "score"
# Optional second output: each channel's share of a point's score (batch, window, channels), summing to 1.
CONTRIB_NAME = "contrib"
FORMAT_VERSION = 1
DEFAULT_BUNDLE_DIR = Path(__file__).parent / "default"


class Novelty(BaseModel):
    """Shape novelty served beside the model's score (`model.novelty`): the distance of the last `length`
    points' shape to its nearest neighbour in the series' last `history` points, calibrated per series like
    the raw score; the served score is the larger of the two surprises."""

    model_config = ConfigDict(extra="forbid")

    length: int = Field(default=128, ge=4)
    history: int = Field(default=2048, lt=2**16)
    # the novelty counts only when this many times rarer than the threshold's tail probability
    rarity: float = Field(default=1.0, ge=1.0)

    @model_validator(mode="after")
    def _history_holds_two_shapes(self) -> Novelty:
        if self.history < 2 * self.length:
            raise ValueError(f"novelty history {self.history} must be at least twice its length {self.length}")
        return self


class SeriesCalibration(BaseModel):
    """The per-series calibration a bundle is served with (`model.surprise`): every point's raw score, any
    family's, becomes how rare it is among the same series' own recent raw scores, and `threshold` is on that
    scale. `tail`: the decayed tail sketch, `halflife` points, nothing above 0 before `min_history` scores."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["tail"] = "tail"
    halflife: float = Field(default=5000.0, ge=1.0)
    min_history: int = Field(default=200, ge=0, lt=2**32)
    novelty: Novelty | None = None


class Calibration(BaseModel):
    """How the threshold was chosen (never on test labels), and the per-series calibration served (None:
    the raw score is served, and `threshold` is on the raw scale)."""

    method: str = "best_f1_validation"
    details: dict[str, Any] = Field(default_factory=dict)
    per_series: SeriesCalibration | None = None


class Manifest(BaseModel):
    """`manifest.json`: the bundle describes itself.

    Serving reads `window_size`, `stride`, `channels`, `input_channels` (the graph's input width: the
    channels plus the input features the normalizer adds, such as deviation channels), `score_lag` (the lag
    the threshold was calibrated at, the worker's default), `threshold`, `calibration` and `normalization`.
    `family` and `model` (the family's configuration) are for training and export only."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    format_version: int = FORMAT_VERSION
    family: str = "anomalybert"
    version: str
    model: dict[str, Any]
    window_size: int = Field(ge=1)
    stride: int = Field(ge=1)
    channels: int = Field(ge=1)
    # Optional in bundles written before they were fields: then the normalizer's width and the calibration's
    # score_lag (see `model.serving.serve`).
    input_channels: int | None = Field(default=None, ge=1)
    score_lag: int | None = Field(default=None, ge=0)
    normalization: dict[str, Any]
    threshold: float = Field(ge=0.0, le=1.0)
    calibration: Calibration = Field(default_factory=Calibration)
    training_data: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    created_at: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    onnx: dict[str, Any] = Field(default_factory=lambda: {"input": INPUT_NAME, "output": OUTPUT_NAME})

    @field_validator("format_version")
    @classmethod
    def _known_format(cls, v: int) -> int:
        if v != FORMAT_VERSION:
            raise ValueError(f"unsupported bundle format_version {v} (this build reads {FORMAT_VERSION})")
        return v

    @field_validator("normalization")
    @classmethod
    def _valid_normalization(cls, v: dict[str, Any]) -> dict[str, Any]:
        Normalizer.from_dict(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.stride > self.window_size:
            raise ValueError(f"stride ({self.stride}) exceeds window_size ({self.window_size})")
        expected = self.normalizer.input_channels(self.channels)
        if self.input_channels is not None and self.input_channels != expected:
            raise ValueError(f"input_channels {self.input_channels} disagrees with {self.channels} channel(s) "
                             f"and the normalization (which gives {expected})")
        if self.score_lag is not None and self.score_lag > self.window_size - 1:
            raise ValueError(f"score_lag {self.score_lag} exceeds window_size - 1 ({self.window_size - 1})")
        return self

    @property
    def normalizer(self) -> Normalizer:
        return Normalizer.from_dict(self.normalization)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_version(sha256: str, now: datetime | None = None) -> str:
    """Unique, sortable version: UTC time plus a short content hash, e.g. 2026-11-26T03-10-00Z-ab12cd."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y-%m-%dT%H-%M-%SZ')}-{sha256[:6]}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_bundle(directory: Path, onnx_bytes: bytes, manifest: dict[str, Any],
                 checkpoint_bytes: bytes | None = None) -> Manifest:
    """Write a bundle atomically: build it under a temporary name in the same parent, then rename.

    `manifest` holds everything but `sha256`, `version` and `created_at`, which are filled in here
    unless given. An existing bundle at `directory` is replaced.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    fields = {"created_at": now_iso(), "version": make_version(digest), **manifest, "sha256": digest}
    try:
        m = Manifest(**fields)
    except ValidationError as e:
        raise BundleError(f"invalid manifest: {e}") from e
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        (tmp / MODEL_FILE).write_bytes(onnx_bytes)
        if checkpoint_bytes is not None:
            (tmp / CHECKPOINT_FILE).write_bytes(checkpoint_bytes)
        (tmp / MANIFEST_FILE).write_text(m.model_dump_json(indent=2) + "\n")
        os.chmod(tmp, 0o755)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            os.rename(directory, old)
            os.rename(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return m


def resolve_bundle_dir(path: str | Path) -> Path:
    """A bundle directory, a `model.onnx` inside one, or a registry directory with a `current` pointer."""
    p = Path(path)
    if p.is_file() and p.suffix == ".onnx":
        p = p.parent
    if (p / "current").is_file() and not (p / MODEL_FILE).exists():
        p = p / (p / "current").read_text().strip()
    if not (p / MODEL_FILE).is_file():
        raise BundleError(f"{path}: no {MODEL_FILE} found (expected a bundle directory or a .onnx file)")
    if not (p / MANIFEST_FILE).is_file():
        raise BundleError(f"{path}: no {MANIFEST_FILE} beside {MODEL_FILE}")
    return p


def read_manifest(directory: Path) -> Manifest:
    try:
        return Manifest(**json.loads((directory / MANIFEST_FILE).read_text()))
    except (json.JSONDecodeError, ValidationError, TypeError, ValueError) as e:
        raise BundleError(f"{directory / MANIFEST_FILE}: invalid manifest: {e}") from e


class Bundle:
    """A loaded, verified bundle: manifest, normalizer and an ONNX Runtime session."""

    def __init__(self, directory: Path, manifest: Manifest, threads: int = 1, device: str = "cpu") -> None:
        self.directory = directory
        self.manifest = manifest
        self.normalizer = manifest.normalizer
        self._threads = threads
        self._providers = providers(device)

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def window_size(self) -> int:
        return self.manifest.window_size

    @property
    def stride(self) -> int:
        return self.manifest.stride

    @property
    def channels(self) -> int:
        return self.manifest.channels

    @property
    def input_channels(self) -> int:
        """Width of the graph's input: `channels`, doubled when the normalizer adds deviation channels."""
        return self.normalizer.input_channels(self.channels)

    @property
    def threshold(self) -> float:
        return self.manifest.threshold

    @cached_property
    def session(self) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self._threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            return ort.InferenceSession(str(self.directory / MODEL_FILE), opts, providers=self._providers)
        except Exception as e:  # onnxruntime raises several unrelated types for a bad graph
            raise BundleError(f"{self.directory / MODEL_FILE}: cannot load ONNX graph: {e}") from e

    def run(self, normalized: np.ndarray) -> np.ndarray:
        """Run the graph on already normalized windows (B, W, C) -> (B, W)."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(normalized, np.float32)})[0]

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        """Raw windows (B, W, C) -> scores (B, W) in [0, 1], normalized as the bundle says."""
        if len(windows) == 0:
            return np.empty((0, self.window_size), dtype=np.float32)
        return self.run(self.normalizer.transform(windows))

    @property
    def execution_provider(self) -> str:
        """The ONNX Runtime execution provider the graph runs on (the first of the session's)."""
        return str(self.session.get_providers()[0])

    @cached_property
    def has_contrib(self) -> bool:
        """Whether the graph also gives per-channel contributions (the optional `contrib` output)."""
        return CONTRIB_NAME in {o.name for o in self.session.get_outputs()}

    def score_windows_packed(self, windows: np.ndarray) -> np.ndarray:
        """Raw windows (B, W, C) -> (B, W, 1 + channels): the scores, then the contributions, in one array so that
        batching and failure isolation treat them as one. Only for a graph with the `contrib` output."""
        if not self.has_contrib:
            raise BundleError(f"{self.directory}: the graph has no {CONTRIB_NAME!r} output")
        if len(windows) == 0:
            return np.empty((0, self.window_size, 1 + self.channels), dtype=np.float32)
        x = np.ascontiguousarray(self.normalizer.transform(windows), np.float32)
        score, contrib = self.session.run([OUTPUT_NAME, CONTRIB_NAME], {INPUT_NAME: x})
        return np.concatenate([score[..., None], contrib], axis=-1)

    def smoke_test(self) -> None:
        """One inference on a synthetic window; raises BundleError if the graph disagrees with the manifest."""
        rng = np.random.default_rng(0)
        x = rng.normal(size=(2, self.window_size, self.input_channels))
        try:
            out = self.score_windows(x)
        except BundleError:
            raise
        except Exception as e:  # a graph that loads but fails to run, e.g. wrong channel count
            raise BundleError(f"{self.directory}: smoke inference failed: {e}") from e
        if out.shape != (2, self.window_size):
            raise BundleError(f"{self.directory}: output shape {out.shape}, expected (2, {self.window_size})")
        if not np.all(np.isfinite(out)) or out.min() < 0 or out.max() > 1:
            raise BundleError(f"{self.directory}: smoke inference gave scores outside [0, 1]")
        if self.has_contrib:
            try:
                packed = self.score_windows_packed(x)
            except Exception as e:  # noqa: BLE001 - the contributions output fails to run
                raise BundleError(f"{self.directory}: smoke inference of {CONTRIB_NAME!r} failed: {e}") from e
            if packed.shape != (2, self.window_size, 1 + self.channels):
                raise BundleError(f"{self.directory}: {CONTRIB_NAME!r} shape {packed.shape[:2]} + "
                                  f"({packed.shape[2] - 1},), expected (2, {self.window_size}, {self.channels})")


DEVICES = ("cpu", "cuda", "auto")


def providers(device: str = "cpu") -> list[str]:
    """ONNX Runtime execution providers for a device setting: `cpu`; `cuda` (the CUDA provider, which needs the
    onnxruntime-gpu package and a GPU; the CPU provider stays behind it for the operators CUDA lacks); `auto`
    (CUDA where the installed onnxruntime offers it, else the CPU). Raises BundleError when `cuda` is asked for
    and the installed onnxruntime has no CUDA provider."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise BundleError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not cuda:
        raise BundleError("device 'cuda' needs onnxruntime-gpu (pip install onnxruntime-gpu in place of "
                          f"onnxruntime); this onnxruntime {ort.__version__} offers {ort.get_available_providers()}")
    if device == "cpu" or not cuda:
        return ["CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def load_bundle(path: str | Path = DEFAULT_BUNDLE_DIR, threads: int = 1, verify: bool = True,
                device: str = "cpu") -> Bundle:
    """Load and (by default) verify a bundle: manifest schema, sha256 of the graph, one smoke inference. `device`:
    where ONNX Runtime runs the graph (`providers`)."""
    directory = resolve_bundle_dir(path)
    manifest = read_manifest(directory)
    if verify:
        actual = sha256_file(directory / MODEL_FILE)
        if actual != manifest.sha256:
            raise BundleError(f"{directory}: sha256 mismatch (manifest {manifest.sha256[:12]}, file {actual[:12]})")
    bundle = Bundle(directory, manifest, threads=threads, device=device)
    if verify:
        bundle.smoke_test()
    return bundle
