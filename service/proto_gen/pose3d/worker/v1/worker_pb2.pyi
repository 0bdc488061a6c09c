from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Array(_message.Message):
    __slots__ = ("data", "shape")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, data: _Optional[bytes] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class Options(_message.Message):
    __slots__ = ("model", "boxes", "flip_test", "max_people", "mode", "world")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    FLIP_TEST_FIELD_NUMBER: _ClassVar[int]
    MAX_PEOPLE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    WORLD_FIELD_NUMBER: _ClassVar[int]
    model: str
    boxes: Array
    flip_test: bool
    max_people: int
    mode: str
    world: str
    def __init__(self, model: _Optional[str] = ..., boxes: _Optional[_Union[Array, _Mapping]] = ..., flip_test: _Optional[bool] = ..., max_people: _Optional[int] = ..., mode: _Optional[str] = ..., world: _Optional[str] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("encoded_image", "keypoints", "scores", "image_width", "image_height", "joint_set", "frame_index", "timestamp_s", "detect_people", "raw_image")
    ENCODED_IMAGE_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    JOINT_SET_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_S_FIELD_NUMBER: _ClassVar[int]
    DETECT_PEOPLE_FIELD_NUMBER: _ClassVar[int]
    RAW_IMAGE_FIELD_NUMBER: _ClassVar[int]
    encoded_image: bytes
    keypoints: Array
    scores: Array
    image_width: int
    image_height: int
    joint_set: str
    frame_index: int
    timestamp_s: float
    detect_people: bool
    raw_image: bytes
    def __init__(self, encoded_image: _Optional[bytes] = ..., keypoints: _Optional[_Union[Array, _Mapping]] = ..., scores: _Optional[_Union[Array, _Mapping]] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ..., joint_set: _Optional[str] = ..., frame_index: _Optional[int] = ..., timestamp_s: _Optional[float] = ..., detect_people: _Optional[bool] = ..., raw_image: _Optional[bytes] = ...) -> None: ...

class Frames(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[Frame]
    def __init__(self, frames: _Optional[_Iterable[_Union[Frame, _Mapping]]] = ...) -> None: ...

class Clip(_message.Message):
    __slots__ = ("data", "container", "every_nth", "start", "max_clip_frames", "max_clip_seconds", "max_frame_side", "max_image_pixels")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    EVERY_NTH_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    MAX_CLIP_FRAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_CLIP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAME_SIDE_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    container: str
    every_nth: int
    start: int
    max_clip_frames: int
    max_clip_seconds: float
    max_frame_side: int
    max_image_pixels: int
    def __init__(self, data: _Optional[bytes] = ..., container: _Optional[str] = ..., every_nth: _Optional[int] = ..., start: _Optional[int] = ..., max_clip_frames: _Optional[int] = ..., max_clip_seconds: _Optional[float] = ..., max_frame_side: _Optional[int] = ..., max_image_pixels: _Optional[int] = ...) -> None: ...

class Work(_message.Message):
    __slots__ = ("request_id", "frames", "clip", "options", "stream_id", "close", "chunk_frames", "chunk_timeout_s")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FRAMES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    frames: Frames
    clip: Clip
    options: Options
    stream_id: str
    close: bool
    chunk_frames: int
    chunk_timeout_s: float
    def __init__(self, request_id: _Optional[str] = ..., frames: _Optional[_Union[Frames, _Mapping]] = ..., clip: _Optional[_Union[Clip, _Mapping]] = ..., options: _Optional[_Union[Options, _Mapping]] = ..., stream_id: _Optional[str] = ..., close: _Optional[bool] = ..., chunk_frames: _Optional[int] = ..., chunk_timeout_s: _Optional[float] = ...) -> None: ...

class Results(_message.Message):
    __slots__ = ("frame_index", "timestamp_s", "people", "track_id", "person", "warnings_per_person", "warnings")
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_S_FIELD_NUMBER: _ClassVar[int]
    PEOPLE_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_PER_PERSON_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    frame_index: _containers.RepeatedScalarFieldContainer[int]
    timestamp_s: _containers.RepeatedScalarFieldContainer[float]
    people: _containers.RepeatedScalarFieldContainer[int]
    track_id: _containers.RepeatedScalarFieldContainer[int]
    person: Array
    warnings_per_person: _containers.RepeatedScalarFieldContainer[int]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, frame_index: _Optional[_Iterable[int]] = ..., timestamp_s: _Optional[_Iterable[float]] = ..., people: _Optional[_Iterable[int]] = ..., track_id: _Optional[_Iterable[int]] = ..., person: _Optional[_Union[Array, _Mapping]] = ..., warnings_per_person: _Optional[_Iterable[int]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "kind", "version", "weights", "frames", "stride", "joint_set", "device", "needs_image", "flip_test")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    JOINT_SET_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    NEEDS_IMAGE_FIELD_NUMBER: _ClassVar[int]
    FLIP_TEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    version: str
    weights: str
    frames: int
    stride: int
    joint_set: str
    device: str
    needs_image: bool
    flip_test: bool
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., version: _Optional[str] = ..., weights: _Optional[str] = ..., frames: _Optional[int] = ..., stride: _Optional[int] = ..., joint_set: _Optional[str] = ..., device: _Optional[str] = ..., needs_image: _Optional[bool] = ..., flip_test: _Optional[bool] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("model", "box_source", "timings_ms")
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BOX_SOURCE_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    box_source: str
    timings_ms: _containers.ScalarMap[str, float]
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ..., box_source: _Optional[str] = ..., timings_ms: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("results", "frames_decoded", "summary")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DECODED_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    results: Results
    frames_decoded: int
    summary: Summary
    def __init__(self, results: _Optional[_Union[Results, _Mapping]] = ..., frames_decoded: _Optional[int] = ..., summary: _Optional[_Union[Summary, _Mapping]] = ...) -> None: ...

class StreamCall(_message.Message):
    __slots__ = ("op", "stream_id", "options")
    class Op(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OP_GET: _ClassVar[StreamCall.Op]
        OP_OPEN: _ClassVar[StreamCall.Op]
        OP_CLOSE: _ClassVar[StreamCall.Op]
    OP_GET: StreamCall.Op
    OP_OPEN: StreamCall.Op
    OP_CLOSE: StreamCall.Op
    OP_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    op: StreamCall.Op
    stream_id: str
    options: Options
    def __init__(self, op: _Optional[_Union[StreamCall.Op, str]] = ..., stream_id: _Optional[str] = ..., options: _Optional[_Union[Options, _Mapping]] = ...) -> None: ...

class StreamReply(_message.Message):
    __slots__ = ("stream_id", "model", "mode", "frames_received", "frames_emitted", "tail", "smoothing_lag_frames")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_EMITTED_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    SMOOTHING_LAG_FRAMES_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    model: str
    mode: str
    frames_received: int
    frames_emitted: int
    tail: Results
    smoothing_lag_frames: int
    def __init__(self, stream_id: _Optional[str] = ..., model: _Optional[str] = ..., mode: _Optional[str] = ..., frames_received: _Optional[int] = ..., frames_emitted: _Optional[int] = ..., tail: _Optional[_Union[Results, _Mapping]] = ..., smoothing_lag_frames: _Optional[int] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Description(_message.Message):
    __slots__ = ("models", "components")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    components: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., components: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class ReadyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReadyReply(_message.Message):
    __slots__ = ("ready", "detail")
    class DetailEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    READY_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ready: bool
    detail: _containers.ScalarMap[str, str]
    def __init__(self, ready: _Optional[bool] = ..., detail: _Optional[_Mapping[str, str]] = ...) -> None: ...
