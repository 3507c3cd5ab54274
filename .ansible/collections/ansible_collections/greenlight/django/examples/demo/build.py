#!/usr/bin/env python3
"""Materialise one version of the demo Django project.

The demo lives as a complete first version in ``base/`` plus one overlay per
later version in ``overlays/<version>/``. An overlay holds only what differs
from the version it builds on (named by ``"parent"`` in its ``overlay.json``):

* a file in the overlay replaces the file at the same path, or adds it;
* an empty file named ``<name>.delete`` removes ``<name>`` (file or folder);
* ``"move": {"<from>": "<to>"}`` in ``overlay.json`` moves a file or folder
  of the parent before the overlay's files are applied (a src layout moves
  the packages under ``src/``).

Usage::

    python build.py v4 /tmp/demo-v4           # DEST must be missing or empty
    python build.py v4 /tmp/demo-v4 --force   # replace what DEST holds
    python build.py --list                    # versions, parents, summaries
    python build.py --check                   # every version builds, no overlay file repeats its parent

Standard library only (Python 3.9+); ``from build import build_version`` works
too.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

HERE = Path(__file__).resolve().parent
BASE_VERSION = "v1"
BASE_SUMMARY = "notes app: Note(title, body, created_at), migration 0001"
DELETE_SUFFIX = ".delete"
OVERLAY_METADATA = "overlay.json"
IGNORED_DIRS = {"__pycache__"}
IGNORED_SUFFIXES = {".pyc", ".pyo"}


class BuildError(Exception):
    """A version cannot be built as asked."""


def base_dir(root: Path = HERE) -> Path:
    return root / "base"


def overlay_dir(version: str, root: Path = HERE) -> Path:
    return root / "overlays" / version


def _version_key(version: str) -> tuple:
    """Sort v2 before v10."""
    digits = version.lstrip("v")
    return (0, int(digits), version) if digits.isdigit() else (1, 0, version)


def available_versions(root: Path = HERE) -> list[str]:
    overlays = root / "overlays"
    found = [path.name for path in overlays.iterdir() if path.is_dir()] if overlays.is_dir() else []
    return sorted([BASE_VERSION, *found], key=_version_key)


def overlay_metadata(version: str, root: Path = HERE) -> dict:
    path = overlay_dir(version, root) / OVERLAY_METADATA
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BuildError(f"{version}: {path} is missing") from None
    except ValueError as exc:
        raise BuildError(f"{version}: {path} is not valid JSON: {exc}") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("parent"), str):
        raise BuildError(f'{version}: {path} must be an object with a "parent" version')
    return metadata


def parent_of(version: str, root: Path = HERE) -> str | None:
    if version == BASE_VERSION:
        return None
    return overlay_metadata(version, root)["parent"]


def lineage(version: str, root: Path = HERE) -> list[str]:
    """The versions to apply in order, base first: ``lineage("v4") == ["v1", "v2", "v4"]``."""
    known = available_versions(root)
    chain: list[str] = []
    current: str | None = version
    while current is not None:
        if current not in known:
            raise BuildError(f"unknown version {current!r} (known: {', '.join(known)})")
        if current in chain:
            raise BuildError(f"overlay parents form a cycle: {' <- '.join([*chain, current])}")
        chain.append(current)
        current = parent_of(current, root)
    return list(reversed(chain))


def layer_dir(version: str, root: Path = HERE) -> Path:
    return base_dir(root) if version == BASE_VERSION else overlay_dir(version, root)


def layer_files(layer: Path) -> Iterator[Path]:
    """Files of a layer as paths relative to it, sorted, without metadata or bytecode."""
    for path in sorted(layer.rglob("*")):
        relative = path.relative_to(layer)
        if path.is_dir() or IGNORED_DIRS.intersection(relative.parts) or path.suffix in IGNORED_SUFFIXES:
            continue
        if relative == Path(OVERLAY_METADATA):
            continue
        yield relative


def apply_layer(layer: Path, dest: Path) -> None:
    """Copy a layer onto ``dest``: files replace, ``<name>.delete`` markers remove."""
    for relative in layer_files(layer):
        source = layer / relative
        if relative.name.endswith(DELETE_SUFFIX):
            _delete(dest / relative.with_name(relative.name[: -len(DELETE_SUFFIX)]), marker=source)
            continue
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def apply_moves(version: str, dest: Path, root: Path = HERE) -> None:
    """Move what ``"move"`` in the overlay's metadata names, from the parent's place to the overlay's."""
    moves = overlay_metadata(version, root).get("move") or {}
    if not isinstance(moves, dict):
        raise BuildError(f'{version}: "move" in {OVERLAY_METADATA} must map paths to paths')
    for source, target in moves.items():
        if not (dest / source).exists():
            raise BuildError(f"{version}: cannot move {source}, it does not exist at this point")
        if (dest / target).exists():
            raise BuildError(f"{version}: cannot move {source} to {target}, which exists already")
        (dest / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(dest / source), str(dest / target))


def _delete(target: Path, marker: Path) -> None:
    if marker.stat().st_size:
        raise BuildError(f"{marker}: a delete marker must be empty")
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    else:
        raise BuildError(f"{marker}: nothing to delete, {target.name} does not exist at this point")


def _prepare_dest(dest: Path, force: bool, root: Path) -> None:
    dest = dest.resolve()
    sources = (base_dir(root), root / "overlays")
    if dest == root or dest in root.parents or any(dest.is_relative_to(source) for source in sources):
        raise BuildError(f"refusing to build into {dest}: it holds the demo sources")
    if dest.exists() and not dest.is_dir():
        raise BuildError(f"{dest} exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()):
        if not force:
            raise BuildError(f"{dest} is not empty (use --force to replace its contents)")
        for child in dest.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    dest.mkdir(parents=True, exist_ok=True)


def build_version(version: str, dest: Path, *, force: bool = False, root: Path = HERE) -> Path:
    """Write ``version`` of the demo project into ``dest`` and return ``dest``."""
    root = Path(root).resolve()
    chain = lineage(version, root)
    dest = Path(dest)
    _prepare_dest(dest, force, root)
    for layer in chain:
        if layer != BASE_VERSION:
            apply_moves(layer, dest, root)
        apply_layer(layer_dir(layer, root), dest)
    stamped = (dest / "VERSION").read_text(encoding="utf-8").strip() if (dest / "VERSION").exists() else None
    if stamped != version:
        raise BuildError(f"{version}: the built VERSION file says {stamped!r}; the overlay must carry its own VERSION")
    return dest


def redundant_overlay_files(version: str, root: Path = HERE) -> list[Path]:
    """Overlay files identical to the file they replace in the parent version (copy-paste to remove)."""
    parent = parent_of(version, root)
    if parent is None:
        return []
    layer = overlay_dir(version, root)
    with tempfile.TemporaryDirectory() as scratch:
        built_parent = build_version(parent, Path(scratch) / parent, root=root)
        return [
            relative
            for relative in layer_files(layer)
            if (built_parent / relative).is_file()
            and filecmp.cmp(layer / relative, built_parent / relative, shallow=False)
        ]


def summary(version: str, root: Path = HERE) -> str:
    if version == BASE_VERSION:
        return BASE_SUMMARY
    return str(overlay_metadata(version, root).get("summary", ""))


def _check_all(root: Path) -> list[str]:
    problems = []
    for version in available_versions(root):
        try:
            with tempfile.TemporaryDirectory() as scratch:
                build_version(version, Path(scratch) / version, root=root)
            for relative in redundant_overlay_files(version, root):
                problems.append(f"{version}: {relative} is identical to {parent_of(version, root)}'s copy")
        except BuildError as exc:
            problems.append(str(exc))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Materialise a version of the demo Django project.")
    parser.add_argument("version", nargs="?", help="version to build, e.g. v2")
    parser.add_argument("dest", nargs="?", type=Path, help="directory to create (must be missing or empty)")
    parser.add_argument("--force", action="store_true", help="replace the contents of a non-empty DEST")
    parser.add_argument("--list", action="store_true", help="print the versions and exit")
    parser.add_argument("--check", action="store_true", help="build every version and report redundant files")
    args = parser.parse_args(argv)

    if args.list:
        for version in available_versions():
            parent = parent_of(version)
            print(f"{version}\t{'on ' + parent if parent else 'base'}\t{summary(version)}")
        return 0
    if args.check:
        problems = _check_all(HERE)
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if not args.version or args.dest is None:
        parser.error("VERSION and DEST are required (or use --list / --check)")
    try:
        built = build_version(args.version, args.dest, force=args.force)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(built)
    return 0


if __name__ == "__main__":
    sys.exit(main())
