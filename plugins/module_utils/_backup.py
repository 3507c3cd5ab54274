# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""PRIVATE to the greenlight.django collection. Do not use it from other collections.

A backup of a release's database as the db_backup module takes it, also for the migrate module's O(backup)
(the downtime window backs up and migrates in one call): the options the payload reads, the checks of the
backup directory, the payload's run and the module's result, and the rotation of older backups.
"""

from __future__ import annotations

import fnmatch
import json
import os
import stat

from ansible_collections.greenlight.django.plugins.module_utils import _backup_payload as payload
from ansible_collections.greenlight.django.plugins.module_utils._app_runtime import (
    MIN_SECRET,
    SECRET_NAME,
    account_of,
    marked_result,
    payload_source,
    process_environment,
    run_payload,
    scrub,
)

# The file name of a backup, from the payload's EXTENSIONS.
EXTENSIONS = tuple(payload.EXTENSIONS.values())


def dump_options():
    """The argument spec of how a backup is taken: db_backup's options, and those of the migrate module's backup."""
    return dict(
        database_overrides=dict(type="dict", default={}, no_log=True),
        keep=dict(type="int", default=0),
        verify_restore=dict(type="bool", default=False),
        pg_dump_options=dict(type="list", elements="str", default=[]),
        pg_bin_dir=dict(type="path"),
        mysql_dump_options=dict(type="list", elements="str", default=[]),
        mysql_bin_dir=dict(type="path"),
        lock_wait_timeout=dict(type="float", default=60),
        timeout=dict(type="int", default=0),
    )


def leaf_values(value):
    """Every scalar value of a nested dict or list, as text."""
    if isinstance(value, dict):
        return [text for item in value.values() for text in leaf_values(item)]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in leaf_values(item)]
    return [] if value is None or value == "" else [str(value)]


def secret_values(module, environment_secrets, overrides):
    """The values to mask, longest first: the environment's (application_environment leaves out short settings
    such as DEBUG=0) and those of the overrides, none shorter than MIN_SECRET except passwords (of variables
    named like a secret). Ansible masks a value wherever it occurs, also inside other strings.

    The secret options are masked whole in the module's arguments, which Ansible shows with a failure."""
    options = next((value for key, value in overrides.items() if str(key).upper() == "OPTIONS"), None) or {}
    named = list(overrides.items()) + list(options.items())
    always = {str(value) for key, value in named if SECRET_NAME.search(str(key)) and value not in (None, "")}
    secrets = set(environment_secrets) | {value for value in leaf_values(overrides) if len(value) >= MIN_SECRET}
    secrets |= always
    module.no_log_values.clear()
    module.no_log_values.update(secrets)
    return sorted(secrets, key=len, reverse=True)


def mask_options(options, names=("environment", "database_overrides")):
    """Mask the secret options of options (the module's parameters, or those of a sub-option) whole: they are
    shown with a failure, and the result is not masked by value (see exit_unmasked)."""
    for name in names:
        if options.get(name):
            options[name] = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def payload_options(params, command, overrides):
    """What the payload reads from its OPTIONS_ENV variable."""
    options = {
        "command": command,
        "database": params["database"],
        "database_overrides": overrides,
        "run_as": params["run_as"],
        "lock_wait_timeout": params["lock_wait_timeout"],
        "pg_bin_dir": params["pg_bin_dir"] or None,
        "mysql_bin_dir": params["mysql_bin_dir"] or None,
    }
    if command == "dump":
        options.update(
            dir=params["dir"],
            app_name=params["app_name"],
            verify_restore=params["verify_restore"],
            pg_dump_options=params["pg_dump_options"],
            mysql_dump_options=params["mysql_dump_options"],
        )
    else:
        options["file"] = params["file"]
    return options


def check_paths(module, params):
    """Bad paths fail before anything changes; returns (the directory to create, the directory to make private)."""
    if params["state"] == "restored":
        path = params["file"]
        if not path.endswith(EXTENSIONS):
            module.fail_json(
                msg=f"file {path} is not a backup of this module (a .dump, .sql or .sqlite3 file); set file to the "
                "path that state=dumped returned."
            )
        if not os.path.isfile(path):
            module.fail_json(msg=f"The backup file {path} does not exist; set file to an existing backup.")
        return None, None
    directory = params["dir"]
    if not os.path.exists(directory):
        return directory, None
    if not os.path.isdir(directory):
        module.fail_json(msg=f"dir {directory} is not a directory; set dir to the directory of the backups.")
    if stat.S_IMODE(os.stat(directory).st_mode) & 0o077:
        return None, directory
    return None, None


def prepare_directory(module, create, private):
    try:
        if create:
            os.makedirs(create, mode=0o700)
            os.chmod(create, 0o700)
        if private:
            os.chmod(private, 0o700)
    except OSError as exc:
        module.fail_json(msg=f"Cannot prepare the backup directory: {exc}. Check dir and that the task has become.")


def outcome(report, state, project_path, alias):
    """The module's result from the payload's report."""
    path = report.get("file")
    result = {
        "changed": True,
        "path": path,
        "size": report.get("size"),
        "duration_seconds": report.get("seconds"),
        "vendor": report.get("engine"),
        "database": report.get("database"),
    }
    if result["size"] is None and path:
        try:
            result["size"] = os.path.getsize(path)
        except OSError:
            pass
    if state == "dumped":
        result["verified_restore"] = bool(report.get("verified_restore"))
        if "toc_entries" in report:
            result["toc_entries"] = report["toc_entries"]
        result["msg"] = f"Backed up the database {alias} of {project_path} into {path}"
        if report.get("empty_database"):
            result["msg"] += f" (the SQLite database {report.get('database')} did not exist yet: an empty database)"
    else:
        if "schemas" in report:
            result["schemas"] = report["schemas"]
        result["msg"] = f"Restored the database {alias} of {project_path} from {path}"
    return result


def rotate(directory, app_name, keep, alias="default"):
    """Remove all but the keep newest backups of app_name's database alias in directory; the paths removed."""
    suffix = "" if alias in ("", "default") else f"@{alias}"
    patterns = tuple(f"{app_name}-*{suffix}{extension}" for extension in EXTENSIONS)
    found = [
        entry
        for entry in os.scandir(directory)
        if entry.is_file(follow_symlinks=False)
        and any(fnmatch.fnmatchcase(entry.name, p) for p in patterns)
        # default's backups carry no alias; another alias's are not default's
        and (suffix or "@" not in entry.name)
    ]
    found.sort(key=lambda entry: entry.stat(follow_symlinks=False).st_mtime, reverse=True)
    removed = []
    for entry in found[keep:]:
        os.unlink(entry.path)
        removed.append(entry.path)
    return removed


def failure_message(params, error):
    """The payload's message (what went wrong and what to do), after what failed."""
    name = params["app_name"] or f"the database {params['database']}"
    if params["state"] == "dumped":
        return f"The backup of {name} failed: {error}"
    return f"Restoring {params['file']} for {name} failed: {error}"


def exit_unmasked(module, result):
    """Exit with the result as it is.

    Ansible masks every secret value wherever it occurs in a result, also inside other strings: the application's
    name as a value of an environment file would turn the path of the backup into a masked string. The result
    holds only what the module composed (paths, sizes, names) and the arguments with the secret options masked
    whole (see secret_values), so nothing is left to mask.
    """
    module.no_log_values.clear()
    module.exit_json(**result)


def run(module, params, overrides, release, secrets):
    """Dump (params["state"] dumped) or restore the database of the release, then with keep remove the older
    backups. params: the db_backup module's options (those of the migrate module's backup, completed), overrides:
    database_overrides before it was masked (mask_options). Returns
    (the result, None), or (None, the failure: msg, and rc and stderr when the payload ran)."""
    venv, python = release.venv, release.python
    state = params["state"]
    command = "dump" if state == "dumped" else "restore"
    env = process_environment(
        venv or os.path.dirname(os.path.dirname(python)),
        account_of(module, None),
        release.environment,
        release.settings,
        release.pythonpath,
        extra={payload.OPTIONS_ENV: json.dumps(payload_options(params, command, overrides))},
    )
    rc, out, err = run_payload(
        module, python, payload_source(payload), release.project_path, env, timeout=params["timeout"] or None
    )
    if rc is None:
        error = (
            f"stopped after {params['timeout']} s (timeout); raise timeout, or look for what holds the database's locks"
        )
        return None, {"msg": failure_message(params, error), "stderr": scrub(err, secrets)}
    report = marked_result(out, payload.RESULT_MARKER)
    if report is None:
        detail = scrub(" / ".join(line for line in (err or "").splitlines()[-10:] if line.strip()), secrets)
        error = (
            f"{python} exited with rc={rc} without a result ({detail or 'no output'}); check that it is the "
            "release's interpreter (Python 3.8 or later with Django)"
        )
        return None, {"msg": failure_message(params, error), "rc": rc, "stderr": scrub(err, secrets)}
    if not report.get("ok"):
        return None, {"msg": failure_message(params, scrub(report.get("error") or "unknown error", secrets)), "rc": rc}
    result = outcome(report, state, release.project_path, params["database"])
    if state == "dumped" and params["keep"] > 0:
        try:
            result["removed"] = rotate(params["dir"], params["app_name"], params["keep"], params["database"])
        except OSError as exc:
            removal = f", but the older backups could not be removed: {exc}. Check dir."
            return None, dict(result, msg=result["msg"] + removal)
    return result, None
