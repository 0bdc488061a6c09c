"""The rules that live in one place each: the default model per input kind, and what a stream id may be."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.api.models import keypoints_model
from service.config import GatewaySettings, InputKind, WorkerSettings
from service.engine.stream_ids import is_stream_id, new_stream_id
from service.engine.types import ModelInfo
from service.errors import InvalidInput


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


def _served(*names_needing_image: tuple[str, bool]) -> Any:
    infos = [ModelInfo(n, "k", "v", "random", 1, 1, "h36m", "cpu", needs, True) for n, needs in names_needing_image]

    class Engine:
        async def models(self) -> list[ModelInfo]:
            return infos

    return Engine()


def test_keypoints_model_prefers_the_keypoints_then_clip_default_then_any_by_name() -> None:
    settings = GatewaySettings(default_clip_model="clip", default_keypoints_model="kp")

    def pick(*served: tuple[str, bool]) -> str:
        return asyncio.run(keypoints_model(_served(*served), settings, None)).name

    assert pick(("b", False), ("clip", False), ("kp", False)) == "kp"
    assert pick(("b", False), ("clip", False), ("kp", True)) == "clip"
    assert pick(("c", False), ("b", False), ("clip", True), ("kp", True)) == "b"
    assert asyncio.run(keypoints_model(_served(("x", False)), settings, "x")).name == "x"
    with pytest.raises(InvalidInput, match="lifts 2D keypoints alone"):
        pick(("clip", True), ("a", True))
    with pytest.raises(InvalidInput, match="needs the image"):
        asyncio.run(keypoints_model(_served(("a", True)), settings, "a"))
