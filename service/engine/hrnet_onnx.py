"""HRNet through ONNX Runtime on the CPU: the detector's optional second backend (``detector.backend = "onnx"``).

The loaded torch network is exported once and cached (:mod:`service.engine.onnx_cache`), or read from the
operator's ``detector.onnx_path``. :class:`OnnxHRNet` is called like :class:`model.hrnet.PoseHRNet`, so the
detector's geometry and decoding are unchanged; outputs equal the torch network's to float32 rounding.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from model.hrnet import PoseHRNet
from service.engine.detector import TopDownDetector
from service.engine.onnx_cache import Cached, ExportCache, cpu_session, export_key, export_onnx
from service.errors import Unavailable
from service.weights.store import atomic_write

log = logging.getLogger(__name__)

INPUT = "crops"
OUTPUTS = ("heatmaps", "feat0", "feat1", "feat2", "feat3")


def hrnet_cache_key(net: PoseHRNet) -> dict[str, str]:
    """Everything the exported graph depends on (:func:`~service.engine.onnx_cache.export_key`), joints too."""
    return export_key("PoseHRNet", net, "N,3,256,192 float32 NCHW", num_joints=str(net.num_joints))


def export_hrnet_onnx(net: PoseHRNet) -> bytes:
    """The ONNX graph of ``net`` (eval, float32, CPU copy): input ``crops (N, 3, 256, 192)``, dynamic ``N``."""
    cpu = PoseHRNet(net.cfg, num_joints=net.num_joints).eval()
    cpu.load_state_dict({k: v.detach().float().cpu() for k, v in net.state_dict().items()})
    return export_onnx(cpu, torch.zeros(2, 3, 256, 192), INPUT, OUTPUTS)


class OnnxHRNet:
    """A :class:`PoseHRNet` run by ONNX Runtime: ``model`` the graph of :func:`export_hrnet_onnx`, ``threads``
    intra-op threads (0 = ONNX Runtime's default)."""

    def __init__(self, model: bytes, threads: int = 0) -> None:
        self.session = cpu_session(model, threads)

    @classmethod
    def from_torch(cls, net: PoseHRNet, cache: Path | None = None, threads: int = 0) -> OnnxHRNet:
        """Read the graph from ``cache`` (the operator's file: it must come from the same weights) when it exists,
        else export ``net`` (and write ``cache`` if given: whole or not at all)."""
        if cache is not None and cache.is_file():
            log.info("detector: ONNX graph read from %s", cache)
            try:
                return cls(cache.read_bytes(), threads)
            except Exception as e:  # ONNX Runtime's load errors (InvalidProtobuf, Fail, ...) share no base class
                raise Unavailable(
                    f"detector.onnx_path {cache} does not open as an ONNX graph ({e}): remove it, and the detector "
                    "is exported there again"
                ) from e
        model = export_hrnet_onnx(net)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(cache, model)  # beside it, then renamed: a start stopped mid-write leaves no cut graph
            log.info("detector: ONNX graph exported to %s", cache)
        return cls(model, threads)

    @classmethod
    def from_cache(cls, net: PoseHRNet, cache: ExportCache, name: str, threads: int = 0) -> Cached[OnnxHRNet]:
        """The cached graph of ``net`` (exported and cached on a miss or a corrupt entry), as a session."""
        return cache.load_or_export(
            name, hrnet_cache_key(net), lambda: export_hrnet_onnx(net), lambda model: cls(model, threads)
        )

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(N, 3, 256, 192)`` float32 CPU crops → heatmaps ``(N, K, 64, 48)`` and 4 feature maps (torch, CPU)."""
        crops = np.ascontiguousarray(images.detach().to(torch.float32).cpu().numpy())
        heatmaps, *feats = self.session.run(list(OUTPUTS), {INPUT: crops})
        return torch.from_numpy(heatmaps), [torch.from_numpy(f) for f in feats]


def use_onnx_backend(
    detector: TopDownDetector, net: PoseHRNet, source: Path | ExportCache, threads: int, name: str = "hrnet"
) -> str:
    """Switch ``detector`` to ONNX Runtime and say where the graph came from (for the start-up report).

    ``source``: the operator's ONNX file (``detector.onnx_path``, exported there when missing) or the export cache
    (entries prefixed ``name``); ``threads`` 0 = torch's thread count. Raises Unavailable off a float32 CPU detector.
    """
    if detector.device.type != "cpu" or detector.dtype != torch.float32:
        raise Unavailable("detector.backend 'onnx' runs on the CPU in float32 (device=cpu, no half precision)")
    threads = threads or torch.get_num_threads()
    if isinstance(source, ExportCache):
        cached = OnnxHRNet.from_cache(net, source, name, threads)
        detector.use_network(cached.value)
        return cached.origin
    detector.use_network(OnnxHRNet.from_torch(net, source, threads))
    return f"onnx {source}"
