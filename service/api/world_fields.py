"""The camera and smoothing fields of JSON requests (a base of the request schemas), and their conversion to
the engine's options. See :mod:`service.api.fields` for the names and defaults."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from pydantic import BaseModel, Field

from service.errors import InvalidInput
from service.geometry.camera import CameraSpec
from service.geometry.smoothing import SmoothingMethod, SmoothingSpec

CAMERA_FIELDS = ("fx", "fy", "cx", "cy", "fov_deg")
SMOOTHING_PARAMS = tuple(f.name for f in fields(SmoothingSpec) if f.name != "method")


class WorldFields(BaseModel):
    """Camera and smoothing fields of a JSON request (see the module docstring)."""

    fx: float | None = Field(None, gt=0, description="focal length x, pixels (with fy, cx, cy)")
    fy: float | None = Field(None, gt=0, description="focal length y, pixels")
    cx: float | None = Field(None, description="principal point x, pixels")
    cy: float | None = Field(None, description="principal point y, pixels")
    fov_deg: float | None = Field(None, ge=1, le=179, description="horizontal FOV, degrees (instead of fx..cy)")
    smoothing: SmoothingMethod = Field(SmoothingMethod.NONE, description="none | one_euro | savgol (per track)")
    smoothing_params: dict[str, float] | None = Field(
        None, description="min_cutoff_hz, beta, d_cutoff_hz (one_euro); half_window, polyorder (savgol)"
    )

    def world(self) -> tuple[CameraSpec, SmoothingSpec]:
        return build_world({n: getattr(self, n) for n in CAMERA_FIELDS}, self.smoothing, self.smoothing_params)


def build_world(
    camera: dict[str, float | None], method: SmoothingMethod, params: dict[str, Any] | None
) -> tuple[CameraSpec, SmoothingSpec]:
    """The engine's options from the request's fields (422 on inconsistent or out-of-range values)."""
    params = dict(params or {})
    if unknown := sorted(set(params) - set(SMOOTHING_PARAMS)):
        raise InvalidInput(f"smoothing_params: unknown {unknown}; known: {', '.join(SMOOTHING_PARAMS)}")
    for name, value in params.items():  # JSON's Infinity passes ``beta >= 0``; inf * a speed of 0 is NaN joints
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise InvalidInput(f"smoothing_params.{name} must be a finite number")
    for name in ("half_window", "polyorder"):
        if name in params:
            value = params[name]
            if not isinstance(value, int | float) or not math.isfinite(value) or value != int(value):
                raise InvalidInput(f"smoothing_params.{name} must be an integer")
            params[name] = int(value)
    try:
        return CameraSpec(**camera), SmoothingSpec(method, **params)
    except (ValueError, TypeError) as e:
        raise InvalidInput(str(e)) from None
