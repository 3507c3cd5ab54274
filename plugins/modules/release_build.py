#!/usr/bin/python
# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later


DOCUMENTATION = r"""
---
module: release_build
short_description: Finish a new release on the server - Django's settings, shared paths, static files, checks
version_added: "1.1.0"
description:
  - Finishes, in one module call, a release whose code and virtualenv are in place under
    C(<app_root>/releases/<release>), the way C(greenlight.django.code_sync) builds one. In this order, and
    stopping at the first step that fails -
  - 1. records how the release starts Django (O(settings_module), O(pythonpath)) in O(django_env_file), read by
    the manage wrapper and by the gunicorn unit of the release;
  - 2. puts a relative symbolic link into C(<app_root>/shared/<path>) in place of what the code ships at each of
    O(shared_paths), creating the parent directories of a nested path;
  - 3. collects the static files into the release (O(collectstatic)) and puts them in the static bridge
    C(<app_root>/shared/static-bridge), as M(greenlight.django.release) does with
    O(greenlight.django.release#module:state=bridged);
  - 4. runs the build commands (O(commands)), each a C(manage.py) command, in the release;
  - 5. runs C(manage.py check --deploy) as the application user (O(check_deploy)) and returns the warnings
    below O(check_fail_level) (RV(check_warnings));
  - 6. marks the release complete - its C(REVISION) file written whole and renamed into place, the last step.
  - Django runs through the application's manage wrapper (O(manage)), which reads the environment file on the
    server; no setting or secret passes through the module's arguments. Steps 3 and 4 run as root (the release
    is root's, the application user cannot write it), step 5 as the application user.
  - When a step fails the module fails with its name (RV(step)), the command (RV(command)) and its output, and
    leaves the release as it is; the caller removes it.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  app_root:
    description:
      - The application's root directory, with C(releases/), C(shared/) and C(bin/manage).
    type: path
    required: true
  release:
    description:
      - The id of the release to finish, a directory under C(<app_root>/releases).
    type: str
    required: true
  revision:
    description:
      - The lines of the release's C(REVISION) file - the revision first, then the build line when there is one.
        Empty lines are left out.
    type: list
    elements: str
    required: true
  manage:
    description:
      - The manage wrapper that runs Django for a release; C(<app_root>/bin/manage) when omitted.
    type: path
  settings_module:
    description:
      - The release's Django settings module. With O(pythonpath), written to O(django_env_file); when both are
        empty that file is not written and C(manage.py) and the environment decide.
    type: str
    default: ""
  pythonpath:
    description:
      - Directories of the release, relative to its root, that Django's import path starts with (a src layout).
    type: list
    elements: str
    default: []
  django_env_file:
    description:
      - Where, relative to the release, O(settings_module) and O(pythonpath) are recorded.
    type: str
    default: .venv/greenlight-django.env
  shared_paths:
    description:
      - Paths, relative to the release, that become links into C(<app_root>/shared/) (which must exist).
    type: list
    elements: str
    default: []
  collectstatic:
    description:
      - Whether to run C(collectstatic --noinput) and put the files in the static bridge.
    type: bool
    default: true
  static_dir:
    description:
      - The directory of the release, relative to it, that C(collectstatic) fills (C(STATIC_ROOT)).
    type: str
    default: static
  commands:
    description:
      - More C(manage.py) commands that build the release (C(compilemessages), C(compress)), each split on
        white space.
    type: list
    elements: str
    default: []
  check_deploy:
    description:
      - Whether to run C(manage.py check --deploy).
    type: bool
    default: true
  check_fail_level:
    description:
      - The level of message from which the deploy checks fail.
    type: str
    choices: [CRITICAL, ERROR, WARNING, INFO, DEBUG]
    default: ERROR
seealso:
  - module: greenlight.django.release
  - module: greenlight.django.release_info
author:
  - greenlight.django contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Finish the release, then mark it complete
  greenlight.django.release_build:
    app_root: /srv/mysite
    release: 20260101T120000Z-3f2a1c9d8e7b
    revision: [3f2a1c9d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39]
    shared_paths: [media, var/uploads]
    commands: [compilemessages]
  become: true
  register: built

- name: Show what the deploy checks warned about
  ansible.builtin.debug:
    var: built.check_warnings
"""

RETURN = r"""
steps:
  description: The names of the steps that ran, in order; when the module fails, the last one is RV(step).
  returned: always
  type: list
  elements: str
  sample: [Link the shared paths into the release, Collect the static files into the release]
check_warnings:
  description: The messages of the deploy checks below O(check_fail_level), one per line as Django printed them.
  returned: success
  type: list
  elements: str
  sample: ["?: (security.W004) You have not set a value for the SECURE_HSTS_SECONDS setting."]
static_bridge:
  description: How many files the static bridge gained and lost.
  returned: success
  type: dict
  sample: {placed: 120, removed: 0}
step:
  description: The name of the step that failed.
  returned: failure
  type: str
  sample: Collect the static files into the release
command:
  description: The command of the step that failed, as one line.
  returned: failure, when the step runs a command
  type: str
  sample: /srv/mysite/bin/manage --as-root /srv/mysite/releases/20260101T120000Z-3f2a1c9d8e7b collectstatic --noinput
rc:
  description: The exit status of the command that failed.
  returned: failure, when the step runs a command
  type: int
  sample: 1
stdout:
  description: The standard output of the command that failed.
  returned: failure, when the step runs a command
  type: str
stderr:
  description: The standard error of the command that failed.
  returned: failure, when the step runs a command
  type: str
"""

import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.greenlight.django.plugins.module_utils._static_bridge import (  # noqa: E402
    sync as sync_bridge,
)

DJANGO_ENV = "Record how the release starts Django (settings module, import path)"
LINK = "Link the shared paths into the release, in place of what the code ships there"
COLLECT = "Collect the static files into the release"
BRIDGE = "Put the new release's static files in the static bridge"
COMMANDS = "Run the build commands in the release"
CHECK = "Run the deploy checks as the application user"
MARK = "Mark the release complete"

# A message of Django's system checks below the error level: "(security.W004)", "(myapp.I001)".
CHECK_MESSAGE = re.compile(r"[(][A-Za-z0-9_]+[.][WI][0-9]+[)]")


def argument_spec():
    """The module's options (kept in one place for the unit tests)."""
    return dict(
        app_root=dict(type="path", required=True),
        release=dict(type="str", required=True),
        revision=dict(type="list", elements="str", required=True),
        manage=dict(type="path"),
        settings_module=dict(type="str", default=""),
        pythonpath=dict(type="list", elements="str", default=[]),
        django_env_file=dict(type="str", default=".venv/greenlight-django.env"),
        shared_paths=dict(type="list", elements="str", default=[]),
        collectstatic=dict(type="bool", default=True),
        static_dir=dict(type="str", default="static"),
        commands=dict(type="list", elements="str", default=[]),
        check_deploy=dict(type="bool", default=True),
        check_fail_level=dict(type="str", default="ERROR", choices=["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]),
    )


class StepFailed(Exception):
    """A step of the build failed; ``details`` are the result keys that say how."""

    def __init__(self, details):
        super().__init__(details.get("msg", ""))
        self.details = details


def write_whole(path, text, mode=0o644):
    """Write ``text`` to ``path`` through a file beside it renamed into place: readers see all of it or nothing."""
    partial = f"{path}.new"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(partial, mode)
    os.replace(partial, path)


def django_env(release_dir, settings_module, pythonpath):
    """The lines of the file that tells the release's Django processes how to start ('' when nothing is set)."""
    lines = []
    if settings_module:
        lines.append(f"DJANGO_SETTINGS_MODULE={settings_module}")
    if pythonpath:
        lines.append("PYTHONPATH=" + ":".join(f"{release_dir}/{path.rstrip('/')}" for path in pythonpath))
    return "".join(f"{line}\n" for line in lines)


def link_target(path):
    """The relative target of the link at ``path`` (relative to the release) into <app_root>/shared/."""
    return "../" * (2 + path.count("/")) + "shared/" + path


def link_shared(release_dir, paths):
    """Replace what the code ships at each path by a relative link into shared/ (parents created, root's 0755)."""
    for path in paths:
        where = os.path.join(release_dir, path)
        if os.path.islink(where) or os.path.isfile(where):
            os.unlink(where)
        elif os.path.isdir(where):
            shutil.rmtree(where)
        os.makedirs(os.path.dirname(where), mode=0o755, exist_ok=True)
        os.symlink(link_target(path), where)


def check_warnings(stdout, stderr):
    """The messages of ``manage.py check`` below the error level, one per line, trimmed."""
    return [line.strip() for line in (stderr + "\n" + stdout).splitlines() if CHECK_MESSAGE.search(line)]


def revision_text(lines):
    """The REVISION file: each non-empty line."""
    return "".join(f"{line}\n" for line in lines if line)


class Build:
    """The steps of a release's build, in order; ``steps`` names those that ran."""

    def __init__(self, module):
        self.module = module
        self.steps = []

    def run(self, step, argv):
        """Run one command of ``step``; its output, or StepFailed with the command and its output."""
        rc, stdout, stderr = self.module.run_command(argv, check_rc=False)
        if rc != 0:
            raise StepFailed(
                dict(
                    msg="non-zero return code",
                    step=step,
                    command=" ".join(argv),
                    rc=rc,
                    stdout=stdout,
                    stderr=stderr,
                    stdout_lines=stdout.splitlines(),
                    stderr_lines=stderr.splitlines(),
                )
            )
        return stdout, stderr

    def start(self, step):
        self.steps.append(step)
        return step


def build(params, steps):
    """Every step of the build, run by ``steps``; the result keys of a success. Raises StepFailed or OSError."""
    app_root = params["app_root"]
    release_dir = os.path.join(app_root, "releases", params["release"])
    manage = params["manage"] or os.path.join(app_root, "bin", "manage")
    if not os.path.isdir(release_dir):
        raise StepFailed(dict(msg=f"release_build: {release_dir} does not exist: ship the code into it first."))
    result = {"check_warnings": [], "static_bridge": {"placed": 0, "removed": 0}}

    text = django_env(release_dir, params["settings_module"], params["pythonpath"])
    if text:
        steps.start(DJANGO_ENV)
        write_whole(os.path.join(release_dir, params["django_env_file"]), text)

    if params["shared_paths"]:
        steps.start(LINK)
        link_shared(release_dir, params["shared_paths"])

    if params["collectstatic"]:
        steps.run(steps.start(COLLECT), [manage, "--as-root", release_dir, "collectstatic", "--noinput"])
        steps.start(BRIDGE)
        placed, dropped = sync_bridge(app_root, params["static_dir"], False)
        result["static_bridge"] = {"placed": len(placed), "removed": len(dropped)}

    if params["commands"]:
        steps.start(COMMANDS)
        for command in params["commands"]:
            steps.run(COMMANDS, [manage, "--as-root", release_dir] + command.split())

    if params["check_deploy"]:
        stdout, stderr = steps.run(
            steps.start(CHECK),
            [manage, release_dir, "check", "--deploy", "--fail-level", params["check_fail_level"]],
        )
        result["check_warnings"] = check_warnings(stdout, stderr)

    steps.start(MARK)
    write_whole(os.path.join(release_dir, "REVISION"), revision_text(params["revision"]))
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=False)
    params = module.params
    # What the build creates is root's and readable by all (the application user reads the release).
    os.umask(0o022)
    steps = Build(module)
    try:
        result = build(params, steps)
    except StepFailed as exc:
        details = dict(exc.details)
        msg = details.pop("msg")
        module.fail_json(msg=msg, steps=steps.steps, **details)
    except OSError as exc:
        step = steps.steps[-1] if steps.steps else ""
        module.fail_json(
            msg=f"release_build: cannot write {exc.filename or params['app_root']}: {exc.strerror}. Run it as a user "
            "who can write the application's root (become: true).",
            step=step,
            steps=steps.steps,
        )
    module.exit_json(changed=True, steps=steps.steps, **result)


if __name__ == "__main__":
    main()
