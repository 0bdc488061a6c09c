"""Re-exports for the stream routes (``service.api.validation`` is the home)."""

from service.api.validation import check_boxes as check_boxes
from service.api.validation import parse_bool as parse_bool
from service.api.validation import parse_float as parse_float
from service.api.validation import parse_int as parse_int
from service.api.validation import parse_model_name as parse_model_name
from service.api.validation import stream_keypoint_frame as stream_keypoint_frame
