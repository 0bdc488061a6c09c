"""RTMPose as the 2D detector, through the real gateway: a stand-in ONNX with the published signature serves
images, clips and streams; CA-PF is refused at start-up with a message naming the setting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.config import DetectorSettings, LifterKind, ModelSpec
from service.engine.inprocess import build_engine
from service.engine.rtmpose import RTMPoseDetector
from service.errors import Unavailable
from service.metrics import Metrics
from tests.service.media_samples import encode_clip, encode_image, person_image
from tests.service.rest_support import live_server, tiny_settings
from tests.service.test_rest import _decoded_frames, _poses, _stream
from tests.unit.rtmpose_standin import rtmpose_standin

PSTMO = {"pstmo-9": ModelSpec(kind=LifterKind.PSTMO, arch="pstmo-tiny-9", frames=9)}


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rtmpose_standin(tmp_path_factory.mktemp("rtmpose") / "rtmpose.onnx", seed=5)


@pytest.fixture(scope="module")
def client(standin: Path) -> Iterator[httpx.Client]:
    detector = DetectorSettings(family="rtmpose", rtmpose_onnx=standin, flip_test=True)
    settings = tiny_settings(
        detector=detector, models=PSTMO, default_image_model="pstmo-9", default_clip_model="pstmo-9"
    )
    with live_server(settings) as server, server.client() as c:
        yield c


def test_image_keypoints_are_rtmposes(client: httpx.Client, standin: Path) -> None:
    image = person_image(96, 128, seed=2)
    response = client.post("/v1/pose3d", files={"file": ("p.png", encode_image(image, ".png"), "image/png")})
    assert response.status_code == 200, response.text
    (person,) = response.json()["frames"][0]["people"]
    whole = np.array([[0.0, 0.0, 96.0, 128.0]], np.float32)
    (expected,) = RTMPoseDetector(standin).detect([image], [whole], [np.ones(1)], flip_test=True)[0]
    np.testing.assert_allclose(person["keypoints_2d"], expected.keypoints_h36m, atol=1e-3)
    np.testing.assert_allclose(person["keypoint_scores"], np.clip(expected.scores_h36m, 0, 1), atol=1e-5)
    assert np.isfinite(person["keypoints_3d"]).all()
    ready = client.get("/readyz").json()
    assert "rtmpose rtmpose.onnx weights sha256" in str(ready)


def test_clip_and_stream_give_the_same_poses(client: httpx.Client) -> None:
    clip = encode_clip(frames=11)
    whole = client.post("/v1/pose3d", files={"file": ("c.mp4", clip, "video/mp4")})
    assert whole.status_code == 200, whole.text
    assert len(whole.json()["frames"]) == 11
    frames = [
        {
            "files": {"file": ("f.png", encode_image(image, ".png"), "image/png")},
            "data": {"frame_index": str(i), "timestamp_s": str(i / 25)},
        }
        for i, image in enumerate(_decoded_frames(clip))
    ]
    streamed = _stream(client, "pstmo-9", frames)
    np.testing.assert_allclose(_poses(streamed), _poses(whole.json()["frames"]), atol=1e-4)


async def test_capf_with_rtmpose_is_refused_at_start(standin: Path) -> None:
    settings = tiny_settings(detector=DetectorSettings(family="rtmpose", rtmpose_onnx=standin))
    with pytest.raises(Unavailable, match=r'detector\.family = "rtmpose".*CA-PF'):
        await build_engine(settings, Metrics())
    unset = tiny_settings(detector=DetectorSettings(family="rtmpose"), models=PSTMO, default_image_model="pstmo-9")
    with pytest.raises(Unavailable, match=r"detector\.rtmpose_onnx"):
        await build_engine(unset, Metrics())
