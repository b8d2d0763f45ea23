"""The worker's one settings tree: environment (ANOMALYBERT_SECTION__FIELD) and CLI options in, sections out.

Build it only at entry points (`stream.cli`) and in test fixtures; everything else receives its section.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.bundle import DEFAULT_BUNDLE_DIR


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TopicNames(_Section):
    """Topic names; every one is created at start-up when absent."""

    telemetry: str = "telemetry"
    scores: str = "scores"
    alerts: str = "alerts"
    dlq: str = "telemetry.dlq"
    model_updates: str = "model-updates"
    feedback: str = "feedback"  # operators' verdicts on alerts (compacted, key = alert id)
    # The topics created compacted: each key's latest message is what matters.
    COMPACTED: ClassVar[tuple[str, ...]] = ("model_updates", "feedback")

    @field_validator("*")
    @classmethod
    def _legal_name(cls, v: str) -> str:
        if not v or len(v) > 249 or any(not (c.isalnum() or c in "._-") for c in v):
            raise ValueError(f"invalid Kafka topic name {v!r} (letters, digits, '.', '_', '-'; at most 249)")
        return v


class KafkaSettings(_Section):
    """Broker address, credentials, consumer group and the topics."""

    bootstrap: str = "localhost:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None
    group_id: str = "anomalybert-stream"
    topics: TopicNames = Field(default_factory=TopicNames)
    partitions: int = Field(8, ge=1, description="partition count for topics created at start-up")
    replication_factor: int = Field(1, ge=1)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    session_timeout_s: float = Field(30.0, gt=0)
    heartbeat_interval_s: float = Field(3.0, gt=0)
    rebalance_timeout_s: float = Field(60.0, gt=0)
    commit_interval_s: float = Field(2.8, gt=0)
    request_timeout_s: float = Field(30.0, gt=0)
    # Measured with `anomalybert bench` latency runs on the local Tansu broker (100 series, 600 points/s, lag 0,
    # 2 shared cores): faust's fixed 1500 ms gave p50 573 ms; 50 ms gave 43 ms, 10 ms 42 ms. Apache Kafka
    # answers a fetch as soon as a record is there, so a low value only makes an idle worker fetch more often.
    # Tansu 0.6 (memory storage) also spends the wait listing every record batch of each partition fetched
    # and returns nothing from one it has not listed by then: at 10 ms, from ~15,000 batches per partition on
    # the worker stalls (fetches come back empty in a loop). For long-lived topics on that broker set 500
    # (Apache Kafka's default; docs/operations.md "Fault soak", tests/integration/test_soak_fetch_wait.py).
    fetch_max_wait_ms: int = Field(
        10, ge=0, le=60_000, description="longest time the broker may hold the worker's fetch when it has no data"
    )
    connect_timeout_s: float = Field(15.0, gt=0, description="start-up check: how long to try the broker")
    max_request_bytes: int = Field(
        1_048_576, ge=65_536,
        description="the producer's largest request (Kafka's default message.max.bytes is 1 MiB): an output "
        "larger than this can never be sent; it is dropped, logged and counted, never retried",
    )
    dead_letter_max_bytes: int = Field(
        65_536, ge=256,
        description="most bytes of a refused message's value (and key) kept in its dead letter; a longer one "
        "keeps this prefix, its size and its sha256, so that one oversized message cannot exceed the "
        "producer's limit and stall its partition",
    )
    # Measured with `anomalybert bench` (see the README's benchmark): the faust agent's per-message path
    # from its consumer thread to the stream added ~20 ms per point on average at 2,000 points/s.
    consumer: Literal["aiokafka", "faust"] = Field(
        "aiokafka",
        description="how the worker consumes telemetry: aiokafka getmany() batches in the worker's event loop, "
        "or faust's agent stream (noack_take). Not a rolling change: the two use different group protocols, "
        "so stop every worker of the group before switching",
    )

    @model_validator(mode="after")
    def _dead_letters_fit(self) -> KafkaSettings:
        # base64 of the value and of the key (4/3 each) plus the reason and the rest of the envelope
        if 2 * (4 * self.dead_letter_max_bytes // 3 + 4) + 16_384 > self.max_request_bytes:
            raise ValueError(f"dead_letter_max_bytes {self.dead_letter_max_bytes} does not fit in a request of "
                             f"max_request_bytes {self.max_request_bytes} once base64-encoded")
        return self

    @model_validator(mode="after")
    def _credentials_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username and sasl_password")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together (client certificate authentication)")
        return self


class RedisSettings(_Section):
    """Where series state lives and how it is keyed."""

    url: str = "redis://localhost:6379/0"
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ssl_ca_certs: Path | None = None
    key_prefix: str = "anomalybert:"
    series_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="an idle series' state expires after this")
    socket_timeout_s: float = Field(5.0, gt=0)
    connect_timeout_s: float = Field(15.0, gt=0, description="start-up check: how long to try Redis (a restart "
                                     "in progress is waited for)")
    cluster: bool = Field(
        False,
        description="Redis Cluster: `url` names any node (the others are discovered); also selected by a "
        "redis+cluster:// (or rediss+cluster://) url",
    )

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")):
            raise ValueError(f"redis url must start with redis://, rediss://, unix:// or redis+cluster://, got {v!r}")
        return v

    @property
    def is_cluster(self) -> bool:
        return self.cluster or "+cluster://" in self.url

    @property
    def client_url(self) -> str:
        """The url as redis-py takes it (without the +cluster marker)."""
        return self.url.replace("+cluster://", "://", 1)

    @model_validator(mode="after")
    def _cluster_url(self) -> RedisSettings:
        if self.is_cluster and self.client_url.startswith("unix://"):
            raise ValueError("a Redis Cluster is reached over TCP: use redis:// or rediss:// with cluster")
        from urllib.parse import urlsplit

        if self.is_cluster and urlsplit(self.client_url).path.strip("/") not in ("", "0"):
            raise ValueError("Redis Cluster has database 0 only: drop the /<db> from the url")
        return self

    @field_validator("key_prefix")
    @classmethod
    def _prefix_without_tags(cls, v: str) -> str:
        if not v or "{" in v or "}" in v:
            raise ValueError("key_prefix must be non-empty and free of '{' and '}' (they are the hash tag)")
        return v


class ModelSettings(_Section):
    """Which bundle to serve and how many inference threads it gets."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    path: Path = DEFAULT_BUNDLE_DIR
    registry: Path | None = Field(
        None,
        description="registry directory; when set, workers serve its `current` version and hot-reload it",
    )
    threads: int = Field(1, ge=1, description="ONNX Runtime intra-op threads")
    # Measured (docs/benchmark.md, "The pipeline keeps the model busy"): alone, one thread scores the shipped
    # bundle's windows 25 % faster 64 at a time than 256 at a time and 26 % slower 1,024 at a time (the attention
    # of a large call leaves the CPU's caches); inside the worker 64 and 256 did about as well.
    inference_batch: int = Field(
        256, ge=1, description="windows per ONNX Runtime call (a batch's windows are scored this many at a time): "
        "large calls leave the CPU's caches; raise it on a GPU",
    )
    device: Literal["cpu", "cuda", "auto"] = Field(
        "cpu",
        description="where ONNX Runtime runs the model: cpu; cuda (needs the onnxruntime-gpu package and a GPU; "
        "the worker refuses to start without them); auto (cuda where available, else cpu)",
    )
    verify: bool = True
    reload: bool = Field(True, description="hot-reload a new bundle (model-updates topic, pointer polling)")
    poll_interval_s: float = Field(5.0, gt=0, description="how often the registry pointer / bundle is checked")

    @property
    def source(self) -> Path:
        """The registry (resolved to its `current` version by the bundle loader) or else the bundle path."""
        return self.registry if self.registry is not None else self.path


class ScoringSettings(_Section):
    """Batching, aggregation lag and thresholds."""

    score_lag: int | None = Field(
        None,
        ge=0,
        description="points a score waits for later windows; default: the bundle's calibrated lag, else W-1",
    )
    stride: int | None = Field(
        None,
        ge=1,
        description="a window every `stride` points: default the bundle's; larger trades accuracy for speed "
        "(docs/benchmark.md has the table), and the default score_lag is then at least stride - 1",
    )
    # Measured (docs/benchmark.md, "The pipeline keeps the model busy"): at 1,000 series 1,024 gives 5-8 % more
    # points/s than 256 (a batch's round trips to Redis and the broker spread over more points); and ("A batch
    # holds several points of each series"): at 10,000 series a batch of 1,024 holds one point of each series,
    # which pays its series' whole work per batch; 16,384 cut the worker's CPU per point outside the model by half
    # or more there. Under a lighter load batches are smaller anyway (they take what has arrived).
    max_batch: int = Field(16_384, ge=1, description="most events in one batch (its windows are scored "
                           "model.inference_batch at a time); a backlog is taken this many at a time, which at "
                           "fleet scale should be several points of each series the worker serves")
    # Measured with `anomalybert bench` (2 CPUs, 100 series at 700 points/s, a quarter of the maximum):
    # 0.05 s put every point's wait for its batch on top of the processing (p50 ~130 ms); 0.005 s gives
    # p50 ~20 ms. Under full load batches then hold ~200 events instead of 256: about 3 % fewer points/s.
    max_wait_s: float = Field(
        0.005, gt=0, description="kafka.consumer=faust only: longest wait to fill a batch (noack_take's `within`); "
        "the aiokafka consumer starts a batch with whatever has arrived as soon as the pipeline has room"
    )
    # Measured (docs/benchmark.md, "Decoded states kept, the model thread and the GIL, ..."): at 10,000 series
    # nearly every point loads its series' state from Redis, and decoding it was about a sixth of the worker's
    # work outside the model.
    state_cache: int = Field(
        10_000, ge=0, description="decoded series states this worker keeps in memory between batches (least "
        "recently used go first; about 4 KB each for one channel at window 64): a series whose stored state is "
        "byte for byte the one kept is not decoded again; 0 keeps none"
    )
    pipeline_depth: int = Field(
        2,
        ge=1,
        le=3,
        description="batches in flight: 2 overlaps one batch's inference with the next one's parse, load and "
        "push and the previous one's write; 3 also starts the batch after while the one before is still writing "
        "(for a model that is a small share of the work, e.g. a window every 8 points); 1 processes one batch at "
        "a time",
    )
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="global override of the bundle's")
    thresholds: dict[str, float] = Field(default_factory=dict, description="per-series threshold overrides")
    max_series_id_length: int = Field(256, ge=1, le=4096)
    top_contributors: int = Field(
        3, ge=0, le=64, description="multichannel series with a model that gives per-channel contributions: the "
        "channels named in each score message's `contrib` (largest share first); 0 leaves the field out"
    )

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: t for k, t in v.items() if not 0.0 <= t <= 1.0}
        if bad:
            raise ValueError(f"thresholds must be in [0, 1]: {bad}")
        return v


class AlertSettings(_Section):
    """Hysteresis: open after `min_points` hot points; close after `cooldown_points` below thr*close_ratio."""

    enabled: bool = True
    min_points: int = Field(1, ge=1)
    cooldown_points: int = Field(10, ge=1)
    close_ratio: float = Field(0.8, gt=0.0, le=1.0)


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(_Section):
    """Process-level knobs: identity, web port, logging, outbox timing."""

    id: str = Field(
        default_factory=_default_worker_id,
        description="unique among live workers; a restart with the same id takes over its outbox at once",
    )
    web_port: int = Field(6066, ge=1, le=65535)
    web_bind: str = "0.0.0.0"
    web_enabled: bool = True
    data_dir: Path = Path("/tmp/anomalybert-worker")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    outbox_claim_s: float = Field(30.0, gt=0, description="how long a publisher owns a series' outbox")
    sweep_interval_s: float = Field(2.0, gt=0, description="how often leftover outboxes are retried")
    retry_backoff_s: float = Field(0.5, gt=0, description="first wait before retrying Redis or the broker")

    @field_validator("id")
    @classmethod
    def _id_chars(cls, v: str) -> str:
        if not v or "#" in v:
            raise ValueError("worker id must be non-empty and must not contain '#'")
        return v


class Settings(BaseSettings):
    """All of it. Environment: ANOMALYBERT_KAFKA__BOOTSTRAP, ANOMALYBERT_SCORING__SCORE_LAG, ..."""

    model_config = SettingsConfigDict(
        env_prefix="ANOMALYBERT_", env_nested_delimiter="__", extra="ignore", protected_namespaces=()
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
