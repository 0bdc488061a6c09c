"""No setting takes an infinite or NaN number: each one that did (a TTL, a Retry-After, a quota) has stopped a
process or answered every request with an error at some point, and a limit without an upper bound (``ge=0`` only)
took ``inf`` without a word. Walks every float setting of every section, nested ones too."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from service.config import GatewaySettings, WorkerSettings, build_settings


def float_fields(model: type[BaseModel], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The dotted paths of ``model``'s float settings, into its nested sections."""
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            yield from float_fields(kind, (*path, name))
        elif kind is float or kind == (float | None):
            yield (*path, name)


def nested(path: tuple[str, ...], value: float) -> dict[str, Any]:
    """``{"a": {"b": value}}`` for the path ``("a", "b")``."""
    out: dict[str, Any] = {path[-1]: value}
    for name in reversed(path[:-1]):
        out = {name: out}
    return out


FIELDS = sorted({(cls, p) for cls in (GatewaySettings, WorkerSettings) for p in float_fields(cls)}, key=str)


def test_the_walk_finds_the_float_settings() -> None:
    found = {".".join(p) for _, p in FIELDS}
    assert {"engine.stream_ttl_s", "limits.retry_after_s", "security.quotas.rate_per_s"} <= found
    assert len(found) >= 20, sorted(found)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize(
    ("settings", "path"), FIELDS, ids=lambda x: ".".join(x) if isinstance(x, tuple) else x.__name__
)
def test_no_float_setting_takes_infinity_or_nan(settings: type[BaseModel], path: tuple[str, ...], value: float) -> None:
    with pytest.raises(ValidationError, match=path[-1]):
        build_settings(settings, None, **nested(path, value))  # type: ignore[type-var]
