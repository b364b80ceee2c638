"""Results as JSON: conversion of dataclasses/tensors/arrays, versions, atomic writes.

Every result dataclass in iclens is saved through `write_json` so that a
`result.json` always holds plain numbers (no tensors), the config that made it
and the library versions, and so that a run killed mid-write never leaves a
truncated file behind (temp file + `os.replace`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch


def to_jsonable(obj: Any) -> Any:
    """Recursively turn dataclasses, tensors, arrays and paths into JSON types.

    Non-finite floats become None so the output is strict JSON.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on, saved beside it."""
    out = {"python": platform.python_version()}
    for pkg in ("iclens", "torch", "transformer-lens", "transformers", "nnsight"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` via a temp file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write `obj` (dataclass, dict, ...) as strict, indented JSON."""
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False)
    return atomic_write_text(path, text + "\n")
