"""The rules that live in one place each: the default model per input kind, and what a stream id may be."""

from __future__ import annotations

import pytest

from service.config import GatewaySettings, InputKind, WorkerSettings
from service.engine.stream_ids import is_stream_id, new_stream_id


def test_one_default_model_rule() -> None:
    settings = GatewaySettings(default_image_model="img", default_clip_model="clip")
    assert settings.default_model(InputKind.IMAGE) == "img"
    assert settings.default_model(InputKind.CLIP) == "clip"
    assert settings.default_model(InputKind.KEYPOINTS) == "clip"  # no keypoints default: the clip default
    chosen = settings.model_copy(update={"default_keypoints_model": "kp"})
    assert chosen.default_model(InputKind.KEYPOINTS) == "kp"
    assert chosen.default_model(InputKind.CLIP) == "clip"
    worker = WorkerSettings(default_clip_model="clip", default_keypoints_model="kp")  # the engine asks the same
    assert worker.default_model(InputKind.KEYPOINTS) == "kp"


@pytest.mark.parametrize("value", ["a", "job-abc_DEF.1:2", "x" * 128, new_stream_id(), new_stream_id("ndjson-")])
def test_stream_ids_the_rule_accepts(value: str) -> None:
    assert is_stream_id(value)


@pytest.mark.parametrize("value", ["", "x" * 129, "{tag}", "a b", "a/b", "é", "a\n"])
def test_stream_ids_the_rule_refuses(value: str) -> None:
    assert not is_stream_id(value)
