#!/usr/bin/python
# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later


DOCUMENTATION = r"""
---
module: release
short_description: Point a pointer at a release atomically, or remove the releases no one needs, in one call
version_added: "1.1.0"
description:
  - Changes what a host holds of an application deployed by greenlight.django, in one module call.
  - O(state=pointed) points the pointer O(pointer) (a symbolic link in O(app_root), such as C(current)) at the
    release O(release) under C(<app_root>/releases). The new link is made beside the pointer and renamed over
    it (one C(rename(2)), atomic), so a reader sees the old release or the new one, never no pointer. A release
    without its C(REVISION) file (incomplete) is refused, and so is a pointer that exists and is not a link.
  - O(state=pruned) keeps the O(keep) newest releases, every release a pointer of O(pointers) references and
    every release of O(protect), and removes the others; then removes each wheelhouse under
    C(<app_root>/wheels) that no remaining release was installed from (the release's C(.venv/wheelhouse)),
    and the copies C(greenlight.django.code_sync) kept of the environment file it replaced
    (C(<app_root>/shared/.env.<...>~)).
  - O(state=pruned) then brings the static bridge C(<app_root>/shared/static-bridge) up to date
    (O(static_bridge)), and O(state=bridged) does only that. The bridge holds, for each path, the static file of
    the newest remaining release that has it (a hard link, a copy across file systems), and nothing else.
    C(greenlight.django.traffic) serves a static file from the serving release, else from the bridge. So the pages
    an older release rendered (with C(ManifestStaticFilesStorage), hashed names of that release's files) still get
    their files after a switch for as long as that release is kept, and a new release's files are there before
    nginx points at it.
  - See M(greenlight.django.release_info) to read releases and pointers without changing anything.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: O(state=pointed) shows the pointer's target before and after.
  platform:
    platforms: posix
options:
  app_root:
    description:
      - The application's root directory, the one with C(releases/) and the pointers.
    type: path
    required: true
  state:
    description:
      - V(pointed) to point O(pointer) at O(release); V(pruned) to remove the releases and wheelhouses no one needs;
        V(bridged) to bring the static bridge up to date (after C(collectstatic) built a new release).
    type: str
    required: true
    choices: [pointed, pruned, bridged]
  pointer:
    description:
      - Name of the pointer to set (O(state=pointed)).
    type: str
    default: current
  release:
    description:
      - Id (directory name under C(<app_root>/releases)) of the release to point at; required with
        O(state=pointed).
    type: str
  keep:
    description:
      - How many of the newest releases O(state=pruned) keeps (release ids sort by the time they were made);
        the releases a pointer references and those of O(protect) are kept on top of them.
    type: int
    default: 5
  pointers:
    description:
      - The pointers whose releases O(state=pruned) never removes.
    type: list
    elements: str
    default: [current, blue, green]
  protect:
    description:
      - More release ids O(state=pruned) never removes, for example the one a deploy just built.
    type: list
    elements: str
    default: []
  static_bridge:
    description:
      - Whether O(state=pruned) brings the static bridge up to date too (removing the files no remaining release
        has).
    type: bool
    default: true
  static_dir:
    description:
      - The folder of a release that C(collectstatic) fills (C(STATIC_ROOT)), relative to the release.
    type: str
    default: static
author:
  - greenlight.django contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Serve the new release
  greenlight.django.release:
    app_root: /srv/mysite
    state: pointed
    pointer: current
    release: 20260101T120000Z-3f2c1a9d8e7b
  register: switch

- name: Keep the three newest releases and every one a pointer references
  greenlight.django.release:
    app_root: /srv/mysite
    state: pruned
    keep: 3
    protect: ["{{ switch.before }}"]

- name: After collectstatic, put the new release's static files in the bridge before anything points at it
  greenlight.django.release:
    app_root: /srv/mysite
    state: bridged
"""

RETURN = r"""
before:
  description: With O(state=pointed), the release the pointer referenced before (empty when there was no pointer).
  returned: always
  type: str
  sample: 20251231T090000Z-0a1b2c3d4e5f
removed_releases:
  description: With O(state=pruned), the ids of the releases removed (that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [20251201T090000Z-0a1b2c3d4e5f]
removed_wheelhouses:
  description: With O(state=pruned), the names of the wheelhouses removed from C(<app_root>/wheels).
  returned: always
  type: list
  elements: str
  sample: [9f86d081884c7d65-cp3.11.2-cp311-x86_64-glibc2.36]
removed_environment_copies:
  description:
    - With O(state=pruned), the copies of C(<app_root>/shared/.env) that C(greenlight.django.code_sync) kept
      when it replaced the file (C(.env.<...>~)), removed once a release that reads the new file serves.
  returned: always
  type: list
  elements: str
  sample: [.env.4242.2025-12-31@09:00:00~]
static_bridge:
  description:
    - With O(state=bridged), and with O(state=pruned) and O(static_bridge), how many files were put in the static
      bridge and removed from it (would be, in check mode); else zeros.
  returned: always
  type: dict
  contains:
    placed:
      description: Files linked (or copied) into C(<app_root>/shared/static-bridge).
      type: int
    removed:
      description: Files removed from it because no remaining release has them.
      type: int
  sample: {placed: 3, removed: 3}
"""

import fnmatch  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.greenlight.django.plugins.module_utils._pointer import (  # noqa: E402
    PointerError,
    point,
    target_id,
)
from ansible_collections.greenlight.django.plugins.module_utils._static_bridge import sync as sync_bridge  # noqa: E402

# The copies of shared/.env that code_sync keeps while a deploy may still put the old one back.
ENVIRONMENT_COPIES = ".env.*~"


def argument_spec():
    return dict(
        app_root=dict(type="path", required=True),
        state=dict(type="str", required=True, choices=["pointed", "pruned", "bridged"]),
        pointer=dict(type="str", default="current"),
        release=dict(type="str"),
        keep=dict(type="int", default=5),
        pointers=dict(type="list", elements="str", default=["current", "blue", "green"]),
        protect=dict(type="list", elements="str", default=[]),
        static_bridge=dict(type="bool", default=True),
        static_dir=dict(type="str", default="static"),
    )


def prune(module, app_root, keep, pointers, protect):
    """Remove the releases and wheelhouses no one needs; (removed releases, removed wheelhouses)."""
    if keep < 1:
        module.fail_json(msg=f"release: keep must be 1 or more (got {keep}): the serving release is always kept.")
    releases_dir = os.path.join(app_root, "releases")
    if not os.path.isdir(releases_dir):
        return [], []
    names = sorted(entry.name for entry in os.scandir(releases_dir) if entry.is_dir(follow_symlinks=False))
    referenced = {target_id(os.path.join(app_root, pointer)) for pointer in pointers}
    kept = set(names[-keep:]) | referenced | set(protect)
    doomed = [name for name in names if name not in kept]
    in_use = set()
    for name in names:
        if name in doomed:
            continue
        try:
            with open(os.path.join(releases_dir, name, ".venv", "wheelhouse"), encoding="utf-8") as handle:
                in_use.add(handle.read().strip())
        except OSError:
            pass
    wheels_dir = os.path.join(app_root, "wheels")
    wheelhouses = []
    if os.path.isdir(wheels_dir):
        wheelhouses = sorted(
            entry.name
            for entry in os.scandir(wheels_dir)
            if entry.is_dir(follow_symlinks=False) and entry.name not in in_use
        )
    if not module.check_mode:
        for name in doomed:
            shutil.rmtree(os.path.join(releases_dir, name))
        for name in wheelhouses:
            shutil.rmtree(os.path.join(wheels_dir, name))
    return doomed, wheelhouses


def prune_environment_copies(module, app_root):
    """Remove the copies code_sync keeps of the environment file it replaced (shared/.env.<...>~); their names."""
    shared = os.path.join(app_root, "shared")
    if not os.path.isdir(shared):
        return []
    copies = sorted(
        entry.name
        for entry in os.scandir(shared)
        if fnmatch.fnmatch(entry.name, ENVIRONMENT_COPIES) and entry.is_file(follow_symlinks=False)
    )
    if not module.check_mode:
        for name in copies:
            os.unlink(os.path.join(shared, name))
    return copies


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_if=[("state", "pointed", ["release"])],
        supports_check_mode=True,
    )
    params = module.params
    app_root = params["app_root"]
    result = {
        "changed": False,
        "before": "",
        "removed_releases": [],
        "removed_wheelhouses": [],
        "removed_environment_copies": [],
        "static_bridge": {"placed": 0, "removed": 0},
    }
    try:
        if params["state"] == "pointed":
            try:
                result["changed"], result["before"] = point(
                    app_root, params["pointer"], params["release"], check_mode=module.check_mode
                )
            except PointerError as exc:
                module.fail_json(msg=f"release: {exc}")
            if result["changed"] and module._diff:
                result["diff"] = {
                    "before_header": os.path.join(app_root, params["pointer"]),
                    "after_header": os.path.join(app_root, params["pointer"]),
                    "before": (f"releases/{result['before']}\n" if result["before"] else "absent\n"),
                    "after": f"releases/{params['release']}\n",
                }
        elif params["state"] == "pruned":
            removed, wheelhouses = prune(module, app_root, params["keep"], params["pointers"], params["protect"])
            copies = prune_environment_copies(module, app_root)
            result.update(removed_releases=removed, removed_wheelhouses=wheelhouses, removed_environment_copies=copies)
            result["changed"] = bool(removed or wheelhouses or copies)
            if params["static_bridge"]:
                placed, dropped = sync_bridge(app_root, params["static_dir"], module.check_mode, exclude=removed)
                result["static_bridge"] = {"placed": len(placed), "removed": len(dropped)}
                result["changed"] = result["changed"] or bool(placed or dropped)
        else:
            placed, dropped = sync_bridge(app_root, params["static_dir"], module.check_mode)
            result["static_bridge"] = {"placed": len(placed), "removed": len(dropped)}
            result["changed"] = bool(placed or dropped)
    except OSError as exc:
        module.fail_json(
            msg=f"release: cannot change {exc.filename or app_root}: {exc.strerror}. Run it as a user who can write "
            "the application's root (become: true)."
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
