"""Re-exports for the WebSocket route (``service.api.media`` is the home)."""

from service.api.media import SNIFF_BYTES as SNIFF_BYTES
from service.api.media import sniff_media as sniff_media
