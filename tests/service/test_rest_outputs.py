"""``POST /v1/pose3d?format=…`` exports over real HTTP (tiny random-weight models)."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest

from service.cli import main
from service.export.formats import CSV_COLUMNS
from tests.service.media_samples import encode_clip, encode_image, person_image
from tests.service.rest_support import LiveServer, assert_problem, live_server, tiny_settings
from tests.unit.bvh_reader import parse_bvh
from tests.unit.render_samples import decode_png

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server(tiny_settings()) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


def keypoints_body(frames: int) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    base = np.array([[320 + 6 * (j % 5), 120 + 14 * j] for j in range(17)], dtype=np.float64)
    sequence = [(base + rng.normal(0, 2, size=base.shape)).round(2).tolist() for _ in range(frames)]
    return {"keypoints_2d": sequence, "image_size": [640, 480], "timestamps_s": [i / 25 for i in range(frames)]}


def test_csv_jsonl_and_bvh_of_the_same_result(client: httpx.Client) -> None:
    body = keypoints_body(6)
    whole = client.post("/v1/pose3d", json=body).json()
    as_csv = client.post("/v1/pose3d?format=csv", json=body)
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 6 * 17
    assert float(rows[17 + 5]["z_m"]) == pytest.approx(whole["frames"][1]["people"][0]["keypoints_3d"][5][2])

    as_jsonl = client.post("/v1/pose3d?format=jsonl", json=body)
    assert as_jsonl.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in as_jsonl.text.splitlines()]
    assert [f["people"][0]["keypoints_3d"] for f in lines] == [f["people"][0]["keypoints_3d"] for f in whole["frames"]]

    as_bvh = client.post("/v1/pose3d?format=bvh", json=body)
    assert as_bvh.status_code == 200, as_bvh.text
    assert as_bvh.headers["content-type"].startswith("application/x-bvh")
    assert as_bvh.headers["content-disposition"].startswith("attachment; filename=")
    assert as_bvh.headers["x-pose3d-bvh-max-error-m"].startswith("0=")
    bvh = parse_bvh(as_bvh.text)
    assert len(bvh.motion) == 6
    assert bvh.frame_time == pytest.approx(0.04)


def test_bvh_of_several_tracks_is_a_zip_or_one_track(client: httpx.Client) -> None:
    image = encode_image(person_image(256, 192), ".png")
    files = {"file": ("two.png", image, "image/png")}
    form = {"boxes": json.dumps([[0, 0, 120, 190], [130, 0, 250, 190]])}
    both = client.post("/v1/pose3d?format=bvh", files=files, data=form)
    assert both.status_code == 200, both.text
    assert both.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(both.content)) as archive:
        names = sorted(archive.namelist())
    assert len(names) == 2
    assert all(n.endswith(".bvh") for n in names)
    one = client.post("/v1/pose3d?format=bvh&track=1", files=files, data=form)
    assert one.headers["content-type"].startswith("application/x-bvh")
    assert_problem(client.post("/v1/pose3d?format=bvh&track=7", files=files, data=form), 422, "invalid-input")


def test_bad_output_parameters_are_400(client: httpx.Client) -> None:
    body = keypoints_body(1)
    assert "format" in assert_problem(client.post("/v1/pose3d?format=xml", json=body), 400, "bad-request")["detail"]
    assert_problem(client.post("/v1/pose3d?format=csv&track=1", json=body), 400, "bad-request")
    assert_problem(client.post("/v1/pose3d?format=bvh&track=x", json=body), 400, "bad-request")


@pytest.mark.parametrize("suffix", [".bvh", ".csv", ".jsonl", ".json"])
def test_estimate_command_writes_the_export_by_suffix(
    server: LiveServer, tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "person.png"
    image.write_bytes(encode_image(person_image(192, 256), ".png"))
    out = tmp_path / f"out{suffix}"
    assert main(["estimate", str(image), "--url", server.url, "-o", str(out)]) == 0
    text = out.read_text()
    if suffix == ".bvh":
        assert len(parse_bvh(text).motion) == 1
        assert "max reconstruction error" in capsys.readouterr().err
    elif suffix == ".csv":
        assert len(list(csv.DictReader(io.StringIO(text)))) == 17
    elif suffix == ".jsonl":
        assert len(json.loads(text.splitlines()[0])["people"]) == 1
    else:
        assert json.loads(text)["units"] == "m"


def test_render_png_of_an_image_and_mp4_of_a_clip(client: httpx.Client) -> None:
    image = encode_image(person_image(192, 256), ".png")
    png = client.post("/v1/pose3d?render=png", files={"file": ("p.png", image, "image/png")})
    assert png.status_code == 200, png.text
    assert png.headers["content-type"] == "image/png"
    decoded = decode_png(png.content)
    assert decoded.shape == (480, 360 + 480, 3)  # the 192x256 input scaled to 480 high, then the 3D panel
    assert decoded[:, :360].std() > 5  # the input image shows on the left

    clip = encode_clip(frames=6)
    whole = client.post("/v1/pose3d", files={"file": ("c.mp4", clip, "video/mp4")}).json()
    mp4 = client.post("/v1/pose3d?render=mp4", files={"file": ("c.mp4", clip, "video/mp4")})
    assert mp4.status_code == 200, mp4.text
    assert mp4.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(mp4.content), mode="r") as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == len(whole["frames"]) == 6
    assert frames[0].shape[0] == 480

    keypoints = client.post("/v1/pose3d?render=png", json=keypoints_body(2))
    assert decode_png(keypoints.content).shape == (480, 480, 3)


def test_bad_render_parameters_are_400(client: httpx.Client) -> None:
    body = keypoints_body(1)
    assert_problem(client.post("/v1/pose3d?render=gif", json=body), 400, "bad-request")
    assert_problem(client.post("/v1/pose3d?render=png&format=csv", json=body), 400, "bad-request")


def test_renders_read_on_random_weights(client: httpx.Client, tmp_path: Path) -> None:
    """The tiny server's random weights put joints anywhere: the overlay stays inside the image (joints outside
    marked at the border), the 3D axes hold every joint, and the picture says RANDOM WEIGHTS."""
    from service.render.overlay import plan_person
    from service.render.panel3d import fit_limits, plotted_points

    width, height = 192, 256
    image = encode_image(person_image(width, height), ".png")
    boxes = json.dumps([[-40, -30, 120, 200], [100, 40, 260, 300]])  # partly outside: joints will be too
    result = client.post("/v1/pose3d", files={"file": ("p.png", image)}, data={"boxes": boxes}).json()
    assert result["model"]["random_weights"]
    people = result["frames"][0]["people"]
    assert len(people) == 2
    for person in people:
        plan = plan_person(person, width, height, scale=1)
        assert plan is not None
        for (x1, y1), (x2, y2) in (segment for segment, _ in plan.bones):
            assert min(x1, x2) >= 0
            assert max(x1, x2) <= width - 1
            assert min(y1, y2) >= 0
            assert max(y1, y2) <= height - 1
        assert len(plan.joints) + len(plan.marks) == 17
        assert all(x in (0, width - 1) or y in (0, height - 1) for x, y in plan.marks)  # on the border
    limits = fit_limits([people])
    for points in plotted_points(people):
        for axis, (low, high) in enumerate(limits):
            assert (low <= points[:, axis]).all()
            assert (points[:, axis] <= high).all()
    sides = [high - low for low, high in limits]
    assert max(sides) - min(sides) < 1e-9  # equal aspect: a cube
    png = client.post("/v1/pose3d?render=png", files={"file": ("p.png", image)}, data={"boxes": boxes})
    (tmp_path / "random.png").write_bytes(png.content)
    picture = decode_png(png.content)
    band = picture[:12, :120].reshape(-1, 3).astype(int)
    assert ((band[:, 0] > 150) & (band[:, 1] < 60)).mean() > 0.5  # the red RANDOM WEIGHTS stamp
