"""`anomalybert stream` / `python -m stream worker`: options and environment in -> a running worker.

Imports neither faust nor onnxruntime at module level, so `anomalybert --help` stays fast and works
where only the CLI shell is installed.
"""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path
from typing import Any

import click

from stream.errors import StartupError

log = logging.getLogger(__name__)

GIL_SWITCH_S = 0.001  # the worker process's sys.setswitchinterval (see run_worker)
GC_THRESHOLDS = (700, 10, 100)  # the worker process's gc.set_threshold (CPython's default: 700, 10, 10)

# (option, settings path) pairs: a given option overrides the environment and the defaults.
_OVERRIDES = {
    "broker": ("kafka", "bootstrap"),
    "group_id": ("kafka", "group_id"),
    "partitions": ("kafka", "partitions"),
    "redis_url": ("redis", "url"),
    "key_prefix": ("redis", "key_prefix"),
    "model": ("model", "path"),
    "threads": ("model", "threads"),
    "score_lag": ("scoring", "score_lag"),
    "stride": ("scoring", "stride"),
    "max_batch": ("scoring", "max_batch"),
    "max_wait": ("scoring", "max_wait_s"),
    "threshold": ("scoring", "threshold"),
    "worker_id": ("worker", "id"),
    "web_port": ("worker", "web_port"),
    "log_level": ("worker", "log_level"),
}


def _nested(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, value in options.items():
        if value is not None and name in _OVERRIDES:
            section, field = _OVERRIDES[name]
            out.setdefault(section, {})[field] = value
    if options.get("model") is not None:
        out["model"]["registry"] = None  # an explicit --model wins over a configured registry
    return out


def build_settings(**options: Any) -> Any:
    """Environment (ANOMALYBERT_...) plus the given CLI options; a bad value is one clear error."""
    from pydantic import ValidationError

    from stream.settings import Settings

    try:
        return Settings(**_nested(options))
    except ValidationError as e:
        lines = [f"  {'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise click.UsageError("invalid settings:\n" + "\n".join(lines)) from e


def run_worker(settings: Any) -> None:
    """Start-up checks, then faust's worker loop (returns when the worker stops)."""
    import faust

    from stream.app import build_app, startup_checks

    # The model runs in a thread of its own (`stream.scorer`) and takes the GIL around each ONNX Runtime run;
    # under load the event loop holds it between, and Python hands it over once the waiting thread has waited
    # a switch interval (5 ms by default), so the model thread waited several ms a run. At 1 ms, one worker
    # scored 5-12 % more points/s at 1,000 and 10,000 series (docs/benchmark.md, "Decoded states
    # kept, the model thread and the GIL, ...").
    sys.setswitchinterval(GIL_SWITCH_S)
    checked = startup_checks(settings)
    app, _runtime = build_app(settings, checked)
    worker = faust.Worker(app, loglevel=settings.worker.log_level, quiet=True)
    # At WARNING and above, faust's terminal spinner sets the root logger to DEBUG so that every record
    # spins it: every library's debug call (aiokafka logs each message sent) then builds a LogRecord,
    # a few percent of the worker's CPU. The worker runs in containers; it needs no spinner.
    worker.spinner = None
    # The cyclic garbage collector's full passes walk every tracked object; at 10,000 series they ran 169 times
    # in two minutes, 13 s in all, up to 164 ms each, the worker stopped meanwhile. Everything built so far (the
    # libraries, the model, the app) lives as long as the process: frozen, out of those passes; and a full pass
    # comes after 100 passes of the middle generation instead of 10: 20 passes, 0.65 s in all, at most 69 ms
    # (docs/benchmark.md, the same section).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    worker.execute_from_commandline()


@click.command("stream", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--broker", help="Kafka bootstrap servers, host:port[,host:port] [env ANOMALYBERT_KAFKA__BOOTSTRAP]")
@click.option(
    "--group-id", help="consumer group; workers sharing it share the partitions [ANOMALYBERT_KAFKA__GROUP_ID]"
)
@click.option(
    "--partitions", type=int, help="partitions for topics created at start-up [ANOMALYBERT_KAFKA__PARTITIONS]"
)
@click.option("--redis-url", help="redis://host:port/db or rediss:// [ANOMALYBERT_REDIS__URL]")
@click.option("--key-prefix", help="prefix of every Redis key [ANOMALYBERT_REDIS__KEY_PREFIX]")
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    help="bundle directory, model.onnx, or registry with `current` [ANOMALYBERT_MODEL__PATH]",
)
@click.option("--threads", type=int, help="ONNX Runtime intra-op threads [ANOMALYBERT_MODEL__THREADS]")
@click.option(
    "--score-lag",
    type=int,
    help="points a score waits for later windows, 0..W-1; default: the bundle's, else W-1 "
    "[ANOMALYBERT_SCORING__SCORE_LAG]",
)
@click.option(
    "--stride",
    type=int,
    help="a window every N points; default: the bundle's (larger: faster, less accurate; the default lag "
    "becomes at least N-1) [ANOMALYBERT_SCORING__STRIDE]",
)
@click.option("--max-batch", type=int, help="events per batch [ANOMALYBERT_SCORING__MAX_BATCH]")
@click.option("--max-wait", type=float, help="seconds to wait to fill a batch [ANOMALYBERT_SCORING__MAX_WAIT_S]")
@click.option("--threshold", type=float, help="global threshold override [ANOMALYBERT_SCORING__THRESHOLD]")
@click.option("--worker-id", help="unique per live worker; keep it across restarts [ANOMALYBERT_WORKER__ID]")
@click.option("--web-port", type=int, help="port of the web server with /metrics [ANOMALYBERT_WORKER__WEB_PORT]")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    callback=lambda _c, _p, v: v.upper() if v else v,
    help="[ANOMALYBERT_WORKER__LOG_LEVEL]",
)
@click.option("--check", is_flag=True, help="run the start-up checks (bundle, Redis, broker, topics) and exit")
def stream_command(check: bool, **options: Any) -> None:
    """Run the stream worker: score `telemetry`, publish `scores` and `alerts`, dead-letter bad input.

    Every setting also comes from the environment (prefix ANOMALYBERT_, `__` between section and
    field, e.g. ANOMALYBERT_ALERTS__COOLDOWN_POINTS=20); options given here win. Missing topics are
    created. The worker stops with a clear message when the broker, Redis or the bundle is unusable.
    """
    settings = build_settings(**options)
    logging.basicConfig(level=settings.worker.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if check:
        from stream.app import startup_checks

        try:
            checked = startup_checks(settings)
        except StartupError as e:
            raise click.ClickException(str(e)) from e
        click.echo(f"ok: bundle {checked.bundle.version}, geometry {checked.geometry}, partitions {checked.partitions}")
        return
    try:
        run_worker(settings)
    except StartupError as e:
        raise click.ClickException(str(e)) from e


COMMANDS = [stream_command]
