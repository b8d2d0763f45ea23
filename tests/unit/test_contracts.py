"""The published message contracts (docs/contracts/) against the code that writes and reads the messages."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft7Validator, Draft202012Validator
from pydantic import ValidationError

from stream import alerts
from stream.errors import InvalidRecord
from stream.records import (
    AlertMessage,
    DeadLetter,
    ModelUpdate,
    ScoreMessage,
    Telemetry,
    parse_telemetry,
    to_json,
)
from stream.settings import Settings, TopicNames
from tools import contracts as c

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "contracts"
VERSION = "2026-11-26T03-10-00Z-ab12cd"


def schema(name: str) -> dict[str, Any]:
    return json.loads((DOCS / f"{name}.schema.json").read_text(encoding="utf-8"))


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name), format_checker=Draft202012Validator.FORMAT_CHECKER)


def asyncapi() -> dict[str, Any]:
    return yaml.safe_load((DOCS / c.ASYNCAPI_FILE).read_text(encoding="utf-8"))


def wire(msg: Any) -> dict[str, Any]:
    raw = to_json(msg)
    assert b"null" not in raw  # outgoing messages leave a missing field out
    return json.loads(raw)


# --- (a) the checked-in files are what the code generates -----------------------------------------------------


def test_checked_in_contracts_equal_what_the_code_generates() -> None:
    stale = c.check_contracts(DOCS)
    assert stale == [], f"stale contract files {[p.name for p in stale]}: run `anomalybert contracts`"


def test_the_environment_does_not_change_the_contracts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANOMALYBERT_KAFKA__TOPICS__SCORES", "elsewhere")
    monkeypatch.setenv("ANOMALYBERT_KAFKA__BOOTSTRAP", "broker:9093")
    monkeypatch.setenv("ANOMALYBERT_KAFKA__PARTITIONS", "3")
    assert c.check_contracts(DOCS) == []


def test_the_folder_holds_the_generated_files_and_the_readme_only() -> None:
    assert {p.name for p in DOCS.iterdir()} == set(c.generate()) | {"README.md"}
    assert {ct.file for ct in c.contracts_list()} == {
        "telemetry.schema.json",
        "score.schema.json",
        "alert.schema.json",
        "dead-letter.schema.json",
        "model-update.schema.json",
        "feedback.schema.json",
    }


def test_check_names_edited_and_missing_files(tmp_path: Path) -> None:
    written = c.write_contracts(tmp_path)
    assert sorted(p.name for p in written) == sorted(c.generate())
    assert c.check_contracts(tmp_path) == []
    score = tmp_path / "score.schema.json"
    score.write_text(score.read_text().replace('"integer"', '"number"', 1))
    (tmp_path / "asyncapi.yaml").unlink()
    assert c.check_contracts(tmp_path) == [score, tmp_path / "asyncapi.yaml"]


def test_a_changed_record_makes_its_schema_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    class Wider(ScoreMessage):
        region: str = "eu"

    original = c.contracts_list

    def wider() -> list[c.Contract]:
        return [replace(ct, model=Wider) if ct.name == "score" else ct for ct in original()]

    monkeypatch.setattr(c, "contracts_list", wider)
    monkeypatch.setitem(c.FIELD_DOCS, "score", {**c.FIELD_DOCS["score"], "region": "where"})
    assert DOCS / "score.schema.json" in c.check_contracts(DOCS)


def test_the_command_writes_and_checks(tmp_path: Path) -> None:
    assert c.COMMANDS == [c.contracts]
    runner = CliRunner()
    out = tmp_path / "contracts"
    missing = runner.invoke(c.contracts, ["--check", "--out", str(out)])
    assert missing.exit_code == 1
    assert len([line for line in missing.output.splitlines() if "differs from the code" in line]) == 7
    assert runner.invoke(c.contracts, ["--out", str(out)]).exit_code == 0
    assert c.check_contracts(out) == []
    ok = runner.invoke(c.contracts, ["--check", "--out", str(out)])
    assert ok.exit_code == 0 and "up to date" in ok.output
    (out / "alert.schema.json").write_text("{}\n")
    stale = runner.invoke(c.contracts, ["--check", "--out", str(out)])
    assert stale.exit_code == 1
    assert [line for line in stale.output.splitlines() if "differs" in line] == [
        f"{out / 'alert.schema.json'}: differs from the code (regenerate with `anomalybert contracts`)"
    ]


# --- (b) real messages against the schemas --------------------------------------------------------------------


GOOD_TELEMETRY = [
    # DESIGN.md's examples
    {"series_id": "web-01/cpu", "ts": 1732600000000, "value": 0.93},
    {"series_id": "pump-7", "ts": "2026-11-26T03:00:00Z", "values": [0.1, 3.2, 7.0]},
    # other forms the worker accepts
    {"series_id": "a", "ts": "2026-11-26T04:00:00.123+01:00", "value": 1},
    {"series_id": "a", "ts": -5, "value": -1.5e3},
    {"series_id": "a", "ts": 0, "value": None, "values": [1, 2]},
    {"series_id": "a", "ts": 1, "value": 2.0, "values": None, "unit": "ignored"},
    {"series_id": "ü/日本", "ts": 2**63 - 1, "values": [0]},
]

BAD_TELEMETRY = {
    "missing series_id": {"ts": 1, "value": 1},
    "empty series_id": {"series_id": "", "ts": 1, "value": 1},
    "series_id not a string": {"series_id": 7, "ts": 1, "value": 1},
    "control character in series_id": {"series_id": "web\x07cpu", "ts": 1, "value": 1},
    "missing ts": {"series_id": "a", "value": 1},
    "ts without offset": {"series_id": "a", "ts": "2026-11-26T03:00:00", "value": 1},
    "ts not a date": {"series_id": "a", "ts": "yesterday", "value": 1},
    "ts lower-case designators": {"series_id": "a", "ts": "2026-11-26t03:00:00z", "value": 1},
    "ts with a fraction": {"series_id": "a", "ts": 1.5, "value": 1},
    "ts a boolean": {"series_id": "a", "ts": True, "value": 1},
    "ts beyond 64 bits": {"series_id": "a", "ts": 2**63, "value": 1},
    "ts a list": {"series_id": "a", "ts": [1], "value": 1},
    "value and values": {"series_id": "a", "ts": 1, "value": 1, "values": [1]},
    "neither value nor values": {"series_id": "a", "ts": 1},
    "both null": {"series_id": "a", "ts": 1, "value": None, "values": None},
    "values empty": {"series_id": "a", "ts": 1, "values": []},
    "value NaN as a string": {"series_id": "a", "ts": 1, "value": "NaN"},
    "value a numeric string": {"series_id": "a", "ts": 1, "value": "0.93"},
    "value a boolean": {"series_id": "a", "ts": 1, "value": True},
    "values with a null": {"series_id": "a", "ts": 1, "values": [1, None]},
    "values not an array": {"series_id": "a", "ts": 1, "values": 3},
    "not an object": [{"series_id": "a", "ts": 1, "value": 1}],
}
# `strict=True` on `values` does not reach its items: the worker turns "2" into 2.0 and true into 1.0, where
# `value` refuses both. The schema says what `value` does; these pass once the items are strict too.
BAD_TELEMETRY_CASES = [pytest.param(msg, id=name) for name, msg in BAD_TELEMETRY.items()] + [
    pytest.param({"series_id": "a", "ts": 1, "values": [1, "2"]}, id="values with a string"),
    pytest.param({"series_id": "a", "ts": 1, "values": [1, True]}, id="values with a boolean"),
]


@pytest.mark.parametrize("msg", GOOD_TELEMETRY)
def test_telemetry_the_worker_accepts_passes_the_schema(msg: dict[str, Any]) -> None:
    raw = json.dumps(msg).encode()
    point = Telemetry.model_validate_json(raw)
    parse_telemetry(raw, point.series_id.encode(), len(point.channels), max_id_length=256)
    validator("telemetry").validate(msg)


@pytest.mark.parametrize("msg", BAD_TELEMETRY_CASES)
def test_telemetry_the_worker_refuses_fails_the_schema(msg: Any) -> None:
    assert not validator("telemetry").is_valid(msg)
    with pytest.raises(ValidationError):
        Telemetry.model_validate_json(json.dumps(msg))


def test_nan_and_infinity_are_not_json() -> None:
    for literal in ("NaN", "Infinity", "-Infinity"):
        raw = f'{{"series_id": "a", "ts": 1, "value": {literal}}}'
        with pytest.raises(ValidationError):
            Telemetry.model_validate_json(raw)
        with pytest.raises(ValueError):  # what a standard JSON parser does with them
            json.loads(raw, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))


def test_where_the_schema_is_looser_than_the_worker_as_the_readme_says() -> None:
    looser = [
        b'{"series_id": "a", "ts": "2026-13-26T03:00:00Z", "value": 1}',  # month 13: the shape of a date-time
        '{"series_id": "a\u00a0b", "ts": 1, "value": 1}'.encode(),  # not printable, not a control character
    ]
    for raw in looser:
        with pytest.raises(ValidationError):
            Telemetry.model_validate_json(raw)
        assert Draft202012Validator(schema("telemetry")).is_valid(json.loads(raw))
    assert "(the schema only rules out control characters)" in (DOCS / "README.md").read_text()
    for raw in (b'{"series_id": "a", "ts": 1, "value": 1e400}', b'{"series_id": "a", "ts": 1, "values": [1, 1e39]}'):
        with pytest.raises(ValidationError):  # out of float32's range: refused by both
            Telemetry.model_validate_json(raw)
        assert not Draft202012Validator(schema("telemetry")).is_valid(json.loads(raw))


def score(single: bool, **over: Any) -> ScoreMessage:
    """As `stream.processor` builds it."""
    values = [0.93] if single else [0.1, 3.2, 7.0]
    fields: dict[str, Any] = dict(
        series_id="web-01/cpu",
        ts=1732600000000,
        value=values[0] if single else None,
        values=None if single else list(values),
        score=0.87,
        n_windows=64,
        is_anomaly=True,
        threshold=0.5,
        model_version=VERSION,
    )
    return ScoreMessage(**(fields | over))


def test_score_messages_validate() -> None:
    v = validator("score")
    for single in (True, False):
        v.validate(wire(score(single)))
    one = wire(score(True))
    assert not v.is_valid(one | {"values": [0.93]})  # both
    assert not v.is_valid({k: x for k, x in one.items() if k != "value"})  # neither
    assert not v.is_valid(one | {"value": None})  # written without nulls
    assert not v.is_valid({k: x for k, x in one.items() if k != "model_version"})
    assert not v.is_valid(one | {"n_windows": "64"})


def alert_events() -> list[alerts.AlertEvent]:
    """A hot run and its cool-down through the real hysteresis."""
    st, policy = alerts.AlertState(), alerts.AlertPolicy(0.5, min_points=2, cooldown_points=3, close_ratio=0.8)
    scores = [0.1, 0.6, 0.9, 0.7, 0.3, 0.2, 0.1, 0.2]
    events = [alerts.update(st, policy, 1732600000000 + 60_000 * i, s) for i, s in enumerate(scores)]
    return [e for e in events if e is not None]


def test_alert_events_validate() -> None:
    v = validator("alert")
    events = alert_events()
    assert [e.state for e in events] == ["open", "closed"]
    messages = []
    for ev in events:  # as `stream.processor` builds them
        msg = wire(
            AlertMessage(
                series_id="web-01/cpu",
                alert_id=f"web-01/cpu:{ev.opened_ts}",
                state=ev.state,
                opened_ts=ev.opened_ts,
                peak_ts=ev.peak_ts,
                peak_score=ev.peak_score,
                threshold=0.5,
                closed_ts=ev.closed_ts,
                model_version=VERSION,
            )
        )
        v.validate(msg)
        messages.append(msg)
    opened, closed = messages
    assert not v.is_valid(opened | {"closed_ts": 1})
    assert not v.is_valid({k: x for k, x in closed.items() if k != "closed_ts"})
    assert not v.is_valid(opened | {"state": "acknowledged"})


@pytest.mark.parametrize(
    "raw,key,channels",
    [
        (b"", b"a", 1),
        (b"{nope", None, 1),
        (b"\xff\xfe not utf-8", b"\xff", 1),
        (b'{"series_id": "a", "ts": 1, "value": NaN}', b"a", 1),
        (b'{"series_id": "a", "ts": 1, "value": 1}', b"b", 1),
        (b'{"series_id": "a", "ts": 1, "value": 1}', b"a", 3),
        (json.dumps({"series_id": "a" * 300, "ts": 1, "value": 1}).encode(), None, 1),
    ],
)
def test_dead_letters_validate(raw: bytes, key: bytes | None, channels: int) -> None:
    with pytest.raises(InvalidRecord) as caught:
        parse_telemetry(raw, key, channels, max_id_length=256)
    letter = DeadLetter.of(
        caught.value, topic="telemetry", partition=3, offset=17, timestamp_ms=None, key=key, value=raw, worker="w-1"
    )
    msg = wire(letter)
    validator("dead-letter").validate(msg)
    assert msg["code"] in c.DEAD_LETTER_CODES
    assert base64.b64decode(msg["value_b64"], validate=True) == raw
    assert ("key_b64" in msg) == (key is not None)
    assert not validator("dead-letter").is_valid(msg | {"partition": "3"})


def test_model_updates_from_the_publisher_validate_and_reach_the_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aiokafka

    import stream.kafka
    from model.bundle import MODEL_FILE, sha256_file
    from stream.reload import _announced_uri
    from training.retrain import announce

    sent: list[tuple[str, bytes, bytes]] = []

    class Producer:
        def __init__(self, **_: Any) -> None: ...
        async def start(self) -> None: ...
        async def stop(self) -> None: ...

        async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
            sent.append((topic, key, value))

    async def no_topics(*_: Any, **__: Any) -> dict[str, int]:
        return {}

    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", Producer)
    monkeypatch.setattr(stream.kafka, "ensure_topics", no_topics)
    bundle = tmp_path / VERSION
    bundle.mkdir()
    (bundle / MODEL_FILE).write_bytes(b"graph")
    kafka = Settings().kafka
    asyncio.run(announce(kafka, VERSION, bundle))

    [(topic, key, value)] = sent
    body = json.loads(value)
    assert topic == kafka.topics.model_updates
    validator("model-update").validate(body)
    update = ModelUpdate.model_validate_json(value)
    assert (update.version, update.sha256) == (VERSION, sha256_file(bundle / MODEL_FILE))
    assert _announced_uri(value) == update.uri == str(bundle.resolve())
    key_schema = asyncapi()["components"]["messages"]["model-update"]["bindings"]["kafka"]["key"]
    assert Draft7Validator(key_schema).is_valid(key.decode())
    assert not validator("model-update").is_valid(body | {"sha256": "ABC"})
    with pytest.raises(ValidationError):
        ModelUpdate.model_validate(body | {"sha256": "ABC"})


def test_every_field_is_described_and_draft_07_reads_the_same() -> None:
    later_keywords = {
        "$defs",
        "prefixItems",
        "dependentRequired",
        "dependentSchemas",
        "unevaluatedProperties",
        "unevaluatedItems",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
        "minContains",
        "maxContains",
    }

    def keys(node: Any) -> set[str]:
        if isinstance(node, dict):
            return set(node) | {k for v in node.values() for k in keys(v)}
        if isinstance(node, list):
            return {k for v in node for k in keys(v)}
        return set()

    for ct in c.contracts_list():
        s = schema(ct.name)
        Draft202012Validator.check_schema(s)
        Draft7Validator.check_schema(s)
        assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema" and s["$id"] and s["title"]
        assert not keys(s) & later_keywords, ct.name
        assert set(s["properties"]) == set(ct.model.model_fields), ct.name
        undocumented = [name for name, prop in s["properties"].items() if not prop.get("description")]
        assert undocumented == [], f"{ct.name}: describe {undocumented} in tools/contracts.py FIELD_DOCS"


# --- (c) the AsyncAPI document against the settings and the files ---------------------------------------------


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_asyncapi_names_every_topic_of_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    channels = doc["channels"]
    assert set(channels) == set(TopicNames.model_fields)
    for field, info in TopicNames.model_fields.items():
        ch = channels[field]
        assert ch["address"] == ch["x-default"] == info.default
        assert ch["x-setting"] == f"kafka.topics.{field}"
        monkeypatch.setenv(ch["x-env"], f"custom-{field}")
        assert getattr(Settings().kafka.topics, field) == f"custom-{field}"
        policy = ch["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"]
        assert policy == (["compact"] if field in ("model_updates", "feedback") else ["delete"])
    assert channels["telemetry"]["address"] == "telemetry" and channels["dlq"]["address"] == "telemetry.dlq"


def test_asyncapi_references_resolve_and_examples_validate() -> None:
    doc = asyncapi()
    messages = doc["components"]["messages"]
    assert set(messages) == {ct.name for ct in c.contracts_list()}
    for name, msg in messages.items():
        ref = msg["payload"]["$ref"]
        path = (DOCS / ref).resolve()
        assert path.parent == DOCS.resolve() and path.is_file(), ref
        assert path.name == f"{name}.schema.json"
        v = Draft202012Validator(json.loads(path.read_text()))
        assert msg["examples"]
        for example in msg["examples"]:
            v.validate(example["payload"])
        assert msg["bindings"]["kafka"]["key"]["type"] == "string"
    for ch in doc["channels"].values():
        for ref in ch["messages"].values():
            assert resolve(doc, ref["$ref"]) in messages.values()
    actions = {}
    for op in doc["operations"].values():
        channel = resolve(doc, op["channel"]["$ref"])
        field = op["channel"]["$ref"].rsplit("/", 1)[1]
        for ref in op["messages"]:
            assert ref["$ref"].startswith(f"#/channels/{field}/messages/")
            assert resolve(doc, ref["$ref"]) in channel["messages"].values()
        actions[field] = op["action"]
    assert actions == {
        "telemetry": "receive",
        "scores": "send",
        "alerts": "send",
        "dlq": "send",
        "model_updates": "receive",
        "feedback": "receive",
    }
    group = doc["operations"]["receiveTelemetry"]["bindings"]["kafka"]["groupId"]
    assert group["default"] == Settings().kafka.group_id


def test_asyncapi_examples_are_what_the_code_writes() -> None:
    messages = asyncapi()["components"]["messages"]
    for payload in (e["payload"] for e in messages["telemetry"]["examples"]):
        Telemetry.model_validate_json(json.dumps(payload))
    for payload in (e["payload"] for e in messages["score"]["examples"]):
        assert wire(ScoreMessage.model_validate(payload)) == payload
    for payload in (e["payload"] for e in messages["alert"]["examples"]):
        assert wire(AlertMessage.model_validate(payload)) == payload
    [letter] = (e["payload"] for e in messages["dead-letter"]["examples"])
    assert wire(DeadLetter.model_validate(letter)) == letter
    with pytest.raises(InvalidRecord) as caught:
        parse_telemetry(base64.b64decode(letter["value_b64"]), base64.b64decode(letter["key_b64"]), 3, 256)
    assert (caught.value.code, caught.value.reason) == (letter["code"], letter["reason"])
