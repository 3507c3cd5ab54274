# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The static bridge: every static file of every kept release, in one directory.

A page rendered by one release names that release's static files (with
``ManifestStaticFilesStorage``, by hashed names such as ``site.3f2a1c.css``).
nginx serves ``/static/`` from the release that serves, and falls back to the
bridge, ``<app_root>/shared/static-bridge``: a file the serving release does not
have is found there as long as a kept release has it. So the pages of the old
release still get their CSS and JavaScript after a switch, and the new
release's files are there before nginx points at it.

The bridge holds, for each path, the file of the newest release that has it
(release ids sort by the time they were made), as a hard link (a copy across
file systems): it costs no space while the release exists. A path no kept
release has any more is removed, and so are the folders it leaves empty.
"""

from __future__ import annotations

import errno
import os
import shutil

BRIDGE = os.path.join("shared", "static-bridge")


def _files(root):
    """Relative paths of the regular files under ``root`` (symbolic links are followed, as nginx does)."""
    found = set()
    for folder, _dirs, names in os.walk(root, followlinks=True):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                found.add(os.path.relpath(path, root))
    return found


def wanted(app_root, static_dir="static", exclude=()):
    """``{relative path: source file}``: for each path, the file of the newest release that has it (the
    releases of ``exclude`` left out)."""
    releases = os.path.join(app_root, "releases")
    try:
        ids = sorted(
            (name for name in os.listdir(releases) if not name.startswith(".") and name not in exclude), reverse=True
        )
    except FileNotFoundError:
        return {}
    sources = {}
    for release in ids:
        root = os.path.join(releases, release, static_dir)
        if not os.path.isdir(root):
            continue
        for relative in _files(root):
            sources.setdefault(relative, os.path.join(root, relative))
    return sources


def _same(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _place(source, target):
    """Put ``source`` at ``target`` in one rename: a hard link, or a copy across file systems."""
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    staging = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.greenlight-new")
    if os.path.lexists(staging):
        os.unlink(staging)
    try:
        os.link(source, staging)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(source, staging)
    os.rename(staging, target)


def sync(app_root, static_dir="static", check_mode=False, exclude=()):
    """Make the bridge hold the static files of the releases (but those of ``exclude``, which are being
    removed); return the relative paths (placed, removed)."""
    bridge = os.path.join(app_root, BRIDGE)
    sources = wanted(app_root, static_dir, exclude)
    present = _files(bridge) if os.path.isdir(bridge) else set()
    placed = sorted(path for path, source in sources.items() if not _same(source, os.path.join(bridge, path)))
    removed = sorted(present - set(sources))
    if check_mode or not (placed or removed or sources):
        return placed, removed
    if not os.path.isdir(bridge):
        os.makedirs(bridge, mode=0o755)
    for path in placed:
        target = os.path.join(bridge, path)
        try:
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)  # a folder in an older release, a file in a newer one
            _place(sources[path], target)
        except (NotADirectoryError, FileExistsError, IsADirectoryError):
            continue  # a file in one release is a folder in another: the serving release's own copy wins anyway
    for path in removed:
        try:
            os.unlink(os.path.join(bridge, path))
        except FileNotFoundError:
            pass
    # Folders left empty, deepest first (the bridge itself stays).
    for folder, _dirs, _names in sorted(os.walk(bridge), key=lambda entry: -len(entry[0])):
        if folder != bridge and not os.listdir(folder):
            os.rmdir(folder)
    return placed, removed
