"""Registries with one module per kind (export formats, packing strategies): found by walking a package."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import TypeVar

T = TypeVar("T")


def defined_in(package: ModuleType, attribute: str, kind: type[T]) -> dict[str, T]:
    """What each module of `package` defines as `attribute`, where it is a `kind`, by its `name`, in name order.
    Modules are imported to be read, so they stay light to import."""
    found = {}
    for module in pkgutil.iter_modules(package.__path__):
        value = getattr(importlib.import_module(f"{package.__name__}.{module.name}"), attribute, None)
        if isinstance(value, kind):
            found[value.name] = value  # type: ignore[attr-defined]
    return dict(sorted(found.items()))
