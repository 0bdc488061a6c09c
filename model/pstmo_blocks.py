"""Building blocks of P-STMO (Shan et al., ECCV 2022), numerically identical to the published code.

Quirks of the published implementation that these blocks keep on purpose (conformance depends on them):

- :class:`UnbiasedLayerNorm` divides by the *unbiased* standard deviation plus ``1e-6`` (not by
  ``sqrt(var + eps)`` as :class:`torch.nn.LayerNorm` does).
- Every transformer block is pre-norm: ``x + sublayer(norm(x))``; the encoders also own a final norm
  that the published ``forward`` never applies. It is allocated (so that checkpoints load strictly)
  and documented as unused.
- The strided (MOFA) block replaces the feed-forward network with ``Conv1d(k=1)`` → ReLU →
  ``Conv1d(k=3, stride=s, padding=1)`` and its residual with ``MaxPool1d(kernel=1, stride=s)``,
  i.e. ``x[:, ::s]``.
- Dropout exists in the published code but is inactive in eval mode; these blocks are for inference
  and contain none.

Every block has a fast branch (``fast = True``, the default; see :mod:`model.fastpath`) and the
reference branch (the published op sequence): fused ``scaled_dot_product_attention``, the LayerNorm
from one ``var_mean``, and k=1 ``Conv1d`` as ``F.linear`` on ``(B, T, C)`` tokens (the conv weights
``(out, in, 1)`` are viewed as ``(out, in)``, so the ``state_dict`` is the official one).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.fastpath import FastPathModule

LEAKY_RELU_SLOPE = 0.2
LAYERNORM_EPS = 1e-6
FUSED_LN_INNER_EPS = 1e-12
"""eps inside the fused kernel's square root: keeps a constant row at 0 (as the published +1e-6 does)."""


class UnbiasedLayerNorm(FastPathModule):
    """``weight * (x - mean) / (std_unbiased + 1e-6) + bias`` over the last axis.

    Args:
        features: size of the last axis (C).
    Shapes:
        ``(..., C)`` float → ``(..., C)`` float.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast:
            return self._forward_fused(x)
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.weight * (x - mean) / (std + LAYERNORM_EPS) + self.bias

    def _forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        """The same from the fused LayerNorm kernel and one per-row rescale (two passes over ``x``).

        ``layer_norm`` gives ``z = weight * (x - mean) * r`` with ``r = 1 / sqrt(var_biased + eps')``; since
        ``std_unbiased = sqrt(n / (n - 1)) / r`` (``eps' = 1e-12`` only keeps constant rows finite), the
        published ``weight * (x - mean) / (std_unbiased + 1e-6)`` equals ``z / (sqrt(n / (n - 1)) + 1e-6 * r)``.
        """
        n = x.shape[-1]
        z, _, rstd = torch.native_layer_norm(x, [n], self.weight, None, FUSED_LN_INNER_EPS)
        scale = torch.reciprocal(rstd.view(*x.shape[:-1], 1) * LAYERNORM_EPS + math.sqrt(n / (n - 1)))
        return torch.addcmul(self.bias, z, scale)


class MultiHeadSelfAttention(FastPathModule):
    """Scaled dot-product self-attention with ``heads`` heads and no mask.

    Shapes:
        ``(B, T, C)`` → ``(B, T, C)``; ``C`` must be divisible by ``heads``.
    """

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.head_dim = channels // heads
        self.query = nn.Linear(channels, channels)
        self.key = nn.Linear(channels, channels)
        self.value = nn.Linear(channels, channels)
        self.out = nn.Linear(channels, channels)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b = t.shape[0]
        return t.view(b, -1, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        b = x.shape[0]
        if self.fast:  # fused kernel: never materialises the (B, H, T, T) scores
            fused = F.scaled_dot_product_attention(q, k, v)  # scale 1 / sqrt(head_dim), as below
            out_fast: torch.Tensor = self.out(fused.transpose(1, 2).reshape(b, -1, self.heads * self.head_dim))
            return out_fast
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        mixed = torch.matmul(F.softmax(scores, dim=-1), v)  # (B, H, T, D)
        out: torch.Tensor = self.out(mixed.transpose(1, 2).contiguous().view(b, -1, self.heads * self.head_dim))
        return out


class FeedForward(nn.Module):
    """Position-wise MLP of the vanilla transformer: Linear → ReLU → Linear. ``(B, T, C)`` → ``(B, T, C)``."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc2(F.relu(self.fc1(x)))
        return out


class StridedFeedForward(FastPathModule):
    """MOFA's temporal MLP: Conv1d(k=1) → ReLU → Conv1d(k=3, stride=s, padding=1) along time.

    Shapes:
        ``(B, T, C)`` → ``(B, floor((T - 1) / s) + 1, C)``.
    """

    def __init__(self, channels: int, hidden: int, stride: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv1d(channels, hidden, kernel_size=1)
        self.padding = 1
        self.fc2 = nn.Conv1d(hidden, channels, kernel_size=3, stride=stride, padding=self.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast:
            return self._forward_tokens(x)
        y: torch.Tensor = self.fc2(F.relu(self.fc1(x.transpose(1, 2))))
        return y.transpose(1, 2)

    def _forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The same on ``(B, T, C)``: fc1 as a matmul; fc2 as a matmul over the 3-frame windows (im2col by unfold)."""
        hidden = F.relu(F.linear(x, self.fc1.weight[..., 0], self.fc1.bias))  # (B, T, H)
        b, _, h = hidden.shape
        k, s, p = self.fc2.kernel_size[0], self.fc2.stride[0], self.padding
        windows = F.pad(hidden, (0, 0, p, p)).unfold(1, k, s)  # (B, T', H, k): the conv weight's (in, k) order
        w = self.fc2.weight.reshape(self.fc2.out_channels, h * k)
        out: torch.Tensor = F.linear(windows.reshape(b, -1, h * k), w, self.fc2.bias)
        return out


class TransformerLayer(nn.Module):
    """Pre-norm encoder layer of TEM: ``x + attn(norm(x))`` then ``x + ffn(norm(x))``. ``(B, T, C)`` → same."""

    def __init__(self, channels: int, hidden: int, heads: int) -> None:
        super().__init__()
        self.attn = MultiHeadSelfAttention(channels, heads)
        self.ffn = FeedForward(channels, hidden)
        self.norm_attn = UnbiasedLayerNorm(channels)
        self.norm_ffn = UnbiasedLayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_attn(x))
        out: torch.Tensor = x + self.ffn(self.norm_ffn(x))
        return out


class StridedTransformerLayer(nn.Module):
    """MOFA encoder layer: attention as in TEM, then the strided MLP with a ``x[:, ::s]`` residual.

    Shapes:
        ``(B, T, C)`` → ``(B, floor((T - 1) / s) + 1, C)``.
    """

    def __init__(self, channels: int, hidden: int, heads: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.attn = MultiHeadSelfAttention(channels, heads)
        self.ffn = StridedFeedForward(channels, hidden, stride)
        self.norm_attn = UnbiasedLayerNorm(channels)
        self.norm_ffn = UnbiasedLayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_attn(x))
        out: torch.Tensor = x[:, :: self.stride] + self.ffn(self.norm_ffn(x))
        return out


def conv1x1_tokens(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A k=1 ``Conv1d`` applied to ``(B, T, C_in)`` tokens as a matmul → ``(B, T, C_out)`` (weight viewed, not copied)."""
    return F.linear(x, conv.weight[..., 0], conv.bias)


def batch_norm_tokens(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """An eval-mode ``BatchNorm1d`` over the channels of ``(B, T, C)`` tokens (channels last, no transpose)."""
    out = F.batch_norm(
        x.reshape(-1, x.shape[-1]), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps
    )
    return out.view(x.shape)


class ResidualMLPBlock(nn.Module):
    """SEM residual block: ``x + LReLU(BN(conv2(LReLU(BN(conv1(x))))))`` with 1x1 convs. ``(B, C, T)`` → same.

    :meth:`forward_tokens` computes the same on ``(B, T, C)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv1d(channels, channels, kernel_size=1)
        self.bn1 = nn.BatchNorm1d(channels)
        self.fc2 = nn.Conv1d(channels, channels, kernel_size=1)
        self.bn2 = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.bn1(self.fc1(x)), LEAKY_RELU_SLOPE)
        y = F.leaky_relu(self.bn2(self.fc2(y)), LEAKY_RELU_SLOPE)
        return x + y

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C)`` → ``(B, T, C)``, the arithmetic of :meth:`forward` with channels last."""
        y = F.leaky_relu(batch_norm_tokens(self.bn1, conv1x1_tokens(self.fc1, x)), LEAKY_RELU_SLOPE)
        y = F.leaky_relu(batch_norm_tokens(self.bn2, conv1x1_tokens(self.fc2, y)), LEAKY_RELU_SLOPE)
        return x + y


class SpatialEncoderMLP(nn.Module):
    """SEM: per-frame MLP from the flattened 2D pose to a ``channels`` feature.

    1x1 conv (``in_features`` → ``hidden``) → BN → LeakyReLU(0.2) → residual blocks → 1x1 conv
    (``hidden`` → ``channels``); the published model uses ``hidden = 2 * channels`` and one block.

    Shapes:
        ``(B, in_features, T)`` (``in_features = 2 * joints``, joint-major: ``[x0, y0, x1, y1, ...]``)
        → ``(B, channels, T)``.
    """

    def __init__(self, in_features: int, channels: int, hidden: int, blocks: int = 1) -> None:
        super().__init__()
        self.fc_in = nn.Conv1d(in_features, hidden, kernel_size=1)
        self.bn_in = nn.BatchNorm1d(hidden)
        self.fc_out = nn.Conv1d(hidden, channels, kernel_size=1)
        self.blocks = nn.ModuleList(ResidualMLPBlock(hidden) for _ in range(blocks))  # registered last, as published

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.bn_in(self.fc_in(x)), LEAKY_RELU_SLOPE)
        for block in self.blocks:
            x = block(x)
        out: torch.Tensor = self.fc_out(x)
        return out

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, in_features)`` → ``(B, T, channels)``, the arithmetic of :meth:`forward` with channels last."""
        x = F.leaky_relu(batch_norm_tokens(self.bn_in, conv1x1_tokens(self.fc_in, x)), LEAKY_RELU_SLOPE)
        for block in self.blocks:
            x = block.forward_tokens(x)  # type: ignore[operator]
        return conv1x1_tokens(self.fc_out, x)


class TemporalEncoder(nn.Module):
    """TEM: learned positional embedding, then ``depth`` vanilla pre-norm transformer layers.

    ``final_norm`` is allocated because the published checkpoints carry it, but, as in the published
    ``forward``, it is never applied.

    Shapes:
        ``(B, frames, C)`` → ``(B, frames, C)``.
    """

    def __init__(self, depth: int, channels: int, hidden: int, heads: int, frames: int) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.randn(1, frames, channels))
        self.layers = nn.ModuleList(TransformerLayer(channels, hidden, heads) for _ in range(depth))
        self.final_norm = UnbiasedLayerNorm(channels)  # unused, as published

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embedding
        for layer in self.layers:
            x = layer(x)
        return x


MOFA_POS_EMBEDDINGS = 3
"""The published strided encoder always allocates three positional embeddings (added before layers 0, 1, 2)."""


class FrameAggregator(nn.Module):
    """MOFA: strided transformer that reduces ``frames`` tokens to ``prod``-strided few (1 in every preset).

    Before layer ``i`` (``i < 3``) the positional embedding ``pos_embedding_{i+1}`` is added, sliced
    to the current length. Three embeddings exist whatever the depth (the published code allocates
    them unconditionally); ``final_norm`` is allocated but unused, as published.

    Shapes:
        ``(B, frames, C)`` → ``(B, T', C)`` with ``T'`` given by :func:`reduced_length`.
    """

    def __init__(self, strides: tuple[int, ...], channels: int, hidden: int, heads: int, frames: int) -> None:
        super().__init__()
        self.pos_embedding_1 = nn.Parameter(torch.randn(1, frames, channels))
        self.pos_embedding_2 = nn.Parameter(torch.randn(1, frames, channels))
        self.pos_embedding_3 = nn.Parameter(torch.randn(1, frames, channels))
        self.layers = nn.ModuleList(StridedTransformerLayer(channels, hidden, heads, s) for s in strides)
        self.final_norm = UnbiasedLayerNorm(channels)  # unused, as published

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embeddings = (self.pos_embedding_1, self.pos_embedding_2, self.pos_embedding_3)
        for i, layer in enumerate(self.layers):
            if i < MOFA_POS_EMBEDDINGS:
                x = x + embeddings[i][:, : x.shape[1]]
            x = layer(x)
        return x


def reduced_length(frames: int, strides: tuple[int, ...]) -> int:
    """Number of tokens left after the strided layers: ``T ← floor((T - 1) / s) + 1`` per layer."""
    length = frames
    for s in strides:
        length = (length - 1) // s + 1
    return length


class PoseHead(nn.Module):
    """BatchNorm1d → 1x1 conv to ``3 * joints`` channels (joint-major ``[x0, y0, z0, x1, ...]``).

    Shapes:
        ``(B, C, T)`` → ``(B, 3 * joints, T)``.
    """

    def __init__(self, channels: int, joints: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(channels, momentum=0.1)
        self.proj = nn.Conv1d(channels, 3 * joints, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.proj(self.norm(x))
        return out

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C)`` → ``(B, T, 3 * joints)``, the arithmetic of :meth:`forward` with channels last."""
        return conv1x1_tokens(self.proj, batch_norm_tokens(self.norm, x))
