"""The wsgi role's reading of wsgi_processes: its refusals, the units each host runs, and the unit a process gets.

The role's own defaults, internal variables and unit template, rendered by Ansible's templating as a play would,
for an inventory of two hosts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = Path(__file__).resolve().parents[3] / "roles" / "wsgi"
GROUPS = {"all": ["web1", "web2"], "web": ["web1", "web2"], "cron": ["web2"], "ungrouped": []}


def render(expression: str, processes, host: str = "web1", **more):
    variables = {}
    for path in (ROLE / "defaults" / "main.yml", ROLE / "vars" / "main.yml"):
        variables.update(yaml.safe_load(path.read_text()))
    variables.update(wsgi_app_name="shop", inventory_hostname=host, groups=GROUPS, wsgi_processes=processes, **more)
    trusted = {key: trust_as_template(value) if isinstance(value, str) else value for key, value in variables.items()}
    return Templar(loader=DataLoader(), variables=trusted).template(trust_as_template(expression))


def errors(processes) -> str:
    return " ".join(render("{{ _wsgi_process_errors }}", processes))


def test_a_procfile_like_mapping_is_accepted():
    assert (
        errors(
            {
                "worker": "celery -A shop worker",
                "beat": {"command": "celery -A shop beat", "hosts": "cron", "singleton": True},
            }
        )
        == ""
    )


@pytest.mark.parametrize(
    ("processes", "message"),
    [
        ({"worker": {"hosts": "all"}}, "worker has no command"),
        ({"worker": None}, "worker has no command"),
        ({"worker": {"command": "  "}}, "worker has no command"),
        (
            {"beat": {"command": "celery beat", "singleton": True}},
            "beat is a singleton (at most one in the fleet) but would run on web1, web2",
        ),
        ({"beat": {"command": "celery beat", "singleton": True, "hosts": "cron", "count": 2}}, "would run 2 times"),
        (
            {"mail": {"command": "python manage.py mail", "stop_timeout": "soon"}},
            "mail's stop_timeout must be a number",
        ),
        ({"mail": {"command": "python manage.py mail", "stop_timeout": 0}}, "mail's stop_timeout must be a number"),
        ({"mail": {"command": "m", "count": 0}}, "mail's count must be a whole number from 1"),
        ({"mail": {"command": "m", "hosts": "db"}}, 'mail runs on hosts "db", which is neither all nor a group'),
        ({"mail": {"command": "m", "stop_signal": "TERM"}}, "mail's stop_signal must be a signal name"),
        ({"mail": {"command": "m", "timeout": 3}}, "mail has unknown settings timeout"),
        ({"Mail-1": "m"}, 'process name "Mail-1" must match'),
        ({"mail": "m\nrm -rf /"}, "mail's command must be one line"),
        (["worker"], "wsgi_processes must map process names"),
    ],
)
def test_bad_declarations_are_named_with_the_fix(processes, message):
    assert message in errors(processes)


def test_every_problem_is_named_at_once():
    found = render("{{ _wsgi_process_errors }}", {"a": {}, "b": {"command": "b", "stop_timeout": "x"}})
    assert len(found) == 2


def test_each_host_runs_its_processes_and_copies_and_singletons_apart():
    processes = {
        "worker": {"command": "celery worker", "count": 2},
        "beat": {"command": "celery beat", "hosts": "cron", "singleton": True},
    }
    web1 = render("{{ _wsgi_module_args.blue }}", processes, "web1")
    web2 = render("{{ _wsgi_module_args.blue }}", processes, "web2")
    assert web1["processes"] == ["greenlight-shop-worker-1@blue.service", "greenlight-shop-worker-2@blue.service"]
    assert web1["singletons"] == []
    assert web2["singletons"] == ["greenlight-shop-beat-1@blue.service"]
    assert render("{{ _wsgi_process_programs }}", {"a": "celery x", "b": "/usr/bin/env true", "c": " python -m c"}) == [
        "celery",
        "python",
    ]


def test_the_unit_runs_the_command_from_the_pointer_s_virtualenv_with_the_stop_settings():
    processes = {"worker": {"command": "celery -A shop worker -n w@%h", "stop_signal": "SIGINT", "stop_timeout": 90}}
    unit = render("{{ _wsgi_process_units[0] }}", processes)
    text = render(
        (ROLE / "templates" / "greenlight-process@.service.j2").read_text(),
        processes,
        __wsgi_unit=unit,
        ansible_managed="managed",
    )
    lines = text.splitlines()
    assert "ExecStart=/srv/shop/%i/.venv/bin/celery -A shop worker -n w@%%h" in lines
    assert "WorkingDirectory=/srv/shop/%i" in lines
    assert "User=shop" in lines
    assert "KillSignal=SIGINT" in lines and "TimeoutStopSec=90" in lines and "KillMode=mixed" in lines
    assert "EnvironmentFile=/srv/shop/shared/.env" in lines
    assert "ProtectSystem=strict" in lines and "NoNewPrivileges=true" in lines
    assert "X-GreenlightApp=shop" in lines
    absolute = render("{{ _wsgi_process_units[0] }}", {"tick": "/usr/local/bin/tick --every 5"})
    text = render(
        (ROLE / "templates" / "greenlight-process@.service.j2").read_text(),
        {"tick": "/usr/local/bin/tick --every 5"},
        __wsgi_unit=absolute,
        ansible_managed="managed",
    )
    assert "ExecStart=/usr/local/bin/tick --every 5" in text.splitlines()
