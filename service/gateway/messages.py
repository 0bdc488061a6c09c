"""The ``pose3d.v1`` messages of the public gRPC API, derived from the one schema (:mod:`service.api.schemas`).

:func:`to_message` turns a schema's JSON document (what REST sends) into the message of the same shape, by three
rules read from the message descriptor (docs/api.md, "One schema"): a nested array for a repeated number is
flattened row-major (``keypoints_2d`` ``(17, 2)`` → 34 floats); an array for a message field fills its fields in
order (``box`` → ``Box``); an enum's string names the constant ending in it (``"whole_frame"`` →
``BOX_SOURCE_WHOLE_FRAME``). ``None`` leaves a field unset; members the message lacks (``links``) are dropped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


def to_message(document: Mapping[str, Any], message: type[M]) -> M:
    """``document`` (the JSON values of a schema model) as a ``message`` instance."""
    return message(**_fields(document, cast(Descriptor, message.DESCRIPTOR)))


Convert = Callable[[Any], Any]


def _fields(document: Mapping[str, Any], descriptor: Descriptor) -> dict[str, Any]:
    plan = _plan(descriptor)
    return {
        name: convert(value) for name, value in document.items() if value is not None and (convert := plan.get(name))
    }


@functools.cache
def _plan(descriptor: Descriptor) -> dict[str, Convert]:
    """How each field of ``descriptor`` takes its JSON value (worked out once per message type)."""
    return {field.name: _converter(field) for field in descriptor.fields}


def _same(value: Any) -> Any:
    return value


def _flat(value: Any) -> Any:
    return [v for row in value for v in row] if value and isinstance(value[0], list) else value


def _converter(field: FieldDescriptor) -> Convert:
    sub = field.message_type
    if sub is not None and sub.GetOptions().map_entry:
        return _same
    if sub is not None:
        names = tuple(f.name for f in sub.fields)

        def one(value: Any) -> Any:  # a fixed-length array fills the message's fields in order
            return dict(zip(names, value, strict=True)) if isinstance(value, list) else _fields(value, sub)

        return (lambda values: [one(v) for v in values]) if field.is_repeated else one
    if field.enum_type is not None:
        numbers = {v.name: v.number for v in field.enum_type.values}
        return lambda value: next(n for name, n in numbers.items() if name.endswith("_" + str(value).upper()))
    return _flat if field.is_repeated else _same
