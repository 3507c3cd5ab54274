# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""PRIVATE to the greenlight.django collection. Do not use it from other collections.

The pointers of an application root (``current``, ``blue``, ``green``): symlinks to ``releases/<id>``,
swapped atomically. A new link is made beside the pointer and renamed over it (one ``rename(2)``), so a
reader sees either the old or the new release, never a missing pointer.
"""

from __future__ import annotations

import os


class PointerError(Exception):
    """The pointer cannot be swapped: the message says why and what to do."""


def is_plain_name(name):
    return bool(name) and "/" not in name and name not in (".", "..")


def target_id(path):
    """The release id a pointer references, or None when path is not a link."""
    if not os.path.islink(path):
        return None
    return os.path.basename(os.path.normpath(os.readlink(path)))


def point(app_root, pointer, release, check_mode=False):
    """Point app_root/pointer at releases/<release>; (changed, release it referenced before)."""
    if not is_plain_name(pointer) or not is_plain_name(release or ""):
        raise PointerError(
            f"pointer and release must name a link in {app_root} and a directory under "
            f"{app_root}/releases (got pointer {pointer!r}, release {release!r})."
        )
    link = os.path.join(app_root, pointer)
    target = os.path.join("releases", release)
    if not os.path.isfile(os.path.join(app_root, target, "REVISION")) and not check_mode:
        raise PointerError(
            f"cannot point {link} at {release}: the release is missing or incomplete (no REVISION "
            "file). Build it first (greenlight.django.code_sync)."
        )
    if os.path.lexists(link) and not os.path.islink(link):
        raise PointerError(f"cannot point {link} at {release}: {link} exists and is not a symlink; move it away.")
    before = target_id(link) or ""
    if before == release:
        return False, before
    if not check_mode:
        tmp = os.path.join(app_root, f".{pointer}.greenlight.{os.getpid()}")
        try:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(target, tmp)
            os.rename(tmp, link)
        except OSError as exc:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise PointerError(f"cannot point {link} at {release}: {exc.strerror}.") from exc
    return True, before
