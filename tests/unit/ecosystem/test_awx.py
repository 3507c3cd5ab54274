"""The AWX surveys and credential type against the playbooks' own validation.

AWX launches a job with the job template's survey answers (and the survey
defaults) plus the extra variables its credentials inject. Every one of those
variables must be an input the playbook accepts, with the same type and
choices; a survey must ask for every required input; and a secret must never
be a plain survey question.

The playbooks check their inputs with ``ansible.builtin.validate_argument_spec``
at their first task. One ``ansible-playbook`` run on localhost takes that very
task's ``argument_spec`` expression out of each playbook, evaluates it with the
playbooks' ``vars/argument_specs.yml``, and validates the answers of every
launch below with it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jinja2.sandbox
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
AWX = REPO / "awx"
PLAYBOOKS = REPO / "playbooks"
SURVEYED = ("deploy", "deploy_blue_green", "rollback", "ledger_repair", "plan")
# The workflow plan -> approval -> deploy (awx/workflows/): its survey's answers go to each of these playbooks.
WORKFLOW = AWX / "workflows" / "plan_review_deploy.json"
WORKFLOW_SURVEY = "plan_review_deploy"
WORKFLOW_PLAYBOOKS = ("plan", "deploy")
CREDENTIAL_TYPE = AWX / "credential_types" / "greenlight_django_application.json"
SAMPLE_APP = "demo"
SAMPLE_INPUTS = {
    "settings_module": "demo.settings",
    "database_url": "postgres://demo:s3cret@db.example.com:5432/demo",
    "secret_key": "sample-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "allowed_hosts": "www.example.com",
}
# AWX answers a multiple choice question with the text of the choice: a bool
# input is offered as these two strings.
BOOL_CHOICES = ["false", "true"]
SURVEY_TYPES = {
    "str": {"text", "textarea", "password", "multiplechoice"},
    "bool": {"multiplechoice"},
    "int": {"integer"},
    "float": {"float"},
    # A list input also takes a text answer: Ansible's list type splits "a.x,b.y" on commas.
    "list": {"multiselect", "text", "textarea"},
}
# Answers an operator gives at launch to the required questions that have no default.
SAMPLE_ANSWERS = {
    "greenlight_ledger_accept": "notes.0004_note_rating, notes.0002_note_tag",
    "greenlight_ledger_reason": "reviewed in PR 123: the schema matches the committed files",
}


def survey(name: str) -> dict:
    return json.loads((AWX / "surveys" / f"{name}.json").read_text())


def questions(name: str) -> dict[str, dict]:
    return {q["variable"]: q for q in survey(name)["spec"]}


def choices_of(question: dict) -> list[str]:
    choices = question.get("choices") or []
    return [c for c in choices.splitlines() if c.strip()] if isinstance(choices, str) else list(choices)


def awx_answer_errors(question: dict, value) -> list[str]:
    """The checks AWX makes on one answer (or default) before it starts a job."""
    kind = question["type"]
    if kind in ("text", "textarea", "password"):
        if not isinstance(value, str):
            return [f"{question['variable']}: {value!r} is not a string"]
        low, high = question.get("min"), question.get("max")
        if low not in ("", None) and len(value) < int(low):
            return [f"{question['variable']}: {value!r} is shorter than {low}"]
        if high not in ("", None) and len(value) > int(high):
            return [f"{question['variable']}: {value!r} is longer than {high}"]
    elif kind == "multiplechoice" and value not in choices_of(question):
        return [f"{question['variable']}: {value!r} is not one of {choices_of(question)}"]
    elif kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        return [f"{question['variable']}: {value!r} is not an integer"]
    return []


def credential_extra_vars(inputs: dict) -> dict:
    """Render the credential type's extra_vars injector the way AWX does."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)

    def build(node):
        if isinstance(node, dict):
            return {build(k): build(v) for k, v in node.items()}
        if isinstance(node, list):
            return [build(x) for x in node]
        return env.from_string(node).render(**inputs)

    return build(json.loads(CREDENTIAL_TYPE.read_text())["injectors"]["extra_vars"])


def launch(name: str, **answers) -> dict:
    """Extra variables of a job launched from the template with these answers.

    As AWX builds them: the credential's extra vars, each survey default that
    passes the survey's own checks, then the operator's answers.
    """
    extra_vars = credential_extra_vars(SAMPLE_INPUTS)
    for variable, question in questions(name).items():
        default = question.get("default")
        if default is not None and not awx_answer_errors(question, default):
            extra_vars[variable] = default
    extra_vars.setdefault("greenlight_app_name", SAMPLE_APP)
    for variable in questions(name):
        if variable in SAMPLE_ANSWERS:
            extra_vars.setdefault(variable, SAMPLE_ANSWERS[variable])
    extra_vars.update(answers)
    return extra_vars


def launches() -> dict[str, list[dict]]:
    """Every launch worth validating: the defaults, then each choice of each question."""
    cases = {}
    for name in SURVEYED:
        cases[name] = [{"label": "defaults", "vars": launch(name)}]
        for variable, question in questions(name).items():
            for choice in choices_of(question):
                cases[name].append({"label": f"{variable}={choice}", "vars": launch(name, **{variable: choice})})
    # The workflow's survey answers reach the plan and the deploy alike, with the plan id the plan job hands on.
    for variable, question in [(None, None), *questions(WORKFLOW_SURVEY).items()]:
        for choice in choices_of(question) if question else [None]:
            answers = launch(WORKFLOW_SURVEY, **({variable: choice} if variable else {}))
            label = f"workflow: {variable}={choice}" if variable else "workflow: defaults"
            for name in WORKFLOW_PLAYBOOKS:
                extra = {"greenlight_plan_id": "3f1c0d9e5a7b2c84"} if name == "deploy" else {}
                cases[name].append({"label": label, "vars": {**answers, **extra}})
    # Controls: the validation must be able to refuse.
    cases["rollback"].append(
        {"label": "control: unknown choice", "vars": launch("rollback", greenlight_rollback_database="drop")}
    )
    no_app = launch("deploy")
    del no_app["greenlight_app_name"]
    cases["deploy"].append({"label": "control: no application", "vars": no_app})
    no_reason = launch("ledger_repair")
    del no_reason["greenlight_ledger_reason"]
    cases["ledger_repair"].append({"label": "control: no reason", "vars": no_reason})
    return cases


def validation_task(playbook: str) -> tuple[dict, dict]:
    """The playbook's validate_argument_spec task (its own or its pipeline's) and the play's variables."""
    play = yaml.safe_load((PLAYBOOKS / f"{playbook}.yml").read_text())[0]
    tasks = list(play["tasks"])
    for task in play["tasks"]:
        if "ansible.builtin.import_tasks" in task:
            tasks += yaml.safe_load((PLAYBOOKS / task["ansible.builtin.import_tasks"]["file"]).read_text())
    for task in tasks:
        if "ansible.builtin.validate_argument_spec" in task:
            return task["ansible.builtin.validate_argument_spec"], play.get("vars") or {}
    raise AssertionError(f"{playbook}.yml has no ansible.builtin.validate_argument_spec task")


@pytest.fixture(scope="module")
def checked(tmp_path_factory) -> dict:
    """Run the playbooks' validation on every launch; return the specs and the results."""
    work = tmp_path_factory.mktemp("awx")
    results = work / "results.json"
    tasks = []
    for name in SURVEYED:
        validation, play_vars = validation_task(name)
        tasks += [
            {
                "name": f"Evaluate the argument spec of {name}",
                "ansible.builtin.set_fact": {f"spec_{name}": validation["argument_spec"]},
                "vars": play_vars,
            },
            {
                "name": f"Validate the launches of {name}",
                "ansible.builtin.validate_argument_spec": {
                    "argument_spec": f"{{{{ spec_{name} }}}}",
                    "provided_arguments": "{{ item.vars }}",
                },
                "loop": f"{{{{ cases.{name} }}}}",
                "loop_control": {"label": "{{ item.label }}"},
                "register": f"checked_{name}",
                "ignore_errors": True,
            },
        ]
    summary = {
        name: {
            "spec": f"{{{{ spec_{name} }}}}",
            "results": f"{{{{ checked_{name}.results | map(attribute='item.label')"
            f" | zip(checked_{name}.results | map(attribute='failed')) | list }}}}",
            "messages": f"{{{{ checked_{name}.results | map(attribute='msg', default='') | list }}}}",
        }
        for name in SURVEYED
    }
    tasks.append(
        {
            "name": "Write the results",
            "ansible.builtin.copy": {"content": "{{ summary | to_json }}", "dest": str(results), "mode": "0600"},
            "vars": {"summary": summary},
        }
    )
    play = [
        {
            "name": "Validate survey launches",
            "hosts": "localhost",
            "gather_facts": False,
            "vars_files": [str(PLAYBOOKS / "vars" / "argument_specs.yml"), str(PLAYBOOKS / "vars" / "pipeline.yml")],
            "tasks": tasks,
        }
    ]
    (work / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    (work / "cases.json").write_text(json.dumps({"cases": launches(), "ansible_python_interpreter": sys.executable}))
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            "localhost,",
            "-c",
            "local",
            str(work / "play.yml"),
            "-e",
            f"@{work / 'cases.json'}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=work,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return json.loads(results.read_text())


def test_every_survey_launch_passes_the_playbooks_validation(checked):
    refused = {
        name: [
            (label, message)
            for (label, failed), message in zip(checked[name]["results"], checked[name]["messages"])
            if failed and not label.startswith("control:")
        ]
        for name in SURVEYED
    }
    assert refused == {name: [] for name in SURVEYED}
    counted = sum(len(checked[name]["results"]) for name in SURVEYED)
    assert counted > 3 * len(SURVEYED)


def test_the_validation_refuses_a_bad_launch(checked):
    controls = {
        (name, label): failed
        for name in SURVEYED
        for label, failed in checked[name]["results"]
        if label.startswith("control:")
    }
    assert controls == {
        ("rollback", "control: unknown choice"): True,
        ("deploy", "control: no application"): True,
        ("ledger_repair", "control: no reason"): True,
    }


@pytest.mark.parametrize("name", SURVEYED)
def test_every_question_is_an_input_of_the_same_type(name, checked):
    spec = checked[name]["spec"]
    for variable, question in questions(name).items():
        assert variable in spec, f"{name}: {variable} is not an input of the playbook"
        kind = spec[variable].get("type", "str")
        assert question["type"] in SURVEY_TYPES[kind], f"{name}: {variable} is a {kind}, asked as {question['type']}"


@pytest.mark.parametrize("name", SURVEYED)
def test_choices_are_the_inputs_choices(name, checked):
    spec = checked[name]["spec"]
    for variable, question in questions(name).items():
        option = spec[variable]
        if option.get("choices"):
            assert question["type"] == "multiplechoice", f"{name}: {variable} has choices"
            assert choices_of(question) == [str(c) for c in option["choices"]], f"{name}: {variable}"
        elif option.get("type") == "bool":
            assert choices_of(question) == BOOL_CHOICES, f"{name}: {variable}"
        else:
            assert not choices_of(question), f"{name}: {variable} has no choices in the playbook"


@pytest.mark.parametrize("name", SURVEYED)
def test_every_required_input_is_a_required_question(name, checked):
    required = sorted(v for v, option in checked[name]["spec"].items() if option.get("required"))
    asked = questions(name)
    assert required, f"{name}: the playbook has no required input?"
    assert [v for v in required if not asked.get(v, {}).get("required")] == []


@pytest.mark.parametrize("name", SURVEYED)
def test_secrets_are_not_survey_questions(name, checked):
    spec = checked[name]["spec"]
    for variable, question in questions(name).items():
        if spec[variable].get("no_log"):
            assert question["type"] == "password", f"{name}: {variable} is a secret, asked as {question['type']}"
        assert spec[variable].get("type") != "dict", f"{name}: {variable} is a dict, a survey cannot type it"


@pytest.mark.parametrize("name", (*SURVEYED, WORKFLOW_SURVEY))
def test_awx_accepts_the_survey(name):
    """AWX refuses a survey without name and description, and drops a default it would refuse as an answer."""
    spec = survey(name)
    assert spec["name"] and spec["description"]
    for variable, question in questions(name).items():
        assert question["question_name"] and question["question_description"], variable
        default = question.get("default")
        if question["required"] and default == "" and question["type"] in ("text", "textarea"):
            continue  # left to the job template (the application it deploys) or to the operator at launch
        assert awx_answer_errors(question, default) == [], variable


def test_credential_injects_the_application_environment_as_secrets(checked):
    credential = json.loads(CREDENTIAL_TYPE.read_text())
    fields = {field["id"]: field for field in credential["inputs"]["fields"]}
    injected = credential_extra_vars(SAMPLE_INPUTS)
    assert set(injected) == {"greenlight_environment"}
    spec = checked["deploy"]["spec"]["greenlight_environment"]
    assert spec["type"] == "dict" and spec["no_log"]
    environment = injected["greenlight_environment"]
    assert environment["DATABASE_URL"] == SAMPLE_INPUTS["database_url"]
    for name in ("DATABASE_URL", "DJANGO_SECRET_KEY"):
        template = credential["injectors"]["extra_vars"]["greenlight_environment"][name]
        field = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", template).group(1)
        assert fields[field].get("secret") is True, f"{name} comes from a field AWX does not hide"
    assert set(credential["inputs"]["required"]) == set(fields)


def bool_reads(variable: str) -> list[str]:
    """The expressions of the playbooks that read ``variable`` without ``| bool``.

    AWX sends a survey's ``true``/``false`` as strings, and the string
    ``"false"`` is true in a Jinja expression: every read must convert it.
    """
    unconverted = []
    for path in sorted(PLAYBOOKS.rglob("*.yml")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in re.finditer(rf"\b{variable}\b((?:\s*\|\s*[\w.]+(?:\([^)]*\))?)*)", line):
                chain = match.group(1)
                in_expression = bool(chain.strip()) or re.match(r"\s*(- )?(when|that|failed_when):", line)
                if in_expression and not re.search(r"\|\s*bool\b", chain):
                    unconverted.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    return unconverted


@pytest.mark.parametrize(
    "variable", sorted({v for name in SURVEYED for v, q in questions(name).items() if choices_of(q) == BOOL_CHOICES})
)
def test_the_playbooks_read_a_true_false_answer_as_a_boolean(variable):
    assert bool_reads(variable) == []


def test_accept_incompatible_is_read_as_a_boolean():
    assert bool_reads("greenlight_accept_incompatible") == []


def workflow() -> dict:
    return json.loads(WORKFLOW.read_text())


def test_the_workflow_plans_waits_for_approval_then_deploys():
    graph = workflow()
    nodes = {node["identifier"]: node for node in graph["nodes"]}
    assert graph["name"] and graph["description"] and graph["survey"] == WORKFLOW_SURVEY
    path, node = [], nodes["plan"]
    while True:
        path.append(node.get("job_template") or "approval")
        if not node["success_nodes"]:
            break
        (following,) = node["success_nodes"]
        node = nodes[following]
    assert path == ["plan", "approval", "deploy"]
    approval = nodes["review"]["approval_node"]
    assert approval["name"] and approval["description"] and approval["timeout"] > 0
    for name in ("plan", "deploy"):
        assert (AWX / "project" / f"{name}.yml").is_file() and (AWX / "surveys" / f"{name}.json").is_file()
    # Without a failure or always path, a denied or failed plan deploys nothing.
    assert all(set(node) <= {"identifier", "job_template", "approval_node", "success_nodes"} for node in nodes.values())


def test_the_plan_hands_the_deploy_its_id(checked):
    """The plan job's artifact greenlight_plan_id becomes an extra variable of the deploy node: an input of it."""
    stats = [
        task["ansible.builtin.set_stats"]["data"]
        for task in yaml.safe_load((PLAYBOOKS / "tasks" / "plan_write.yml").read_text())
        if "ansible.builtin.set_stats" in task
    ]
    assert [sorted(data) for data in stats] == [["greenlight_plan_id"]]
    spec = checked["deploy"]["spec"]["greenlight_plan_id"]
    assert spec.get("type", "str") == "str" and not spec.get("required")
    assert "greenlight_plan_id" in checked["deploy_blue_green"]["spec"]


@pytest.mark.parametrize("name", WORKFLOW_PLAYBOOKS)
def test_every_workflow_question_is_an_input_of_each_node(name, checked):
    spec = checked[name]["spec"]
    for variable, question in questions(WORKFLOW_SURVEY).items():
        assert variable in spec, f"{name}: {variable} is not an input of the playbook"
        kind = spec[variable].get("type", "str")
        assert question["type"] in SURVEY_TYPES[kind], f"{name}: {variable} is a {kind}, asked as {question['type']}"
        if spec[variable].get("choices"):
            assert choices_of(question) == [str(c) for c in spec[variable]["choices"]], f"{name}: {variable}"
    required = [v for v, option in spec.items() if option.get("required")]
    assert [v for v in required if not questions(WORKFLOW_SURVEY).get(v, {}).get("required")] == []
