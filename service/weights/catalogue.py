"""The weights catalogue: published checkpoints (``catalogue.toml`` beside this module) and complete sets of them.

Typed, frozen and validated at load: every set names existing entries of the right kinds, names are unique,
checksums are lower-case hex. Torch-free.
"""

from __future__ import annotations

import tomllib
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.joints import JointOrder

CATALOGUE_FILE: Final = Path(__file__).with_name("catalogue.toml")
_HEX = r"^[0-9a-f]*$"


class WeightsError(Exception):
    """A weights operation failed; the message is one line that says what to do."""


class Kind(StrEnum):
    """Which setting an entry feeds."""

    DETECTOR = "detector"  # detector.checkpoint (COCO HRNet with heatmap head)
    BACKBONE = "backbone"  # detector.backbone_checkpoint
    LIFTER = "lifter"  # models.<name>.checkpoint
    LIFTER_BACKBONE = "lifter+backbone"  # a CA-PF whole model: both of the above
    PERSON_DETECTOR = "person_detector"  # detector.person_detector_onnx
    KEYPOINT_DETECTOR = "keypoint_detector"  # detector.rtmpose_onnx (detector.family = "rtmpose")


class Format(StrEnum):
    """File layouts that ``pose3d weights add`` recognises (see model/checkpoints/)."""

    PSTMO = "pstmo"
    CAPF = "capf"
    HRNET_AUTHORS = "hrnet_authors"
    MMPOSE = "mmpose"
    ONNX = "onnx"


class Fetch(StrEnum):
    """How an entry is obtained."""

    HTTP = "http"  # one file at ``url``
    GDRIVE = "gdrive"  # one Google Drive file (the "download anyway" page is followed)
    FOLDER = "folder"  # a Drive/OneDrive folder: not fetchable as one file; download by hand and `add`
    NONE = "none"  # not published


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Entry(_Frozen):
    """One published checkpoint. Sizes and checksums describe the downloaded file (the archive, if any)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.+-]*$")
    title: str
    kind: Kind
    format: Format
    arch: str = Field("", description="preset of the loader the weights fit (model/*.py *_PRESETS)")
    lifter_kind: Literal["", "pstmo", "capf"] = ""
    frames: int = Field(1, ge=1)
    joint_order: JointOrder = Field(JointOrder.H36M, description="lifters: the joint order trained in")
    output_unit: Literal["m", "mm"] = Field("m", description="lifters: the unit of the 3D training targets")
    family: Literal["", "yolox", "rtmdet"] = ""
    file: str = Field(pattern=r"^[^/\\]+$")
    fetch: Fetch
    url: str = ""
    archive: bool = False
    size: int | None = Field(None, gt=0, description="bytes, where published")
    sha256: str = Field("", pattern=_HEX, max_length=64)
    sha256_prefix: str = Field("", pattern=_HEX, max_length=64)
    source: str = Field(pattern=r"^https://")
    licence: str
    notes: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Entry:
        if self.fetch in (Fetch.HTTP, Fetch.GDRIVE, Fetch.FOLDER) and not self.url.startswith(("https://", "http://")):
            raise ValueError(f"entry {self.name}: fetch={self.fetch} needs a url")
        if self.kind is Kind.PERSON_DETECTOR and not self.family:
            raise ValueError(f"entry {self.name}: a person detector needs its family (yolox or rtmdet)")
        if self.kind in (Kind.LIFTER, Kind.LIFTER_BACKBONE) and not self.lifter_kind:
            raise ValueError(f"entry {self.name}: a lifter needs lifter_kind")
        if self.sha256 and len(self.sha256) != 64:
            raise ValueError(f"entry {self.name}: sha256 must be 64 hex digits")
        return self

    @property
    def fetchable(self) -> bool:
        return self.fetch in (Fetch.HTTP, Fetch.GDRIVE)

    @property
    def checksum_text(self) -> str:
        if self.sha256:
            return f"sha256 {self.sha256[:12]}…"
        if self.sha256_prefix:
            return f"sha256 {self.sha256_prefix}… (from the file name)"
        return "checksum not published"


class WeightSet(_Frozen):
    """A complete set for ``pose3d serve --weights NAME``: detector, person detector, lifters by model name."""

    name: str
    title: str
    detector: str
    backbone: str = ""
    person_detector: str
    lifters: dict[str, str]

    @property
    def members(self) -> list[str]:
        """The entry names of the set, in order (each once, none empty)."""
        parts = [self.detector, self.backbone, self.person_detector, *self.lifters.values()]
        return list(dict.fromkeys(p for p in parts if p))


class Catalogue(_Frozen):
    entries: tuple[Entry, ...] = Field(alias="entry")
    sets: tuple[WeightSet, ...] = Field(alias="set")

    @model_validator(mode="after")
    def _references(self) -> Catalogue:
        names = [e.name for e in self.entries]
        if len(set(names)) != len(names):
            raise ValueError("catalogue: entry names must be unique")
        by_name = {e.name: e for e in self.entries}
        wanted = {
            "detector": (Kind.DETECTOR,),
            "backbone": (Kind.BACKBONE, Kind.LIFTER_BACKBONE),
            "person_detector": (Kind.PERSON_DETECTOR,),
        }
        for s in self.sets:
            refs = [(field, getattr(s, field)) for field in wanted if getattr(s, field)]
            refs += [("lifters", v) for v in s.lifters.values()]
            for field, ref in refs:
                kinds = wanted.get(field, (Kind.LIFTER, Kind.LIFTER_BACKBONE))
                if ref not in by_name or by_name[ref].kind not in kinds:
                    raise ValueError(f"set {s.name}: {field} {ref!r} is not a catalogue entry of kind {kinds[0]}")
        return self

    def entry(self, name: str) -> Entry:
        """The entry called ``name``; WeightsError otherwise."""
        for e in self.entries:
            if e.name == name:
                return e
        raise WeightsError(f"{name!r} is not in the weights catalogue (see `pose3d weights list`)")

    def weight_set(self, name: str) -> WeightSet:
        for s in self.sets:
            if s.name == name:
                return s
        raise WeightsError(f"no weights set {name!r} (sets: {', '.join(s.name for s in self.sets)})")

    def names(self) -> frozenset[str]:
        return frozenset(e.name for e in self.entries)


def parse_catalogue(text: str) -> Catalogue:
    """A catalogue from TOML text (ValueError on a malformed one)."""
    return Catalogue.model_validate(tomllib.loads(text))


@cache
def load_catalogue(path: Path = CATALOGUE_FILE) -> Catalogue:
    """The catalogue shipped with the package (read once per process)."""
    return parse_catalogue(path.read_text(encoding="utf-8"))
