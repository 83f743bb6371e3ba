"""Small building blocks shared by the backbones and heads.

- FrozenBatchNorm2d: batch norm with fixed statistics and affine parameters (buffers, not parameters).
- Conv2dNormActivation: conv -> optional norm -> optional activation, as an nn.Sequential
  (so its state_dict keys are ``0.weight``, ``1.weight``, ``1.running_mean`` ...).
- SqueezeExcitation: channel attention (Hu et al., 2018) with 1x1 convs ``fc1``/``fc2``.
- Conv3dNormActivation: Conv2dNormActivation's 3-D twin (keys ``0.weight``, ``1.weight`` ...).
- MLP: Linear -> [norm] -> activation -> Dropout blocks, as an nn.Sequential.
- Permute: ``torch.permute`` as a module.

Names, signatures and state_dict keys follow torchvision's ``torchvision.ops.misc``.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from torchdet.ops import fusion

__all__ = [
    "FrozenBatchNorm2d", "Conv2dNormActivation", "Conv3dNormActivation", "SqueezeExcitation", "MLP", "Permute",
]

_IntOrPair = Union[int, Tuple[int, ...]]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose statistics and affine parameters are fixed buffers.

    ``y = x * scale + shift`` with ``scale = weight / sqrt(running_var + eps)`` and
    ``shift = bias - running_mean * scale``, i.e. nn.BatchNorm2d in eval mode.
    Buffers: ``weight``, ``bias``, ``running_mean``, ``running_var`` (all ``[C]``); no
    ``num_batches_tracked`` (one found in a loaded state_dict is ignored).

    Input and output: ``[N, C, H, W]``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        if num_features <= 0:
            raise ValueError(f"FrozenBatchNorm2d needs num_features > 0, got {num_features}")
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(
        self,
        state_dict: Dict[str, Tensor],
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: List[str],
        unexpected_keys: List[str],
        error_msgs: List[str],
    ) -> None:
        # A checkpoint saved from nn.BatchNorm2d carries a step counter we have no use for.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: [N, C, H, W] -> [N, C, H, W]."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()  # [C]
        shift = self.bias - self.running_mean * scale  # [C]
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


fusion.register_frozen_norm(FrozenBatchNorm2d)


def _same_padding(kernel_size: _IntOrPair, dilation: _IntOrPair) -> _IntOrPair:
    """Padding that keeps the spatial size at stride 1: ``(k - 1) // 2 * d`` per dimension."""
    if isinstance(kernel_size, int) and isinstance(dilation, int):
        return (kernel_size - 1) // 2 * dilation
    dims = len(kernel_size) if isinstance(kernel_size, Sequence) else len(dilation)  # type: ignore[arg-type]
    ks = (kernel_size,) * dims if isinstance(kernel_size, int) else tuple(kernel_size)
    ds = (dilation,) * dims if isinstance(dilation, int) else tuple(dilation)
    return tuple((k - 1) // 2 * d for k, d in zip(ks, ds))


class Conv2dNormActivation(nn.Sequential):
    """Conv2d, then ``norm_layer(out_channels)`` if given, then ``activation_layer()`` if given.

    ``padding`` defaults to ``(kernel_size - 1) // 2 * dilation`` and ``bias`` to
    ``norm_layer is None``. ``inplace`` is passed to the activation unless it is None.
    Input ``[N, in_channels, H, W]``, output ``[N, out_channels, H', W']``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _IntOrPair = 3,
        stride: _IntOrPair = 1,
        padding: Optional[Union[_IntOrPair, str]] = None,
        groups: int = 1,
        norm_layer: Optional[Callable[..., nn.Module]] = nn.BatchNorm2d,
        activation_layer: Optional[Callable[..., nn.Module]] = nn.ReLU,
        dilation: _IntOrPair = 1,
        inplace: Optional[bool] = True,
        bias: Optional[bool] = None,
    ) -> None:
        if padding is None:
            padding = _same_padding(kernel_size, dilation)
        if bias is None:
            bias = norm_layer is None
        layers: List[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,  # type: ignore[arg-type]
                dilation=dilation,
                groups=groups,
                bias=bias,
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer() if inplace is None else activation_layer(inplace=inplace))
        super().__init__(*layers)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        """x: [N, in_channels, H, W] -> [N, out_channels, H', W']."""
        if torch.jit.is_scripting():
            for layer in self:
                x = layer(x)
            return x
        return self._forward_eager(x)

    @torch.jit.unused
    def _forward_eager(self, x: Tensor) -> Tensor:
        layers = list(self)
        if len(layers) >= 2 and fusion.can_fold(layers[0], layers[1]):
            x = fusion.conv_norm(x, layers[0], layers[1])
            layers = layers[2:]
        for layer in layers:
            x = layer(x)
        return x


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation: ``x * scale_activation(fc2(activation(fc1(avgpool(x)))))``.

    ``fc1``: 1x1 conv input_channels -> squeeze_channels; ``fc2``: back to input_channels.
    Input and output: ``[N, input_channels, H, W]``.
    """

    def __init__(
        self,
        input_channels: int,
        squeeze_channels: int,
        activation: Callable[..., nn.Module] = nn.ReLU,
        scale_activation: Callable[..., nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def _scale(self, x: Tensor) -> Tensor:
        """x: [N, C, H, W] -> per-channel gates [N, C, 1, 1]."""
        s = self.avgpool(x)
        s = self.activation(self.fc1(s))
        return self.scale_activation(self.fc2(s))

    def forward(self, x: Tensor) -> Tensor:
        """x: [N, C, H, W] -> [N, C, H, W]."""
        return self._scale(x) * x


class Conv3dNormActivation(nn.Sequential):
    """Conv3d, then ``norm_layer(out_channels)`` if given, then ``activation_layer()`` if given.

    ``padding`` defaults to ``(kernel_size - 1) // 2 * dilation`` and ``bias`` to
    ``norm_layer is None``. ``inplace`` is passed to the activation unless it is None.
    Input ``[N, in_channels, D, H, W]``, output ``[N, out_channels, D', H', W']``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _IntOrPair = 3,
        stride: _IntOrPair = 1,
        padding: Optional[Union[_IntOrPair, str]] = None,
        groups: int = 1,
        norm_layer: Optional[Callable[..., nn.Module]] = nn.BatchNorm3d,
        activation_layer: Optional[Callable[..., nn.Module]] = nn.ReLU,
        dilation: _IntOrPair = 1,
        inplace: Optional[bool] = True,
        bias: Optional[bool] = None,
    ) -> None:
        if padding is None:
            padding = _same_padding(kernel_size, dilation)
        if bias is None:
            bias = norm_layer is None
        layers: List[nn.Module] = [
            nn.Conv3d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,  # type: ignore[arg-type]
                dilation=dilation,
                groups=groups,
                bias=bias,
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer() if inplace is None else activation_layer(inplace=inplace))
        super().__init__(*layers)
        self.out_channels = out_channels


class MLP(nn.Sequential):
    """Multi-layer perceptron: for each hidden size but the last, Linear -> ``norm_layer`` (if
    given) -> ``activation_layer`` -> Dropout; then a last Linear and Dropout.

    ``inplace`` is passed to the activation and the dropouts unless it is None.
    Input ``[..., in_channels]``, output ``[..., hidden_channels[-1]]``.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: List[int],
        norm_layer: Optional[Callable[..., nn.Module]] = None,
        activation_layer: Optional[Callable[..., nn.Module]] = nn.ReLU,
        inplace: Optional[bool] = None,
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        if len(hidden_channels) == 0:
            raise ValueError("MLP needs at least one entry in hidden_channels (the output size)")
        params = {} if inplace is None else {"inplace": inplace}
        layers: List[nn.Module] = []
        in_dim = in_channels
        for hidden_dim in hidden_channels[:-1]:
            layers.append(nn.Linear(in_dim, hidden_dim, bias=bias))
            if norm_layer is not None:
                layers.append(norm_layer(hidden_dim))
            layers.append(activation_layer(**params))  # type: ignore[misc]
            layers.append(nn.Dropout(dropout, **params))
            in_dim = hidden_dim
        layers.append(nn.Linear(in_dim, hidden_channels[-1], bias=bias))
        layers.append(nn.Dropout(dropout, **params))
        super().__init__(*layers)


class Permute(nn.Module):
    """``torch.permute(x, dims)`` as a module (e.g. ``Permute([0, 2, 3, 1])`` for channels last)."""

    def __init__(self, dims: List[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        """x: any tensor with ``len(dims)`` dimensions -> its dims permuted."""
        return torch.permute(x, self.dims)
