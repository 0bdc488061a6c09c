"""The /demo page in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium).

Screenshots go to ``$POSE3D_TEST_ARTIFACTS`` (default: the test's tmp dir) — look at them.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from tests.service.media_samples import encode_clip, encode_image, person_image
from tests.service.rest_support import LiveServer, live_server, tiny_settings
from tests.unit.render_samples import decode_png

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(  # never in CI (CI=true): there `make test` installs them, and a missing browser must fail
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()) and not os.environ.get("CI"),
        reason="needs Debian's chromium and chromium-driver (make browser installs them)",
    ),
]

TRACK0 = (230, 25, 75)  # the demo's colour of track 0 (service.render.overlay.PALETTE)


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server(tiny_settings()) as live:
        yield live


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("POSE3D_TEST_ARTIFACTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def make_driver(extra_args: list[str]) -> Any:
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900",
                "--enable-unsafe-swiftshader", "--use-angle=swiftshader", *extra_args]:  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def wait_for(driver: Any, script: str, timeout_s: float = 90.0) -> Any:
    """Until the JavaScript expression ``script`` is truthy (its value)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(lambda d: d.execute_script(f"return {script}"))


def canvas_pixels(driver: Any) -> npt.NDArray[np.uint8]:
    url = driver.execute_script("return window.pose3dDemo.renderer.domElement.toDataURL('image/png')")
    return decode_png(base64.b64decode(url.split(",", 1)[1]))


def skeleton_pixels(image: npt.NDArray[np.uint8], colour: tuple[int, int, int] = TRACK0) -> int:
    return int((np.abs(image.astype(np.int32) - np.asarray(colour)).max(axis=-1) <= 40).sum())


def wait_for_skeleton(driver: Any, timeout_s: float = 90.0) -> int:
    """The 3D canvas's skeleton pixel count once it exceeds 50 (the scene renders on the next animation frame)."""
    from selenium.webdriver.support.ui import WebDriverWait

    count: int = WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(
        lambda d: (n := skeleton_pixels(canvas_pixels(d))) > 50 and n
    )
    return count


OVERLAY_PIXELS = """const c = document.getElementById('overlay');
const a = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0; for (let i = 3; i < a.length; i += 4) if (a[i] > 0) n++;
return n;"""


def test_upload_an_image_and_a_clip(server: LiveServer, tmp_path: Path, artifacts: Path) -> None:
    image = tmp_path / "person.png"
    image.write_bytes(encode_image(person_image(192, 256), ".png"))
    clip = tmp_path / "clip.webm"  # VP8: every Chromium build plays it
    clip.write_bytes(encode_clip(frames=8, width=192, height=256, kind="webm"))
    driver = make_driver([])
    try:
        driver.get(server.url + "/demo")
        wait_for(driver, "window.pose3dDemo && window.pose3dDemo.state.ready")
        assert "RANDOM WEIGHTS" in driver.find_element("id", "weights").text  # random weights flagged on the page
        assert skeleton_pixels(canvas_pixels(driver)) == 0  # nothing drawn yet

        driver.find_element("id", "file").send_keys(str(image))
        driver.find_element("id", "send").click()
        wait_for(driver, "window.pose3dDemo.state.mode === 'image' && window.pose3dDemo.state.bones > 0")
        wait_for(driver, "document.getElementById('warnings-summary').textContent.includes('RANDOM')")
        warnings = driver.find_element("id", "warnings")  # one collapsed line, however many warnings
        assert warnings.size["height"] < 40
        assert "capf" in driver.find_element("id", "model").text  # the served models, chosen on the page
        assert "2D: hrnet" in driver.find_element("id", "pipeline").text  # and the stages behind them
        assert driver.execute_script("return window.pose3dDemo.state.people") == 1
        assert wait_for_skeleton(driver) > 50  # the 3D canvas drew the skeleton
        assert driver.execute_script("return window.pose3dDemo.state.fitted.radius") >= 0.5  # view fitted to it
        assert driver.execute_script(OVERLAY_PIXELS) > 100  # and the 2D overlay over the image
        assert "total" in driver.find_element("id", "timings").text
        driver.save_screenshot(str(artifacts / "demo_image.png"))

        driver.find_element("id", "file").send_keys(str(clip))
        driver.find_element("id", "send").click()
        wait_for(driver, "window.pose3dDemo.state.job !== null")  # clips go as jobs, not one long POST
        wait_for(driver, "window.pose3dDemo.state.mode === 'clip' && window.pose3dDemo.state.lastFrame === 0")
        assert driver.execute_script("return document.getElementById('video').videoWidth") == 192  # it plays
        wait_for(driver, "window.pose3dDemo.state.jobState === 'done' && window.pose3dDemo.state.frames === 8")
        progress = driver.find_element("id", "progress")
        assert progress.is_displayed()
        assert (progress.get_attribute("value"), progress.get_attribute("max")) == ("8", "8")
        assert "8 frame(s) from pstmo-9" in driver.find_element("id", "status").text
        driver.execute_script("document.getElementById('video').currentTime = 5 / 25 + 0.01")  # scrub
        wait_for(driver, "window.pose3dDemo.state.lastFrame === 5")
        assert wait_for_skeleton(driver) > 50
        assert driver.execute_script(OVERLAY_PIXELS) > 100  # the 2D overlay drew over the video
        driver.save_screenshot(str(artifacts / "demo_clip.png"))
    finally:
        driver.quit()


def write_y4m(path: Path, frames: int, width: int = 320, height: int = 240) -> None:
    """A raw YUV 4:2:0 clip Chromium's fake camera plays (``--use-file-for-fake-video-capture``)."""
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            rgb = np.roll(person_image(width, height, seed=i % 3), 4 * i, axis=1)
            out.write(b"FRAME\n" + cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())


def test_webcam_frames_stream_over_the_websocket(server: LiveServer, tmp_path: Path, artifacts: Path) -> None:
    camera = tmp_path / "camera.y4m"
    write_y4m(camera, 20)
    driver = make_driver(
        [
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}",
        ]
    )
    try:
        driver.get(server.url + "/demo/")
        wait_for(driver, "window.pose3dDemo && window.pose3dDemo.state.ready")
        driver.find_element("id", "live").click()
        wait_for(driver, "window.pose3dDemo.state.wsOpened")
        wait_for(driver, "window.pose3dDemo.state.wsResults >= 3 && window.pose3dDemo.state.bones > 0")
        assert driver.execute_script("return window.pose3dDemo.state.error") is None
        assert wait_for_skeleton(driver) > 50
        driver.save_screenshot(str(artifacts / "demo_live.png"))
        driver.find_element("id", "live").click()  # stop: close message, tail, normal close
        assert wait_for(driver, "window.pose3dDemo.state.wsClosed") == 1000
    finally:
        driver.quit()
