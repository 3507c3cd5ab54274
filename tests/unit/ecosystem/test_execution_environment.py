"""The execution environment definition, checked without building an image.

``ansible-builder create`` turns ``execution-environment.yml`` into a build
context; the context's own introspection script is what the image build runs
to collect the Python and system packages every installed collection asks
for. Both run here against the checkout, so a broken definition, a missing
collection or an unreadable dependency file fails before anyone builds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bindep.depends import Depends
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[3]
COLLECTIONS = REPO / "build" / "collections"
BIN = Path(sys.executable).parent


def galaxy_version() -> str:
    return yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("ee") / "context"
    result = subprocess.run(
        [
            str(BIN / "ansible-builder"),
            "create",
            "--file",
            str(REPO / "execution-environment.yml"),
            "--context",
            str(target),
            "--output-filename",
            "Containerfile",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return target


def containerfile_args(context: Path) -> dict[str, str]:
    args = {}
    for line in (context / "Containerfile").read_text().splitlines():
        if line.startswith("ARG ") and "=" in line:
            name, value = line[4:].split("=", 1)
            args[name] = value.strip('"')
    return args


def test_context_builds_python_3_11_with_ansible_core_and_runner(context):
    args = containerfile_args(context)
    assert args["EE_BASE_IMAGE"]
    assert args["PYCMD"].endswith("python3.11")
    refs = args["ANSIBLE_INSTALL_REFS"].split()
    assert any(ref.startswith("ansible-core") for ref in refs), refs
    assert any(ref.startswith("ansible-runner") for ref in refs), refs
    text = (context / "Containerfile").read_text()
    assert "ansible-galaxy collection install" in text
    assert "introspect.py introspect" in text


def test_context_installs_this_collection_version(context):
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    wanted = {c["name"]: c.get("version", "*") for c in requirements["collections"]}
    assert "greenlight.django" in wanted
    assert galaxy_version() in SpecifierSet(wanted["greenlight.django"])
    # The collection's dependencies must be installable in the image too.
    dependencies = yaml.safe_load((REPO / "galaxy.yml").read_text())["dependencies"]
    assert set(dependencies) <= set(wanted)


def test_the_image_build_finds_what_the_collection_needs_on_the_controller(context):
    """Run the build's introspection against the checkout, as the image build does."""
    result = subprocess.run(
        [
            sys.executable,
            str(context / "_build" / "scripts" / "introspect.py"),
            "introspect",
            "--sanitize",
            str(COLLECTIONS),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = yaml.safe_load(result.stdout)
    python = [line for line in found["python"] if "greenlight.django" in line]
    system = [line for line in found["system"] if "greenlight.django" in line]
    assert [Requirement(line.split("#")[0]).name for line in python] == ["pip"]
    for program in ("git", "rsync", "hostname", "openssh"):
        assert any(line.startswith(program) for line in system), (program, system)


@pytest.mark.parametrize(
    ("platform", "packages"),
    [
        (["platform:rpm", "platform:centos"], {"git-core", "rsync", "hostname", "openssh-clients"}),
        (["platform:dpkg", "platform:debian"], {"git", "rsync", "hostname", "openssh-client"}),
    ],
)
def test_system_packages_resolve_on_rpm_and_dpkg_images(platform, packages):
    rules = Depends((REPO / "meta" / "ee-bindep.txt").read_text()).active_rules(platform)
    assert {rule[0] for rule in rules} == packages
