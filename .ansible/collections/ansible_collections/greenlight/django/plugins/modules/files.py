#!/usr/bin/python
# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later


DOCUMENTATION = r"""
---
module: files
short_description: Put many directories and small files in place on a host in one call
version_added: "1.1.0"
description:
  - Makes sure, in one module call, that each directory in O(directories) exists, that each link in O(links)
    exists, that each file in O(files) has exactly the given content, owner, group and mode, and that each path
    in O(absent) is gone; in that order, and within each list in the order given.
  - Meant for what the roles of this collection render on the controller (units, nginx configuration, scripts).
    Over a connection where each module call costs a round trip, a dozen files cost one call instead of two or
    three each with M(ansible.builtin.template).
  - A file is replaced atomically, by writing a temporary file beside it and renaming it over the old one, so
    a reader sees the old content or the new, never a part. The temporary file gets its owner, group and mode
    before the rename.
  - A file whose content is the same is not rewritten; only its owner, group and mode are corrected.
  - A file with a O(files[].validate) command is checked before it replaces anything; a failing check leaves
    the old file untouched, fails the module, and names the file and the command's output.
options:
  directories:
    description:
      - Directories to create (with their missing parents, which get mode C(0755)) or correct.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the directory.
        type: path
        required: true
      owner:
        description: Owner; the current one is kept when omitted.
        type: str
      group:
        description: Group; the current one is kept when omitted.
        type: str
      mode:
        description: Mode as an octal string such as V(0755); a new directory gets V(0755) when omitted.
        type: raw
  files:
    description:
      - Files to write. The parent directory must exist or be listed in O(directories).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the file.
        type: path
        required: true
      content:
        description: The whole content of the file, written as UTF-8.
        type: str
        required: true
      owner:
        description: Owner; the current one (or the user running the module, for a new file) when omitted.
        type: str
      group:
        description: Group; the current one (or the user's group, for a new file) when omitted.
        type: str
      mode:
        description: Mode as an octal string such as V(0644); a new file gets V(0600) when omitted.
        type: raw
      validate:
        description:
          - Command that checks the new content before it replaces the file; V(%s) stands for the temporary
            file. Runs without a shell, like the O(ansible.builtin.template#module:validate) option.
        type: str
      backup:
        description:
          - Keep the file that is replaced as C(<path>.<pid>.<timestamp>~), with its owner and mode, the way
            M(ansible.builtin.template) does with its own O(ansible.builtin.template#module:backup) option.
        type: bool
        default: false
  links:
    description:
      - Symbolic links to create. Created before the files, so that a file's O(files[].validate) command sees
        them; a link may point at a file written by the same call.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the link.
        type: path
        required: true
      src:
        description: What the link points at, as written into the link (relative or absolute).
        type: str
        required: true
      replace:
        description:
          - Whether an existing link that points elsewhere is replaced (atomically, by renaming a new link over
            it). With V(false) an existing link is left as it is, wherever it points; use this for a link that
            another task switches.
        type: bool
        default: true
  absent:
    description:
      - Files and links to remove; a path that does not exist is fine. A directory is refused.
    type: list
    elements: path
    default: []
notes:
  - Templates are rendered on the controller, for example with P(ansible.builtin.template#lookup); the module
    only compares and writes.
  - Put secret content in a task of its own with C(no_log=true); the module returns the paths it changed,
    and in diff mode the old and the new content.
seealso:
  - module: ansible.builtin.template
  - module: ansible.builtin.file
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
author:
  - greenlight.django contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Write the nginx files of the application in one call
  greenlight.django.files:
    directories:
      - path: /etc/nginx/greenlight/mysite
        owner: root
        group: root
        mode: "0755"
    files:
      - path: /etc/nginx/greenlight/mysite/maintenance.html
        content: "{{ lookup('ansible.builtin.template', 'maintenance.html.j2') }}"
        owner: root
        group: root
        mode: "0644"
      - path: /etc/nginx/sites-enabled/greenlight-mysite.conf
        content: "{{ lookup('ansible.builtin.template', 'site.conf.j2') }}"
        owner: root
        group: root
        mode: "0644"
        validate: nginx -t -q -c %s
  notify: Reload nginx

- name: Write the environment file, keeping the one it replaces
  greenlight.django.files:
    files:
      - path: /srv/mysite/shared/.env
        content: "{{ lookup('ansible.builtin.template', 'env.j2') }}"
        owner: root
        group: root
        mode: "0600"
        backup: true
  no_log: true
  register: env_file
"""

RETURN = r"""
changed_paths:
  description:
    - The paths that were created, changed (content, owner, group, mode or link target) or removed, in the order
      the module went through them.
  returned: always
  type: list
  elements: str
  sample: [/etc/nginx/greenlight/mysite/upstream-current.conf]
backup_files:
  description: For each file replaced with O(files[].backup), the path of the copy of the old file.
  returned: always
  type: dict
  sample: {/srv/mysite/shared/.env: /srv/mysite/shared/.env.4242.2026-01-01@12:00:00~}
"""

import os  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.common.text.converters import to_bytes, to_native  # noqa: E402


def argument_spec():
    """The module's options (kept in one place for the unit tests)."""
    attributes = {
        "owner": {"type": "str"},
        "group": {"type": "str"},
        "mode": {"type": "raw"},
    }
    return {
        "directories": {
            "type": "list",
            "elements": "dict",
            "default": [],
            "options": dict(path={"type": "path", "required": True}, **attributes),
        },
        "files": {
            "type": "list",
            "elements": "dict",
            "default": [],
            "options": dict(
                path={"type": "path", "required": True},
                content={"type": "str", "required": True},
                validate={"type": "str"},
                backup={"type": "bool", "default": False},
                **attributes,
            ),
        },
        "links": {
            "type": "list",
            "elements": "dict",
            "default": [],
            "options": {
                "path": {"type": "path", "required": True},
                "src": {"type": "str", "required": True},
                "replace": {"type": "bool", "default": True},
            },
        },
        "absent": {"type": "list", "elements": "path", "default": []},
    }


def ensure_link(module, item, diffs):
    """Create or (with replace) repoint one symbolic link; True when something changed."""
    path = item["path"]
    b_path = to_bytes(path, errors="surrogate_or_strict")
    if os.path.lexists(b_path):
        if not os.path.islink(b_path):
            module.fail_json(msg=f"files: {path} exists and is not a symbolic link; move it away.")
        current = to_native(os.readlink(b_path), errors="surrogate_or_strict")
        if current == item["src"] or not item["replace"]:
            return False
        before = current + "\n"
    else:
        before = "absent\n"
    diffs.append({"before_header": path, "after_header": path, "before": before, "after": item["src"] + "\n"})
    if module.check_mode:
        return True
    b_tmp = os.path.join(os.path.dirname(b_path), b".%s.%d.tmp" % (os.path.basename(b_path), os.getpid()))
    try:
        if os.path.lexists(b_tmp):
            os.unlink(b_tmp)
        os.symlink(to_bytes(item["src"], errors="surrogate_or_strict"), b_tmp)
        os.rename(b_tmp, b_path)
    except OSError as exc:
        if os.path.lexists(b_tmp):
            os.unlink(b_tmp)
        module.fail_json(msg=f"files: cannot point {path} at {item['src']}: {to_native(exc)}")
    return True


def ensure_absent(module, path, diffs):
    """Remove one file or link; True when there was one."""
    b_path = to_bytes(path, errors="surrogate_or_strict")
    if not os.path.lexists(b_path):
        return False
    if os.path.isdir(b_path) and not os.path.islink(b_path):
        module.fail_json(msg=f"files: {path} is a directory; absent only removes files and links.")
    diffs.append({"before_header": path, "after_header": path, "before": "present\n", "after": "absent\n"})
    if not module.check_mode:
        try:
            os.unlink(b_path)
        except OSError as exc:
            module.fail_json(msg=f"files: cannot remove {path}: {to_native(exc)}")
    return True


def attribute_args(item, path):
    """The file_args that AnsibleModule.set_fs_attributes_if_different takes, for one item."""
    return {
        "path": path,
        "mode": item.get("mode"),
        "owner": item.get("owner"),
        "group": item.get("group"),
        "secontext": None,
        "attributes": None,
    }


def check_paths(module, items, kind):
    """Fail before any change when a path is not absolute or appears twice."""
    seen = set()
    for item in items:
        path = item["path"]
        if not os.path.isabs(path):
            module.fail_json(msg=f"files: every path in {kind} must be absolute (got {path!r}).")
        if path in seen:
            module.fail_json(msg=f"files: {path} is listed twice in {kind}.")
        seen.add(path)
        if kind == "files" and item.get("validate") is not None and "%s" not in item["validate"]:
            module.fail_json(msg=f"files: the validate command of {path} must contain %s (the file to check).")


def ensure_directory(module, item, diffs):
    """Create one directory (and its parents) or correct its attributes; True when something changed."""
    path = item["path"]
    b_path = to_bytes(path, errors="surrogate_or_strict")
    created = False
    if os.path.lexists(b_path) and not os.path.isdir(b_path):
        module.fail_json(msg=f"files: {path} exists and is not a directory; move it away.")
    if not os.path.isdir(b_path):
        created = True
        diffs.append({"before_header": path, "after_header": path, "before": "absent\n", "after": "directory\n"})
        if module.check_mode:
            return True
        try:
            os.makedirs(b_path, 0o755)
        except OSError as exc:
            module.fail_json(msg=f"files: cannot create the directory {path}: {to_native(exc)}")
        if item.get("mode") is None:
            os.chmod(b_path, 0o755)  # noqa: S103 (a directory others traverse)
    args = attribute_args(item, path)
    return module.set_fs_attributes_if_different(args, created, expand=False)


def read_bytes(b_path):
    """The content of a regular file, or None when there is none."""
    if not os.path.lexists(b_path):
        return None
    with open(b_path, "rb") as handle:
        return handle.read()


def write_file(module, item, b_content):
    """Write a new version beside the file, check it, then rename it over the file."""
    path = item["path"]
    b_path = to_bytes(path, errors="surrogate_or_strict")
    directory = os.path.dirname(b_path)
    if not os.path.isdir(directory):
        module.fail_json(msg=f"files: the directory of {path} does not exist; list it in directories.")
    fd, b_tmp = tempfile.mkstemp(prefix=b"." + os.path.basename(b_path) + b".", dir=directory)
    tmp = to_native(b_tmp, errors="surrogate_or_strict")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(b_content)
            handle.flush()
            os.fsync(handle.fileno())
        if item.get("mode") is None:
            os.chmod(b_tmp, 0o600 if not os.path.exists(b_path) else os.stat(b_path).st_mode & 0o7777)
        module.set_fs_attributes_if_different(attribute_args(item, tmp), True, expand=False)
        if item.get("validate"):
            rc, out, err = module.run_command(item["validate"] % tmp)
            if rc != 0:
                module.fail_json(
                    msg=f"files: the new content of {path} failed its check ({item['validate']}, exit {rc}); "
                    f"the file was left as it was: {(err or out).strip()}",
                )
        backup = None
        if item.get("backup") and os.path.exists(b_path):
            backup = module.backup_local(path)
        os.rename(b_tmp, b_path)
        return backup
    finally:
        if os.path.lexists(b_tmp):
            os.unlink(b_tmp)


def ensure_file(module, item, diffs):
    """Put one file in place; (changed, backup path or None)."""
    path = item["path"]
    b_path = to_bytes(path, errors="surrogate_or_strict")
    if os.path.lexists(b_path) and (os.path.islink(b_path) or not os.path.isfile(b_path)):
        module.fail_json(msg=f"files: {path} exists and is not a regular file; move it away.")
    b_content = to_bytes(item["content"], errors="surrogate_or_strict")
    try:
        b_old = read_bytes(b_path)
    except OSError as exc:
        module.fail_json(msg=f"files: cannot read {path}: {to_native(exc)}")
    if b_old == b_content:
        return module.set_fs_attributes_if_different(attribute_args(item, path), False, expand=False), None
    diffs.append(
        {
            "before_header": path,
            "after_header": path,
            "before": to_native(b_old, errors="surrogate_or_replace") if b_old is not None else "",
            "after": item["content"],
        }
    )
    if module.check_mode:
        return True, None
    try:
        return True, write_file(module, item, b_content)
    except OSError as exc:
        module.fail_json(msg=f"files: cannot write {path}: {to_native(exc)}")


def run(module):
    """Apply every item; the result dictionary."""
    params = module.params
    check_paths(module, params["directories"], "directories")
    check_paths(module, params["files"], "files")
    check_paths(module, params["links"], "links")
    check_paths(module, [{"path": path} for path in params["absent"]], "absent")
    changed_paths = []
    backup_files = {}
    diffs = []
    for item in params["directories"]:
        if ensure_directory(module, item, diffs):
            changed_paths.append(item["path"])
    for item in params["links"]:
        if ensure_link(module, item, diffs):
            changed_paths.append(item["path"])
    for item in params["files"]:
        changed, backup = ensure_file(module, item, diffs)
        if changed:
            changed_paths.append(item["path"])
        if backup:
            backup_files[item["path"]] = backup
    for path in params["absent"]:
        if ensure_absent(module, path, diffs):
            changed_paths.append(path)
    result = {"changed": bool(changed_paths), "changed_paths": changed_paths, "backup_files": backup_files}
    if module._diff:
        result["diff"] = diffs
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
