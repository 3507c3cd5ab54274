#!/usr/bin/python
# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later


DOCUMENTATION = r"""
---
module: release_info
short_description: Read an application's releases, pointers and serving colour in one call
version_added: "1.1.0"
description:
  - Reads, in one module call and without changing anything, what a host holds of an application deployed by
    greenlight.django - the releases under C(<app_root>/releases), whether each is complete (has its
    C(REVISION) file), the revision and build it was made from and the wheelhouse it was installed from; the
    release each pointer (C(current), C(blue), C(green)) references; which colour nginx sends the traffic to.
  - With O(revision), it also names the complete releases of that revision built the same way (O(build)), the
    release a deploy of that revision can reuse instead of building a new one.
  - An application root that does not exist yet is not an error - the result says so (RV(exists)) and lists
    nothing.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  app_root:
    description:
      - The application's root directory, the one with C(releases/) and the pointers.
    type: path
    required: true
  pointers:
    description:
      - Names of the pointers (symbolic links in O(app_root) to C(releases/<id>)) to read.
    type: list
    elements: str
    default: [current, blue, green]
  revision:
    description:
      - A revision (a commit id, or the checksum of a source tree). RV(matching) lists the complete releases
        whose C(REVISION) file has it on a line of its own and the same build line as O(build).
    type: str
  build:
    description:
      - The C(build ...) line a matching release's C(REVISION) must have; empty for a release built without
        extra requirements, build commands, settings module or import path (which has no such line).
    type: str
    default: ""
  nginx_conf_dir:
    description:
      - The application's nginx configuration directory (C(/etc/nginx/greenlight/<app>)). Its C(active.conf)
        link names the upstream, and so the colour, nginx sends the traffic to (RV(active)).
    type: path
author:
  - greenlight.django contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Look for a release of the revision being deployed
  greenlight.django.release_info:
    app_root: /srv/mysite
    revision: 3f2c1a9d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f
  register: mysite

- name: Reuse it
  ansible.builtin.debug:
    msg: "release {{ mysite.matching[-1] }} is reused"
  when: mysite.matching | length > 0

- name: Which colour serves, and which release it runs
  greenlight.django.release_info:
    app_root: /srv/mysite
    nginx_conf_dir: /etc/nginx/greenlight/mysite
  register: mysite

- name: Show them
  ansible.builtin.debug:
    msg: "{{ mysite.active }} serves {{ mysite.pointers[mysite.active] | default('nothing') }}"
"""

RETURN = r"""
exists:
  description: Whether O(app_root) exists.
  returned: always
  type: bool
  sample: true
pointers:
  description:
    - For each pointer of O(pointers) that is a symbolic link, the id of the release it references (the last part of
      its target). A pointer that does not exist, or is not a link, is left out.
  returned: always
  type: dict
  sample: {current: 20260101T120000Z-3f2c1a9d8e7b, blue: 20251231T090000Z-0a1b2c3d4e5f}
releases:
  description: The releases under C(<app_root>/releases), oldest first (their ids sort by the time they were made).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The release's directory name.
      type: str
      sample: 20260101T120000Z-3f2c1a9d8e7b
    complete:
      description: Whether the release has its C(REVISION) file, written last when a release is built.
      type: bool
      sample: true
    revision:
      description: The first line of C(REVISION); empty for an incomplete release.
      type: str
      sample: 3f2c1a9d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f
    build:
      description: The C(build ...) line of C(REVISION), empty when it has none.
      type: str
      sample: build 0123456789abcdef
    wheelhouse:
      description: The wheelhouse the release's virtualenv was installed from (C(.venv/wheelhouse)); empty if unknown.
      type: str
      sample: 9f86d081884c7d65-cp3.11.2-cp311-x86_64-glibc2.36
    referenced_by:
      description: The pointers that reference the release.
      type: list
      elements: str
      sample: [current]
wheelhouses:
  description:
    - The complete wheelhouses under C(<app_root>/wheels) (those with their C(.installed) mark, written once a
      wheelhouse is unpacked), by name.
  returned: always
  type: list
  elements: str
  sample: [9f86d081884c7d65-cp3.11.2-cp311-x86_64-glibc2.36]
matching:
  description:
    - The ids of the complete releases of O(revision) built as O(build), oldest first; empty without
      O(revision).
  returned: always
  type: list
  elements: str
  sample: [20260101T120000Z-3f2c1a9d8e7b]
active:
  description:
    - The pointer nginx sends the traffic to, read from C(<nginx_conf_dir>/active.conf) (a link to
      C(upstream-<pointer>.conf)); empty without O(nginx_conf_dir) or when that link does not exist.
  returned: always
  type: str
  sample: blue
maintenance_flag:
  description:
    - The file whose presence makes nginx show the application's maintenance page,
      C(<nginx_conf_dir>/maintenance.on); empty without O(nginx_conf_dir).
  returned: always
  type: str
  sample: /etc/nginx/greenlight/mysite/maintenance.on
maintenance:
  description: Whether RV(maintenance_flag) exists - nginx shows the maintenance page.
  returned: always
  type: bool
  sample: false
"""

import os  # noqa: E402
import re  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.greenlight.django.plugins.module_utils._pointer import target_id  # noqa: E402

UPSTREAM_LINK = re.compile(r"^upstream-(.+)\.conf$")
# The greenlight.django.traffic role's maintenance flag, in nginx_conf_dir.
MAINTENANCE_FLAG = "maintenance.on"
# greenlight.django.code_sync's mark of a wheelhouse unpacked whole.
WHEELHOUSE_MARK = ".installed"


def argument_spec():
    return dict(
        app_root=dict(type="path", required=True),
        pointers=dict(type="list", elements="str", default=["current", "blue", "green"]),
        revision=dict(type="str"),
        build=dict(type="str", default=""),
        nginx_conf_dir=dict(type="path"),
    )


def read_text(path):
    """The file's text, or None when it cannot be read as text."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def read_release(releases_dir, release_id):
    home = os.path.join(releases_dir, release_id)
    text = read_text(os.path.join(home, "REVISION"))
    lines = text.splitlines() if text is not None else []
    wheelhouse = read_text(os.path.join(home, ".venv", "wheelhouse")) or ""
    return {
        "id": release_id,
        "complete": text is not None,
        "revision": lines[0].strip() if lines else "",
        "build": next((line.strip() for line in lines[1:] if line.startswith("build ")), ""),
        "wheelhouse": wheelhouse.strip(),
        "referenced_by": [],
    }


def inspect(app_root, pointers, revision=None, build="", nginx_conf_dir=None):
    """What the host holds of the application (the module's result, without 'changed')."""
    result = {
        "exists": os.path.isdir(app_root),
        "pointers": {},
        "releases": [],
        "wheelhouses": [],
        "matching": [],
        "active": "",
        "maintenance_flag": "",
        "maintenance": False,
    }
    if nginx_conf_dir:
        upstream = target_id(os.path.join(nginx_conf_dir, "active.conf"))
        match = UPSTREAM_LINK.match(upstream or "")
        result["active"] = match.group(1) if match else ""
        result["maintenance_flag"] = os.path.join(nginx_conf_dir, MAINTENANCE_FLAG)
        result["maintenance"] = os.path.lexists(result["maintenance_flag"])
    if not result["exists"]:
        return result
    for pointer in pointers:
        target = target_id(os.path.join(app_root, pointer))
        if target is not None:
            result["pointers"][pointer] = target
    releases_dir = os.path.join(app_root, "releases")
    try:
        names = sorted(entry.name for entry in os.scandir(releases_dir) if entry.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        names = []
    for name in names:
        release = read_release(releases_dir, name)
        release["referenced_by"] = [pointer for pointer, target in result["pointers"].items() if target == name]
        result["releases"].append(release)
        if revision and release["complete"] and release["build"] == build:
            text = read_text(os.path.join(releases_dir, name, "REVISION")) or ""
            if revision in (line.strip() for line in text.splitlines()):
                result["matching"].append(name)
    wheels_dir = os.path.join(app_root, "wheels")
    try:
        result["wheelhouses"] = sorted(
            entry.name
            for entry in os.scandir(wheels_dir)
            if entry.is_dir(follow_symlinks=False)
            and os.path.isfile(os.path.join(wheels_dir, entry.name, WHEELHOUSE_MARK))
        )
    except FileNotFoundError:
        pass
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        result = inspect(
            params["app_root"], params["pointers"], params["revision"], params["build"], params["nginx_conf_dir"]
        )
    except OSError as exc:
        module.fail_json(
            msg=f"release_info: cannot read {exc.filename or params['app_root']}: {exc.strerror}. Run it as a user "
            "who can read the application's root (become: true)."
        )
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
