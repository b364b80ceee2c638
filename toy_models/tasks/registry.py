"""Task registry: families register under a name; unknown names fail with the list of valid ones.

Garg et al.'s in-context-learning repo keeps samplers, tasks, models and the
training loop apart and joins them by name; this is that join. A task module
registers its class with `@register_task("name")`; `make_task("name", **config)`
builds it. `toy_models.tasks` imports the built-in families so their names are
registered on first use.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from probes.errors import IclensError

_TASKS: dict[str, type] = {}


def register_task(name: str) -> Callable[[type], type]:
    """Class decorator: register a task family under `name` (one name per class)."""

    def deco(cls: type) -> type:
        if name in _TASKS and _TASKS[name] is not cls:
            raise ValueError(f"task name {name!r} already registered by {_TASKS[name].__qualname__}")
        _TASKS[name] = cls
        cls.task_name = name
        return cls

    return deco


def task_names() -> list[str]:
    """Registered task names, sorted."""
    _load_builtins()
    return sorted(_TASKS)


def get_task_class(name: str) -> type:
    """The class registered as `name`; IclensError listing the valid names otherwise."""
    _load_builtins()
    if name not in _TASKS:
        close = difflib.get_close_matches(name, list(_TASKS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise IclensError(f"unknown task {name!r}{hint}: valid tasks are {', '.join(sorted(_TASKS))}.")
    return _TASKS[name]


def make_task(name: str, **config: Any):
    """Build a registered task from keyword config (passed to its constructor)."""
    return get_task_class(name)(**config)


def _load_builtins() -> None:
    import importlib
    import pkgutil

    from toy_models import tasks

    for mod in pkgutil.iter_modules(tasks.__path__):
        if mod.name not in ("registry", "base"):
            importlib.import_module(f"{tasks.__name__}.{mod.name}")
