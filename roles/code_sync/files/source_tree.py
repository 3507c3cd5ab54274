"""Revision and archive of a project tree, computed on the controller.

Used by the greenlight.django.code_sync role::

    source_tree.py inspect --dir DIR [--ref REF] [--requirements FILE] [--exclude PATTERN ...]
        Print JSON {"revision", "kind", "requirements", "requirements_from",
        "manage_py"}. Without --ref the revision is a SHA-256 of the tree
        (paths, contents, executable bits, symlink targets; excluded names left
        out), so the same files always give the same revision. With --ref it is
        the commit REF names in the git repository DIR. "requirements" is the
        text of the requirements file (null when the file is missing), or the
        requirements exported from a uv.lock: FILE names a uv.lock, or FILE is
        the default requirements.txt, which the project does not have, and it
        has a uv.lock. "requirements_from" names the file read, "manage_py"
        says whether the project has a manage.py at its root.

    source_tree.py export-lock
        Read JSON {"uv.lock": TEXT, "pyproject.toml": TEXT} on stdin and print
        JSON {"requirements"}: the lock exported as above (a git source, whose
        files are read on the server).

    source_tree.py pack --dir DIR (--output FILE.tar.gz | --temporary PREFIX) [--ref REF] [--exclude PATTERN ...]
        Write the same tree (or the tree of commit REF, via git archive) as a
        gzip'd tarball whose members belong to root, directories 0755, files
        0644 (0755 when executable), mode 0600; with --temporary, into a new
        file PREFIX*.tar.gz of the temporary directory. Print JSON {"archive"}:
        its path.

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
import re
import shutil
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


class RequirementsError(SourceError):
    """The requirements cannot be read or exported (exit code 3: the message says what to fix)."""


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


DEFAULT_REQUIREMENTS = "requirements.txt"
UV_LOCK = "uv.lock"
# The packages the project needs at run time, pinned as locked, without hashes (the wheelhouse is built from them),
# without development dependencies and without the project itself (its code is the release).
UV_EXPORT = ["export", "--frozen", "--no-hashes", "--no-dev", "--no-emit-project", "--format", "requirements-txt"]
UV_EXPORT_HINT = (
    "or export the lock yourself (uv " + " ".join(UV_EXPORT) + " --output-file requirements.txt), commit "
    "requirements.txt and set code_sync_requirements_file: requirements.txt"
)


def read_file(root: Path, ref: str, relative: str) -> str | None:
    """Text of a file of the tree (or of commit REF), None when it is missing."""
    if ref:
        try:
            return git(root, "show", f"{git_revision(root, ref)}:{relative}")
        except SourceError:
            return None
    path = root / relative
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RequirementsError(f"cannot read {path}: {exc}") from None


def uv_binary() -> str:
    """uv beside the interpreter that runs this script (its virtualenv), else on PATH."""
    beside = Path(sys.executable).with_name("uv")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("uv")
    if not found:
        raise RequirementsError(
            f"the requirements come from a uv.lock, and uv is not installed on the controller (looked beside "
            f"{sys.executable} and on PATH): install it there (python -m pip install uv), {UV_EXPORT_HINT}"
        )
    return found


def export_lock_in(directory: Path, where: str) -> str:
    """Requirements (requirements.txt format) exported from the uv.lock of the project in directory."""
    uv = uv_binary()
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("UV_", "VIRTUAL_ENV"))}
    result = subprocess.run(
        [uv, *UV_EXPORT, "--no-header", "--offline", "--no-config", "--project", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        env=dict(environment, UV_NO_PROGRESS="1"),
    )
    if result.returncode != 0:
        # uv's message without the lines that draw the offending text
        detail = " ".join(line.strip() for line in result.stderr.splitlines() if not re.match(r"\s*\d*\s*\|", line))
        raise RequirementsError(
            f"uv cannot export {where}: {detail or 'exit code ' + str(result.returncode)}. Fix the lock (uv lock "
            f"writes it anew from pyproject.toml), {UV_EXPORT_HINT}"
        )
    return result.stdout


def export_lock(lock: str, pyproject: str | None, where: str) -> str:
    """The same from the texts of a uv.lock and its pyproject.toml (a commit, or a server's clone)."""
    if pyproject is None:
        raise RequirementsError(
            f"{where} has no pyproject.toml beside it: uv reads both. Commit the project's pyproject.toml, "
            f"{UV_EXPORT_HINT}"
        )
    with tempfile.TemporaryDirectory(prefix="greenlight-uv-") as scratch:
        Path(scratch, UV_LOCK).write_text(lock, encoding="utf-8")
        Path(scratch, "pyproject.toml").write_text(pyproject, encoding="utf-8")
        return export_lock_in(Path(scratch), where)


def read_requirements(root: Path, ref: str, requirements: str) -> tuple[str | None, str]:
    """(text, file it came from): the requirements file, or the export of a uv.lock."""
    lock_path = requirements if Path(requirements).name == UV_LOCK else None
    text = None if lock_path else read_file(root, ref, requirements)
    if text is None and lock_path is None and requirements == DEFAULT_REQUIREMENTS:
        lock_path = UV_LOCK if read_file(root, ref, UV_LOCK) is not None else None
    if lock_path is None:
        return text, requirements
    lock = read_file(root, ref, lock_path)
    if lock is None:
        return None, lock_path
    pyproject = str(Path(lock_path).with_name("pyproject.toml"))
    where = f"{lock_path} of {root}" + (f" at {ref}" if ref else "")
    if ref:
        return export_lock(lock, read_file(root, ref, pyproject), where), lock_path
    if read_file(root, ref, pyproject) is None:
        export_lock(lock, None, where)  # refuses, with the reason
    # In place: a workspace's members are read too.
    return export_lock_in((root / lock_path).parent, where), lock_path


def export_lock_command(stdin: str) -> dict:
    try:
        files = json.loads(stdin)
        lock, pyproject = files[UV_LOCK], files.get("pyproject.toml")
    except (ValueError, KeyError, TypeError) as exc:
        message = f"export-lock expects JSON with the texts of uv.lock and pyproject.toml: {exc}"
        raise RequirementsError(message) from None
    return {"requirements": export_lock(lock, pyproject, files.get("where") or UV_LOCK)}


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
    requirements, requirements_from = read_requirements(root, args.ref, args.requirements)
    return {
        "revision": revision,
        "kind": kind,
        "requirements": requirements,
        "requirements_from": requirements_from,
        "manage_py": read_file(root, args.ref, "manage.py") is not None,
    }


def pack(args: argparse.Namespace) -> dict:
    root = source_root(args.dir)
    if args.temporary:
        # A file of this run's own in the temporary directory, never shared by name; removed if packing fails.
        handle, partial = tempfile.mkstemp(prefix=args.temporary, suffix=".tar.gz")
        output = Path(partial)
    else:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=output.name + ".", dir=output.parent)
    os.close(handle)
    done = False
    try:
        if args.ref:
            pack_ref(root, Path(partial), args.ref)
        else:
            pack_tree(root, Path(partial), args.exclude)
        os.chmod(partial, 0o600)
        os.replace(partial, output)
        done = True
    finally:
        if not done and os.path.exists(partial):
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
    commands.add_parser("export-lock")
    for name in ("inspect", "pack"):
        command = commands.add_parser(name)
        command.add_argument("--dir", required=True)
        command.add_argument("--ref", default="")
        command.add_argument("--exclude", action="append", default=[])
        if name == "inspect":
            command.add_argument("--requirements", default="requirements.txt")
        else:
            where = command.add_mutually_exclusive_group(required=True)
            where.add_argument("--output")
            where.add_argument("--temporary", metavar="PREFIX")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        if args.command == "export-lock":
            result = export_lock_command(sys.stdin.read())
        else:
            result = inspect(args) if args.command == "inspect" else pack(args)
    except (OSError, SourceError) as exc:
        print(f"source_tree: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, RequirementsError) else 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
