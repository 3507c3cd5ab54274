"""A role included on its own without its required inputs fails with argument validation's own message.

``ansible.builtin.validate_argument_spec`` renders the role's argument spec and
the defaults of every option it names before it checks anything: a default
such as ``/srv/{{ wsgi_app_name }}`` would turn a missing ``wsgi_app_name`` into
a templating error ("'wsgi_app_name' is undefined"). One ``ansible-playbook``
run on localhost (nothing connects anywhere: validation fails first) includes
every role, and an entry point other than ``main``, the way a new user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
ROLES = ("backup", "code_sync", "migrate", "traffic", "wsgi")
# (role, tasks_from, the variables given): each misses <role>_app_name.
CASES = [
    *[(role, "main", {}) for role in ROLES],
    ("wsgi", "main", {"wsgi_restart_on_change": True}),
    ("wsgi", "start", {"wsgi_instance": "blue"}),
    ("code_sync", "cleanup", {}),
]


def play() -> list[dict]:
    tasks = []
    for index, (role, entry, given) in enumerate(CASES):
        tasks.append(
            {
                "name": f"Case {index}",
                "block": [
                    {
                        "name": f"Case {index} - include {role} ({entry})",
                        "ansible.builtin.include_role": {"name": f"greenlight.django.{role}", "tasks_from": entry},
                        "vars": given,
                    }
                ],
                "rescue": [
                    {
                        "name": f"Case {index} - keep the message",
                        "ansible.builtin.set_fact": {
                            "messages": "{{ messages | default({}) | combine({'"
                            + str(index)
                            + "': ansible_failed_result.msg}) }}"
                        },
                    }
                ],
            }
        )
    tasks.append(
        {
            "name": "Write the messages",
            "ansible.builtin.copy": {
                "content": "{{ messages | default({}) | to_json }}",
                "dest": "{{ playbook_dir }}/messages.json",
            },
        }
    )
    return [
        {"name": "Include the roles without their names", "hosts": "localhost", "gather_facts": False, "tasks": tasks}
    ]


def test_missing_application_name_is_reported_by_argument_validation(tmp_path):
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play(), sort_keys=False))
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            "localhost,",
            "-c",
            "local",
            "play.yml",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        cwd=tmp_path,
        env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(REPO / "build" / "collections")},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    messages = json.loads((tmp_path / "messages.json").read_text())
    for index, (role, entry, _given) in enumerate(CASES):
        message = messages.get(str(index), "")
        assert f"missing required arguments: {role}_app_name" in message, (role, entry, message)
        assert "undefined" not in message, (role, entry, message)
