"""Run a model's top-level children in order and return the outputs of some of them."""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict

import torch
from torch import Tensor, nn

from torchdet.ops import fusion

__all__ = ["IntermediateLayerGetter"]


class IntermediateLayerGetter(nn.ModuleDict):
    """Keeps ``model``'s direct children up to the last one named in ``return_layers``.

    Args:
        model: a module whose ``forward`` is its children applied in registration order
            (a ResNet, ``mobilenet.features`` ...); the children are kept under their own names,
            so state_dict keys read ``conv1.weight``, ``layer1.0.conv1.weight`` ...
        return_layers: {child name: output name}, e.g. ``{"layer1": "0", "layer4": "3"}``.

    forward(x) -> OrderedDict[output name, Tensor] in the children's order.
    """

    _version = 2
    __annotations__ = {"return_layers": Dict[str, str]}

    def __init__(self, model: nn.Module, return_layers: Dict[str, str]) -> None:
        children = [name for name, _ in model.named_children()]
        missing = sorted(set(map(str, return_layers)) - set(children))
        if missing:
            raise ValueError(f"return_layers {missing} are not children of the model; its children are {children}")
        pending = {str(k): str(v) for k, v in return_layers.items()}
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        for name, module in model.named_children():
            layers[name] = module
            pending.pop(name, None)
            if not pending:
                break
        super().__init__(layers)
        self.return_layers = {str(k): str(v) for k, v in return_layers.items()}

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """The returned layers' outputs by their new names; a conv child and the norm child after it
        run through ``fusion.conv_norm`` (a ResNet's ``conv1``/``bn1`` stem) unless the conv's own
        output is returned."""
        out: Dict[str, Tensor] = OrderedDict()
        if torch.jit.is_scripting():  # TorchScript cannot hand modules to conv_norm: each child in turn
            for name, module in self.items():
                x = module(x)
                if name in self.return_layers:
                    out[self.return_layers[name]] = x
            return out
        children = list(self.items())
        i = 0
        while i < len(children):
            name, module = children[i]
            if (
                i + 1 < len(children)
                and name not in self.return_layers
                and fusion.can_fold(module, children[i + 1][1])
            ):
                name, norm = children[i + 1]
                x = fusion.conv_norm(x, module, norm)
                i += 2
            else:
                x = module(x)
                i += 1
            if name in self.return_layers:
                out[self.return_layers[name]] = x
        return out
