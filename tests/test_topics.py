from __future__ import annotations

import pytest

from streamfuse import topics
from streamfuse.errors import TopicError


def test_layout_round_trip() -> None:
    assert topics.data_topic("streamfuse", "dev-1", "ecg") == "streamfuse/dev-1/ecg"
    assert topics.parse("streamfuse/dev-1/ecg", "streamfuse") == ("dev-1", "ecg")
    assert topics.parse("site/a/streamfuse/x.y/label", "site/a/streamfuse") == ("x.y", "label")
    assert topics.subscription("streamfuse") == "streamfuse/+/+"


@pytest.mark.parametrize(
    "topic",
    ["other/dev/ecg", "streamfuse/dev", "streamfuse/dev/ecg/extra", "streamfuse/-dev/ecg",
     "streamfuse/dev/ECG!", "streamfuse/" + "d" * 65 + "/ecg", "streamfuse//ecg"],
)
def test_bad_topics_are_refused(topic: str) -> None:
    with pytest.raises(TopicError):
        topics.parse(topic, "streamfuse")


@pytest.mark.parametrize("device", ["", "-x", "a/b", "a+b", "a#", "é", "x" * 65])
def test_bad_device_ids(device: str) -> None:
    with pytest.raises(TopicError):
        topics.check_device(device)


@pytest.mark.parametrize("prefix", ["", "a/+", "#", "a//b"])
def test_bad_prefixes(prefix: str) -> None:
    with pytest.raises(TopicError):
        topics.check_prefix(prefix)


def test_bundle_topic_is_reserved_and_parsed() -> None:
    assert "bundle" in topics.RESERVED
    assert topics.bundle_topic("streamfuse", "dev-1") == "streamfuse/dev-1/bundle"
    assert topics.parse("streamfuse/dev-1/bundle", "streamfuse") == ("dev-1", topics.BUNDLE)
    with pytest.raises(TopicError):  # no modality may be called "bundle"
        topics.data_topic("streamfuse", "dev-1", "bundle")
    with pytest.raises(TopicError):
        topics.check_modality("bundle")


@pytest.mark.parametrize("name", ["label", "bundle", "prediction"])
def test_a_modality_cannot_take_a_reserved_topic_name(name: str) -> None:
    from streamfuse.config import EngineConfig, ModalitySpec
    from streamfuse.errors import ConfigError

    with pytest.raises(ConfigError, match="reserved topic levels"):
        EngineConfig(modalities={name: ModalitySpec(name, ("a",), 100.0)})
