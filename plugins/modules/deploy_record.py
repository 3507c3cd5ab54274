#!/usr/bin/python
# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later


DOCUMENTATION = r"""
---
module: deploy_record
short_description: Record what a finished deploy left on a host, or check in one call that all of it is still there
version_added: "1.2.0"
description:
  - A deploy of exactly what a host already runs has nothing to do. This module lets a playbook see that in one
    round trip instead of going through every step, and still notice anything that changed on the host since.
  - O(state=recorded), at the end of a successful deploy, writes C(<app_root>/deployed.json) (root only, mode
    0600) with the deploy's O(digest) (a fingerprint of everything the controller sent), the target of every
    pointer (symbolic link) in O(app_root), a fingerprint (SHA-256, mode, owner, group) of each path of O(paths)
    (a directory with all it holds), the systemd units matching O(units) that are active, the migrations applied
    to each database of O(migrations), and the health probe O(health).
  - O(state=checked) reads that record and reports RV(unchanged=true) only when all of it still holds - the same
    O(digest), the same pointer targets and path fingerprints, the same active units, the same applied migrations -
    the deploy lock O(lock) is not held, and the health probe answers 2xx. Otherwise RV(differences) says what
    differs, and the playbook does the whole deploy. It changes nothing on the host.
  - The applied migrations are read with the release the serving pointer (O(serving)) names (Django's own migration
    recorder, in the release's virtualenv, with the environment files given), so a database restored to an older
    state is a difference even when the code is not. The environment files' secrets stay on the host.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: O(state=recorded) writes nothing in check mode.
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
  state:
    description:
      - V(recorded) to write the record of a finished deploy; V(checked) to compare the host with it.
    type: str
    required: true
    choices: [recorded, checked]
  digest:
    description:
      - The fingerprint of the deploy's inputs, computed by the controller (the source's revision, every variable
        of the deploy, the collection). Compared with the recorded one by O(state=checked).
    type: str
    required: true
  paths:
    description:
      - Files and directories the deploy put in place (units, nginx configuration, the environment file), or glob
        patterns of them. A path that is missing is recorded as missing. O(state=recorded) only; O(state=checked)
        checks the recorded paths and whatever the recorded patterns match now (a new drop-in is a difference).
    type: list
    elements: path
    default: []
  units:
    description:
      - systemd unit name patterns (as C(systemctl list-units) takes them) of the units whose active set is
        recorded. O(state=recorded) only.
    type: list
    elements: str
    default: []
  migrations:
    description:
      - How to read the applied migrations (O(state=recorded) only). Left out, the database is not in the record.
    type: dict
    suboptions:
      databases:
        description: The database aliases whose applied migrations are recorded.
        type: list
        elements: str
        default: [default]
      env_files:
        description: The application's environment files on the host (read on the host, never sent back).
        type: list
        elements: path
        default: []
      settings:
        description: The settings module; default what the release's C(manage.py) or recorded startup says.
        type: str
      user:
        description: The account the release's interpreter runs as; default the module's.
        type: str
  health:
    description:
      - The health probe of the serving instance (O(state=recorded) only), as C(greenlight.django.wsgi) publishes
        it in C(wsgi_module_args) - C(url), and optionally C(host) (the Host header) and C(unix_socket).
    type: dict
    default: {}
  commands:
    description:
      - Commands (each an argument list) that must succeed for the host to be as the deploy left it, such as
        C([nginx, -t, -q]) - a configuration another site broke since would fail the next reload. Recorded by
        O(state=recorded), run by O(state=checked) once everything else holds; a failure is a difference that
        quotes the command's last line of output.
    type: list
    elements: list
    default: []
  serving:
    description:
      - The pointer that serves (V(current), or the active colour of a blue-green layout). Its release reads the
        applied migrations, and its release is RV(release). O(state=recorded) only.
    type: str
    default: current
  lock:
    description:
      - The deploy lock (a directory); while it exists another deploy is running and O(state=checked) reports a
        difference.
    type: path
notes:
  - The record holds no secret. The environment files are read again on the host whenever they are needed.
seealso:
  - module: greenlight.django.release_info
author:
  - greenlight.django contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Is everything as the last deploy left it?
  greenlight.django.deploy_record:
    app_root: /srv/shop
    state: checked
    digest: "{{ deploy_digest }}"
    lock: /srv/shop/deploy.lock
  register: last_deploy

- name: Deploy only when something changed
  ansible.builtin.include_tasks: deploy_steps.yml
  when: not last_deploy.unchanged

- name: Record what the deploy left
  greenlight.django.deploy_record:
    app_root: /srv/shop
    state: recorded
    digest: "{{ deploy_digest }}"
    paths: [/srv/shop/shared/.env, /etc/nginx/conf.d/greenlight-shop.conf, /etc/nginx/greenlight/shop]
    units: ["greenlight-shop@*", "greenlight-shop-*@*", nginx.service]
    migrations:
      databases: [default]
      env_files: [/srv/shop/shared/.env]
    health:
      url: http://127.0.0.1/healthz
      unix_socket: /run/greenlight-shop/current.sock
"""

RETURN = r"""
unchanged:
  description: Whether the host is as the last deploy with the same digest left it and answers its health probe.
  returned: state=checked
  type: bool
  sample: true
differences:
  description: What differs from the record, one sentence each (empty when RV(unchanged)).
  returned: state=checked
  type: list
  elements: str
  sample: ["/etc/nginx/conf.d/greenlight-shop.conf changed", "greenlight-shop@current.service is not active"]
release:
  description: The release the serving pointer names in the record (empty without a record).
  returned: always
  type: str
  sample: 20261207T171312Z-979c855ffc92
serving:
  description: The pointer that serves, as recorded (empty without a record).
  returned: always
  type: str
  sample: current
record:
  description: Where the record is.
  returned: always
  type: str
  sample: /srv/shop/deployed.json
"""

import glob  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import stat  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.greenlight.django.plugins.module_utils import _health as health  # noqa: E402
from ansible_collections.greenlight.django.plugins.module_utils._app_runtime import (  # noqa: E402
    account_of,
    marked_result,
    process_environment,
    release_runtime,
    run_payload,
    scrub,
)

RECORD_NAME = "deployed.json"
FORMAT = 1
MARKER = "GREENLIGHT_APPLIED"
MIGRATIONS_TIMEOUT = 60
# The migrations each database has applied, as Django's own recorder reads them (no table: none applied).
APPLIED_PAYLOAD = """\
import json
import django
django.setup()
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder
found = {}
for alias in json.loads(%(aliases)r):
    recorder = MigrationRecorder(connections[alias])
    found[alias] = sorted("%%s.%%s" %% key for key in recorder.applied_migrations())
print(%(marker)r + " " + json.dumps(found))
"""


def argument_spec():
    return dict(
        app_root=dict(type="path", required=True),
        state=dict(type="str", required=True, choices=["recorded", "checked"]),
        digest=dict(type="str", required=True),
        paths=dict(type="list", elements="path", default=[]),
        units=dict(type="list", elements="str", default=[]),
        migrations=dict(
            type="dict",
            options=dict(
                databases=dict(type="list", elements="str", default=["default"]),
                env_files=dict(type="list", elements="path", default=[]),
                settings=dict(type="str"),
                user=dict(type="str"),
            ),
        ),
        health=dict(type="dict", default={}),
        commands=dict(type="list", elements="list", default=[]),
        serving=dict(type="str", default="current"),
        lock=dict(type="path"),
    )


def fingerprint(path):
    """What a path is: missing, a link and its target, or the SHA-256 of a file or of everything a directory
    holds (names, contents, links), each with its mode, owner and group."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    owner = f"{stat.S_IMODE(info.st_mode):o}:{info.st_uid}:{info.st_gid}"
    if stat.S_ISLNK(info.st_mode):
        return f"link:{os.readlink(path)}"
    if stat.S_ISDIR(info.st_mode):
        digest = hashlib.sha256()
        for name in sorted(os.listdir(path)):
            digest.update(f"{name}\0{fingerprint(os.path.join(path, name))}\0".encode("utf-8", "surrogateescape"))
        return f"dir:{owner}:{digest.hexdigest()}"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return f"file:{owner}:{digest.hexdigest()}"


def expand(patterns):
    """The paths the patterns name: each glob pattern's matches, each other path as it is."""
    found = set()
    for pattern in patterns:
        found.update(glob.glob(pattern) if glob.has_magic(pattern) else [pattern])
    return sorted(found)


def pointers(app_root):
    """Every symbolic link directly in app_root and its target."""
    try:
        names = sorted(os.listdir(app_root))
    except OSError:
        return {}
    return {
        name: os.readlink(os.path.join(app_root, name))
        for name in names
        if os.path.islink(os.path.join(app_root, name))
    }


def active_units(module, patterns):
    if not patterns:
        return []
    rc, out, err = module.run_command(
        ["systemctl", "list-units", "--type=service", "--state=active", "--plain", "--no-legend", "--no-pager"]
        + list(patterns)
    )
    if rc != 0:
        module.fail_json(msg=f"systemctl list-units failed: {err.strip() or out.strip()}")
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


def applied_migrations(module, app_root, serving, options):
    """{alias: SHA-256 of the sorted applied migrations} read with the release the serving pointer names, or
    (None, why not)."""
    params = {
        "project_path": os.path.join(app_root, serving),
        "venv": None,
        "python": None,
        "env_files": options.get("env_files") or [],
        "environment": {},
        "settings": options.get("settings"),
        "pythonpath": None,
    }
    runtime = release_runtime(module, params)
    account = account_of(module, options.get("user"))
    env = process_environment(runtime.venv, account, runtime.environment, runtime.settings, runtime.pythonpath)
    source = APPLIED_PAYLOAD % {"aliases": json.dumps(options.get("databases") or ["default"]), "marker": MARKER}
    rc, out, err = run_payload(
        module, runtime.python, source, runtime.project_path, env, account, MIGRATIONS_TIMEOUT, "applied-migrations"
    )
    found = marked_result(out, MARKER)
    if rc != 0 or found is None:
        lines = (err or out or "").strip().splitlines()
        tail = scrub(lines[-1], runtime.secrets) if lines else f"exit {rc}"
        return None, f"the applied migrations could not be read ({tail[:200]})"
    return {
        alias: hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest() for alias, names in sorted(found.items())
    }, ""


def compare(record, current):
    """The differences between a record and the host as read now, one sentence each."""
    differences = []
    for name in sorted(set(record.get("pointers", {})) | set(current["pointers"])):
        before, now = record.get("pointers", {}).get(name), current["pointers"].get(name)
        if before != now:
            differences.append(f"the pointer {name} names {now or 'nothing'} (the last deploy left {before or 'none'})")
    recorded_paths = record.get("paths", {})
    for path in sorted(set(recorded_paths) | set(current["paths"])):
        before, now = recorded_paths.get(path, "missing"), current["paths"].get(path, "missing")
        if now != before:
            differences.append(
                f"{path} is missing"
                if now == "missing"
                else f"{path} is new"
                if before == "missing"
                else f"{path} changed"
            )
    for unit in sorted(set(record.get("units", [])) - set(current["units"])):
        differences.append(f"{unit} is not active")
    for unit in sorted(set(current["units"]) - set(record.get("units", []))):
        differences.append(f"{unit} is active and was not after the last deploy")
    if record.get("migrations") and "migrations" in current and current["migrations"] != record["migrations"]:
        differences.append(current.get("migrations_error") or "the database has other migrations applied")
    return differences


def failed_commands(module, commands):
    """One sentence per command that fails, with its last line of output."""
    failed = []
    for argv in commands:
        rc, out, err = module.run_command([str(arg) for arg in argv])
        if rc != 0:
            lines = (err or out).strip().splitlines()
            failed.append(f"{' '.join(map(str, argv))} fails: {lines[-1] if lines else f'exit {rc}'}")
    return failed


def read_record(path):
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except FileNotFoundError:
        return None, "no deploy was recorded on this host"
    except (OSError, ValueError) as exc:
        return None, f"the record {path} cannot be read: {exc}"
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None, f"the record {path} is of another version"
    return record, ""


def write_record(path, record):
    directory = os.path.dirname(path)
    handle, temporary = tempfile.mkstemp(prefix=".deployed.", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(record, out, indent=1, sort_keys=True)
            out.write("\n")
        os.chmod(temporary, 0o600)
        os.rename(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def checked(module, params, path):
    result = {"changed": False, "record": path, "release": "", "serving": "", "unchanged": False, "differences": []}
    record, problem = read_record(path)
    if record is None:
        result["differences"] = [problem]
        return result
    result["serving"] = record.get("serving", "current")
    result["release"] = os.path.basename(record.get("pointers", {}).get(result["serving"], ""))
    if params["lock"] and os.path.lexists(params["lock"]):
        result["differences"] = [f"the deploy lock {params['lock']} is held"]
        return result
    if record.get("digest") != params["digest"]:
        result["differences"] = ["the deploy's inputs changed (source, variables or collection)"]
        return result
    names = set(record.get("paths", {})) | set(expand(record.get("path_patterns", [])))
    current = {
        "pointers": pointers(params["app_root"]),
        "paths": {name: fingerprint(name) for name in sorted(names)},
        "units": active_units(module, record.get("unit_patterns", [])),
    }
    # The cheap reads first; each later one only while nothing differs.
    differences = compare(record, current) or failed_commands(module, record.get("commands", []))
    if not differences and record.get("migrations"):
        current["migrations"], current["migrations_error"] = applied_migrations(
            module, params["app_root"], result["serving"], record.get("migrations_options", {})
        )
        differences = compare(record, current)
    probe = record.get("health") or {}
    if not differences and probe.get("url"):
        healthy, seen = health.probe(probe["url"], probe.get("host") or "", probe.get("unix_socket") or "", 5.0)
        if not healthy:
            differences.append(f"the health probe of {probe['url']} did not pass ({seen[:120]})")
    result["differences"] = differences
    result["unchanged"] = not differences
    return result


def recorded(module, params, path):
    options = params["migrations"] or {}
    found = pointers(params["app_root"])
    record = {
        "format": FORMAT,
        "digest": params["digest"],
        "serving": params["serving"],
        "pointers": found,
        "path_patterns": list(params["paths"]),
        "paths": {name: fingerprint(name) for name in expand(params["paths"])},
        "unit_patterns": list(params["units"]),
        "commands": [[str(arg) for arg in argv] for argv in params["commands"]],
        "units": active_units(module, params["units"]),
        "health": {
            key: params["health"].get(key) for key in ("url", "host", "unix_socket") if params["health"].get(key)
        },
    }
    if options:
        migrations, error = applied_migrations(module, params["app_root"], params["serving"], options)
        if migrations is None:
            module.fail_json(msg=f"The deploy could not be recorded: {error}. The next deploy will do every step.")
        record["migrations"] = migrations
        record["migrations_options"] = {key: options.get(key) for key in ("databases", "env_files", "settings", "user")}
    changed = read_record(path)[0] != record
    if changed and not module.check_mode:
        write_record(path, record)
    release = os.path.basename(found.get(params["serving"], ""))
    return {"changed": changed, "record": path, "release": release, "serving": params["serving"]}


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    path = os.path.join(params["app_root"], RECORD_NAME)
    if params["state"] == "checked":
        module.exit_json(**checked(module, params, path))
    module.exit_json(**recorded(module, params, path))


if __name__ == "__main__":
    main()
