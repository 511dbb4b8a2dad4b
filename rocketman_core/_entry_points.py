"""Reading the entry points of one group from the installed distributions.

``importlib.metadata`` would do it, but importing it (with ``email``,
``zipfile``, ``csv``...) costs more than importing pluggy, and discovery runs
in every process that emits. Distributions on a directory of ``sys.path``
keep their entry points in ``*.dist-info/entry_points.txt`` (or
``*.egg-info``), an INI file; reading those directly is what
``importlib.metadata`` does, less its imports. Anything else on ``sys.path``
(a zip file) is read through ``importlib.metadata``.
"""

import os
import re
import sys
from typing import NamedTuple

__all__ = ["EntryPoint", "entry_points", "load"]

_NORMALIZE = re.compile(r"[-_.]+")


class EntryPoint(NamedTuple):
    """One entry point, with the distribution that declares it."""

    name: str
    value: str
    distribution: str
    version: str


def entry_points(group: str) -> list[EntryPoint]:
    """The entry points of ``group``, one distribution per name, in ``sys.path`` order."""
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for entry in sys.path:
        directory = entry or "."
        if os.path.isfile(directory):
            found.extend(_from_importlib(directory, group, seen))
            continue
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            stem = name.rsplit(".", 1)[0]
            project, _, version = stem.partition("-")
            key = _NORMALIZE.sub("-", project).lower()
            if key in seen:
                continue  # an earlier sys.path entry has this distribution
            seen.add(key)
            path = os.path.join(directory, name)
            section = _read_group(os.path.join(path, "entry_points.txt"), group)
            if section:
                project, version = _name_and_version(path, project, version)
                found.extend(EntryPoint(n, v, project, version) for n, v in section)
    return found


def _read_group(path: str, group: str) -> list[tuple[str, str]]:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError:
        return []
    if group not in text:
        return []  # most distributions declare no entry point of ours: skip parsing their file
    entries: list[tuple[str, str]] = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
        elif inside and "=" in line:
            name, _, value = line.partition("=")
            entries.append((name.strip(), value.strip()))
    return entries


def _name_and_version(path: str, project: str, version: str) -> tuple[str, str]:
    """The Name and Version of METADATA (PKG-INFO), falling back on the folder's name."""
    for filename in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(path, filename), encoding="utf-8") as file:
                fields = {}
                for line in file:
                    if not line.strip():
                        break  # the end of the headers
                    key, _, value = line.partition(":")
                    if key in ("Name", "Version"):
                        fields[key] = value.strip()
                return fields.get("Name", project), fields.get("Version", version)
        except OSError:
            continue
    return project, version


def _from_importlib(path: str, group: str, seen: set[str]) -> list[EntryPoint]:
    from importlib import metadata

    found = []
    for dist in metadata.distributions(path=[path]):
        project = dist.metadata["Name"] or ""
        key = _NORMALIZE.sub("-", project).lower()
        if key in seen:
            continue
        seen.add(key)
        for point in dist.entry_points:
            if point.group == group:
                found.append(EntryPoint(point.name, point.value, project, dist.version))
    return found


def load(value: str) -> object:
    """Import what an entry point's value names: ``module`` or ``module:attribute``."""
    import importlib

    module_name, _, attribute = value.partition(":")
    target: object = importlib.import_module(module_name.strip())
    for part in attribute.strip().split(".") if attribute.strip() else ():
        target = getattr(target, part)
    return target

