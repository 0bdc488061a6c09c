"""``pose3d serve --profile realtime --allow-random-weights`` with no weights installed and no network: the missing
ONNX weights become their real architectures on random weights (exported once, cached), and the server answers an
image, a clip and a stream; without the flag one line names every missing file and the one fetch command."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.cli_process import Pose3d, pose3d_env
from tests.service.media_samples import encode_clip, encode_image, person_image

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MISSING = ("yolox-tiny-person", "rtmpose-t", "pstmo-81-3dhp")
BOX = "[[8, 8, 184, 248]]"


@pytest.fixture(scope="module")
def realtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Pose3d]]:
    tmp = tmp_path_factory.mktemp("realtime")
    port = free_port()
    args = ["serve", "--profile", "realtime", "--allow-random-weights", "--port", str(port), "--grpc-port", "0"]
    env = pose3d_env(tmp, POSE3D_ENGINE__REQUEST_TIMEOUT_S="600", XDG_CACHE_HOME=str(tmp / "cache"))
    serve = Pose3d(args, tmp, env)  # P-STMO's ONNX Runtime graph is exported into the temporary cache
    serve.wait_for_stderr("Uvicorn running")
    try:
        yield f"http://127.0.0.1:{port}", serve
    finally:
        serve.stop()


def test_random_onnx_stand_ins_are_exported_once_and_said_loudly(realtime: tuple[str, Pose3d]) -> None:
    url, serve = realtime
    weights = serve.tmp / "weights" / "random"
    assert sorted(p.name for p in weights.iterdir()) == ["rtmpose-t.onnx", "yolox-tiny-person.onnx"]
    log = serve.stderr()
    for name in MISSING[:2]:
        assert f"({name} is not installed; `pose3d weights fetch {name}`): its outputs are meaningless" in log
    assert "model 'pstmo-81' serves RANDOM WEIGHTS" in log
    models = httpx.get(f"{url}/v1/models", timeout=60).json()
    assert [m["name"] for m in models["models"]] == ["pstmo-81"]
    ready = httpx.get(f"{url}/readyz", timeout=60).json()
    assert "RANDOM" in str(ready)


def test_answers_an_image_a_clip_and_a_stream(realtime: tuple[str, Pose3d]) -> None:
    url, _ = realtime
    png = encode_image(person_image(), ".png")
    with httpx.Client(base_url=url, timeout=600) as client:
        image = client.post("/v1/pose3d", files={"file": ("p.png", png)}, data={"boxes": BOX})
        assert image.status_code == 200, image.text
        people = image.json()["frames"][0]["people"]
        assert len(people) == 1
        assert len(people[0]["keypoints_3d"]) == 17
        assert any("RANDOM" in w for w in image.json()["warnings"])

        clip = encode_clip(frames=6, width=192, height=256)
        video = client.post("/v1/pose3d", files={"file": ("c.mp4", clip)}, data={"boxes": BOX, "mode": "causal"})
        assert video.status_code == 200, video.text
        assert [f["frame_index"] for f in video.json()["frames"]] == list(range(6))

        opened = client.post("/v1/streams", json={"mode": "causal", "boxes": [[8, 8, 184, 248]]})
        assert opened.status_code == 201, opened.text
        stream_id = opened.json()["stream_id"]
        for i in range(3):
            pushed = client.post(
                f"/v1/streams/{stream_id}/frames", files={"file": ("f.png", png)}, data={"frame_index": str(i)}
            )
            assert pushed.status_code == 200, pushed.text
            assert [f["frame_index"] for f in pushed.json()["frames"]] == [i]  # causal: each frame at once
            assert len(pushed.json()["frames"][0]["people"][0]["keypoints_3d"]) == 17
        assert client.delete(f"/v1/streams/{stream_id}").status_code == 200


def test_without_the_flag_one_line_names_every_missing_file(tmp_path: Path) -> None:
    serve = Pose3d(["serve", "--profile", "realtime", "--port", str(free_port())], tmp_path, pose3d_env(tmp_path))
    assert serve.proc.wait(600) == 2
    err = serve.stderr()
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if ": error: " in line]
    assert f"run `pose3d weights fetch {' '.join(MISSING)}`" in line
    assert "--allow-random-weights" in line


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists() and not os.environ.get("CI"), reason="needs chromium")
def test_demo_shows_the_realtime_pipeline(realtime: tuple[str, Pose3d], tmp_path: Path) -> None:
    from tests.browser.test_demo_page import make_driver, wait_for

    url, _ = realtime
    driver = make_driver([])
    try:
        driver.get(url + "/demo")
        wait_for(driver, "window.pose3dDemo && window.pose3dDemo.state.ready")
        pipeline = driver.find_element("id", "pipeline").text
        assert "2D: rtmpose rtmpose-t.onnx (random)" in pipeline
        assert "people: yolox yolox-tiny-person.onnx (random)" in pipeline
        assert "pstmo-81" in driver.find_element("id", "model").text
        summary = driver.find_element("id", "warnings-summary").text
        assert "RANDOM WEIGHTS (model pstmo-81, keypoint detector rtmpose, person detector yolox)" in summary
        artifacts = Path(os.environ.get("POSE3D_TEST_ARTIFACTS", tmp_path))
        artifacts.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(artifacts / "demo_realtime.png"))
    finally:
        driver.quit()
