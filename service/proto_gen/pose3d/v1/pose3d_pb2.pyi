from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JointSet(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOINT_SET_UNSPECIFIED: _ClassVar[JointSet]
    JOINT_SET_COCO: _ClassVar[JointSet]
    JOINT_SET_H36M: _ClassVar[JointSet]

class WindowMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WINDOW_MODE_UNSPECIFIED: _ClassVar[WindowMode]
    WINDOW_MODE_CENTRED: _ClassVar[WindowMode]
    WINDOW_MODE_CAUSAL: _ClassVar[WindowMode]

class SmoothingMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SMOOTHING_METHOD_UNSPECIFIED: _ClassVar[SmoothingMethod]
    SMOOTHING_METHOD_NONE: _ClassVar[SmoothingMethod]
    SMOOTHING_METHOD_ONE_EURO: _ClassVar[SmoothingMethod]
    SMOOTHING_METHOD_SAVGOL: _ClassVar[SmoothingMethod]

class BoxSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BOX_SOURCE_UNSPECIFIED: _ClassVar[BoxSource]
    BOX_SOURCE_CLIENT: _ClassVar[BoxSource]
    BOX_SOURCE_WHOLE_FRAME: _ClassVar[BoxSource]
    BOX_SOURCE_DETECTOR: _ClassVar[BoxSource]
    BOX_SOURCE_KEYPOINTS: _ClassVar[BoxSource]
JOINT_SET_UNSPECIFIED: JointSet
JOINT_SET_COCO: JointSet
JOINT_SET_H36M: JointSet
WINDOW_MODE_UNSPECIFIED: WindowMode
WINDOW_MODE_CENTRED: WindowMode
WINDOW_MODE_CAUSAL: WindowMode
SMOOTHING_METHOD_UNSPECIFIED: SmoothingMethod
SMOOTHING_METHOD_NONE: SmoothingMethod
SMOOTHING_METHOD_ONE_EURO: SmoothingMethod
SMOOTHING_METHOD_SAVGOL: SmoothingMethod
BOX_SOURCE_UNSPECIFIED: BoxSource
BOX_SOURCE_CLIENT: BoxSource
BOX_SOURCE_WHOLE_FRAME: BoxSource
BOX_SOURCE_DETECTOR: BoxSource
BOX_SOURCE_KEYPOINTS: BoxSource

class Box(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    x1: float
    y1: float
    x2: float
    y2: float
    def __init__(self, x1: _Optional[float] = ..., y1: _Optional[float] = ..., x2: _Optional[float] = ..., y2: _Optional[float] = ...) -> None: ...

class Camera(_message.Message):
    __slots__ = ("fx", "fy", "cx", "cy", "fov_deg")
    FX_FIELD_NUMBER: _ClassVar[int]
    FY_FIELD_NUMBER: _ClassVar[int]
    CX_FIELD_NUMBER: _ClassVar[int]
    CY_FIELD_NUMBER: _ClassVar[int]
    FOV_DEG_FIELD_NUMBER: _ClassVar[int]
    fx: float
    fy: float
    cx: float
    cy: float
    fov_deg: float
    def __init__(self, fx: _Optional[float] = ..., fy: _Optional[float] = ..., cx: _Optional[float] = ..., cy: _Optional[float] = ..., fov_deg: _Optional[float] = ...) -> None: ...

class Smoothing(_message.Message):
    __slots__ = ("method", "min_cutoff_hz", "beta", "d_cutoff_hz", "half_window", "polyorder")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    MIN_CUTOFF_HZ_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    D_CUTOFF_HZ_FIELD_NUMBER: _ClassVar[int]
    HALF_WINDOW_FIELD_NUMBER: _ClassVar[int]
    POLYORDER_FIELD_NUMBER: _ClassVar[int]
    method: SmoothingMethod
    min_cutoff_hz: float
    beta: float
    d_cutoff_hz: float
    half_window: int
    polyorder: int
    def __init__(self, method: _Optional[_Union[SmoothingMethod, str]] = ..., min_cutoff_hz: _Optional[float] = ..., beta: _Optional[float] = ..., d_cutoff_hz: _Optional[float] = ..., half_window: _Optional[int] = ..., polyorder: _Optional[int] = ...) -> None: ...

class Options(_message.Message):
    __slots__ = ("model", "boxes", "flip_test", "max_people", "mode", "every_nth", "camera", "smoothing")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    FLIP_TEST_FIELD_NUMBER: _ClassVar[int]
    MAX_PEOPLE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    EVERY_NTH_FIELD_NUMBER: _ClassVar[int]
    CAMERA_FIELD_NUMBER: _ClassVar[int]
    SMOOTHING_FIELD_NUMBER: _ClassVar[int]
    model: str
    boxes: _containers.RepeatedCompositeFieldContainer[Box]
    flip_test: bool
    max_people: int
    mode: WindowMode
    every_nth: int
    camera: Camera
    smoothing: Smoothing
    def __init__(self, model: _Optional[str] = ..., boxes: _Optional[_Iterable[_Union[Box, _Mapping]]] = ..., flip_test: _Optional[bool] = ..., max_people: _Optional[int] = ..., mode: _Optional[_Union[WindowMode, str]] = ..., every_nth: _Optional[int] = ..., camera: _Optional[_Union[Camera, _Mapping]] = ..., smoothing: _Optional[_Union[Smoothing, _Mapping]] = ...) -> None: ...

class Keypoints2D(_message.Message):
    __slots__ = ("xy", "scores")
    XY_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    xy: _containers.RepeatedScalarFieldContainer[float]
    scores: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, xy: _Optional[_Iterable[float]] = ..., scores: _Optional[_Iterable[float]] = ...) -> None: ...

class KeypointsInput(_message.Message):
    __slots__ = ("frames", "image_width", "image_height", "joint_set", "timestamps_s")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    JOINT_SET_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_S_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[Keypoints2D]
    image_width: int
    image_height: int
    joint_set: JointSet
    timestamps_s: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, frames: _Optional[_Iterable[_Union[Keypoints2D, _Mapping]]] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ..., joint_set: _Optional[_Union[JointSet, str]] = ..., timestamps_s: _Optional[_Iterable[float]] = ...) -> None: ...

class EstimateRequest(_message.Message):
    __slots__ = ("image", "clip", "keypoints", "options", "request_id")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    clip: bytes
    keypoints: KeypointsInput
    options: Options
    request_id: str
    def __init__(self, image: _Optional[bytes] = ..., clip: _Optional[bytes] = ..., keypoints: _Optional[_Union[KeypointsInput, _Mapping]] = ..., options: _Optional[_Union[Options, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "kind", "version", "weights", "frames", "stride", "joint_set", "device", "needs_image", "flip_test", "random_weights")
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
    RANDOM_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
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
    random_weights: bool
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., version: _Optional[str] = ..., weights: _Optional[str] = ..., frames: _Optional[int] = ..., stride: _Optional[int] = ..., joint_set: _Optional[str] = ..., device: _Optional[str] = ..., needs_image: _Optional[bool] = ..., flip_test: _Optional[bool] = ..., random_weights: _Optional[bool] = ...) -> None: ...

class Person(_message.Message):
    __slots__ = ("track_id", "box", "box_score", "keypoints_2d", "keypoint_scores", "keypoints_3d", "keypoints_3d_camera", "distance_m", "warnings")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    BOX_SCORE_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_2D_FIELD_NUMBER: _ClassVar[int]
    KEYPOINT_SCORES_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_3D_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_3D_CAMERA_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    track_id: int
    box: Box
    box_score: float
    keypoints_2d: _containers.RepeatedScalarFieldContainer[float]
    keypoint_scores: _containers.RepeatedScalarFieldContainer[float]
    keypoints_3d: _containers.RepeatedScalarFieldContainer[float]
    keypoints_3d_camera: _containers.RepeatedScalarFieldContainer[float]
    distance_m: float
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, track_id: _Optional[int] = ..., box: _Optional[_Union[Box, _Mapping]] = ..., box_score: _Optional[float] = ..., keypoints_2d: _Optional[_Iterable[float]] = ..., keypoint_scores: _Optional[_Iterable[float]] = ..., keypoints_3d: _Optional[_Iterable[float]] = ..., keypoints_3d_camera: _Optional[_Iterable[float]] = ..., distance_m: _Optional[float] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class FrameResult(_message.Message):
    __slots__ = ("frame_index", "timestamp_s", "people")
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_S_FIELD_NUMBER: _ClassVar[int]
    PEOPLE_FIELD_NUMBER: _ClassVar[int]
    frame_index: int
    timestamp_s: float
    people: _containers.RepeatedCompositeFieldContainer[Person]
    def __init__(self, frame_index: _Optional[int] = ..., timestamp_s: _Optional[float] = ..., people: _Optional[_Iterable[_Union[Person, _Mapping]]] = ...) -> None: ...

class EstimateResponse(_message.Message):
    __slots__ = ("request_id", "model", "joint_names", "units", "coordinate_frame", "box_source", "frames", "timings_ms", "warnings")
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    JOINT_NAMES_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    COORDINATE_FRAME_FIELD_NUMBER: _ClassVar[int]
    BOX_SOURCE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: ModelInfo
    joint_names: _containers.RepeatedScalarFieldContainer[str]
    units: str
    coordinate_frame: str
    box_source: BoxSource
    frames: _containers.RepeatedCompositeFieldContainer[FrameResult]
    timings_ms: _containers.ScalarMap[str, float]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ..., joint_names: _Optional[_Iterable[str]] = ..., units: _Optional[str] = ..., coordinate_frame: _Optional[str] = ..., box_source: _Optional[_Union[BoxSource, str]] = ..., frames: _Optional[_Iterable[_Union[FrameResult, _Mapping]]] = ..., timings_ms: _Optional[_Mapping[str, float]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamOpen(_message.Message):
    __slots__ = ("options", "stream_id", "joint_set", "explicit_close")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    JOINT_SET_FIELD_NUMBER: _ClassVar[int]
    EXPLICIT_CLOSE_FIELD_NUMBER: _ClassVar[int]
    options: Options
    stream_id: str
    joint_set: JointSet
    explicit_close: bool
    def __init__(self, options: _Optional[_Union[Options, _Mapping]] = ..., stream_id: _Optional[str] = ..., joint_set: _Optional[_Union[JointSet, str]] = ..., explicit_close: _Optional[bool] = ...) -> None: ...

class StreamClose(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamFrame(_message.Message):
    __slots__ = ("image", "keypoints", "frame_index", "timestamp_s", "image_width", "image_height", "detect_people")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_S_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DETECT_PEOPLE_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    keypoints: Keypoints2D
    frame_index: int
    timestamp_s: float
    image_width: int
    image_height: int
    detect_people: bool
    def __init__(self, image: _Optional[bytes] = ..., keypoints: _Optional[_Union[Keypoints2D, _Mapping]] = ..., frame_index: _Optional[int] = ..., timestamp_s: _Optional[float] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ..., detect_people: _Optional[bool] = ...) -> None: ...

class StreamEstimateRequest(_message.Message):
    __slots__ = ("open", "frame", "close")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    open: StreamOpen
    frame: StreamFrame
    close: StreamClose
    def __init__(self, open: _Optional[_Union[StreamOpen, _Mapping]] = ..., frame: _Optional[_Union[StreamFrame, _Mapping]] = ..., close: _Optional[_Union[StreamClose, _Mapping]] = ...) -> None: ...

class StreamOpened(_message.Message):
    __slots__ = ("stream_id", "model", "mode", "frames_received", "frames_emitted", "lag_frames", "model_info", "joint_names")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_EMITTED_FIELD_NUMBER: _ClassVar[int]
    LAG_FRAMES_FIELD_NUMBER: _ClassVar[int]
    MODEL_INFO_FIELD_NUMBER: _ClassVar[int]
    JOINT_NAMES_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    model: str
    mode: WindowMode
    frames_received: int
    frames_emitted: int
    lag_frames: int
    model_info: ModelInfo
    joint_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, stream_id: _Optional[str] = ..., model: _Optional[str] = ..., mode: _Optional[_Union[WindowMode, str]] = ..., frames_received: _Optional[int] = ..., frames_emitted: _Optional[int] = ..., lag_frames: _Optional[int] = ..., model_info: _Optional[_Union[ModelInfo, _Mapping]] = ..., joint_names: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamEstimateResponse(_message.Message):
    __slots__ = ("opened", "result")
    OPENED_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    opened: StreamOpened
    result: FrameResult
    def __init__(self, opened: _Optional[_Union[StreamOpened, _Mapping]] = ..., result: _Optional[_Union[FrameResult, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "components")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    components: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., components: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("clip", "keypoints_json", "fields")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CLIP_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_JSON_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    clip: bytes
    keypoints_json: str
    fields: _containers.ScalarMap[str, str]
    def __init__(self, clip: _Optional[bytes] = ..., keypoints_json: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "state", "kind", "model", "frames_done", "frames_total", "frames_per_second", "eta_s", "attempts", "error_json")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FRAMES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ETA_S_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_JSON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: str
    kind: str
    model: str
    frames_done: int
    frames_total: int
    frames_per_second: float
    eta_s: float
    attempts: int
    error_json: str
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[str] = ..., kind: _Optional[str] = ..., model: _Optional[str] = ..., frames_done: _Optional[int] = ..., frames_total: _Optional[int] = ..., frames_per_second: _Optional[float] = ..., eta_s: _Optional[float] = ..., attempts: _Optional[int] = ..., error_json: _Optional[str] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "after")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after: int
    def __init__(self, job_id: _Optional[str] = ..., after: _Optional[int] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("frame", "status")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    frame: FrameResult
    status: Job
    def __init__(self, frame: _Optional[_Union[FrameResult, _Mapping]] = ..., status: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...
