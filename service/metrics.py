"""Every Prometheus metric, defined once (prefix ``pose3d_``, base units, no per-stream labels)."""

from __future__ import annotations

from functools import partial
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

PERSON_DETECTOR_REASONS: Final = ("every_frame", "pose_guide", "asked")
"""Why the person detector ran on a frame (the ``reason`` label of ``pose3d_person_detector_runs_total``)."""


class Metrics:
    """The metric set of one process, on its own registry (tests build as many as they like)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        counter = partial(Counter, registry=self.registry)
        gauge = partial(Gauge, registry=self.registry)
        histogram = partial(Histogram, buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.requests_total = counter("pose3d_requests", "Requests by route and status code", ["route", "code"])
        self.request_duration = histogram("pose3d_request_duration_seconds", "Request latency by route", ["route"])
        self.queue_duration = histogram("pose3d_queue_duration_seconds", "Time items wait in the batcher queue")
        self.stage_duration = histogram("pose3d_stage_duration_seconds", "Batch duration by stage", ["stage"])
        self.batch_size = histogram("pose3d_batch_size", "Items per batch by stage", ["stage"], buckets=_BATCH_BUCKETS)
        self.queue_depth = gauge("pose3d_queue_depth", "Items waiting in the batcher queues")
        self.stage_rate = gauge(
            "pose3d_stage_rate_units_per_second",
            "Measured service rate of a batching stage (images, people or windows per second), by stage",
            ["stage"],
        )
        self.expected_wait = histogram(
            "pose3d_expected_wait_seconds",
            "Expected wait until computed, estimated when work asks to enter a stage's queue (admitted or not)",
            ["stage"],
            buckets=(*_LATENCY_BUCKETS, 60.0, 300.0),
        )
        self.admission_seconds_per_work = gauge(
            "pose3d_admission_seconds_per_work",
            "Real seconds the engine took per second of admitted compute lately, while work was pending (the door's"
            " Little's-law rate; 1 = the stages ran back to back with nothing else in the way)",
        )
        self.active_streams = gauge("pose3d_active_streams", "Open streams")
        self.frames_total = counter("pose3d_frames", "Frames processed by model", ["model"])
        self.rejected_total = counter("pose3d_rejected", "Rejected work by reason", ["reason"])
        self.person_detector_runs = counter(
            "pose3d_person_detector_runs",
            "Frames on which the person detector ran (pose-guided boxes skip it), by reason: every_frame (pose-guided"
            " boxes off), pose_guide (the guide looked again: every k frames, a lost track, no previous frame), asked"
            " (the frame asked for it: detect_people)",
            ["reason"],
        )
        for reason in PERSON_DETECTOR_REASONS:
            self.person_detector_runs.labels(reason=reason)  # exported at 0 from the start
        # no key id label: /metrics is readable with any key, and one tenant must not learn another's id or traffic
        self.key_requests_total = counter("pose3d_key_requests", "Requests with an API key, by outcome", ["outcome"])
        self.auth_failures_total = counter(
            "pose3d_auth_failures", "Requests refused for no, unknown or revoked API keys", ["reason"]
        )
        self.worker_up = gauge("pose3d_worker_up", "1 when the worker (or in-process engine) is serving")
        self.gpu_memory_allocated = gauge(
            "pose3d_gpu_memory_allocated_bytes", "CUDA memory allocated by tensors", ["device"]
        )
        self.gpu_memory_reserved = gauge(
            "pose3d_gpu_memory_reserved_bytes", "CUDA memory reserved by the caching allocator", ["device"]
        )

    def person_detector_run_count(self) -> float:
        """Frames the person detector ran on so far, all reasons together."""
        return sum(
            self.registry.get_sample_value("pose3d_person_detector_runs_total", {"reason": r}) or 0.0
            for r in PERSON_DETECTOR_REASONS
        )
