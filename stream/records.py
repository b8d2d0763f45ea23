"""Messages: raw telemetry bytes in -> a validated `Telemetry` point (or `InvalidRecord`); scores, alerts and
dead letters out as JSON bytes.

Dead letters carry the original key and value base64-encoded (`key_b64`, `value_b64`): lossless for any
bytes, including invalid UTF-8, which a text field could not promise.
"""

from __future__ import annotations

import base64
import hashlib
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator, model_validator

from stream.errors import InvalidRecord

_INT64 = 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def parse_ts(v: object) -> int:
    """An integer (any monotonic unit) or an RFC 3339 string (-> epoch milliseconds)."""
    if isinstance(v, bool):
        raise ValueError("ts must be an integer or an RFC 3339 string, not a boolean")
    if isinstance(v, int):
        if not -_INT64 <= v <= _INT64:
            raise ValueError("ts does not fit in 64 bits")
        return v
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v)
        except ValueError as e:
            raise ValueError(f"ts {v[:40]!r} is not an RFC 3339 timestamp") from e
        if dt.tzinfo is None:
            raise ValueError(f"ts {v[:40]!r} has no UTC offset (RFC 3339 requires one, e.g. 'Z')")
        # Exact integer arithmetic: float seconds would round some milliseconds.
        return (dt - _EPOCH) // _MS
    raise ValueError(f"ts must be an integer or an RFC 3339 string, got {type(v).__name__}")


class Telemetry(BaseModel):
    """One point of one series: `value` for one channel or `values` for several."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)

    series_id: str = Field(min_length=1)
    ts: int
    # Within float32's range, which the model computes in: a larger value could only reach it as inf, and
    # would leave the series' running statistics infinite (its scores deaf) for good.
    value: float | None = Field(None, strict=True, ge=-FLOAT32_MAX, le=FLOAT32_MAX)
    # Strict per item too: a string or a boolean among the values is refused, as it is for `value`.
    values: tuple[Annotated[float, Strict(), Field(ge=-FLOAT32_MAX, le=FLOAT32_MAX)], ...] | None = Field(
        None, strict=True)

    @field_validator("ts", mode="before")
    @classmethod
    def _ts(cls, v: object) -> int:
        return parse_ts(v)

    @field_validator("series_id")
    @classmethod
    def _printable(cls, v: str) -> str:
        if not v.isprintable():
            raise ValueError("series_id must be printable (no control characters)")
        return v

    @model_validator(mode="after")
    def _one_of_value_values(self) -> Telemetry:
        if (self.value is None) == (self.values is None):
            raise ValueError("give exactly one of 'value' (one channel) or 'values' (several)")
        if self.values is not None and len(self.values) == 0:
            raise ValueError("'values' must not be empty")
        return self

    @property
    def channels(self) -> tuple[float, ...]:
        return (self.value,) if self.value is not None else tuple(self.values or ())


def parse_telemetry(raw: bytes | None, key: bytes | None, channels: int, max_id_length: int) -> Telemetry:
    """Validate one message; raises InvalidRecord(code, reason) for anything the worker cannot score."""
    if not raw:
        raise InvalidRecord("empty", "empty message value")
    point = _validated(Telemetry, raw)
    if len(point.series_id) > max_id_length:
        raise InvalidRecord(
            "series_id_too_long",
            f"series_id has {len(point.series_id)} characters, at most {max_id_length} allowed",
        )
    if key and key != point.series_id.encode():
        raise InvalidRecord("key_mismatch", "message key differs from series_id (the key must be the series id)")
    values = point.channels
    if len(values) != channels:
        raise InvalidRecord("channels_mismatch", f"{len(values)} channel(s), the model expects {channels}")
    if not all(map(math.isfinite, values)):  # belt and braces: allow_inf_nan covers JSON input
        raise InvalidRecord("invalid_field", "values must be finite")
    return point


_M = TypeVar("_M", bound=BaseModel)


def _validated(model: type[_M], raw: bytes) -> _M:
    """`raw` parsed into `model`, or InvalidRecord: `invalid_json` when it is not JSON, else `invalid_field`."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        kind = "invalid_json" if any(err["type"] == "json_invalid" for err in e.errors()) else "invalid_field"
        raise InvalidRecord(kind, _short(e)) from e


def _short(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:3]:
        loc = ".".join(str(x) for x in err["loc"]) or "message"
        msg = err["msg"]
        if err["type"] in ("less_than_equal", "greater_than_equal") and loc.startswith("value"):
            msg = f"{err['input']:.4g} is beyond +-{FLOAT32_MAX:.4g} (float32, which the model computes in)"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


class Contribution(BaseModel):
    """One channel's share of a multichannel point's score (`ScoreMessage.contrib`)."""

    channel: int = Field(ge=0, description="the channel's index in the point's `values`")
    share: float = Field(ge=0.0, le=1.0, description="its share of the point's score; all channels' sum to 1")


class ScoreMessage(BaseModel):
    """`scores`: one per accepted point, once final."""

    model_config = ConfigDict(protected_namespaces=())

    series_id: str
    ts: int
    value: float | None = None
    values: list[float] | None = None
    score: float
    n_windows: int
    is_anomaly: bool
    threshold: float
    model_version: str
    # Only from a calibrated model (the manifest's `calibration.per_series`): the mean window score that
    # `score`, its surprise for this series, was computed from.
    raw_score: float | None = None
    # Only for a multichannel series whose model gives per-channel contributions: the channels that contribute
    # most to the score (`scoring.top_contributors`, largest first), as indices into `values` and shares of
    # the score (all the series' channels' shares sum to 1).
    contrib: list[Contribution] | None = None


class AlertMessage(BaseModel):
    """`alerts`: hysteresis events; `closed_ts` only on `closed`."""

    model_config = ConfigDict(protected_namespaces=())

    series_id: str
    alert_id: str
    state: Literal["open", "closed"]
    opened_ts: int
    peak_ts: int
    peak_score: float
    threshold: float
    closed_ts: int | None = None
    model_version: str


# Longest `reason` a dead letter carries (a validation message can quote the input).
MAX_REASON_CHARS = 1000
# What a dead letter keeps of a refused message's bytes when none is given (`KafkaSettings`).
DEFAULT_MAX_KEPT_BYTES = 65_536


class DeadLetter(BaseModel):
    """`telemetry.dlq`: the original bytes, where they came from and why they were refused.

    The value and the key are kept whole up to `max_bytes` each; a longer one keeps its first `max_bytes`
    bytes, and `value_truncated` (`key_truncated`) is true, `value_bytes` (`key_bytes`) gives its size and
    `value_sha256` its hash, so that a dead letter always fits the producer's request limit."""

    code: str
    reason: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    key_b64: str | None = None
    key_bytes: int | None = None
    key_truncated: bool | None = None
    value_b64: str
    value_bytes: int
    value_sha256: str
    value_truncated: bool | None = None
    worker: str
    dead_at_ms: int = Field(default_factory=lambda: int(time.time() * 1000))

    @classmethod
    def of(
        cls,
        err: InvalidRecord,
        *,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int | None,
        key: bytes | None,
        value: bytes | None,
        worker: str,
        max_bytes: int = DEFAULT_MAX_KEPT_BYTES,
    ) -> DeadLetter:
        value = value or b""
        reason = err.reason if len(err.reason) <= MAX_REASON_CHARS else err.reason[: MAX_REASON_CHARS - 3] + "..."
        cut_value = len(value) > max_bytes
        cut_key = key is not None and len(key) > max_bytes
        if cut_value:
            reason += f" (value truncated: the first {max_bytes} of {len(value)} bytes are kept)"
        return cls(
            code=err.code,
            reason=reason,
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp_ms=timestamp_ms,
            worker=worker,
            key_b64=base64.b64encode(key[:max_bytes]).decode() if key is not None else None,
            key_bytes=len(key) if cut_key else None,
            key_truncated=True if cut_key else None,
            value_b64=base64.b64encode(value[:max_bytes]).decode(),
            value_bytes=len(value),
            value_sha256=hashlib.sha256(value).hexdigest(),
            value_truncated=True if cut_value else None,
        )

    def original_value(self) -> bytes:
        """The refused value, or its first bytes when `value_truncated`."""
        return base64.b64decode(self.value_b64)


def top_contributors(shares: tuple[float, ...], n: int) -> list[Contribution]:
    """The `n` channels with the largest shares, largest first (ties: the lower channel first). Shares are
    clipped to [0, 1], so that a family whose contributions stray (rounding, or not normalized) cannot make
    the message invalid and stop the partition."""
    order = sorted(range(len(shares)), key=lambda c: (-shares[c], c))[:n]
    return [Contribution(channel=c, share=round(min(max(shares[c], 0.0), 1.0), 6)) for c in order]


def to_json(msg: BaseModel) -> bytes:
    """Compact JSON bytes without nulls (a score has either `value` or `values`)."""
    return msg.model_dump_json(exclude_none=True).encode()


class ModelUpdate(BaseModel):
    """`model-updates` (internal, compacted, key `current`): a new bundle is current; every worker loads it.

    What `training.retrain.announce` publishes. Workers act on `uri` alone, and with a registry configured
    they re-read its `current` pointer instead; `version` and `sha256` let any other reader of the topic
    tell versions apart and check the graph.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: str = Field(min_length=1, description="the bundle's manifest version, e.g. 2026-11-26T03-10-00Z-ab12cd")
    uri: str = Field(min_length=1, description="absolute path of the bundle directory (a registry version)")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the bundle's model.onnx, lowercase hex")


# Longest operator note a feedback message may carry.
MAX_NOTE_CHARS = 1000


class Feedback(BaseModel):
    """`feedback` (in, compacted, key = alert id): an operator's verdict on an alert. `anomalybert feedback`
    publishes it; any tool may. The workers count verdicts and dead-letter what they cannot read."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    alert_id: str = Field(min_length=3, description="the alert's id, `<series_id>:<opened_ts>`, as in `alerts`")
    verdict: Literal["true", "false"] = Field(description="`true`: a real anomaly; `false`: a false alarm")
    note: str | None = Field(None, max_length=MAX_NOTE_CHARS, description="free text from the operator")
    at: int = Field(description="when the verdict was given, epoch milliseconds")

    @field_validator("alert_id")
    @classmethod
    def _alert_id(cls, v: str) -> str:
        series, sep, opened = v.rpartition(":")
        if not sep or not series or not opened.lstrip("-").isdigit():
            raise ValueError("alert_id must be `<series_id>:<opened_ts>` (an integer after the last ':')")
        if not v.isprintable():
            raise ValueError("alert_id must be printable (no control characters)")
        return v

    @property
    def series_id(self) -> str:
        return self.alert_id.rpartition(":")[0]

    @property
    def opened_ts(self) -> int:
        return int(self.alert_id.rpartition(":")[2])

    @property
    def is_true(self) -> bool:
        return self.verdict == "true"


def parse_feedback(raw: bytes | None, key: bytes | None) -> Feedback:
    """Validate one feedback message; raises InvalidRecord(code, reason) for one the worker cannot read."""
    if not raw:
        raise InvalidRecord("empty", "empty message value (a tombstone: no verdict)")
    fb = _validated(Feedback, raw)
    if key and key != fb.alert_id.encode():
        raise InvalidRecord("key_mismatch", "message key differs from alert_id (the key must be the alert id, so "
                                            "that compaction keeps each alert's latest verdict)")
    return fb
