"""The gateway the overload bench drives: ``pose3d serve`` in a child process, tiny random-weight models."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench.redis_server import free_port


@dataclass(frozen=True)
class BatchOverrides:
    """Batch settings (and torch threads) the bench was told to use instead of the shipped defaults (``None``: the default)."""

    max_batch_size: int | None = None
    max_delay_ms: float | None = None
    detect_batch: int | None = None
    wait_fraction: float | None = None
    torch_threads: int | None = None

    def engine(self) -> dict[str, Any]:
        """The ``engine`` settings these overrides set (only those given)."""
        out: dict[str, Any] = {}
        if self.max_batch_size is not None:
            out["max_batch_size"] = self.max_batch_size
        if self.max_delay_ms is not None:
            out["max_delay_ms"] = self.max_delay_ms
        if self.detect_batch is not None:
            out["detect"] = {"max_batch_size": self.detect_batch}
        if self.wait_fraction is not None:
            out["admission_wait_fraction"] = self.wait_fraction
        if self.torch_threads is not None:
            out["torch_threads"] = self.torch_threads
        return out


def gateway_settings(admission: str, deadline_s: float, overrides: BatchOverrides) -> dict[str, Any]:
    """Settings (as a YAML document's mapping) of the served gateway: HRNet-micro → CA-PF tiny, random weights,
    ``engine.admission = admission``, requests allowed up to ``deadline_s`` (at least the default 30 s); every
    batch setting and the torch threads are the shipped defaults unless ``overrides`` names them."""
    return {
        "allow_random_weights": True,
        "log_level": "warning",
        "detector": {"arch": "hrnet-micro", "flip_test": False},
        "models": {"capf": {"kind": "capf", "arch": "capf-tiny", "flip_test": False}},
        "default_image_model": "capf",
        "default_clip_model": "capf",
        "engine": {
            "request_timeout_s": max(30.0, deadline_s),
            "admission": admission,
        }
        | overrides.engine(),
        "host": "127.0.0.1",
        "grpc_port": 0,
    }


class ServedGateway:
    """``python -m service.cli serve --config <workdir>/settings.yaml`` on a free port, until the ``with`` ends.

    The child's environment has no ``POSE3D_*`` variable (the settings file alone decides); its log goes to
    ``<workdir>/gateway.log``."""

    def __init__(self, settings: dict[str, Any], workdir: Path, start_timeout_s: float = 300.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "settings.yaml"
        self.config_path.write_text(yaml.safe_dump({**settings, "port": self.port}))
        self.log_path = workdir / "gateway.log"
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> ServedGateway:
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSE3D_")}
        self._log = self.log_path.open("wb")
        cmd = [sys.executable, "-m", "service.cli", "serve", "--config", str(self.config_path)]
        self._proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SystemExit(f"the gateway exited with {self._proc.returncode}: see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__(None, None, None)
        raise SystemExit(f"the gateway was not ready within {self.start_timeout_s:g} s: see {self.log_path}")

    def engine_totals(self) -> dict[str, float]:
        """The server's own running totals from ``/metrics``: per stage its batches, units and busy seconds
        (``<stage>.batches``, ``.units``, ``.busy_s``), the units' queue waits (``queue.waits``, ``queue.wait_s``),
        refusals by reason (``refused.<reason>``) and 503s by route (``refused.503 at <route>``; ``unmatched``:
        refused from the head), the door's per-stage expected waits (``expected.<stage>.s`` and ``.n``: their sum
        and count, asked after a request's body was read) and its Little's-law rate now (``seconds_per_work``)."""
        wanted = {"pose3d_batch_size_count": "batches", "pose3d_batch_size_sum": "units"}
        wanted |= {"pose3d_stage_duration_seconds_sum": "busy_s"}
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(httpx.get(f"{self.url}/metrics", timeout=30.0).text):
            for sample in family.samples:
                if sample.name in wanted:
                    totals[f"{sample.labels['stage']}.{wanted[sample.name]}"] = sample.value
                elif sample.name == "pose3d_rejected_total":
                    totals[f"refused.{sample.labels['reason']}"] = sample.value
                elif sample.name == "pose3d_queue_duration_seconds_sum":
                    totals["queue.wait_s"] = sample.value
                elif sample.name == "pose3d_queue_duration_seconds_count":
                    totals["queue.waits"] = sample.value
                elif sample.name in ("pose3d_expected_wait_seconds_sum", "pose3d_expected_wait_seconds_count"):
                    kind = "s" if sample.name.endswith("_sum") else "n"
                    totals[f"expected.{sample.labels['stage']}.{kind}"] = sample.value
                elif sample.name == "pose3d_admission_seconds_per_work":
                    totals["seconds_per_work"] = sample.value
                elif sample.name == "pose3d_requests_total" and sample.labels["code"] == "503":  # unmatched: head
                    totals[f"refused.503 at {sample.labels['route']}"] = sample.value
        return totals

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the gateway process has used so far (Linux ``/proc``)."""
        assert self._proc is not None
        fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._log is not None:
            self._log.close()
