#!/usr/bin/python
# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later


DOCUMENTATION = r"""
---
module: migration_status
short_description: Report pending Django migrations and whether the running release survives them
version_added: "1.0.0"
description:
  - Inspects a Django project's migrations against its database, read-only, and reports what
    C(manage.py migrate) would do before you run it.
  - Reports the migration plan, and for every pending migration and operation whether the release that is
    still running (the old code) keeps working after it (V(compatible), V(incompatible) or V(unknown)),
    whether it destroys data, and whether it can be reversed.
  - Also reports model changes that have no migration file, conflicting migrations, migrations recorded in
    the database but missing from the code, an inconsistent history, and squashed migrations that are applied
    but not recorded yet.
  - Splits the plan into migrations to run before the traffic switch and after it (blue-green deploys), from
    markers set on the migration classes; see O(fail_on) and the notes.
  - Checks the rows already in the database against each pending operation that they must satisfy (a unique
    constraint, C(unique=True), NOT NULL, a shorter C(max_length), a CHECK constraint, a foreign key) and counts
    the rows on which C(migrate) would fail (RV(pending[].operations[].data_check), O(data_checks)).
  - Runs everything in one process of the application's interpreter (O(venv) or O(python)) that starts Django
    once. It never runs C(makemigrations), never writes a file, and opens the database read-only (SQLite in
    read-only mode; on PostgreSQL a read-only transaction that is rolled back).
  - The module never changes anything, so RV(ignore:changed) is always V(false).
options:
  project_path:
    description:
      - Directory of the Django project, usually the one that contains its C(manage.py). It is the working
        directory of the inspection and the first entry of the import path.
      - A project without C(manage.py) (a src layout, a packaged project) needs O(settings) (or
        C(DJANGO_SETTINGS_MODULE) in O(environment)), and O(pythonpath) when its packages are in a subdirectory
        such as C(src).
    type: path
    required: true
  venv:
    description:
      - Virtualenv of the application; the inspection runs with its C(bin/python).
      - Mutually exclusive with O(python).
    type: path
  python:
    description:
      - Interpreter of the application, as a path or a command name looked up on E(PATH).
      - Mutually exclusive with O(venv). When neither is set, C(python3) from E(PATH) is used.
    type: str
  fail_on:
    description:
      - Conditions that make the module fail. The result is returned in full either way, and the failure
        message names each offending item and what to do.
      - V(unmigrated_changes) - models differ from the migrations (a C(makemigrations) was forgotten).
      - V(conflicts) - an app has more than one leaf migration.
      - V(unknown_applied) - the database records migrations of installed apps that this code does not have.
      - V(inconsistent_history) - a migration is recorded as applied before one it depends on.
      - V(phase_errors) - a C(before_switch) migration depends on an C(after_switch) one, or a phase marker has
        an invalid value.
      - V(pending) - at least one migration is not applied (useful after a deploy).
      - V(incompatible) - RV(backward_compatible) is V(false).
      - V(destructive) - a pending migration drops a table or a column, or runs C(DROP TABLE)/C(TRUNCATE)/C(DELETE)
        (RV(data_loss) is V(yes)).
      - V(failing) - C(migrate) will fail on this database (RV(failing)), for example C(AddIndexConcurrently) in a
        migration that is atomic.
      - V(uninstalled_applied) - the database records migrations of apps that are not in C(INSTALLED_APPS)
        (RV(uninstalled_applied)).
      - V(data_violations) - rows already in the database violate what a pending operation adds, so C(migrate) would
        fail on them (RV(data_violations)); the message names each migration, operation, the number of offending rows
        and their primary keys.
      - V(applied_outside_deploy) - the database records as applied migrations that the migration ledger of
        greenlight.django does not know (RV(applied_outside_deploy)), that is applied after the ledger's baseline by
        something other than M(greenlight.django.migrate), for example C(manage.py migrate) run by hand on a
        server - also when the name matches a migration of the code.
      - V(changed_since_applied) - an applied migration's operations or dependencies differ from those recorded in
        the ledger when it was applied (RV(changed_since_applied)).
      - V(risky) - on MySQL/MariaDB (DDL is not transactional) a pending migration mixes several schema operations,
        or schema and data operations (RV(risky)) - if a later operation fails, the earlier ones stay applied.
      - V([]) only reports.
    type: list
    elements: str
    choices:
      - unmigrated_changes
      - conflicts
      - unknown_applied
      - inconsistent_history
      - phase_errors
      - pending
      - incompatible
      - destructive
      - failing
      - uninstalled_applied
      - data_violations
      - applied_outside_deploy
      - changed_since_applied
      - risky
    default: [unmigrated_changes, conflicts, unknown_applied, inconsistent_history, phase_errors, failing]
  timeout:
    description:
      - Seconds the inspection may take before it is stopped with a message that names the stage it was in
        (settings, migration files, database) and the file and line where it was, for example settings or a
        migration that wait forever at import. V(0) waits forever.
    type: int
    default: 300
  include_sql:
    description:
      - Add the SQL of each pending migration to its RV(pending[].sql), generated in-process the way
        C(manage.py sqlmigrate) does (nothing is executed).
      - Costs about as much time as rendering the migration states, so leave it off for routine checks.
    type: bool
    default: false
  data_checks:
    description:
      - Count, on the live database, the rows that would make a pending operation fail - duplicates for a new unique
        constraint (also one on expressions such as C(Lower("name")), or with a condition), C(unique=True) or
        C(unique_together); C(NULL) values for a column that becomes NOT NULL without a default that fills them; values
        longer than a shorter C(max_length) (PostgreSQL; SQLite does not enforce it); rows that fail a new CHECK
        constraint (or the check Django adds with a field such as C(PositiveIntegerField)); values that point to no row
        for a new foreign key constraint; a new unique or NOT NULL column that every row would get the same value or
        C(NULL) in.
      - Each check is a read-only query built with Django's ORM on the historical model of the migration state just
        before the operation. Tables created earlier in the plan have no rows and are not checked. A table that a
        C(RunPython) of the same app or a C(RunSQL) that names it changes earlier in the plan is not checked (the data
        migration may fix the rows); RV(pending[].operations[].data_check.skipped) says so.
      - V(false) turns the checks off (each operation that has one reports it as skipped).
    type: bool
    default: true
  data_check_values:
    description:
      - Add the values of the offending rows' constrained columns (RV(pending[].operations[].data_check.sample_values))
        beside their primary keys.
      - Values can be personal data, so only primary keys are reported unless this is V(true).
    type: bool
    default: false
  data_check_timeout:
    description:
      - Seconds each operation's data check may take. On PostgreSQL every statement of the check gets the time left
        as C(SET LOCAL statement_timeout) in a savepoint of the read-only transaction; on SQLite a progress handler
        interrupts the query after the deadline.
      - A check that takes longer is reported as skipped (C(statement timeout after N s)), not as a failure.
    type: float
    default: 10
  data_check_skip_tables:
    description:
      - Tables (their database names, such as C(shop_order)) whose data checks are skipped, for example tables too
        large to scan before a deploy. The skip is reported in RV(data_checks_skipped).
    type: list
    elements: str
    default: []
notes:
  - "The migration ledger is the table C(greenlight_migration_ledger) that M(greenlight.django.migrate) keeps in the
    application's database: each migration it applied, unapplied or that was accepted after review, with a checksum
    of its deconstructed operations and dependencies (reformatting the file or editing a comment does not change
    it), the release and when. This module only reads it. Without the ledger (before the first
    M(greenlight.django.migrate) on this database, which records what is applied then as the baseline),
    RV(ledger.exists) is V(false) and nothing is reported."
  - "Markers are class attributes of a C(Migration) class.
    C(greenlight_phase = \"after_switch\") runs the migration after the traffic switch (contract);
    the default is C(before_switch) (expand). C(greenlight_safe = True) records that the team reviewed the
    migration and that the old code keeps working with it: its V(unknown) and V(incompatible) operations then
    count as V(compatible), RV(pending[].accepted) is V(true), and RV(pending[].destructive) is unchanged."
  - RV(backward_compatible) only looks at C(before_switch) migrations; an V(unknown) operation makes it V(false)
    until the migration is reviewed and marked C(greenlight_safe = True).
  - Operations are judged by their effect on the tables and columns the serving code uses - column names
    (C(db_column)), types, CHECK constraints Django adds with a field, nullability, defaults, uniqueness. Operations
    on a table that an earlier migration of the same plan creates are V(compatible) and destroy nothing (the
    serving code never used the table; for an C(after_switch) migration only tables created after the switch
    count). A table rename that the same atomic migration undoes (C(RenameModel) then C(AlterModelTable) back to
    the old name) is V(compatible); one that a later migration of the plan undoes is V(incompatible), because each
    migration commits on its own and the old code's queries in between find no table. On a database with no
    applied migration at all nothing serves from it, so every operation is V(compatible).
  - C(RunPython) operations are never run and C(RunPython)/third-party operations are not asked for SQL; the
    database is only read.
  - The application's interpreter must be Python 3.8 or later with Django 4.2 or later.
requirements:
  - Django 4.2 or later in the application's interpreter.
seealso:
  - name: Django migrations
    description: How Django migrations work.
    link: https://docs.djangoproject.com/en/stable/topics/migrations/
  - name: Migration operations
    description: The operations the module classifies.
    link: https://docs.djangoproject.com/en/stable/ref/migration-operations/
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - greenlight.django.app_runtime
  - greenlight.django.app_runtime.environment
attributes:
  check_mode:
    support: full
    details: The module never changes anything, so check mode behaves exactly like a normal run.
  diff_mode:
    support: none
  platform:
    platforms: posix
author:
  - greenlight.django contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Inspect the migrations of the new release before migrating
  greenlight.django.migration_status:
    project_path: /srv/mysite/releases/2024-06-01
    venv: /srv/mysite/releases/2024-06-01/.venv
    settings: mysite.settings.production
    environment:
      DATABASE_URL: "{{ mysite_database_url }}"
  register: status

- name: Stop when the running release would break during the migration
  ansible.builtin.fail:
    msg: "Not backward compatible: {{ status.pending | selectattr('compatibility', '!=', 'compatible')
      | map(attribute='name') | join(', ') }}"
  when: not status.backward_compatible

- name: Apply the expand migrations before switching traffic
  ansible.builtin.command:
    cmd: .venv/bin/python manage.py migrate
    chdir: /srv/mysite/releases/2024-06-01
  when: status.plan | length > 0
  changed_when: true

- name: Only report, and fail on data loss as well
  greenlight.django.migration_status:
    project_path: /srv/mysite/current
    python: /usr/bin/python3
    fail_on: [unmigrated_changes, conflicts, destructive]
    include_sql: true
  register: report

- name: Show the SQL of each pending migration
  ansible.builtin.debug:
    msg: "{{ item.app }}.{{ item.name }}: {{ item.sql | join(' ') }}"
  loop: "{{ report.pending }}"
  loop_control:
    label: "{{ item.app }}.{{ item.name }}"

- name: Refuse a release whose migrations would fail on the rows already in the database
  greenlight.django.migration_status:
    project_path: /srv/mysite/releases/2024-06-01
    venv: /srv/mysite/releases/2024-06-01/.venv
    fail_on: [unmigrated_changes, conflicts, failing, data_violations]
    data_check_timeout: 30
    # Too large to scan before a deploy: reported in data_checks_skipped.
    data_check_skip_tables: [shop_event]

- name: After the deploy, make sure nothing is left to migrate
  greenlight.django.migration_status:
    project_path: /srv/mysite/current
    venv: /srv/mysite/current/.venv
    fail_on: [pending, unknown_applied, inconsistent_history]

- name: Inspect a project without manage.py (its packages under src/)
  greenlight.django.migration_status:
    project_path: /srv/shop/current
    venv: /srv/shop/current/.venv
    settings: shop.settings
    pythonpath: [src]
"""

RETURN = r"""
plan:
  description: Pending migrations as C(app.name), in the order C(migrate) applies them.
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: str
  sample: [notes.0002_note_priority, notes.0003_remove_note_body]
pending:
  description: The pending migrations in plan order, each with its classification.
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: dict
  contains:
    app:
      description: App label.
      type: str
      sample: notes
    name:
      description: Migration name.
      type: str
      sample: 0003_remove_note_body
    phase:
      description: V(before_switch) or V(after_switch), from the C(greenlight_phase) marker.
      type: str
      sample: after_switch
    reversible:
      description: Whether every operation can be reversed (C(RunPython) without C(reverse_code) and C(RunSQL)
        without C(reverse_sql) cannot, nor can a C(RemoveField) of a NOT NULL column without any default, whose
        reverse fails on a table with rows).
      type: bool
      sample: true
    reverse_loses_data:
      description: Whether reversing an operation gives back an empty column or table (C(RemoveField),
        C(DeleteModel) of data the serving code wrote); restore a backup to get the data back.
      type: bool
      sample: true
    data_loss:
      description: The worst RV(pending[].operations[].data_loss) of its operations.
      type: str
      sample: "no"
    fails:
      description: Whether C(migrate) will fail on one of its operations (see RV(pending[].operations[].fails)).
      type: bool
      sample: false
    compatibility:
      description: The worst compatibility of its operations - V(compatible), V(unknown) or V(incompatible).
      type: str
      sample: incompatible
    destructive:
      description: Whether an operation destroys data.
      type: bool
      sample: true
    accepted:
      description: Whether the migration carries C(greenlight_safe = True).
      type: bool
      sample: false
    risky:
      description:
        - On MySQL/MariaDB, why the migration is risky there - it mixes several schema operations, or schema and
          data operations, and DDL is not transactional, so a failure half way keeps the operations before it
          applied - else V(null) (always V(null) on PostgreSQL and SQLite).
      type: str
      sample: "mixes 2 schema operations in one migration; DDL is not transactional on MySQL/MariaDB, ..."
    operations:
      description: Each operation of the migration.
      type: list
      elements: dict
      contains:
        type:
          description: Class name of the operation.
          type: str
          sample: RemoveField
        description:
          description: Django's description of the operation.
          type: str
          sample: Remove field body from note
        compatibility:
          description: V(compatible), V(unknown) or V(incompatible) with the code that is still running.
          type: str
          sample: incompatible
        destructive:
          description: Whether the operation is known to destroy data (RV(pending[].operations[].data_loss) is
            V(yes)).
          type: bool
          sample: true
        data_loss:
          description:
            - V(yes) - the operation drops a column or table, or its SQL deletes rows (C(DELETE), C(TRUNCATE),
              C(DROP TABLE), C(ALTER TABLE ... DROP COLUMN)).
            - V(no) - it keeps every row and value.
            - V(unknown) - greenlight cannot know - C(RunPython), third-party operations, and SQL that may
              overwrite or remove data (C(UPDATE), C(DO) blocks, type changes, C(CASCADE), statements it does not
              know). Review it before migrating.
          type: str
          choices: ["yes", "no", "unknown"]
          sample: "no"
        reversible:
          description: Whether Django can reverse the operation without an error (V(false) as well for a
            C(RemoveField) of a NOT NULL column without any default).
          type: bool
          sample: true
        reverse_loses_data:
          description: Whether the reverse recreates the column or table empty (C(RemoveField), C(DeleteModel)).
          type: bool
          sample: false
        fails:
          description: Why C(migrate) will fail on this operation, else V(null) - an operation that cannot run
            inside a transaction (C(AddIndexConcurrently), C(RemoveIndexConcurrently), C(RunSQL) with
            C(CONCURRENTLY)) in an atomic migration on PostgreSQL, or a concurrent index operation on another
            database.
          type: str
          sample: null
        lock:
          description: On PostgreSQL, why the operation holds a lock that makes the serving code wait (a table
            rewrite such as C(int) to C(bigint), C(SET NOT NULL), an index built without C(CONCURRENTLY), a
            foreign key or constraint validated under a lock), with the safe recipe and how big the table is; else
            V(null). Not reported for tables created in the plan.
          type: str
          sample: null
        lock_table:
          description:
            - When RV(pending[].operations[].lock) is set, the table the operation locks and how big it is, so that a
              playbook can tell a rewrite of a 10-row table from one of 10 million rows; else V(null).
            - Read once per inspection from C(pg_class) (no table is scanned) - C(estimated_rows) is PostgreSQL's own
              estimate (C(reltuples) of the last C(VACUUM) or C(ANALYZE), scaled to the current number of pages
              like the planner does), V(null) when the table was never analyzed; C(bytes) is the size of the
              table's main file (C(pg_relation_size)), without indexes or TOAST.
          type: dict
          sample: {name: shop_product, estimated_rows: 10000000, bytes: 1342177280}
          contains:
            name:
              description: The table name.
              type: str
            estimated_rows:
              description: PostgreSQL's estimate of the number of rows, or V(null) when it has none.
              type: int
            bytes:
              description: Size of the table's main file in bytes, or V(null) when the table was not found.
              type: int
        new_code:
          description: What breaks for the new release on this schema after the switch (a state-only
            C(RemoveField) of a NOT NULL column without a database default), or for the old release once the new
            one has written rows (a new foreign key to a table the old code deletes from, or a new join table, which
            references both the model of the field and its target); else V(null).
          type: str
          sample: null
        data_check:
          description:
            - Whether the rows already in the table satisfy what the operation adds (see O(data_checks)); V(null) when
              the operation cannot fail on rows that are there (it adds nothing they must satisfy, its table is
              created earlier in the plan, or the database has no applied migration).
          type: dict
          sample: {checked: true, violations: 2, sample_keys: [14, 15], skipped: null, seconds: 0.004,
                   found: ["2 rows share their Lower(F(name)) with another row (1 duplicated value)"]}
          contains:
            checked:
              description: Whether the check ran to the end.
              type: bool
            violations:
              description: The number of offending rows (V(0) when RV(pending[].operations[].data_check.checked) is
                V(false)).
              type: int
            sample_keys:
              description: Primary keys of at most 5 offending rows, in key order (for a unique check, the rows of one
                duplicated value side by side).
              type: list
              elements: raw
            sample_values:
              description: For each of RV(pending[].operations[].data_check.sample_keys), the values of the columns
                the operation constrains (for a unique constraint on expressions, the columns they read).
              returned: when O(data_check_values=true) and the check ran
              type: list
              elements: dict
            found:
              description: What the offending rows hold, one sentence per rule the operation adds.
              type: list
              elements: str
            skipped:
              description: Why the check did not run (O(data_checks=false), O(data_check_skip_tables), a data migration
                earlier in the plan, C(statement timeout after N s), a query the database refused), else V(null).
              type: str
            seconds:
              description: How long the check took.
              type: float
        sql_error:
          description: Why the SQL of the operation could not be generated.
          returned: when O(include_sql=true) and the SQL could not be generated
          type: str
          sample: "NotSupportedError: AddIndexConcurrently works only on PostgreSQL, not on sqlite"
        reason:
          description: Why, and the safe alternative.
          type: str
          sample: Old code still selects this column; remove it from the code first, deploy, then drop it
            (mark the drop after_switch).
    sql:
      description: The SQL of the migration, like C(manage.py sqlmigrate) prints it.
      returned: when O(include_sql=true)
      type: list
      elements: str
      sample: ["BEGIN;", "-- Remove field body from note", "ALTER TABLE \"notes_note\" DROP COLUMN \"body\" CASCADE;",
               "COMMIT;"]
backward_compatible:
  description: Whether every C(before_switch) pending migration is V(compatible) with the running release.
  returned: success, and failures caused by O(fail_on)
  type: bool
  sample: false
destructive:
  description: Whether any pending migration is known to destroy data.
  returned: success, and failures caused by O(fail_on)
  type: bool
  sample: true
data_loss:
  description: The worst RV(pending[].data_loss) of the plan - V(yes), V(unknown) or V(no).
  returned: success, and failures caused by O(fail_on)
  type: str
  sample: unknown
failing:
  description: Operations on which C(migrate) will fail on this database, as C(app.name - description - why).
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: str
  sample: ["shop.0005_code_index: Concurrently create index shop_code_idx on field(s) code of model item - This
    operation cannot run inside a transaction ..."]
unmigrated_changes:
  description: Model changes without a migration file, as app label to descriptions of the operations that
    C(makemigrations) would write.
  returned: success, and failures caused by O(fail_on)
  type: dict
  sample: {notes: [Add field priority to note]}
conflicts:
  description: Apps with more than one leaf migration, as app label to the leaf names.
  returned: success, and failures caused by O(fail_on)
  type: dict
  sample: {notes: [0002_note_priority, 0002_note_tags]}
unknown_applied:
  description: Migrations recorded as applied in the database that the code does not have (migrations replaced
    by a squashed migration are not listed).
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: str
  sample: [notes.0004_note_archived]
locking:
  description: The operations with a RV(pending[].operations[].lock), as C(app.name - description - why), the
    size of the table included.
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: str
  sample: []
data_violations:
  description: "The operations whose data check found offending rows, as C(app.name: description - what the rows
    hold (primary keys ...))."
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: str
  sample: ["library.0002_genre_name_ci: Create constraint genre_name_ci on model genre - 2 rows share their
    Lower(F(name)) with another row (1 duplicated value) (primary keys 1, 2)"]
risky:
  description: The pending migrations (C(app.name)) with a RV(pending[].risky) reason, in plan order.
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: str
  sample: [notes.0004_note_rating_note_score]
data_checks_skipped:
  description: "The operations whose data check did not run, as C(app.name: description - why)."
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: str
  sample: ["shop.0007_order_ref_unique: Alter field ref on order - table shop_order is in data_check_skip_tables"]
new_code:
  description: The operations with a RV(pending[].operations[].new_code) problem, as C(app.name - description
    - why).
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: str
  sample: []
uninstalled_applied:
  description: Migrations recorded as applied for app labels that are not in C(INSTALLED_APPS) (an app that was
    removed, or is not in this release); C(migrate) ignores them.
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: str
  sample: [oldapp.0001_initial]
inconsistent_history:
  description: Django's message when a migration is recorded as applied before one of its dependencies, else
    V(null).
  returned: success, and failures caused by O(fail_on)
  type: str
  sample: Migration notes.0002_note_priority is applied before its dependency notes.0001_initial on database
    'default'.
squashed_unrecorded:
  description: Squashed migrations whose replaced migrations are all applied but that are not recorded yet
    (the next C(migrate) records them).
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: str
  sample: [notes.0001_squashed_0003_note_priority]
phase_errors:
  description: Invalid phase markers, and C(before_switch) migrations that depend on C(after_switch) ones
    within the pending plan.
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: str
  sample: ["notes.0004_note_title is before_switch but depends on notes.0003_remove_note_body, which is
    after_switch: ..."]
before_switch:
  description: The part of RV(plan) to run before the traffic switch, in plan order.
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: str
  sample: [notes.0002_note_priority]
after_switch:
  description: The part of RV(plan) to run after the traffic switch, in plan order.
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: str
  sample: [notes.0003_remove_note_body]
django_version:
  description: Django version of the application.
  returned: success, and failures caused by O(fail_on)
  type: str
  sample: 5.2.19
database:
  description: The inspected database.
  returned: success, and failures caused by O(fail_on)
  type: dict
  contains:
    alias:
      description: Alias in C(DATABASES).
      type: str
      sample: default
    vendor:
      description: Django's vendor name of the backend.
      type: str
      sample: postgresql
databases:
  description:
    - Every alias of C(DATABASES), in its order, and whether the project migrates it. Without
      C(DATABASE_ROUTERS) Django migrates C(default) only; with routers an alias is migrated when they allow the
      migrations of at least one model on it. An alias they allow nothing on (a read replica) is left alone.
    - Only O(database) is inspected; inspect each migrated alias with its own call.
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: dict
  contains:
    alias:
      description: Alias in C(DATABASES).
      type: str
      sample: audit
    vendor:
      description: Django's vendor name of its backend (empty when the backend does not import).
      type: str
      sample: postgresql
    migrated:
      description: Whether migrations are applied to it (always true for O(database)).
      type: bool
      sample: true
    apps:
      description: The apps whose migrations the routers allow on it.
      type: list
      elements: str
      sample: [audit]
    why:
      description: Why it is migrated or left alone, in words.
      type: str
      sample: the routers allow no migration on it (a replica, or a database the project only reads)
ledger:
  description: The migration ledger of greenlight.django in this database (see the notes).
  returned: success, and failures caused by O(fail_on)
  type: dict
  contains:
    exists:
      description: Whether the ledger exists; V(false) before the first M(greenlight.django.migrate).
      type: bool
      sample: true
    events:
      description: How many events (baseline, applied, unapplied, accepted) it holds.
      type: int
      sample: 14
    since:
      description: When its first event was recorded (UTC, ISO 8601).
      type: str
      sample: "2024-06-01T12:00:03+00:00"
    baseline_at:
      description: When the baseline was taken (UTC, ISO 8601); V(null) when the ledger began on an empty database.
      type: str
      sample: "2024-06-01T12:00:03+00:00"
applied_outside_deploy:
  description:
    - Migrations recorded as applied in C(django_migrations) that the ledger does not know (or records as
      unapplied) - applied after the baseline, not by a deploy. Empty without the ledger.
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: dict
  contains:
    migration:
      description: C(app.name).
      type: str
      sample: notes.0004_note_rating
    applied_at:
      description: When C(django_migrations) says it was applied.
      type: str
      sample: "2024-06-03T09:12:44+00:00"
changed_since_applied:
  description: Applied migrations whose checksum in this release's code differs from the one in the ledger.
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: dict
  contains:
    migration:
      description: C(app.name).
      type: str
      sample: notes.0002_note_tag
    applied_at:
      description: When C(django_migrations) says it was applied.
      type: str
      sample: "2024-06-01T12:00:05+00:00"
    recorded:
      description: The ledger's event the checksum comes from - V(applied), V(baseline) or V(accepted).
      type: str
      sample: applied
    recorded_at:
      description: When that event was recorded.
      type: str
      sample: "2024-06-01T12:00:05+00:00"
    release:
      description: The release that recorded it.
      type: str
      sample: "20240601T115800Z"
    recorded_checksum:
      description: The checksum in the ledger.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    code_checksum:
      description: The checksum of this release's migration file.
      type: str
      sample: 60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
failed_conditions:
  description: The O(fail_on) conditions that hold; the module fails when this list is not empty.
  returned: success, and failures caused by O(fail_on)
  type: list
  elements: str
  sample: [unmigrated_changes]
"""

import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import uuid  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.greenlight.django.plugins.module_utils import _ledger as ledger  # noqa: E402
from ansible_collections.greenlight.django.plugins.module_utils import _migration_inspect as inspector  # noqa: E402
from ansible_collections.greenlight.django.plugins.module_utils._app_runtime import (  # noqa: E402
    application_environment,
    last_line,
    payload_program,
    resolve_python,
    resolve_settings,
    scrub,
    startup_pythonpath,
)
from ansible_collections.greenlight.django.plugins.module_utils._migration_rules import (  # noqa: E402
    DEFAULT_FAIL_ON,
    FAIL_ON_CHOICES,
    build_result,
    failed_conditions,
    failure_message,
)

# Advice the module adds to the inspector's own wording of each problem.
ADVICE = {
    "django_missing": "Point venv (or python) at the interpreter of the application's virtualenv.",
    "settings_missing": "Set the settings option.",
    "settings_import": "Check the settings option, pythonpath, and the variables the settings read from environment.",
    "setup_failed": "Check INSTALLED_APPS and the settings module.",
    "unknown_database": "Set database to one of those aliases.",
    "database_unreachable": "Check the host, port, name and credentials the settings use (environment), and "
    "that the server accepts connections from this host.",
    "database_error": "Check that the database user may read the django_migrations table.",
    "migrations_load": "Fix the migration files (a missing dependency or a broken import) and deploy again.",
    "autodetector_failed": "Check the models and the migration files.",
    "database_missing": "Set NAME to the path of the database file (the variables the settings read from "
    "environment), or mount its volume.",
    "not_a_database": "Set NAME in DATABASES to the SQLite database file of the application.",
    "timeout": "Find what waits there (a network call or a lock at import time), or raise timeout.",
}


def argument_spec():
    return dict(
        project_path=dict(type="path", required=True),
        settings=dict(type="str"),
        venv=dict(type="path"),
        python=dict(type="str"),
        pythonpath=dict(type="list", elements="path"),
        database=dict(type="str", default="default"),
        environment=dict(type="dict", default={}, no_log=True),
        env_files=dict(type="list", elements="path", default=[]),
        fail_on=dict(type="list", elements="str", choices=list(FAIL_ON_CHOICES), default=list(DEFAULT_FAIL_ON)),
        include_sql=dict(type="bool", default=False),
        timeout=dict(type="int", default=300),
        data_checks=dict(type="bool", default=True),
        data_check_values=dict(type="bool", default=False),
        data_check_timeout=dict(type="float", default=10.0),
        data_check_skip_tables=dict(type="list", elements="str", default=[]),
    )


def inspector_source():
    """The program of the inspection: _migration_inspect.py with _ledger.py, also from inside an AnsiballZ payload."""
    return payload_program(inspector, ledger)


def parse_report(stdout, nonce):
    begin = re.escape(f"{inspector.BEGIN_MARKER} {nonce}")
    end = re.escape(f"{inspector.END_MARKER} {nonce}")
    pattern = re.compile(rf"^{begin}\n(.*?)\n{end}$", re.M | re.S)
    matches = pattern.findall(stdout or "")
    if not matches:
        return None
    try:
        return json.loads(matches[-1])
    except ValueError:
        return None


def last_stage(stdout, nonce):
    """The last stage the inspector announced (see _migration_inspect.STAGE_MARKER), or None."""
    marker = re.escape(f"{inspector.STAGE_MARKER} {nonce} ")
    stages = re.findall(rf"^{marker}(\w+)$", stdout or "", re.M)
    return stages[-1] if stages else None


def no_result_message(python, rc, out, err, nonce, secrets):
    """Why the inspection printed no result: the stage it was in when its process ended."""
    detail = scrub(last_line(err) or "no output on stderr", secrets)
    stage = last_stage(out, nonce)
    if stage is None:
        return (
            f"The inspection did not produce a result: {python} exited with rc={rc} ({detail}). Check that it is "
            "the application's interpreter (Python 3.8+ with Django 4.2+)."
        )
    return (
        f"The inspection ended without a result while {inspector.STAGES.get(stage, stage)}: the process exited "
        f"with rc={rc} ({detail}). Code run at that stage ended the process itself (os._exit(), a crash of an "
        "extension module, the out-of-memory killer); look there, not at the interpreter."
    )


DATA_CHECK_OPTIONS = ("data_checks", "data_check_values", "data_check_timeout", "data_check_skip_tables")


def inspection_environment(
    nonce, project_path, settings, environment, database, include_sql, pythonpath, timeout, data_checks=None
):
    """Variables for the inspector's process: the app's own, then ours (options travel as JSON, not argv)."""
    options = {
        "timeout": timeout,
        "nonce": nonce,
        "project_path": project_path,
        "settings": settings,
        "database": database,
        "include_sql": include_sql,
        "pythonpath": pythonpath or [],
        "secret_env": sorted(environment),
    }
    options.update(data_checks or {})
    env = {"LC_ALL": "C", "LANGUAGE": "C"}
    env.update(environment)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": settings,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONIOENCODING": "utf-8",
            inspector.OPTIONS_ENV: json.dumps(options),
        }
    )
    return env


def run_inspection(module, python, project_path, settings, environment, pythonpath):
    nonce = uuid.uuid4().hex
    env = inspection_environment(
        nonce,
        project_path,
        settings,
        environment,
        module.params["database"],
        module.params["include_sql"],
        pythonpath,
        module.params["timeout"],
        {name: module.params[name] for name in DATA_CHECK_OPTIONS},
    )
    cmd = [python, "-"]
    rc, out, err = module.run_command(cmd, data=inspector_source(), cwd=project_path, environ_update=env)
    return cmd, rc, out, err, parse_report(out, nonce), nonce


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("venv", "python")],
        supports_check_mode=True,
    )
    params = module.params
    environment, startup, secrets = application_environment(
        module, params["environment"], params["env_files"], params["venv"]
    )

    if params["data_check_timeout"] <= 0:
        module.fail_json(
            msg="data_check_timeout must be a number of seconds greater than 0 (got "
            f"{params['data_check_timeout']:g}); to turn the data checks off, set data_checks: false."
        )
    project_path = os.path.abspath(params["project_path"])
    if not os.path.isdir(project_path):
        module.fail_json(
            msg=f"project_path {project_path} is not a directory; set it to the directory of the Django project."
        )
    manage_py = os.path.join(project_path, "manage.py")
    python = resolve_python(module, params["venv"], params["python"])
    given = {str(key): str(value) for key, value in (params["environment"] or {}).items() if value is not None}
    settings = resolve_settings(module, params["settings"], given, manage_py, startup)
    pythonpath = startup_pythonpath(params["pythonpath"], startup)

    cmd, rc, out, err, report, nonce = run_inspection(module, python, project_path, settings, environment, pythonpath)
    if report is None:
        module.fail_json(
            msg=no_result_message(python, rc, out, err, nonce, secrets),
            rc=rc,
            cmd=cmd,
            stderr=scrub(err, secrets),
        )
    if not report.get("ok"):
        error = report.get("error") or {}
        message = scrub(error.get("message") or "unknown error", secrets)
        advice = ADVICE.get(error.get("kind"))
        if not message.endswith((".", "!", "?")):
            message += "."
        msg = f"{message} {advice}" if advice else message
        extra = {}
        if error.get("traceback"):
            extra["exception"] = scrub(error["traceback"], secrets)
        module.fail_json(msg=msg, **extra)

    for warning in report.get("warnings") or []:
        module.warn(scrub(warning, secrets))
    result = build_result(report, include_sql=module.params["include_sql"])
    conditions = failed_conditions(result, module.params["fail_on"])
    result["failed_conditions"] = conditions
    if conditions:
        module.fail_json(msg=failure_message(result, conditions), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
