#!/usr/bin/python
# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later


DOCUMENTATION = r"""
---
module: db_backup
short_description: Back up or restore the database of a Django release with the connection Django itself uses
version_added: "1.1.0"
description:
  - Backs up (O(state=dumped)) or restores (O(state=restored)) the database that C(DATABASES[database]) of a
    Django release names, in one process of the release's interpreter (O(venv) or O(python)) that imports the
    settings module only - neither the apps nor, for the engines Django ships, the database driver are loaded.
  - PostgreSQL - C(pg_dump --format=custom --no-owner --lock-wait-timeout) into a new file of O(dir), checked with
    C(pg_restore --list) (and with O(verify_restore), restored into a scratch database that is dropped). A restore
    runs in one transaction through C(psql) - it drops every relation of the schemas the backup holds relations
    in, then runs the backup's C(pg_restore --clean --if-exists --no-owner) script; any error rolls it all back.
    The connection parameters reach C(pg_dump), C(pg_restore) and C(psql) as libpq variables (E(PGHOST),
    E(PGPASSWORD), ...) in their environment, never as arguments, and the clients run as O(run_as) so that peer
    authentication on the local socket works as it does for the application.
  - MySQL and MariaDB - C(mysqldump --single-transaction --routines --triggers) (C(mariadb-dump) where it is
    installed) into a new file of O(dir) - one consistent snapshot of the InnoDB tables without locking the
    application out - checked for mysqldump's closing C(-- Dump completed) line (and with O(verify_restore),
    loaded into a scratch database that is dropped). The connection reaches C(mysqldump) and C(mysql) in an
    option file (mode C(0600), readable by O(run_as) only, removed afterwards) passed with
    C(--defaults-extra-file) - the password is never an argument nor in the environment. A restore drops every
    table and view of the database, then loads the dump; DDL is not transactional on MySQL, so a restore that
    fails half way is run again once the cause is fixed.
  - SQLite - a copy with SQLite's online backup API (consistent while the application writes), checked with
    C(PRAGMA integrity_check); a restore copies the backup over the database file the same way and checks it
    again. Other engines are refused, naming the engine.
  - A backup is written as C(<name>.partial), opened by the module's user (root) with mode C(0600), and renamed
    to C(<app_name>-<release id>-<UTC time>.dump) (C(.sql) for MySQL, C(.sqlite3) for SQLite) once it has been
    checked, so a file with the final name is always complete. The release id is the name of the directory
    O(project_path) points to.
  - Run it as root (C(become)) - it reads the backup directory and writes the backup as root while the clients
    run as O(run_as).
options:
  state:
    description:
      - V(dumped) writes a new backup into O(dir); V(restored) brings the database back to O(file).
    type: str
    choices: [dumped, restored]
    default: dumped
  environment:
    description:
      - Environment variables for the settings module, on top of O(env_files).
      - The values are secrets - Ansible masks them in the output of the module, and the module removes them
        (and the password part of URL values) from its messages; values shorter than 4 characters (V(0), V(on))
        are taken as settings and left alone unless the name of their variable says they are secret (C(PASS),
        C(SECRET), C(TOKEN), C(KEY), C(CREDENTIAL)). The result of a success holds none of them - only paths, sizes and
        names the module composed - so a value that also occurs in the path of the backup does not mask it.
    type: dict
    default: {}
  database_overrides:
    description:
      - Overrides of the C(DATABASES) entry (C(HOST), C(PORT), C(NAME), C(USER), C(PASSWORD), C(OPTIONS)), for
        example a database user with more rights for backups. C(OPTIONS) is merged into the settings' C(OPTIONS).
      - They reach the payload in its environment (readable by root only), never on a command line; the values
        are masked like those of O(environment).
    type: dict
    default: {}
  run_as:
    description:
      - The account C(pg_dump), C(pg_restore) and C(psql) run as, usually the application's user (peer
        authentication on the local socket).
    type: str
    required: true
  dir:
    description:
      - Directory the backup is written to, with O(state=dumped). It is created (mode C(0700)) when it does not
        exist, and made private (C(0700)) when others may read it.
    type: path
  app_name:
    description:
      - Name of the application, the first part of the backup's file name, also named in messages. Required with
        O(state=dumped).
    type: str
  keep:
    description:
      - With O(state=dumped), once the new backup is written, keep the O(keep) newest backups of O(app_name) in
        O(dir) (C(<app_name>-*.dump), C(<app_name>-*.sql) and C(<app_name>-*.sqlite3), by modification time,
        the new one included) and remove the others, in the same call. V(0) removes none.
      - The backup of an alias other than C(default) carries it before the extension
        (C(<app_name>-<release>-<time>@audit.dump)); each alias keeps its own O(keep) newest.
    type: int
    default: 0
  verify_restore:
    description:
      - PostgreSQL and MySQL - also restore the new backup into a scratch database, then drop it. The database
        user needs C(CREATEDB) (PostgreSQL) or C(CREATE) and C(DROP) on C(<database>_glverify_*) (MySQL).
    type: bool
    default: false
  pg_dump_options:
    description:
      - More C(pg_dump) options, for example C(--compress=1) or C(--exclude-table-data=django_session).
    type: list
    elements: str
    default: []
  mysql_dump_options:
    description:
      - More C(mysqldump) options, for example C(--ignore-table=mydb.django_session) or C(--events) (needs the
        C(EVENT) privilege).
    type: list
    elements: str
    default: []
  mysql_bin_dir:
    description:
      - Directory of C(mysqldump) (or C(mariadb-dump)) and C(mysql) (or C(mariadb)). Unset - E(PATH).
    type: path
  pg_bin_dir:
    description:
      - Directory of C(pg_dump), C(pg_restore) and C(psql). Unset - E(PATH). The client must not be older than the
        server.
    type: path
  lock_wait_timeout:
    description:
      - Seconds C(pg_dump) waits for its table locks (C(--lock-wait-timeout)), and the C(lock_timeout) of a
        PostgreSQL restore; C(lock_wait_timeout) of a MySQL restore; SQLite's busy timeout.
    type: float
    default: 60
  file:
    description:
      - The backup to restore, with O(state=restored) - a C(.dump) file for PostgreSQL, a C(.sql) file for MySQL or
        a C(.sqlite3) file for SQLite, as written by O(state=dumped).
    type: path
  timeout:
    description:
      - Seconds the backup or restore may take before the payload is stopped. V(0) waits forever.
    type: int
    default: 0
notes:
  - Stop the application before a restore - it replaces every relation the backup knows and drops the ones
    created after it, also those of the schemas it holds that it does not know.
  - The release's interpreter must be Python 3.8 or later.
requirements:
  - The PostgreSQL client (C(pg_dump), C(pg_restore), C(psql)) for a PostgreSQL database.
  - The MariaDB or MySQL client (C(mysqldump), C(mysql); Debian C(mariadb-client)) for a MySQL or MariaDB database.
seealso:
  - module: greenlight.django.migration_status
  - name: pg_dump
    description: The PostgreSQL backup tool the module runs.
    link: https://www.postgresql.org/docs/current/app-pgdump.html
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - greenlight.django.app_runtime
  - greenlight.django.app_runtime.release
attributes:
  check_mode:
    support: full
    details: Checks the options, the interpreter, the settings module and the paths, then reports what it would
      do without running the payload.
  diff_mode:
    support: none
  platform:
    platforms: posix
author:
  - greenlight.django contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Back up the database of the release about to be served
  greenlight.django.db_backup:
    project_path: /srv/mysite/releases/2024-06-01
    env_files: [/srv/mysite/shared/.env]
    run_as: mysite
    dir: /srv/mysite/backups
    app_name: mysite
  become: true
  register: backup

- name: Restore it
  greenlight.django.db_backup:
    state: restored
    project_path: /srv/mysite/current
    env_files: [/srv/mysite/shared/.env]
    run_as: mysite
    file: "{{ backup.path }}"
  become: true

- name: Back up with a user that may create the scratch database of the check
  greenlight.django.db_backup:
    project_path: /srv/mysite/current
    env_files: [/srv/mysite/shared/.env]
    database_overrides:
      USER: mysite_backup
      PASSWORD: "{{ mysite_backup_password }}"
    run_as: mysite
    dir: /var/backups/mysite
    app_name: mysite
    verify_restore: true
    pg_dump_options: [--exclude-table-data=django_session]
  become: true
"""

RETURN = r"""
path:
  description: The backup written (O(state=dumped)) or restored (O(state=restored)).
  returned: success, not in check mode
  type: str
  sample: /srv/mysite/backups/mysite-2024-06-01-20240601T101500Z.dump
removed:
  description: With O(keep), the older backups removed from O(dir).
  returned: success, not in check mode
  type: list
  elements: str
  sample: [/srv/mysite/backups/mysite-2024-05-01-20240501T101500Z.dump]
size:
  description: Size of RV(path) in bytes.
  returned: success, not in check mode
  type: int
  sample: 1048576
duration_seconds:
  description: Seconds the dump (with its checks) or the restore took, without starting the interpreter.
  returned: success, not in check mode
  type: float
  sample: 1.234
vendor:
  description: Django's vendor name of the database backend, V(postgresql) or V(sqlite).
  returned: success, not in check mode
  type: str
  sample: postgresql
database:
  description: The PostgreSQL database name, or the path of the SQLite database file.
  returned: success, not in check mode
  type: str
  sample: mysite
toc_entries:
  description: Number of entries in the table of contents of a PostgreSQL backup (C(pg_restore --list)).
  returned: success with O(state=dumped) on PostgreSQL, not in check mode
  type: int
  sample: 120
verified_restore:
  description: Whether the backup was restored into a scratch database (O(verify_restore)).
  returned: success with O(state=dumped), not in check mode
  type: bool
  sample: false
schemas:
  description: The schemas whose relations a PostgreSQL restore replaced.
  returned: success with O(state=restored) on PostgreSQL, not in check mode
  type: list
  elements: str
  sample: [public]
msg:
  description: What was done, or in check mode what would be done.
  returned: always
  type: str
  sample: Backed up the database default of /srv/mysite/releases/2024-06-01 into
    /srv/mysite/backups/mysite-2024-06-01-20240601T101500Z.dump
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.greenlight.django.plugins.module_utils._app_runtime import (  # noqa: E402
    account_of,
    release_runtime,
)
from ansible_collections.greenlight.django.plugins.module_utils._backup import (  # noqa: E402
    check_paths,
    dump_options,
    exit_unmasked,
    mask_options,
    prepare_directory,
    run,
    secret_values,
)


def argument_spec():
    return dict(
        state=dict(type="str", choices=["dumped", "restored"], default="dumped"),
        project_path=dict(type="path", required=True),
        venv=dict(type="path"),
        python=dict(type="str"),
        settings=dict(type="str"),
        pythonpath=dict(type="list", elements="path"),
        env_files=dict(type="list", elements="path", default=[]),
        environment=dict(type="dict", default={}, no_log=True),
        database=dict(type="str", default="default"),
        run_as=dict(type="str", required=True),
        dir=dict(type="path"),
        app_name=dict(type="str"),
        file=dict(type="path"),
        **dump_options(),
    )


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("venv", "python")],
        required_if=[("state", "dumped", ("dir", "app_name")), ("state", "restored", ("file",))],
        supports_check_mode=True,
    )
    params = module.params
    release = release_runtime(module, params)
    project_path = release.project_path
    overrides = params["database_overrides"] or {}
    secrets = secret_values(module, release.secrets, overrides)
    mask_options(module.params)
    account_of(module, params["run_as"])
    create, private = check_paths(module, params)

    state, alias = params["state"], params["database"]
    if module.check_mode:
        if state == "dumped":
            msg = f"Would back up the database {alias} of {project_path} into {params['dir']}"
        else:
            msg = f"Would restore the database {alias} of {project_path} from {params['file']}"
        exit_unmasked(module, {"changed": True, "msg": msg})

    prepare_directory(module, create, private)
    result, failure = run(module, params, overrides, release, secrets)
    if failure:
        module.fail_json(**failure)
    exit_unmasked(module, result)


if __name__ == "__main__":
    main()
