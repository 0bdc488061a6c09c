"""Re-exports for the NDJSON route (``service.api.json_offload`` is the home)."""

from service.api.json_offload import parse_keypoints as parse_keypoints
