"""The shipped catalogue, catalogue names in settings, ``serve --weights SET`` and the ``pose3d weights`` CLI."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from service.cli import main
from service.config import GatewaySettings, LifterKind, ModelSpec, WorkerSettings, build_settings, load_settings_file
from service.profiles import profile_path
from service.weights.catalogue import CATALOGUE_FILE, Fetch, Format, Kind, load_catalogue, parse_catalogue
from service.weights.resolve import resolved, weight_set_overrides
from service.weights.store import WeightsError, install


def test_the_catalogue_lists_the_published_checkpoints() -> None:
    from model.capf import CAPF_PRESETS
    from model.hrnet import HRNET_PRESETS
    from model.pstmo import PSTMO_PRESETS

    cat = load_catalogue()
    names = cat.names()
    for wanted in ("pstmo-243", "pstmo-243-small", "pstmo-81-3dhp", "pstmo-27", "capf-hrnet-w32", "capf-hrnet-w48"):
        assert wanted in names
    assert {"capf-cpn", "hrnet-w32-coco-mmpose", "hrnet-w48-coco-mmpose", "hrnet-w32-coco", "hrnet-w48-coco"} <= names
    assert any(e.kind is Kind.PERSON_DETECTOR and e.format is Format.ONNX and e.fetchable for e in cat.entries)
    presets = {Format.PSTMO: PSTMO_PRESETS, Format.CAPF: CAPF_PRESETS}
    for e in cat.entries:
        assert e.source.startswith("https://")
        assert e.licence
        if e.format in presets:
            assert e.arch in presets[e.format], e.name
        elif e.format in (Format.MMPOSE, Format.HRNET_AUTHORS):
            assert e.arch in HRNET_PRESETS, e.name
        if e.format is Format.MMPOSE:  # mmpose names end in -<sha256 prefix>_<date>.pth
            m = re.search(r"-([0-9a-f]{8})_\d{8}\.pth$", e.file)
            assert m is not None, e.name
            assert e.sha256_prefix == m.group(1), e.name
            assert e.url.endswith(e.file), e.name
        if e.fetch is Fetch.FOLDER:
            assert "folder" in e.url


def test_a_set_naming_a_missing_entry_is_rejected() -> None:
    text = CATALOGUE_FILE.read_text()
    broken = text.replace('detector = "hrnet-w48-coco-mmpose"', 'detector = "no-such-entry"')
    with pytest.raises(ValueError, match=r"set w48: detector 'no-such-entry' is not a catalogue entry"):
        parse_catalogue(broken)


def _install_fake(root: Path, name: str, data: bytes = b"weights") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    src = root.parent / f"{name}.src"
    src.write_bytes(data)
    return install(root, load_catalogue().entry(name), src, origin="test").path


def test_settings_are_pure_data_names_resolve_at_start_up(tmp_path: Path) -> None:
    """Building settings touches no disk: a name that is not installed fails only when start-up resolves it."""
    settings = GatewaySettings(weights_dir=tmp_path, detector={"person_detector_onnx": "yolox-m-person"})
    assert settings.detector.person_detector_onnx == Path("yolox-m-person")
    with pytest.raises(WeightsError, match="pose3d weights fetch yolox-m-person"):
        resolved(settings)


def test_settings_accept_installed_catalogue_names(tmp_path: Path) -> None:
    root = tmp_path / "weights"
    pstmo, det = _install_fake(root, "pstmo-243"), _install_fake(root, "hrnet-w32-coco-mmpose")
    own = tmp_path / "mine.pth"
    own.write_bytes(b"x")
    models = {
        "pstmo-243": ModelSpec(kind=LifterKind.PSTMO, arch="pstmo-243", frames=243, checkpoint=Path("pstmo-243")),
        "mine": ModelSpec(kind=LifterKind.PSTMO, arch="pstmo-243", frames=243, checkpoint=own),
    }
    s = resolved(WorkerSettings(weights_dir=root, models=models, detector={"checkpoint": "hrnet-w32-coco-mmpose"}))
    assert s.models["pstmo-243"].checkpoint == pstmo
    assert s.models["mine"].checkpoint == own  # an existing file is a file
    assert s.detector.checkpoint == det
    missing = resolved(GatewaySettings(weights_dir=root, detector={"checkpoint": "/nowhere/x.pth"}))
    assert missing.detector.checkpoint == Path("/nowhere/x.pth")  # not a catalogue name: the loader reports it


def test_an_uninstalled_catalogue_name_is_one_line_naming_fetch(tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as info:
        resolved(GatewaySettings(weights_dir=tmp_path, detector={"person_detector_onnx": "yolox-m-person"}))
    assert str(info.value) == (
        "weights 'yolox-m-person' are not installed: run `pose3d weights fetch yolox-m-person` "
        "(or `pose3d weights add FILE`); or pass --allow-random-weights to serve them on random weights "
        "(meaningless poses)"
    )
    remote = resolved(GatewaySettings(weights_dir=tmp_path, workers=["w:1"], detector={"checkpoint": "hrnet-w32-coco"}))
    assert remote.detector.checkpoint == Path("hrnet-w32-coco")  # the workers load (and resolve) weights


def test_the_realtime_profile_names_all_missing_files_in_one_command(tmp_path: Path) -> None:
    realtime = load_settings_file(profile_path("realtime"))
    with pytest.raises(WeightsError) as info:
        resolved(build_settings(GatewaySettings, weights_dir=tmp_path, **realtime))
    names = ("yolox-tiny-person", "rtmpose-t", "pstmo-81-3dhp")
    assert f"run `pose3d weights fetch {' '.join(names)}`" in str(info.value)
    assert all(repr(n) in str(info.value).split(":")[0] for n in names)
    allowed = resolved(build_settings(GatewaySettings, weights_dir=tmp_path, allow_random_weights=True, **realtime))
    assert allowed.detector.rtmpose_onnx == Path("rtmpose-t")  # the loader serves its random-weight stand-in
    assert allowed.models["pstmo-81"].checkpoint == Path("pstmo-81-3dhp")


def test_weights_dir_comes_from_the_environment_through_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _install_fake(tmp_path / "env-weights", "pstmo-243")
    monkeypatch.setenv("POSE3D_WEIGHTS_DIR", str(tmp_path / "env-weights"))
    spec = {"kind": "pstmo", "arch": "pstmo-243", "frames": 243, "checkpoint": "pstmo-243"}
    assert resolved(build_settings(WorkerSettings, models={"p": spec})).models["p"].checkpoint == path
    monkeypatch.delenv("POSE3D_WEIGHTS_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    xdg_path = _install_fake(tmp_path / "xdg" / "pose3d" / "weights", "pstmo-243")
    assert resolved(build_settings(WorkerSettings, models={"p": spec})).models["p"].checkpoint == xdg_path


def test_serve_weights_set_selects_detector_person_detector_and_lifters(tmp_path: Path) -> None:
    root = tmp_path / "weights"
    s = load_catalogue().weight_set("w32")
    paths = {n: _install_fake(root, n) for n in {s.detector, s.backbone, s.person_detector, *s.lifters.values()}}
    settings = resolved(build_settings(GatewaySettings, weights_dir=root, **weight_set_overrides("w32")))
    assert settings.detector.arch == "w32"
    assert settings.detector.checkpoint == paths["hrnet-w32-coco-mmpose"]
    assert settings.detector.backbone_checkpoint == paths["capf-hrnet-w32"]
    assert settings.detector.person_detector_onnx == paths["yolox-m-person"]
    assert settings.detector.person_detector_family == "yolox"
    assert settings.models["capf"] == ModelSpec(
        kind=LifterKind.CAPF, arch="capf-w32", checkpoint=paths["capf-hrnet-w32"]
    )
    assert settings.models["pstmo-243"].checkpoint == paths["pstmo-243"]
    assert settings.models["pstmo-243"].frames == 243
    assert {settings.default_image_model, settings.default_clip_model} <= set(settings.models)
    with pytest.raises(WeightsError, match=r"no weights set 'w99'"):
        weight_set_overrides("w99")


def test_cli_list_path_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "w"
    assert main(["weights", "--weights-dir", str(root), "list"]) == 0
    out = capsys.readouterr().out
    assert f"weights directory: {root}" in out
    assert "source https://github.com/open-mmlab/mmpose/blob/main/configs/body_2d_keypoint" in out
    assert "w32 " in out
    assert "w48 " in out
    assert main(["weights", "--weights-dir", str(root), "path", "pstmo-243"]) == 2  # the user must act: exit 2
    assert (
        capsys.readouterr().err.strip().endswith("run `pose3d weights fetch pstmo-243` (or `pose3d weights add FILE`)")
    )
    installed_path = _install_fake(root, "pstmo-243")
    assert main(["weights", "--weights-dir", str(root), "path", "pstmo-243"]) == 0
    assert capsys.readouterr().out.strip() == str(installed_path)
    assert main(["weights", "--weights-dir", str(root), "fetch", "capf-cpn"]) == 2  # a manual step, said at once
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("error: capf-cpn is published in a folder")
    assert "pose3d weights add best_epoch_cpn.bin --name capf-cpn" in err
    assert main(["weights", "--weights-dir", str(root), "fetch", "pstmo-243"]) == 0  # installed: nothing to fetch
    assert "already installed" in capsys.readouterr().out


def test_fetch_of_a_set_names_its_folder_entry_manual_step_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "w"
    for name in ("hrnet-w48-coco-mmpose", "yolox-m-person", "pstmo-243"):
        _install_fake(root, name)
    assert main(["weights", "--weights-dir", str(root), "fetch", "w48"]) == 2  # never waits on the folder
    captured = capsys.readouterr()
    assert captured.out.count("already installed") == 3
    [line] = captured.err.strip().splitlines()
    assert line.startswith("error: capf-hrnet-w48 is published in a folder")
    assert line.endswith("then run `pose3d weights add best_epoch_hrnet_48.bin --name capf-hrnet-w48`")


def test_verify_checks_published_and_recorded_sha256(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "w"
    assert main(["weights", "--weights-dir", str(root), "verify"]) == 0
    assert "nothing installed" in capsys.readouterr().out
    path = _install_fake(root, "pstmo-243")
    assert main(["weights", "--weights-dir", str(root), "verify"]) == 0
    out = capsys.readouterr().out
    assert "pstmo-243: ok, sha256" in out
    assert "as recorded when it was installed (trust on first use" in out
    path.write_bytes(path.read_bytes() + b"changed")
    assert main(["weights", "--weights-dir", str(root), "verify", "pstmo-243"]) == 1
    assert "differs from" in capsys.readouterr().err
    assert main(["weights", "--weights-dir", str(root), "verify", "pstmo-27"]) == 2
    assert "run `pose3d weights fetch pstmo-27`" in capsys.readouterr().err
    assert main(["weights", "--weights-dir", str(root), "verify", "nope"]) == 2


def test_weights_list_and_fetch_import_no_torch(tmp_path: Path) -> None:
    import subprocess

    code = (  # the weights commands' own parser: `pose3d`'s other subcommands are not this test's subject
        "import sys, argparse; from service.weights.cli import add_arguments, run; "
        "p = argparse.ArgumentParser(); add_arguments(p.add_subparsers().add_parser('weights')); "
        "a = p.parse_args(['weights', '--weights-dir', sys.argv[1], 'list']); run(a); "
        "from service.weights.resolve import weight_set_overrides; import service.weights.fetch; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_serve_with_a_set_that_is_not_installed_stops_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POSE3D_WEIGHTS_DIR", str(tmp_path))
    assert main(["serve", "--weights", "w32", "--port", "0"]) == 2
    err = capsys.readouterr().err
    names = "hrnet-w32-coco-mmpose capf-hrnet-w32 yolox-m-person pstmo-243"  # all of them, in one command
    assert err == (
        "pose3d serve: error: weights 'hrnet-w32-coco-mmpose', 'capf-hrnet-w32', 'yolox-m-person', 'pstmo-243' "
        f"are not installed: run `pose3d weights fetch {names}` (or `pose3d weights add FILE`); or pass "
        "--allow-random-weights to serve them on random weights (meaningless poses)\n"
    )
