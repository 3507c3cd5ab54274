# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The options of the modules that run code of a Django release on the host: its settings, import path,
environment and database (module_utils/_app_runtime.py reads them the same way for every module)."""

from __future__ import annotations


class ModuleDocFragment:
    # Every module that runs the release's interpreter: greenlight.django.app_runtime
    DOCUMENTATION = r"""
---
options:
  settings:
    description:
      - Dotted name of the Django settings module, for example V(mysite.settings.production).
      - Defaults to C(DJANGO_SETTINGS_MODULE) from O(environment), then from the C(greenlight-django.env) file of
        the virtualenv (written by greenlight.django.code_sync for a project without C(manage.py)), then from
        O(env_files), then from the environment of the module, then to the value of the
        C(os.environ.setdefault("DJANGO_SETTINGS_MODULE", ...)) line of C(manage.py) when the project has one.
    type: str
  pythonpath:
    description:
      - Extra directories to put on the import path after O(project_path). Relative entries are relative to
        O(project_path).
      - Defaults to C(PYTHONPATH) (colon-separated) of the C(greenlight-django.env) file of the virtualenv, then
        of O(env_files).
    type: list
    elements: path
  env_files:
    description:
      - Environment files on the host to read, in order, before O(environment), which wins over them; for example
        C(<app_root>/shared/.env), which M(ansible.builtin.slurp) would otherwise have to bring to the controller.
        The variables go from the file to the process on the release's interpreter without leaving the host, and
        never appear on a command line.
      - C(KEY=value) lines, read the way systemd's C(EnvironmentFile=) reads them - blank lines and lines that
        start with C(#) or C(;) are skipped, a value is bare, C('single-quoted') or C("double-quoted") with
        C(\) escaping C("), C(\), a backtick and C($).
      - Their values are secrets like those of O(environment), except C(DJANGO_SETTINGS_MODULE) and
        C(PYTHONPATH), which are the defaults of O(settings) and O(pythonpath) (colon-separated) instead.
      - A file that does not exist or has a line that is not C(KEY=value) fails the module before anything runs,
        naming the file and the line.
    type: list
    elements: path
    default: []
    version_added: "1.1.0"
  database:
    description:
      - Alias in C(DATABASES) of the database to work on, like C(manage.py migrate --database).
    type: str
    default: default
"""

    # The modules that work on a release and find its virtualenv in it: greenlight.django.app_runtime.release
    RELEASE = r"""
---
options:
  project_path:
    description:
      - The release - the directory of the Django project (for example C(<app_root>/releases/<id>)), usually the
        one that contains its C(manage.py). A pointer (a symbolic link such as C(<app_root>/current)) is resolved
        once, before anything runs.
      - It is the working directory of the process on the release's interpreter and the first entry of its import
        path.
    type: path
    required: true
  venv:
    description:
      - Virtualenv of the release; the module's process runs with its C(bin/python).
      - Defaults to C(<project_path>/.venv) when O(python) is not set. Mutually exclusive with O(python).
    type: path
  python:
    description:
      - Interpreter of the release, as a path or a command name looked up on E(PATH), instead of O(venv).
        Mutually exclusive with O(venv).
    type: str
"""

    # The modules that load the whole application: greenlight.django.app_runtime.environment
    ENVIRONMENT = r"""
---
options:
  environment:
    description:
      - Environment variables for the application, on top of O(env_files), for example C(DATABASE_URL) or the
        variables the settings module reads. They reach the application's process in its environment only.
      - The values are secrets - Ansible masks them in the output of the module, and the module removes them (and
        the password part of URL values) from its messages; values shorter than 4 characters (V(0), V(on)) are
        taken as settings and left alone unless the name of their variable says they are secret (C(PASS),
        C(SECRET), C(TOKEN), C(KEY), C(CREDENTIAL)).
    type: dict
    default: {}
"""
