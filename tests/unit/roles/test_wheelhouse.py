"""code_sync's files/wheelhouse.py: the target, its tags and markers, and a wheelhouse resolved for a target
that is not the running interpreter (offline: pip reads a local directory of distributions)."""

import importlib.util
import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "code_sync" / "files" / "wheelhouse.py"
_spec = importlib.util.spec_from_file_location("wheelhouse", SCRIPT)
wheelhouse = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wheelhouse)


# --- tags and target ---------------------------------------------------------------------------------------


def test_glibc_platform_tags_run_from_the_libc_down_with_the_legacy_aliases():
    tags = wheelhouse.platform_tags("x86_64", "glibc", "2.41")
    assert tags[0] == "manylinux_2_41_x86_64"
    assert tags[-2:] == ["manylinux_2_5_x86_64", "manylinux1_x86_64"]
    assert tags.index("manylinux2014_x86_64") == tags.index("manylinux_2_17_x86_64") + 1
    assert "manylinux2010_x86_64" in tags
    assert "manylinux_2_42_x86_64" not in tags


def test_aarch64_has_manylinux2014_but_no_older_alias():
    tags = wheelhouse.platform_tags("aarch64", "glibc", "2.36")
    assert "manylinux2014_aarch64" in tags
    assert not any(t.startswith(("manylinux2010", "manylinux1_")) for t in tags)


def test_musl_tags_and_unknown_libc():
    assert wheelhouse.platform_tags("x86_64", "musl", "1.2") == [
        "musllinux_1_2_x86_64",
        "musllinux_1_1_x86_64",
        "musllinux_1_0_x86_64",
    ]
    assert wheelhouse.platform_tags("arm64", "", "") == []


def test_current_target_describes_this_interpreter():
    target = wheelhouse.current_target()
    version = "{}.{}.{}".format(*sys.version_info[:3])
    assert target["python_full_version"] == version
    assert target["abi"] == "cp{}{}".format(*sys.version_info[:2])
    assert target["key"] == wheelhouse.target_key(target)
    assert target["key"].startswith(f"cp{version}-")


def test_marker_environment_is_the_one_pip_evaluates_here():
    from pip._vendor.packaging.markers import default_environment

    assert wheelhouse.marker_environment() == default_environment()


def test_target_key_differs_by_patch_version_and_libc():
    base = {"implementation": "cp", "python_full_version": "3.11.2", "abi": "cp311", "machine": "x86_64"}
    debian12 = wheelhouse.target_key(dict(base, libc="glibc", libc_version="2.36"))
    assert debian12 == "cp3.11.2-cp311-x86_64-glibc2.36"
    newer = dict(base, python_full_version="3.11.7", libc="glibc", libc_version="2.36")
    assert wheelhouse.target_key(newer) != debian12
    assert wheelhouse.target_key(dict(base, libc="musl", libc_version="1.2")) != debian12


def test_pip_options_name_the_target_and_refuse_an_unknown_platform():
    target = {"python_full_version": "3.13.5", "implementation": "cp", "abi": "cp313", "machine": "x86_64"}
    options = wheelhouse.pip_target_options(dict(target, platforms=["manylinux_2_41_x86_64", "manylinux1_x86_64"]))
    assert options[:3] == ["--only-binary=:all:", "--python-version", "3.13.5"]
    assert options.count("--platform") == 2
    with pytest.raises(wheelhouse.WheelhouseError, match="no wheel platform is known"):
        wheelhouse.pip_target_options(dict(target, platforms=[], libc="", libc_version=""))


def test_markers_are_evaluated_in_the_target_environment(monkeypatch):
    from pip._vendor.packaging import markers as pip_markers
    from pip._vendor.packaging.markers import Marker

    monkeypatch.setattr(pip_markers, "default_environment", pip_markers.default_environment)
    redis_needs = Marker('python_full_version < "3.11.3"')  # redis's async-timeout
    environment = dict(wheelhouse.marker_environment(), python_full_version="3.11.2", python_version="3.11")
    wheelhouse.use_marker_environment(environment)
    assert redis_needs.evaluate()
    wheelhouse.use_marker_environment(dict(environment, python_full_version="3.13.5", python_version="3.13"))
    assert not redis_needs.evaluate()
    assert Marker('python_version >= "3.12"').evaluate()


# --- distributions -----------------------------------------------------------------------------------------


def test_names_versions_and_pure_wheels():
    assert wheelhouse.requirement_name("Django_Extensions[all]==3.2 ; python_version>'3'") == "django-extensions"
    assert wheelhouse.sdist_name_version("psycopg2-2.9.10.tar.gz") == ("psycopg2", "2.9.10")
    assert wheelhouse.sdist_name_version("mysqlclient-2.2.4.zip") == ("mysqlclient", "2.2.4")
    assert wheelhouse.is_pure_wheel("django-6.0.1-py3-none-any.whl")
    assert not wheelhouse.is_pure_wheel("psycopg_binary-3.2.1-cp313-cp313-manylinux_2_17_x86_64.whl")
    assert not wheelhouse.is_pure_wheel("cffi-1.17.1-cp313-abi3-manylinux_2_17_x86_64.whl")


def test_build_requires_from_pyproject_or_setuptools_defaults():
    pyproject = b'[build-system]\nrequires = ["setuptools>=61", "pkgconfig"]\nbuild-backend = "x"\n'
    assert wheelhouse.build_requires(pyproject) == ["setuptools>=61", "pkgconfig", "wheel"]
    assert wheelhouse.build_requires(None) == ["setuptools>=40.8.0", "wheel"]
    assert wheelhouse.build_requires(b'[build-system]\nrequires = ["hatchling", "wheel"]\n') == ["hatchling", "wheel"]


def test_requires_dist_and_compiled_sources():
    pkg_info = b"Metadata-Version: 2.2\nName: x\nVersion: 1\nRequires-Dist: a>=1\nRequires-Dist: b; extra == 'z'\n"
    assert wheelhouse.requires_dist(pkg_info) == ["a>=1", "b; extra == 'z'"]
    assert wheelhouse.requires_dist(None) == []
    assert wheelhouse.sdist_compiles({"x-1/setup.py": None, "x-1/src/_x.c": None})
    assert wheelhouse.sdist_compiles({"x-1/Cargo.toml": None})
    assert not wheelhouse.sdist_compiles({"x-1/setup.py": None, "x-1/x/__init__.py": None})


def test_stand_in_wheel_declares_name_version_and_requirements(tmp_path):
    path = wheelhouse.write_stand_in_wheel(tmp_path, "mysql-client", "2.2.4", ["a>=1"])
    assert path.name == "mysql_client-2.2.4-py3-none-any.whl"
    with zipfile.ZipFile(path) as archive:
        metadata = archive.read("mysql_client-2.2.4.dist-info/METADATA").decode()
    assert "Name: mysql-client\nVersion: 2.2.4\nRequires-Dist: a>=1\n" in metadata


# --- a wheelhouse for another target, from a local directory of distributions --------------------------------


def _wheel(directory, name, version, requires=(), tag="py3-none-any"):
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(directory / f"{dist}-{version}-{tag}.whl", "w") as archive:
        archive.writestr(f"{dist}/__init__.py", "")
        archive.writestr(f"{info}/METADATA", metadata)
        archive.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n")
        archive.writestr(f"{info}/RECORD", "")


def _sdist(directory, name, version, files):
    with tarfile.open(directory / f"{name}-{version}.tar.gz", "w:gz") as archive:
        for member, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{member}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _target(version):
    target = wheelhouse.current_target()
    major_minor = ".".join(version.split(".")[:2])
    target["python_full_version"] = version
    target["abi"] = "cp" + major_minor.replace(".", "")
    target["markers"] = dict(target["markers"], python_full_version=version, python_version=major_minor)
    target["key"] = wheelhouse.target_key(target)
    return target


@pytest.fixture
def index(tmp_path, monkeypatch):
    """A local directory pip reads instead of any index: pure wheels, one cp313 binary wheel, one sdist that
    compiles (no wheel at all), and the wheels its build needs."""
    links = tmp_path / "links"
    links.mkdir()
    _wheel(links, "app", "1.0", ['timeout-shim; python_full_version < "3.11.3"', "fast>=1", "cext==1.0"])
    _wheel(links, "timeout-shim", "4.0")
    _wheel(links, "fast", "1.0", tag="cp313-cp313-manylinux_2_17_x86_64")
    _wheel(links, "fast", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    _wheel(links, "backend", "1.0")
    _wheel(links, "wheel", "0.45.0")
    pyproject = '[build-system]\nrequires = ["backend"]\nbuild-backend = "backend"\n'
    pkg_info = "Metadata-Version: 2.2\nName: cext\nVersion: 1.0\nRequires-Dist: timeout-shim\n"
    _sdist(links, "cext", "1.0", {"pyproject.toml": pyproject, "PKG-INFO": pkg_info, "cext.c": "int x;\n"})
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("app==1.0\n")
    return requirements


def test_wheelhouse_for_python_3_13_has_its_binary_wheels_and_leaves_the_compiled_sdist_to_a_server(index, tmp_path):
    dest = tmp_path / "wh"
    result = wheelhouse.Builder(_target("3.13.5"), index, dest).build()
    assert result["fast_path"] is False
    assert result["wheels"] == [
        "app-1.0-py3-none-any.whl",
        "fast-1.0-cp313-cp313-manylinux_2_17_x86_64.whl",
        "timeout_shim-4.0-py3-none-any.whl",  # cext's own requirement, read from its PKG-INFO
    ]
    assert result["server_builds"] == ["cext-1.0.tar.gz"]
    build = sorted(p.name for p in (dest / ".build").iterdir())
    assert build == ["backend-1.0-py3-none-any.whl", "cext-1.0.tar.gz", "wheel-0.45.0-py3-none-any.whl"]


def test_wheelhouse_for_python_3_11_2_follows_its_markers(index, tmp_path):
    (index.parent / "links" / "cext-1.0.tar.gz").unlink()
    _wheel(index.parent / "links", "cext", "1.0")
    index.write_text("app==1.0\n")
    result = wheelhouse.Builder(_target("3.11.2"), index, tmp_path / "a").build()
    assert "timeout_shim-4.0-py3-none-any.whl" in result["wheels"]  # python_full_version < "3.11.3" there
    assert "fast-1.0-cp311-cp311-manylinux_2_17_x86_64.whl" in result["wheels"]
    result = wheelhouse.Builder(_target("3.11.9"), index, tmp_path / "b").build()
    assert "timeout_shim-4.0-py3-none-any.whl" not in result["wheels"]
    assert result["server_builds"] == []


def test_a_package_with_no_wheel_and_no_sdist_is_refused_with_its_name_and_the_fix(index, tmp_path):
    index.write_text("fast==1.0\n")
    with pytest.raises(wheelhouse.WheelhouseError) as raised:
        wheelhouse.Builder(_target("3.12.3"), index, tmp_path / "wh").build()
    message = str(raised.value)
    assert message.startswith("fast==1.0: no wheel for cp3.12.3-cp312-")
    assert "Fix: pin a version of fast that supports this Python and platform" in message


def test_the_command_line_prints_the_result_and_exits_2_on_refusal(index, tmp_path, capsys):
    target = tmp_path / "target.json"
    target.write_text(json.dumps(_target("3.13.5")))
    dest = tmp_path / "wh"
    assert wheelhouse.main(["build", "--target", str(target), "--requirements", str(index), "--dest", str(dest)]) == 0
    assert json.loads(capsys.readouterr().out)["server_builds"] == ["cext-1.0.tar.gz"]
    index.write_text("nothing-like-this==1.0\n")
    assert wheelhouse.main(["build", "--target", str(target), "--requirements", str(index), "--dest", str(dest)]) == 2
    assert "nothing-like-this==1.0: no wheel for" in capsys.readouterr().err


# --- requirements with hashes --------------------------------------------------------------------------------


def test_hashes_are_read_across_continuation_lines_and_left_out_for_the_servers():
    text = (
        "# pip-compile --generate-hashes\n"
        "django==5.2.1 \\\n"
        "    --hash=sha256:AA11 \\\n"
        "    --hash=sha256:bb22\n"
        "    # via -r requirements.in\n"
        "Foo_Bar==1.0 --hash sha256:cc33  # a comment\n"
        "--index-url https://example.invalid/simple\n"
    )
    assert wheelhouse.requirement_hashes(text) == {
        "django": {("sha256", "aa11"), ("sha256", "bb22")},
        "foo-bar": {("sha256", "cc33")},
    }
    assert wheelhouse.without_hashes(text) == (
        "django==5.2.1\nFoo_Bar==1.0\n--index-url https://example.invalid/simple\n"
    )
    assert wheelhouse.requirement_hashes("django==5.2.1\n") == {}


def _sha256(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_hashed_requirements_are_checked_and_the_servers_get_them_without_hashes(index, tmp_path):
    links = index.parent / "links"
    pinned = {
        "app==1.0": links / "app-1.0-py3-none-any.whl",
        "fast==1.0": links / "fast-1.0-cp313-cp313-manylinux_2_17_x86_64.whl",
        "timeout-shim==4.0": links / "timeout_shim-4.0-py3-none-any.whl",
        "cext==1.0": links / "cext-1.0.tar.gz",
    }
    lines = [f"{req} \\\n    --hash=sha256:{_sha256(path)}" for req, path in pinned.items()]
    # fast also has a cp311 wheel: a second hash, as pip-compile writes one per file.
    lines[1] += f" \\\n    --hash=sha256:{_sha256(links / 'fast-1.0-cp311-cp311-manylinux_2_17_x86_64.whl')}"
    index.write_text("\n".join(lines) + "\n")
    dest = tmp_path / "wh"
    result = wheelhouse.Builder(_target("3.13.5"), index, dest).build()
    assert result["server_builds"] == ["cext-1.0.tar.gz"]
    assert "fast-1.0-cp313-cp313-manylinux_2_17_x86_64.whl" in result["wheels"]
    assert (dest / "requirements.txt").read_text() == "app==1.0\nfast==1.0\ntimeout-shim==4.0\ncext==1.0\n"
    assert "--hash" in index.read_text()  # the project's own file is left as it was


@pytest.mark.parametrize("tampered", ["fast", "cext"])
def test_a_file_that_does_not_match_its_hash_is_refused(index, tmp_path, tampered):
    links = index.parent / "links"
    files = {
        "app": "app-1.0-py3-none-any.whl",
        "fast": "fast-1.0-cp313-cp313-manylinux_2_17_x86_64.whl",
        "timeout-shim": "timeout_shim-4.0-py3-none-any.whl",
        "cext": "cext-1.0.tar.gz",
    }
    versions = {"app": "1.0", "fast": "1.0", "timeout-shim": "4.0", "cext": "1.0"}
    digest = {name: ("0" * 64 if name == tampered else _sha256(links / file)) for name, file in files.items()}
    index.write_text("".join(f"{n}=={versions[n]} --hash=sha256:{digest[n]}\n" for n in files))
    with pytest.raises(wheelhouse.WheelhouseError) as raised:
        wheelhouse.Builder(_target("3.13.5"), index, tmp_path / "wh").build()
    message = str(raised.value)
    assert message.startswith(f"{files[tampered]} does not match any hash the requirements give for {tampered}")
    assert f"got sha256:{_sha256(links / files[tampered])}" in message


def test_hashed_requirements_with_an_extra_one_on_the_controllers_own_target(index, tmp_path):
    """pip wheel (the fast path) refuses a requirement without a hash beside hashed ones, as
    code_sync_extra_requirements adds them: hashed requirements take the target's way here too."""
    links = index.parent / "links"
    own = wheelhouse.current_target()
    tag = f"{own['abi']}-{own['abi']}-manylinux_2_17_x86_64"
    _wheel(links, "fast", "1.0", tag=tag)
    pinned = {"app==1.0": "app-1.0-py3-none-any.whl", "fast==1.0": f"fast-1.0-{tag}.whl"}
    lines = [f"{req} --hash=sha256:{_sha256(links / name)}" for req, name in pinned.items()]
    index.write_text(
        "\n".join(lines)
        + "\ntimeout-shim==4.0 --hash=sha256:"
        + _sha256(links / "timeout_shim-4.0-py3-none-any.whl")
        + "\ncext==1.0 --hash=sha256:"
        + _sha256(links / "cext-1.0.tar.gz")
        + "\n# extra\nbackend==1.0\n"
    )
    dest = tmp_path / "wh"
    result = wheelhouse.Builder(own, index, dest).build()
    assert result["fast_path"] is False
    assert result["server_builds"] == ["cext-1.0.tar.gz"]
    assert "backend-1.0-py3-none-any.whl" in result["wheels"]
    assert "--hash" not in (dest / "requirements.txt").read_text()
    assert "backend==1.0" in (dest / "requirements.txt").read_text()
