"""Weights enums, as torchvision's: ``FasterRCNN_ResNet50_FPN_Weights.COCO_V1.url / .meta / .transforms()``.

Each published checkpoint is a member of its model's enum, holding a ``Weights`` record: the
checkpoint URL, the inference transform and the metadata (categories, metrics, ...). ``DEFAULT``
is an alias of the recommended member.

``WeightsEnum.verify`` turns what a user passes as ``weights=`` into a member: a member, its
name (``"DEFAULT"``, ``"COCO_V1"``), its full name (``"FasterRCNN_ResNet50_FPN_Weights.COCO_V1"``),
or a path to a checkpoint file, which becomes ``LocalWeights``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Type, Union

from torch import Tensor

from torchdet.checkpoint import CheckpointError, RunCheckpoint
from torchdet.weights import hub

__all__ = ["Weights", "WeightsEnum", "LocalWeights", "UnknownWeightsError", "WeightsLike"]

_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".tar", ".pkl")

OFFLINE_HINT = ("Or build without these pretrained weights: weights=None (for a detection model's "
                "ImageNet backbone: weights_backbone=None).")


class UnknownWeightsError(KeyError, ValueError):
    """A string given as ``weights=`` is neither a member of the enum nor an existing file."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(eq=True)
class Weights:
    """One published checkpoint: where it is, how to prepare inputs for it, what it knows.

    Attributes:
        url: the checkpoint's URL; its file name carries a SHA-256 prefix (``name-<hex>.pth``).
        transforms: a callable building the inference preset, ``weights.transforms()``.
        meta: ``categories``, ``num_params``, ``min_size``, ``_metrics``, ``_ops`` (GFLOPS),
            ``_file_size`` (MB), ``recipe``, ``_docs`` (and ``keypoint_names`` for keypoints).
    """

    url: str
    transforms: Callable[..., Any]
    meta: Dict[str, Any]


def _looks_like_path(text: str) -> bool:
    return (os.sep in text or "/" in text or text.lower().endswith(_CHECKPOINT_SUFFIXES)
            or text.startswith("~") or Path(text).exists())


class WeightsEnum(Enum):
    """Base of every weights enum; members hold a ``Weights`` value."""

    @classmethod
    def verify(cls, obj: Any) -> Optional[WeightsLike]:
        """Resolve what was passed as ``weights=``: None, a member, a (full) member name, or a file path.

        Raises:
            UnknownWeightsError: a string that is no member name and no file (lists the names).
            FileNotFoundError: a path that does not exist.
            TypeError: a member of another enum, or another type.
        """
        if obj is None or isinstance(obj, cls):
            return obj
        if isinstance(obj, LocalWeights):
            return obj if obj.enum_cls is cls else LocalWeights(obj.path, cls)
        if isinstance(obj, (str, os.PathLike)):
            text = os.fspath(obj)
            if isinstance(obj, str):
                name = text[len(cls.__name__) + 1:] if text.startswith(cls.__name__ + ".") else text
                if name in cls.__members__:
                    return cls[name]
            if _looks_like_path(text):
                return LocalWeights(Path(text).expanduser(), cls)
            raise UnknownWeightsError(
                f"weights={text!r} is neither one of {cls.__name__}'s weights ({', '.join(cls.__members__)}) "
                "nor an existing checkpoint file; pass one of those names, a member such as "
                f"{cls.__name__}.DEFAULT, a path to a .pth/.pt file, or None")
        if isinstance(obj, WeightsEnum):
            raise TypeError(f"expected {cls.__name__} weights but got {obj!r}, which belong to another model; "
                            f"pass one of {', '.join(f'{cls.__name__}.{m}' for m in cls.__members__)} or None")
        raise TypeError(f"weights must be a {cls.__name__} member, its name, a file path or None; "
                        f"got a {type(obj).__name__}: {obj!r}")

    @classmethod
    def from_file_name(cls, file_name: str) -> Optional[WeightsEnum]:
        """The member whose official file name is ``file_name``, or None."""
        for member in cls:
            if member.file_name == file_name:
                return member
        return None

    @property
    def url(self) -> str:
        return self.value.url

    @property
    def transforms(self) -> Callable[..., Any]:
        return self.value.transforms

    @property
    def meta(self) -> Dict[str, Any]:
        return self.value.meta

    @property
    def file_name(self) -> str:
        """The official file name, e.g. ``fasterrcnn_resnet50_fpn_coco-258fb6c6.pth``."""
        return hub.file_name_from_url(self.value.url)

    @property
    def official(self) -> WeightsEnum:
        """Itself (``LocalWeights.official`` is the member a local file is a copy of, if any)."""
        return self

    def cache_path(self) -> Path:
        """Where the checkpoint is (or will be) in torch.hub's cache."""
        return hub.checkpoint_dir() / self.file_name

    def get_state_dict(self, progress: bool = True, check_hash: bool = True) -> Dict[str, Tensor]:
        """The checkpoint's state_dict from torch.hub's cache, downloaded (hash-checked) when absent."""
        return hub.load_state_dict_from_url(self.url, progress=progress, check_hash=check_hash,
                                            hint=OFFLINE_HINT)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}.{self._name_}"

    def __str__(self) -> str:
        return repr(self)


class LocalWeights:
    """A checkpoint file the user names: ``weights="runs/x/last.pt"`` or a torchvision ``.pth``.

    A file under an official name (``fasterrcnn_resnet50_fpn_coco-258fb6c6.pth``) takes that
    member's meta and transforms. A torchdet training checkpoint provides its own categories and
    builder kwargs. Otherwise the meta is empty and the builder keeps the ``num_classes`` it is given.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], enum_cls: Type[WeightsEnum]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"weights file {str(self.path)!r} does not exist; pass the path of a "
                                    f".pth/.pt checkpoint, one of {enum_cls.__name__}'s names "
                                    f"({', '.join(enum_cls.__members__)}), or None")
        self.enum_cls = enum_cls
        self._official = enum_cls.from_file_name(self.path.name)
        self._checkpoint: Any = None
        self._meta: Optional[Dict[str, Any]] = None

    @property
    def official(self) -> Optional[WeightsEnum]:
        """The published member this file is a copy of (by its official file name), or None."""
        return self._official

    @property
    def url(self) -> str:
        return self.path.resolve().as_uri()

    @property
    def name(self) -> str:
        return str(self.path)

    @property
    def file_name(self) -> str:
        return self.path.name

    @property
    def transforms(self) -> Callable[..., Any]:
        if self._official is not None:
            return self._official.transforms
        return next(iter(self.enum_cls)).transforms

    @property
    def meta(self) -> Dict[str, Any]:
        if self._meta is None:
            self._meta = dict(self._official.meta) if self._official is not None else self._training_meta()
        return self._meta

    def _load(self) -> Any:
        if self._checkpoint is None:
            self._checkpoint = hub.read_checkpoint(self.path, trusted=True)
        return self._checkpoint

    def _training_meta(self) -> Dict[str, Any]:
        """categories / builder / builder_kwargs recorded in a torchdet run checkpoint, if any."""
        try:
            checkpoint = RunCheckpoint.from_dict(self._load(), self.path)
        except CheckpointError:  # a plain state_dict, or not a torchdet run checkpoint
            return {}
        meta: Dict[str, Any] = {}
        if checkpoint.builder_kwargs:
            meta["builder_kwargs"] = dict(checkpoint.builder_kwargs)
        if checkpoint.builder is not None:
            meta["builder"] = checkpoint.builder
        if checkpoint.categories:
            meta["categories"] = list(checkpoint.categories)
        return meta

    def get_state_dict(self, progress: bool = True, check_hash: bool = True) -> Dict[str, Tensor]:
        """The state_dict in the file (a plain state_dict, or the ``"model"`` entry of a training checkpoint)."""
        state_dict = hub.state_dict_from_checkpoint(self._load(), self.path)
        self._checkpoint = None  # the model owns the tensors now; do not keep a second copy alive
        return state_dict

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalWeights) and other.path == self.path and other.enum_cls is self.enum_cls

    def __hash__(self) -> int:
        return hash((self.path, self.enum_cls))

    def __repr__(self) -> str:
        return f"LocalWeights({str(self.path)!r})"


WeightsLike = Union[WeightsEnum, LocalWeights]
