from service.proto_gen.pose3d.v1 import pose3d_pb2 as _pose3d_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RawImage(_message.Message):
    __slots__ = ("data", "height", "width")
    DATA_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    height: int
    width: int
    def __init__(self, data: _Optional[bytes] = ..., height: _Optional[int] = ..., width: _Optional[int] = ...) -> None: ...

class WorkerFrame(_message.Message):
    __slots__ = ("encoded_image", "raw_image", "keypoints", "frame_index", "timestamp_s", "image_width", "image_height", "joint_set", "detect_people")
    ENCODED_IMAGE_FIELD_NUMBER: _ClassVar[int]
    RAW_IMAGE_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_S_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    JOINT_SET_FIELD_NUMBER: _ClassVar[int]
    DETECT_PEOPLE_FIELD_NUMBER: _ClassVar[int]
    encoded_image: bytes
    raw_image: RawImage
    keypoints: _pose3d_pb2.Keypoints2D
    frame_index: int
    timestamp_s: float
    image_width: int
    image_height: int
    joint_set: _pose3d_pb2.JointSet
    detect_people: bool
    def __init__(self, encoded_image: _Optional[bytes] = ..., raw_image: _Optional[_Union[RawImage, _Mapping]] = ..., keypoints: _Optional[_Union[_pose3d_pb2.Keypoints2D, _Mapping]] = ..., frame_index: _Optional[int] = ..., timestamp_s: _Optional[float] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ..., joint_set: _Optional[_Union[_pose3d_pb2.JointSet, str]] = ..., detect_people: _Optional[bool] = ...) -> None: ...

class WorkerEstimateRequest(_message.Message):
    __slots__ = ("request_id", "frames", "options")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    frames: _containers.RepeatedCompositeFieldContainer[WorkerFrame]
    options: _pose3d_pb2.Options
    def __init__(self, request_id: _Optional[str] = ..., frames: _Optional[_Iterable[_Union[WorkerFrame, _Mapping]]] = ..., options: _Optional[_Union[_pose3d_pb2.Options, _Mapping]] = ...) -> None: ...

class OpenStreamRequest(_message.Message):
    __slots__ = ("options", "stream_id")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    options: _pose3d_pb2.Options
    stream_id: str
    def __init__(self, options: _Optional[_Union[_pose3d_pb2.Options, _Mapping]] = ..., stream_id: _Optional[str] = ...) -> None: ...

class StreamInfo(_message.Message):
    __slots__ = ("stream_id", "model", "mode", "frames_received", "frames_emitted")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_EMITTED_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    model: str
    mode: _pose3d_pb2.WindowMode
    frames_received: int
    frames_emitted: int
    def __init__(self, stream_id: _Optional[str] = ..., model: _Optional[str] = ..., mode: _Optional[_Union[_pose3d_pb2.WindowMode, str]] = ..., frames_received: _Optional[int] = ..., frames_emitted: _Optional[int] = ...) -> None: ...

class PushFrameRequest(_message.Message):
    __slots__ = ("stream_id", "frame")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    frame: WorkerFrame
    def __init__(self, stream_id: _Optional[str] = ..., frame: _Optional[_Union[WorkerFrame, _Mapping]] = ...) -> None: ...

class PushFramesRequest(_message.Message):
    __slots__ = ("stream_id", "frames")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    frames: _containers.RepeatedCompositeFieldContainer[WorkerFrame]
    def __init__(self, stream_id: _Optional[str] = ..., frames: _Optional[_Iterable[_Union[WorkerFrame, _Mapping]]] = ...) -> None: ...

class ClipLimits(_message.Message):
    __slots__ = ("max_clip_frames", "max_clip_seconds", "max_frame_side", "max_image_pixels")
    MAX_CLIP_FRAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_CLIP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAME_SIDE_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    max_clip_frames: int
    max_clip_seconds: float
    max_frame_side: int
    max_image_pixels: int
    def __init__(self, max_clip_frames: _Optional[int] = ..., max_clip_seconds: _Optional[float] = ..., max_frame_side: _Optional[int] = ..., max_image_pixels: _Optional[int] = ...) -> None: ...

class EncodedClip(_message.Message):
    __slots__ = ("data", "container", "every_nth", "start", "limits")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    EVERY_NTH_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    container: str
    every_nth: int
    start: int
    limits: ClipLimits
    def __init__(self, data: _Optional[bytes] = ..., container: _Optional[str] = ..., every_nth: _Optional[int] = ..., start: _Optional[int] = ..., limits: _Optional[_Union[ClipLimits, _Mapping]] = ...) -> None: ...

class PushClipRequest(_message.Message):
    __slots__ = ("stream_id", "clip", "chunk_frames", "chunk_timeout_s")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FRAMES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    clip: EncodedClip
    chunk_frames: int
    chunk_timeout_s: float
    def __init__(self, stream_id: _Optional[str] = ..., clip: _Optional[_Union[EncodedClip, _Mapping]] = ..., chunk_frames: _Optional[int] = ..., chunk_timeout_s: _Optional[float] = ...) -> None: ...

class ClipProgress(_message.Message):
    __slots__ = ("frames", "frames_decoded")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DECODED_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[_pose3d_pb2.FrameResult]
    frames_decoded: int
    def __init__(self, frames: _Optional[_Iterable[_Union[_pose3d_pb2.FrameResult, _Mapping]]] = ..., frames_decoded: _Optional[int] = ...) -> None: ...

class StreamRef(_message.Message):
    __slots__ = ("stream_id",)
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    def __init__(self, stream_id: _Optional[str] = ...) -> None: ...

class FrameResults(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[_pose3d_pb2.FrameResult]
    def __init__(self, frames: _Optional[_Iterable[_Union[_pose3d_pb2.FrameResult, _Mapping]]] = ...) -> None: ...

class ReadyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReadyResponse(_message.Message):
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
