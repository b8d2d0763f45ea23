"""A series' marks: the end offsets of its score and alert partitions, as the JSON the claim stores."""

from __future__ import annotations

import json

from stream.kafka import partition_for
from stream.publish import Publisher
from stream.settings import TopicNames


def test_marks_follow_the_partitions_and_their_end_offsets() -> None:
    topics = TopicNames()
    pub = Publisher(None, None, None, topics, {topics.scores: 4, topics.alerts: 2}, None)  # type: ignore[arg-type]
    ps, pa = partition_for(b"pump-7", 4), partition_for(b"pump-7", 2)
    assert json.loads(pub.marks("pump-7")) == {f"{topics.scores}/{ps}": 0, f"{topics.alerts}/{pa}": 0}
    pub.low[(topics.scores, ps)] = 41  # something was published there: later sends land after offset 40
    assert json.loads(pub.marks("pump-7")) == {f"{topics.scores}/{ps}": 41, f"{topics.alerts}/{pa}": 0}
    assert pub.marks("pump-7") == json.dumps({f"{topics.scores}/{ps}": 41, f"{topics.alerts}/{pa}": 0},
                                             separators=(",", ":"))
    for i in range(5000):  # the cache of encoded marks stays bounded
        pub.low[(topics.scores, ps)] = i
        assert json.loads(pub.marks("pump-7"))[f"{topics.scores}/{ps}"] == i
    assert len(pub._marks) <= 4096
