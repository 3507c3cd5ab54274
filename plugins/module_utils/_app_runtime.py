# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""PRIVATE to the greenlight.django collection. Do not use it from other collections.

What every module of the collection that runs code of a Django release on the server shares: finding the
release's interpreter and settings module, reading the application's environment files on the server (so
that its secrets never travel to the controller), keeping those secrets out of every message, and passing a
payload of this package to the release's interpreter on standard input.
"""

from __future__ import annotations

import inspect
import json
import os
import pkgutil
import pwd
import re
import subprocess
from types import SimpleNamespace
from urllib.parse import unquote

from ansible.module_utils.common.text.converters import to_text
from ansible_collections.greenlight.django.plugins.module_utils import _dotenv as dotenv

SETTINGS_LINE = re.compile(
    r"""os\.environ\.setdefault\(\s*['"]DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([A-Za-z_][\w.]*)['"]\s*\)"""
)
URL_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^:/@]*:([^@/]+)@")
MASK = "********"
# Values shorter than this (0, 1, on, yes) are settings, not secrets, unless their variable is named like a secret.
MIN_SECRET = 4
SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL", re.I)

# Read from the environment files as how Django starts, not as secrets.
STARTUP_VARIABLES = ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")
# The file code_sync writes into a release's virtualenv for a project without manage.py.
RECORDED_STARTUP_FILE = "greenlight-django.env"
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def secret_values(environment):
    """The values of environment to keep out of every result, longest first: each value of MIN_SECRET characters
    or more, any value of a variable named like a secret, and the password part of URL values. Ansible masks a
    value wherever it occurs, also inside other strings: DEBUG=0 would turn every 0 of a result (a migration's
    name, a release id, a path) into a mask."""
    values = set()
    for key, value in environment.items():
        if not value:
            continue
        if len(value) >= MIN_SECRET or SECRET_NAME.search(str(key)):
            values.add(value)
        match = URL_PASSWORD.match(value)
        if match:
            values.add(match.group(1))
            values.add(unquote(match.group(1)))
    return sorted(values, key=len, reverse=True)


def scrub(text, secrets):
    """The text with every secret value replaced by a mask."""
    text = to_text(text or "", errors="surrogate_or_replace")
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def last_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def resolve_python(module, venv=None, python=None):
    """The interpreter of the application: venv's bin/python, or python (a path or a name on PATH)."""
    if venv:
        if not os.path.isdir(venv):
            module.fail_json(msg=f"The virtualenv {venv} does not exist; set venv to the application's virtualenv.")
        candidate = os.path.join(venv, "bin", "python")
        if not os.access(candidate, os.X_OK):
            module.fail_json(
                msg=f"The virtualenv {venv} has no bin/python; set venv to the application's virtualenv "
                "(the directory that contains bin/python)."
            )
        return candidate
    name = python or "python3"
    if "/" in name:
        if not (os.path.isfile(name) and os.access(name, os.X_OK)):
            module.fail_json(
                msg=f"The interpreter {name} does not exist or is not executable; set python (or venv) to "
                "the application's interpreter."
            )
        return name
    found = module.get_bin_path(name)
    if not found:
        module.fail_json(
            msg=f"No {name} interpreter is on PATH; set python (or venv) to the application's interpreter."
        )
    return found


def settings_from_manage_py(manage_py):
    try:
        with open(manage_py) as handle:
            match = SETTINGS_LINE.search(handle.read())
    except (OSError, UnicodeDecodeError):
        return None
    return match.group(1) if match else None


def read_env_files(module, env_files, venv=None):
    """(the application's variables from env_files, the startup variables from them and from the venv's
    greenlight-django.env, in that order of precedence). A file that cannot be read fails the module."""
    variables = {}
    try:
        for path in env_files or []:
            variables.update(dotenv.read(path))
        startup = {key: variables.pop(key) for key in STARTUP_VARIABLES if key in variables}
        recorded = os.path.join(venv, RECORDED_STARTUP_FILE) if venv else None
        if recorded and os.path.isfile(recorded):
            startup.update((k, v) for k, v in dotenv.read(recorded).items() if k in STARTUP_VARIABLES)
    except dotenv.EnvFileError as exc:
        module.fail_json(msg=f"{exc}. Set env_files to environment files of KEY=value lines that exist on the host.")
    return variables, startup


def application_environment(module, given, env_files, venv=None):
    """(environment, startup variables, secret values) from the env files and the given dict, the given
    dict winning. The secret values are registered with the module, so that no result shows them."""
    given = dict((str(key), "" if value is None else str(value)) for key, value in (given or {}).items())
    from_files, startup = read_env_files(module, env_files, venv)
    environment = dict(from_files, **given)
    secrets = secret_values(environment)
    # The environment option is no_log, so Ansible registered each of its values, the short settings too.
    module.no_log_values.difference_update(set(environment.values()) - set(secrets))
    module.no_log_values.update(secrets)
    return environment, startup, secrets


def resolve_settings(module, settings, environment, manage_py, startup=None):
    """The settings module: the option, then the environment, the startup files, the controller-less
    process environment and finally manage.py's setdefault line. Fails the module with the fix if none."""
    settings = (
        settings
        or environment.get("DJANGO_SETTINGS_MODULE")
        or (startup or {}).get("DJANGO_SETTINGS_MODULE")
        or os.environ.get("DJANGO_SETTINGS_MODULE")
        or settings_from_manage_py(manage_py)
    )
    if settings:
        return settings
    if not os.path.isfile(manage_py):
        module.fail_json(
            msg=f"There is no manage.py in {os.path.dirname(manage_py)} and no settings module is given: for a "
            "project without manage.py (a src layout, a packaged project) set the settings option (or "
            "DJANGO_SETTINGS_MODULE in environment) and pythonpath to the directories its packages are in (e.g. "
            "src); otherwise set project_path to the directory that contains manage.py."
        )
    module.fail_json(
        msg="The settings module is not known: set the settings option (or DJANGO_SETTINGS_MODULE in "
        f'environment); {manage_py} has no os.environ.setdefault("DJANGO_SETTINGS_MODULE", ...) line.'
    )


def startup_pythonpath(pythonpath, startup):
    """The import path: the option when given, else PYTHONPATH of the startup files."""
    if pythonpath is not None:
        return pythonpath
    return [entry for entry in (startup or {}).get("PYTHONPATH", "").split(":") if entry]


def release_runtime(module, params, consequence=""):
    """How a payload runs in a release (the migrate and db_backup modules): the release the options
    project_path (a pointer resolved to the release it names), venv (default <release>/.venv) or python,
    env_files, environment, settings and pythonpath give. Fails the module with the fix, and consequence
    after it, when the release is not a directory or its interpreter or settings module is not known."""
    project_path = os.path.realpath(params["project_path"])
    if not os.path.isdir(project_path):
        module.fail_json(
            msg=f"project_path {params['project_path']} is not a directory; set it to the release of the Django "
            f"project.{consequence}"
        )
    venv = params["venv"] or (None if params["python"] else os.path.join(project_path, ".venv"))
    given = params["environment"] or {}
    environment, startup, secrets = application_environment(module, given, params["env_files"], venv)
    python = resolve_python(module, venv, params["python"])
    given = {str(key): str(value) for key, value in given.items() if value is not None}
    return SimpleNamespace(
        project_path=project_path,
        venv=venv,
        environment=environment,
        secrets=secrets,
        python=python,
        settings=resolve_settings(module, params["settings"], given, os.path.join(project_path, "manage.py"), startup),
        pythonpath=startup_pythonpath(params["pythonpath"], startup),
    )


def payload_source(payload_module):
    """Text of a module of this package, to run in the release's interpreter (also from an AnsiballZ zip)."""
    package, name = payload_module.__name__.rsplit(".", 1)
    try:
        data = pkgutil.get_data(package, name + ".py")
    except (OSError, ImportError, ValueError):
        data = None
    if data:
        return to_text(data)
    return inspect.getsource(payload_module)


PROGRAM = """\
import sys as _sys, types as _types
for _name, _text in {libraries!r}:
    _module = _types.ModuleType(_name)
    _sys.modules[_name] = _module
    exec(compile(_text, _name + ".py", "exec"), _module.__dict__)
exec(compile({main!r}, "<stdin>", "exec"), globals())
"""


def shipped_name(module_name):
    """The name a module of this package has in the release's interpreter: _ledger -> greenlight_django_ledger."""
    return "greenlight_django" + module_name.rsplit(".", 1)[1]


def payload_program(payload_module, *libraries):
    """The program a payload runs as (``python -``): the payload, with the modules of this package it
    imports (``libraries``) loaded first into ``sys.modules`` under their ``shipped_name``, since the
    release's interpreter has no Ansible. Without libraries, the payload's own text."""
    if not libraries:
        return payload_source(payload_module)
    shipped = [(shipped_name(library.__name__), payload_source(library)) for library in libraries]
    return PROGRAM.format(libraries=shipped, main=payload_source(payload_module))


def process_environment(venv, account, environment, settings=None, pythonpath=None, extra=None):
    """The environment a payload runs in: what the application's manage wrapper gives manage.py (the
    virtualenv first on PATH, C.UTF-8, the account's HOME), then the application's variables, then ours."""
    env = {
        "PATH": os.path.join(venv, "bin") + ":" + BASE_PATH,
        "VIRTUAL_ENV": venv,
        "LANG": "C.UTF-8",
        "HOME": account.pw_dir,
        "USER": account.pw_name,
        "LOGNAME": account.pw_name,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
    }
    env.update(environment)
    if settings:
        env["DJANGO_SETTINGS_MODULE"] = settings
    if pythonpath:
        env["PYTHONPATH"] = ":".join(pythonpath)
    env.update(extra or {})
    return env


def account_of(module, user):
    """The passwd entry of user (None: the account the module runs as); fails the module if it is unknown."""
    if user is None:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(user)
    except KeyError:
        module.fail_json(msg=f"The user {user} does not exist on this host; set it to the application's user.")


def _switch_to(account):
    def switch():
        os.initgroups(account.pw_name, account.pw_gid)
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)
        os.umask(0o022)

    return switch


def run_payload(module, python, source, cwd, env, account=None, timeout=None, label=None):
    """Run source in python (reading it from standard input) in cwd with exactly env, as account when it
    is another account than the module's. label, when given, follows the "-" on the command line, so that
    ps names the process (it is the payload's sys.argv[1]; never put a secret there). Returns (rc, stdout,
    stderr); rc is None after the timeout."""
    switch = None
    if account is not None and account.pw_uid != os.geteuid():
        if os.geteuid() != 0:
            module.fail_json(
                msg=f"Running code as {account.pw_name} needs root on the host: add become: true to the task."
            )
        switch = _switch_to(account)
    try:
        process = subprocess.Popen(  # pylint: disable=consider-using-with
            [python, "-"] + ([label] if label else []),
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=switch,  # noqa: PLW1509 - the child only changes its own account before exec
            close_fds=True,
        )
    except OSError as exc:
        module.fail_json(msg=f"Cannot start {python}: {exc}. Check that the release has its virtualenv.")
    try:
        out, err = process.communicate(source.encode("utf-8"), timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        return None, to_text(out, errors="surrogate_or_replace"), to_text(err, errors="surrogate_or_replace")
    return process.returncode, to_text(out, errors="surrogate_or_replace"), to_text(err, errors="surrogate_or_replace")


def marked_result(stdout, marker):
    """The JSON object on the last line of stdout that starts with marker, or None."""
    for line in reversed((stdout or "").splitlines()):
        if line.startswith(marker + " "):
            try:
                value = json.loads(line[len(marker) + 1 :])
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None
