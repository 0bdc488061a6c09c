"""Re-exports for routes that still import from here (``service.api.fields`` is the home)."""

from service.api.fields import world_warnings as world_warnings
