"""Revision and archive of a project tree, computed on the controller.

Used by the greenlight.django.code_sync role::

    source_tree.py inspect --dir DIR [--ref REF] [--requirements FILE] [--exclude PATTERN ...]
        Print JSON {"revision", "kind", "requirements"}. Without --ref the
        revision is a SHA-256 of the tree (paths, contents, executable bits,
        symlink targets; excluded names left out), so the same files always
        give the same revision. With --ref it is the commit REF names in the
        git repository DIR. "requirements" is the text of the requirements
        file (null when the file is missing).

    source_tree.py pack --dir DIR --output FILE.tar.gz [--ref REF] [--exclude PATTERN ...]
        Write the same tree (or the tree of commit REF, via git archive) as a
        gzip'd tarball whose members belong to root, directories 0755, files
        0644 (0755 when executable).

A PATTERN is matched (fnmatch) against each file or directory name and
against its path relative to DIR; a matching directory is skipped whole.
Standard library only (Python 3.9+).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Iterator, NamedTuple


class Entry(NamedTuple):
    kind: str  # "d" directory, "f" file, "l" symlink
    path: str  # relative, "/"-separated
    executable: bool
    target: str  # symlink target, "" otherwise


class SourceError(Exception):
    """The tree or the ref cannot be read as asked."""


def is_excluded(relative: str, patterns: list[str]) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(relative, p) for p in patterns)


def tree_entries(root: Path, patterns: list[str]) -> Iterator[Entry]:
    """Every entry under root that is not excluded, in a stable order."""
    for current, dirs, files in os.walk(root):
        base = Path(current).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        kept_dirs = []
        for name in sorted(dirs):
            relative = prefix + name
            full = Path(current, name)
            if is_excluded(relative, patterns):
                continue
            if full.is_symlink():
                yield Entry("l", relative, False, os.readlink(full))
            else:
                kept_dirs.append(name)
                yield Entry("d", relative, False, "")
        dirs[:] = kept_dirs
        for name in sorted(files):
            relative = prefix + name
            full = Path(current, name)
            if is_excluded(relative, patterns):
                continue
            if full.is_symlink():
                yield Entry("l", relative, False, os.readlink(full))
            else:
                yield Entry("f", relative, os.access(full, os.X_OK), "")


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_revision(root: Path, patterns: list[str]) -> str:
    manifest = hashlib.sha256()
    for entry in tree_entries(root, patterns):
        if entry.kind == "f":
            line = f"f {int(entry.executable)} {file_digest(root / entry.path)} {entry.path}\n"
        elif entry.kind == "l":
            line = f"l {entry.target} {entry.path}\n"
        else:
            line = f"d {entry.path}\n"
        manifest.update(line.encode("utf-8", "surrogateescape"))
    return manifest.hexdigest()


def git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SourceError(f"git {' '.join(args)} failed in {root}: {result.stderr.strip()}")
    return result.stdout


def git_revision(root: Path, ref: str) -> str:
    return git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()


def read_requirements(root: Path, ref: str, requirements: str) -> str | None:
    if ref:
        try:
            return git(root, "show", f"{git_revision(root, ref)}:{requirements}")
        except SourceError:
            return None
    path = root / requirements
    return path.read_text(encoding="utf-8") if path.is_file() else None


def tar_member(root: Path, entry: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = int((root / entry.path).lstat().st_mtime)
    if entry.kind == "d":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif entry.kind == "l":
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.target
    else:
        info.size = (root / entry.path).stat().st_size
        info.mode = 0o755 if entry.executable else 0o644
    return info


def pack_tree(root: Path, output: Path, patterns: list[str]) -> None:
    with tarfile.open(output, "w:gz") as archive:
        for entry in tree_entries(root, patterns):
            info = tar_member(root, entry)
            if entry.kind == "f":
                with (root / entry.path).open("rb") as handle:
                    archive.addfile(info, handle)
            else:
                archive.addfile(info)


def pack_ref(root: Path, output: Path, ref: str) -> None:
    revision = git_revision(root, ref)
    git(root, "-c", "tar.umask=0022", "archive", "--format=tar.gz", f"--output={output}", revision)


def inspect(args: argparse.Namespace) -> dict:
    root = source_root(args.dir)
    if args.ref:
        revision, kind = git_revision(root, args.ref), "git"
        if not revision:
            raise SourceError(f"{args.ref!r} names no commit in {root}")
    else:
        revision, kind = tree_revision(root, args.exclude), "tree"
    return {"revision": revision, "kind": kind, "requirements": read_requirements(root, args.ref, args.requirements)}


def pack(args: argparse.Namespace) -> dict:
    root = source_root(args.dir)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=output.name + ".", dir=output.parent)
    os.close(handle)
    try:
        if args.ref:
            pack_ref(root, Path(partial), args.ref)
        else:
            pack_tree(root, Path(partial), args.exclude)
        os.chmod(partial, 0o600)
        os.replace(partial, output)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return {"archive": str(output)}


def source_root(directory: str) -> Path:
    root = Path(directory)
    if not root.is_dir():
        raise SourceError(f"{directory} is not a directory on the controller")
    return root


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("inspect", "pack"):
        command = commands.add_parser(name)
        command.add_argument("--dir", required=True)
        command.add_argument("--ref", default="")
        command.add_argument("--exclude", action="append", default=[])
        if name == "inspect":
            command.add_argument("--requirements", default="requirements.txt")
        else:
            command.add_argument("--output", required=True)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        result = inspect(args) if args.command == "inspect" else pack(args)
    except (OSError, SourceError) as exc:
        print(f"source_tree: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
