"""Re-exports for the stream routes and the encoder, which import from here (``service.api.schemas`` is the home)."""

from service.api.schemas import MAX_FRAME_INDEX as MAX_FRAME_INDEX
from service.api.schemas import PROBLEM_RESPONSES as PROBLEM_RESPONSES
from service.api.schemas import Frame as Frame
from service.api.schemas import ModelRef as ModelRef
from service.api.schemas import PoseResponse as PoseResponse
from service.api.schemas import StreamFrameKeypoints as StreamFrameKeypoints
from service.api.schemas import StreamFrames as StreamFrames
from service.api.schemas import StreamOpened as StreamOpened
from service.api.schemas import StreamOpenRequest as StreamOpenRequest
from service.api.schemas import StreamStatus as StreamStatus
