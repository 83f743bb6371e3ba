"""Checkpoint files: torch.hub's cache, downloads checked against their SHA-256 prefix, reading and loading.

The cache is torch.hub's: ``torch.hub.get_dir() / "checkpoints"`` (``$TORCH_HOME/hub/checkpoints``,
by default ``~/.cache/torch/hub/checkpoints``), so a file torchvision already downloaded is reused
and the reverse. A checkpoint is kept under its official file name, whose ``-<hex>.`` part is the
start of the file's SHA-256 (``fasterrcnn_resnet50_fpn_coco-258fb6c6.pth``).

A download goes to a temporary file in the cache folder and is renamed into place only once it
is complete and its hash checked, so the cache never holds a partial or corrupt file under an
official name.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import pickle
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from torchdet.atomic import atomic_path

__all__ = [
    "CheckpointDownloadError",
    "CheckpointHashError",
    "CheckpointReadError",
    "CheckpointMismatchError",
    "checkpoint_dir",
    "file_name_from_url",
    "hash_prefix",
    "download_to_file",
    "cached_checkpoint",
    "load_state_dict_from_url",
    "read_checkpoint",
    "state_dict_from_checkpoint",
    "load_state_dict_into",
    "state_dict_mismatch",
    "describe_mismatch",
]

PathLike = Union[str, "os.PathLike[str]"]
StateDict = Dict[str, Tensor]

_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")
_CHUNK = 1 << 16
_TIMEOUT_S = 30.0


class CheckpointDownloadError(RuntimeError):
    """A checkpoint is not in the cache and could not be downloaded (offline, HTTP error, interrupted)."""


class CheckpointHashError(CheckpointDownloadError):
    """A downloaded file's SHA-256 does not start with the prefix in its official name; it was not kept."""


class CheckpointReadError(ValueError):
    """A file exists but is not a readable checkpoint (truncated, not a torch file, no state_dict in it)."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's keys or shapes do not fit the model it is loaded into."""


def checkpoint_dir() -> Path:
    """torch.hub's checkpoint cache: ``torch.hub.get_dir()/checkpoints`` (follows ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def file_name_from_url(url: str) -> str:
    """The last path component of ``url``: ``.../models/x-1234abcd.pth`` -> ``x-1234abcd.pth``."""
    name = os.path.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise ValueError(f"cannot tell a file name from the URL {url!r}; pass file_name=")
    return name


def hash_prefix(file_name: str) -> Optional[str]:
    """The SHA-256 prefix an official file name carries (``a-b-88682ab5.pth`` -> ``88682ab5``), or None."""
    match = _HASH_IN_NAME.search(file_name)
    return match.group(1) if match else None


def _urlopen(url: str, timeout: float) -> Any:
    """Open ``url`` for reading (a seam for tests)."""
    request = urllib.request.Request(url, headers={"User-Agent": "torchdet"})
    return urllib.request.urlopen(request, timeout=timeout)


def _where_to_put(url: str, dst: Path) -> str:
    return (f"Download {url} on a machine with network access and copy it to {dst} "
            f"(folder {dst.parent}: torch.hub's cache, set by $TORCH_HOME); torchvision's copy of the "
            "file works as is.")


def _progress_bar(total: Optional[int], name: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not enabled, file=sys.stderr, leave=True)


def download_to_file(
    url: str,
    dst: PathLike,
    *,
    expected_hash_prefix: Optional[str] = None,
    progress: bool = True,
    timeout: float = _TIMEOUT_S,
    hint: str = "",
) -> Path:
    """Download ``url`` to ``dst`` atomically, checking its SHA-256 against ``expected_hash_prefix``.

    The bytes go to a hidden temporary file beside ``dst``; it is renamed to ``dst`` only when the
    body is complete (as long as the ``Content-Length`` said) and the hash matches. On any failure
    the temporary file is removed and ``dst`` is left as it was.

    Raises:
        CheckpointDownloadError: the URL could not be opened or the transfer broke off.
        CheckpointHashError: the file's SHA-256 does not start with ``expected_hash_prefix``.
    """
    dst = Path(dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointDownloadError(f"cannot create the checkpoint folder {dst.parent}: {e}. Set "
                                      "$TORCH_HOME to a writable folder.") from e
    try:
        response = _urlopen(url, timeout)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise CheckpointDownloadError(
            f"{dst.name} is not in the cache and could not be downloaded from {url}: {reason}. "
            f"{_where_to_put(url, dst)} {hint}".rstrip()) from e

    received = 0
    total: Optional[int] = None
    try:
        length = response.headers.get("Content-Length")
        total = int(length) if length is not None and length.isdigit() else None
        digest = hashlib.sha256()
        with atomic_path(dst, durable=True) as tmp:
            with open(tmp, "wb") as f, _progress_bar(total, dst.name, progress) as bar:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            if total is not None and received != total:
                raise CheckpointDownloadError(
                    f"the download of {url} broke off after {received} of {total} bytes; nothing was kept in "
                    f"{dst.parent}. Try again, or: {_where_to_put(url, dst)}")
            sha256 = digest.hexdigest()
            if expected_hash_prefix is not None and not sha256.startswith(expected_hash_prefix):
                raise CheckpointHashError(
                    f"the file downloaded from {url} has SHA-256 {sha256[:16]}..., which does not start with "
                    f"{expected_hash_prefix!r} as its name {dst.name!r} requires: it is corrupt or not the "
                    f"official file, and was not kept. Try again, or: {_where_to_put(url, dst)}")
    except (http.client.HTTPException, OSError) as e:
        raise CheckpointDownloadError(
            f"the download of {url} broke off after {received}"
            f"{f' of {total}' if total is not None else ''} bytes ({type(e).__name__}: {e}); nothing was "
            f"kept in {dst.parent}. Try again, or: {_where_to_put(url, dst)}") from e
    finally:
        response.close()
    return dst


def cached_checkpoint(
    url: str,
    *,
    progress: bool = True,
    check_hash: bool = True,
    file_name: Optional[str] = None,
    hint: str = "",
) -> Path:
    """The cached file for ``url`` (``checkpoint_dir()/<file name>``), downloading it first if absent."""
    name = file_name or file_name_from_url(url)
    dst = checkpoint_dir() / name
    if dst.is_file():
        return dst
    prefix = hash_prefix(name) if check_hash else None
    return download_to_file(url, dst, expected_hash_prefix=prefix, progress=progress, hint=hint)


def load_state_dict_from_url(
    url: str,
    *,
    progress: bool = True,
    check_hash: bool = True,
    file_name: Optional[str] = None,
    hint: str = "",
) -> StateDict:
    """The state_dict of the checkpoint at ``url``, from torch.hub's cache (downloaded when absent).

    Cached files are read with ``weights_only=True``.
    """
    path = cached_checkpoint(url, progress=progress, check_hash=check_hash, file_name=file_name, hint=hint)
    fix = (f"It is in torch.hub's cache: delete {path} and it will be downloaded again "
           f"(or copy a good one there).")
    return state_dict_from_checkpoint(read_checkpoint(path, fix=fix), path)


def _is_weights_only_refusal(error: BaseException) -> bool:
    return isinstance(error, pickle.UnpicklingError) and "weights_only" in str(error).lower().replace(" ", "_")


def read_checkpoint(path: PathLike, *, trusted: bool = False, fix: str = "") -> Any:
    """``torch.load`` a file onto the CPU, with errors that name it.

    ``weights_only=True`` first; a file holding other Python objects (a torchdet training
    checkpoint, a pickled model) is loaded with ``weights_only=False`` only when ``trusted``
    (a path the user passed explicitly).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointReadError: the file is truncated, not a torch file, or holds untrusted objects.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist; pass the path of a .pth/.pt "
                                "checkpoint or the name of published weights such as 'DEFAULT'")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        if _is_weights_only_refusal(e):
            if trusted:
                try:
                    return torch.load(path, map_location="cpu", weights_only=False)
                except Exception as e2:  # noqa: BLE001
                    e = e2
            else:
                raise CheckpointReadError(
                    f"{str(path)!r} holds Python objects besides tensors, so it was not loaded "
                    f"(weights_only=True): {e}. {fix}".rstrip()) from e
        size = path.stat().st_size
        raise CheckpointReadError(
            f"cannot read the checkpoint {str(path)!r} ({size} bytes): it is truncated or not a PyTorch "
            f"checkpoint ({type(e).__name__}: {_first_line(e)}). {fix}".rstrip()) from e


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def state_dict_from_checkpoint(obj: Any, path: PathLike) -> StateDict:
    """The state_dict inside what ``torch.load`` returned.

    Accepts a plain state_dict (torchvision's files), a dict with a ``"model"`` (torchdet training
    checkpoints) or ``"state_dict"`` entry, or a pickled ``nn.Module``. A ``module.`` prefix on
    every key (DistributedDataParallel) is removed.
    """
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise CheckpointReadError(f"{str(path)!r} holds a {type(obj).__name__}, not a state_dict (a dict of "
                                  "tensors) nor a dict with a 'model' state_dict")
    for key in ("model", "state_dict"):
        inner = obj.get(key)
        if isinstance(inner, nn.Module):
            inner = inner.state_dict()
        if isinstance(inner, Mapping):
            obj = inner
            break
    bad = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad or not obj:
        keys = sorted(map(str, obj))[:8]
        raise CheckpointReadError(f"{str(path)!r} holds a dict with keys {keys} but no state_dict: expected "
                                  "tensors by parameter name, or a 'model' entry holding them")
    state_dict = dict(obj)
    if all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def _is_step_counter(key: str) -> bool:
    # nn.BatchNorm2d's counter; FrozenBatchNorm2d drops it and BatchNorm2d fills it in when absent.
    return key.rsplit(".", 1)[-1] == "num_batches_tracked"


def _examples(keys: List[str], n: int = 5) -> str:
    shown = ", ".join(repr(k) for k in keys[:n])
    return shown + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def state_dict_mismatch(model: nn.Module, state_dict: Mapping[str, Tensor]) -> Tuple[
        List[str], List[str], List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]]:
    """(missing keys, unexpected keys, [(key, checkpoint shape, model shape)]) of ``state_dict`` for ``model``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not _is_step_counter(k)]
    unexpected = [k for k in state_dict if k not in expected and not _is_step_counter(k)]
    reshaped = [(k, tuple(state_dict[k].shape), tuple(expected[k].shape))
                for k in state_dict if k in expected and state_dict[k].shape != expected[k].shape]
    return missing, unexpected, reshaped


def describe_mismatch(model: nn.Module, state_dict: Mapping[str, Tensor]) -> Optional[str]:
    """Why ``state_dict`` does not fit ``model``, listing a few keys of each kind, or None when it fits."""
    missing, unexpected, reshaped = state_dict_mismatch(model, state_dict)
    parts = []
    if missing:
        parts.append(f"{len(missing)} keys of the model are missing from it ({_examples(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} of its keys are not in the model ({_examples(unexpected)})")
    if reshaped:
        shown = ", ".join(f"{k!r}: checkpoint {list(a)} vs model {list(b)}" for k, a, b in reshaped[:5])
        more = f", ... ({len(reshaped) - 5} more)" if len(reshaped) > 5 else ""
        parts.append(f"{len(reshaped)} tensors have other shapes ({shown}{more})")
    return "; ".join(parts) or None


def load_state_dict_into(model: nn.Module, state_dict: Mapping[str, Tensor], *, source: str) -> nn.Module:
    """``model.load_state_dict(state_dict)`` (strict), or an error listing a few keys that do not fit.

    ``source`` names the checkpoint in the message (a file path or ``Enum.MEMBER``).
    """
    problem = describe_mismatch(model, state_dict)
    if problem:
        raise CheckpointMismatchError(
            f"the checkpoint {source} does not fit this {type(model).__name__}: {problem}. "
            "It was saved from another architecture or configuration: build the model it came from "
            "(same builder, num_classes, num_keypoints ...).")
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise CheckpointMismatchError(f"the checkpoint {source} does not fit this {type(model).__name__}: {e}") from e
    return model
