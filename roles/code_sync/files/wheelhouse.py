"""Wheels for a server's interpreter, built on the controller.

Used by the greenlight.django.code_sync role::

    wheelhouse.py target
        Print JSON describing the running interpreter: its key (what a
        wheelhouse is cached by), Python full version, implementation, ABI,
        machine, libc and its version, the platform tags its wheels may carry
        and the PEP 508 marker environment. Run on each server with the
        Python that builds its virtualenvs.

    wheelhouse.py build --target FILE --requirements FILE --dest DIR
        Fill DIR with wheels that install the requirements on TARGET (the
        JSON printed by ``target`` on a server). When TARGET is the running
        interpreter's own, ``pip wheel`` does it as it always did. Otherwise
        the requirements are resolved with pip for TARGET's tags and
        Requires-Python, with environment markers evaluated in TARGET's
        marker environment (pip evaluates them for the interpreter it runs
        in, so this script runs pip with that environment in place): binary
        wheels for TARGET are downloaded; a package with no such wheel has its
        sdist downloaded; a pure-Python sdist is built to a wheel here; an
        sdist that compiles goes to DIR/.build with the wheels of its build
        requirements, to be built on a server of TARGET (``pip wheel
        --no-index --find-links DIR/.build``). Prints JSON {"fast_path",
        "wheels", "server_builds"}; exits 2 with the package and the fix on
        stderr when a package cannot be had for TARGET.

        Requirements with ``--hash`` options (pip-compile
        --generate-hashes, uv export): every wheel and sdist downloaded for
        a package they give hashes for must match one of them, or the build
        stops. DIR/requirements.txt, what the servers install, is then
        written without the hashes: a wheel built from an sdist has a hash
        of its own, and every file in DIR was checked here.

    wheelhouse.py pip --markers JSON -- PIP-ARGS...
        Run pip with the marker environment JSON in place of the running
        interpreter's (internal: what ``build`` runs).

Standard library only (Python 3.9+); ``build`` needs pip on the controller.
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from pathlib import Path

# Files whose presence in an sdist means it compiles: it is built on a server of the target.
COMPILED_SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".pyx", ".rs", ".f90", ".go")
COMPILED_NAMES = ("Cargo.toml",)
IMPLEMENTATIONS = {"cpython": "cp", "pypy": "pp"}
DEFAULT_BUILD_REQUIRES = ["setuptools>=40.8.0", "wheel"]
# What building a driver from source needs on a Debian controller, and the pure-Python alternative.
BUILD_HINTS = {
    "mysqlclient": (
        "libmariadb-dev (or default-libmysqlclient-dev) pkg-config gcc python3-dev",
        "PyMySQL (pure Python; call pymysql.install_as_MySQLdb() in the settings)",
    ),
    "psycopg2": ("libpq-dev gcc python3-dev", "psycopg[binary] or psycopg2-binary"),
}


class WheelhouseError(Exception):
    """What cannot be built, and the fix: printed on stderr, exit status 2."""


# --- the target ------------------------------------------------------------------------------------------


def _full_version(info) -> str:
    version = f"{info.major}.{info.minor}.{info.micro}"
    if info.releaselevel != "final":
        version += info.releaselevel[0] + str(info.serial)
    return version


def marker_environment() -> dict:
    """PEP 508 environment of the running interpreter (what packaging's default_environment() returns)."""
    return {
        "implementation_name": sys.implementation.name,
        "implementation_version": _full_version(sys.implementation.version),
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }


def platform_tags(machine: str, libc: str, libc_version: str) -> list[str]:
    """Platform tags a wheel for this machine and libc may carry, the most specific first."""
    try:
        major, minor = (int(part) for part in libc_version.split(".")[:2])
    except ValueError:
        return []
    tags = []
    if libc == "glibc" and major == 2:
        # The legacy aliases: manylinux2014 is glibc 2.17 (every architecture), 2010 and 1 exist for x86 only.
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        for m in range(minor, 4, -1):
            tags.append(f"manylinux_2_{m}_{machine}")
            if m == 17 or (m in legacy and machine in ("x86_64", "i686")):
                tags.append(f"{legacy[m]}_{machine}")
    elif libc == "musl" and major == 1:
        tags.extend(f"musllinux_1_{m}_{machine}" for m in range(minor, -1, -1))
    return tags


def _libc() -> tuple[str, str]:
    name, version = platform.libc_ver()
    if name == "glibc":
        return "glibc", version
    if sys.platform.startswith("linux"):
        # musl: the dynamic loader names its version ("Version 1.2.4") on stderr.
        for loader in sorted(Path("/lib").glob("ld-musl-*.so.1")):
            out = subprocess.run([str(loader)], capture_output=True, text=True, check=False).stderr
            found = re.search(r"Version (\d+\.\d+)", out)
            if found:
                return "musl", found.group(1)
    return name or "", version or ""


def target_key(target: dict) -> str:
    """Name of a target's wheelhouse: interpreter, full version, ABI, machine and libc."""
    key = "-".join(
        [
            target["implementation"] + target["python_full_version"],
            target["abi"],
            target["machine"],
            target["libc"] + target["libc_version"],
        ]
    )
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)


def current_target() -> dict:
    impl = IMPLEMENTATIONS.get(sys.implementation.name, sys.implementation.name)
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    if impl == "cp":
        abi = f"cp{sys.version_info.major}{sys.version_info.minor}{'t' if free_threaded else ''}"
    else:
        abi = (sysconfig.get_config_var("SOABI") or "none").split("-")[0].replace(".", "_")
    machine = platform.machine()
    libc, libc_version = _libc()
    target = {
        "python_full_version": platform.python_version(),
        "implementation": impl,
        "abi": abi,
        "machine": machine,
        "libc": libc,
        "libc_version": libc_version,
        "platforms": platform_tags(machine, libc, libc_version),
        "markers": marker_environment(),
    }
    target["key"] = target_key(target)
    return target


def pip_target_options(target: dict) -> list[str]:
    """pip's options that pick wheels and check Requires-Python for the target rather than for pip's Python."""
    if not target["platforms"]:
        raise WheelhouseError(
            f"no wheel platform is known for {target['machine']} with {target['libc'] or 'an unknown libc'}"
            f" {target['libc_version']}: build the wheelhouse on a controller of the servers' platform"
        )
    options = ["--only-binary=:all:", "--python-version", target["python_full_version"]]
    options += ["--implementation", target["implementation"], "--abi", target["abi"]]
    for tag in target["platforms"]:
        options += ["--platform", tag]
    return options


# --- distributions ---------------------------------------------------------------------------------------


def canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not found:
        raise WheelhouseError(f"cannot read a package name in {requirement!r}")
    return canonical_name(found.group(1))


HASH_OPTION = re.compile(r"\s--hash[=\s]\s*(\w+):([0-9a-fA-F]+)")


def logical_lines(text: str) -> list[str]:
    """The lines of a requirements file, continuations joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            lines.append(line)
    if pending.strip():
        lines.append(pending.strip())
    return lines


def requirement_hashes(text: str) -> dict[str, set[tuple[str, str]]]:
    """name -> the (algorithm, hex digest) pairs its --hash options allow."""
    hashes: dict[str, set[tuple[str, str]]] = {}
    for line in logical_lines(text):
        found = HASH_OPTION.findall(" " + line)
        if found and not line.startswith("-"):
            hashes.setdefault(requirement_name(line), set()).update((a.lower(), h.lower()) for a, h in found)
    return hashes


def without_hashes(text: str) -> str:
    """The requirements file with its --hash options left out (one requirement per line)."""
    return "".join(HASH_OPTION.sub("", " " + line).strip() + "\n" for line in logical_lines(text))


def check_hashes(files: list[Path], hashes: dict[str, set[tuple[str, str]]]) -> None:
    """Refuse a downloaded wheel or sdist whose digest is not one its requirement allows."""
    for path in files:
        wheel = path.name.endswith(".whl")
        name = canonical_name(path.name.split("-")[0]) if wheel else sdist_name_version(path.name)[0]
        allowed = hashes.get(name)
        if not allowed:
            continue
        digests = {algorithm: hashlib.new(algorithm, path.read_bytes()).hexdigest() for algorithm, _digest in allowed}
        if not any(digests[algorithm] == digest for algorithm, digest in allowed):
            raise WheelhouseError(
                f"{path.name} does not match any hash the requirements give for {name}"
                f" (got sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}). The file the index serves is not"
                " the one the requirements were locked with. Fix: find out why; regenerate the hashes only if"
                " the new file is trusted."
            )


def sdist_name_version(filename: str) -> tuple[str, str]:
    stem = re.sub(r"\.(tar\.gz|tar\.bz2|tgz|zip)$", "", filename)
    name, _sep, version = stem.rpartition("-")
    return canonical_name(name), version


def is_pure_wheel(filename: str) -> bool:
    """True for a wheel that installs on any platform and interpreter of its Python major version."""
    tags = filename[: -len(".whl")].split("-")[-3:]
    return tags[1] == "none" and tags[2] == "any"


def _sdist_members(path: Path) -> dict[str, bytes | None]:
    """Member names of an sdist (contents read for PKG-INFO and pyproject.toml at its top)."""
    wanted = re.compile(r"^[^/]+/(PKG-INFO|pyproject\.toml)$")
    members: dict[str, bytes | None] = {}
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                members[name] = archive.read(name) if wanted.match(name) else None
    else:
        with tarfile.open(path) as archive:
            for member in archive.getmembers():
                data = None
                if wanted.match(member.name) and member.isfile():
                    handle = archive.extractfile(member)
                    data = handle.read() if handle else None
                members[member.name] = data
    return members


def sdist_compiles(members: dict) -> bool:
    return any(name.endswith(COMPILED_SUFFIXES) or name.rsplit("/", 1)[-1] in COMPILED_NAMES for name in members)


def sdist_top_file(members: dict, name: str) -> bytes | None:
    for member, data in members.items():
        if data is not None and member.count("/") == 1 and member.endswith("/" + name):
            return data
    return None


def build_requires(pyproject: bytes | None) -> list[str]:
    """The sdist's [build-system] requires (setuptools' defaults without one), plus wheel."""
    requires = None
    if pyproject is not None:
        try:
            import tomllib  # Python 3.11+
        except ImportError:  # pragma: no cover - older controllers read the list with a pattern
            found = re.search(r"^\s*requires\s*=\s*\[(.*?)\]", pyproject.decode(), re.S | re.M)
            requires = re.findall(r"[\"']([^\"']+)[\"']", found.group(1)) if found else None
        else:
            requires = tomllib.loads(pyproject.decode()).get("build-system", {}).get("requires")
    requires = list(requires) if requires is not None else list(DEFAULT_BUILD_REQUIRES)
    if not any(requirement_name(r) == "wheel" for r in requires):
        requires.append("wheel")
    return requires


def requires_dist(metadata: bytes | None) -> list[str]:
    """Requires-Dist of a PKG-INFO or METADATA (what a stand-in wheel declares while resolving)."""
    if not metadata:
        return []
    message = email.parser.BytesParser().parsebytes(metadata)
    return message.get_all("Requires-Dist") or []


def write_stand_in_wheel(directory: Path, name: str, version: str, requires: list[str]) -> Path:
    """A wheel with no files, for pip to resolve a package that is built elsewhere."""
    dist = re.sub(r"[-.]+", "_", name)
    info = f"{dist}-{version}.dist-info"
    path = directory / f"{dist}-{version}-py3-none-any.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    wheel = "Wheel-Version: 1.0\nGenerator: greenlight.django\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{info}/METADATA", metadata)
        archive.writestr(f"{info}/WHEEL", wheel)
        archive.writestr(f"{info}/RECORD", f"{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n")
    return path


# --- pip ---------------------------------------------------------------------------------------------------


def use_marker_environment(markers: dict) -> None:
    """Make pip evaluate every environment marker in MARKERS (pip's vendored packaging reads its default
    environment at each evaluation; pip's --python-version changes tags and Requires-Python, not markers)."""
    from pip._vendor.packaging import markers as pip_markers

    pip_markers.default_environment = lambda: dict(markers)


def run_pip_with_markers(markers: dict, pip_args: list[str]) -> int:
    """Run pip in this process with the target's marker environment; sdists pip fetches are kept in
    $GREENLIGHT_SDIST_CAPTURE even when their metadata cannot be prepared here (psycopg2 without
    pg_config)."""
    from pip._internal.cli.main import main as pip_main
    from pip._internal.operations import prepare

    use_marker_environment(markers)
    capture = os.environ.get("GREENLIGHT_SDIST_CAPTURE")
    if capture:
        unpack_url = prepare.unpack_url

        def capturing_unpack_url(*args, **kwargs):
            result = unpack_url(*args, **kwargs)
            path = getattr(result, "path", None)
            if path and not path.endswith(".whl") and os.path.isfile(path):
                shutil.copy(path, capture)
            return result

        prepare.unpack_url = capturing_unpack_url
    return pip_main(pip_args)


class Builder:
    def __init__(self, target: dict, requirements: Path, dest: Path, python: str = sys.executable):
        self.target = target
        self.requirements = requirements
        self.dest = dest
        self.python = python
        self.log: list[str] = []
        self.hashes: dict[str, set[tuple[str, str]]] = {}  # from the requirements' --hash options

    def pip(self, args: list[str], capture: Path | None = None) -> subprocess.CompletedProcess:
        command = [self.python, os.path.abspath(__file__), "pip", "--markers", json.dumps(self.target["markers"])]
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        if capture:
            env["GREENLIGHT_SDIST_CAPTURE"] = str(capture)
        result = subprocess.run(command + ["--"] + args, capture_output=True, text=True, env=env, check=False)
        self.log.append(result.stdout + result.stderr)
        return result

    def plain_pip(self, args: list[str]) -> subprocess.CompletedProcess:
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        result = subprocess.run([self.python, "-m", "pip"] + args, capture_output=True, text=True, env=env, check=False)
        self.log.append(result.stdout + result.stderr)
        return result

    def build(self) -> dict:
        self.dest.mkdir(parents=True, exist_ok=True)
        text = self.requirements.read_text()
        self.hashes = requirement_hashes(text)
        # Hashed requirements always take the target's way, which checks them the same way for every target (pip
        # wheel would refuse an extra requirement without a hash, and a server could not install what it built).
        if self.target["key"] == current_target()["key"] and not self.hashes:
            result = self.plain_pip(["wheel", "--requirement", str(self.requirements), "--wheel-dir", str(self.dest)])
            if result.returncode != 0:
                raise WheelhouseError(build_failure(result))
            return {"fast_path": True, "wheels": _wheels(self.dest), "server_builds": []}
        with tempfile.TemporaryDirectory(prefix="greenlight-wheelhouse-") as tmp:
            if self.hashes:
                self.requirements = Path(tmp) / "requirements.txt"
                self.requirements.write_text(without_hashes(text))
            built = self._build_for_target(Path(tmp))
        if self.hashes:
            (self.dest / "requirements.txt").write_text(without_hashes(text))
        return built

    def _build_for_target(self, tmp: Path) -> dict:
        stand_ins, downloads, sdists, built = (tmp / d for d in ("stand-ins", "downloads", "sdists", "built"))
        for directory in (stand_ins, downloads, sdists, built):
            directory.mkdir()
        options = pip_target_options(self.target)
        server_builds: dict[str, Path] = {}  # name -> sdist
        stand_in_files: set[str] = set()
        seen: set[str] = set()
        while True:
            result = self.pip(
                ["download", *options, "--find-links", str(stand_ins), "--requirement", str(self.requirements)]
                + ["--dest", str(downloads)]
            )
            if result.returncode == 0:
                break
            missing = re.findall(r"No matching distribution found for (\S+)", result.stdout + result.stderr)
            if not missing:
                raise WheelhouseError(f"pip cannot resolve the requirements for {self.target['key']}:\n{_tail(result)}")
            requirement = missing[-1]
            name = requirement_name(requirement)
            if name in seen:
                raise WheelhouseError(f"pip could not resolve {requirement} for {self.target['key']}:\n{_tail(result)}")
            seen.add(name)
            sdist = self._fetch_sdist(requirement, sdists)
            wheel = self._build_pure(sdist, built)
            if wheel is not None:
                shutil.copy(wheel, stand_ins)  # a real wheel: pip resolves its dependencies from it
                continue
            members = _sdist_members(sdist)
            version = sdist_name_version(sdist.name)[1]
            requires = requires_dist(sdist_top_file(members, "PKG-INFO"))
            stand_in_files.add(write_stand_in_wheel(stand_ins, name, version, requires).name)
            server_builds[name] = sdist
        local = {path.name for path in stand_ins.iterdir()}  # built here: checked through their sdists
        check_hashes([p for p in downloads.iterdir() if p.name not in local] + list(sdists.iterdir()), self.hashes)
        for path in downloads.iterdir():
            if path.name in stand_in_files:
                continue
            if not path.name.endswith(".whl"):
                raise WheelhouseError(f"pip left {path.name}, not a wheel, for {self.target['key']}")
            shutil.copy(path, self.dest / path.name)
        if server_builds:
            self._prepare_server_builds(server_builds)
        return {
            "fast_path": False,
            "wheels": _wheels(self.dest),
            "server_builds": sorted(p.name for p in server_builds.values()),
        }

    def _fetch_sdist(self, requirement: str, sdists: Path) -> Path:
        before = set(sdists.iterdir())
        result = self.pip(
            ["download", "--no-deps", "--no-binary=:all:", "--python-version", self.target["python_full_version"]]
            + ["--dest", str(sdists), requirement],
            capture=sdists,
        )
        new = sorted(set(sdists.iterdir()) - before)
        if not new:
            raise WheelhouseError(
                f"{requirement}: no wheel for {self.target['key']} (Python {self.target['python_full_version']},"
                f" {self.target['machine']}, {self.target['libc']} {self.target['libc_version']}) and no source"
                f" distribution either. Fix: pin a version of {requirement_name(requirement)} that supports this"
                f" Python and platform, or run the servers on a Python it supports.\n{_tail(result)}"
            )
        return new[0]

    def _build_pure(self, sdist: Path, built: Path) -> Path | None:
        """Build a pure-Python sdist to a wheel here; None for an sdist that compiles."""
        if sdist_compiles(_sdist_members(sdist)):
            return None
        out = Path(tempfile.mkdtemp(dir=built))
        result = self.plain_pip(["wheel", "--no-deps", "--wheel-dir", str(out), str(sdist)])
        wheels = list(out.glob("*.whl"))
        if result.returncode != 0 or len(wheels) != 1 or not is_pure_wheel(wheels[0].name):
            return None
        shutil.copy(wheels[0], self.dest / wheels[0].name)
        return wheels[0]

    def _prepare_server_builds(self, server_builds: dict[str, Path]) -> None:
        build_dir = self.dest / ".build"
        build_dir.mkdir(exist_ok=True)
        requires: list[str] = []
        for sdist in server_builds.values():
            shutil.copy(sdist, build_dir / sdist.name)
            for requirement in build_requires(sdist_top_file(_sdist_members(sdist), "pyproject.toml")):
                if requirement not in requires:
                    requires.append(requirement)
        result = self.pip(["download", *pip_target_options(self.target), "--dest", str(build_dir)] + requires)
        if result.returncode != 0:
            raise WheelhouseError(
                f"the build requirements of {', '.join(sorted(server_builds))} ({' '.join(requires)}) have no wheels"
                f" for {self.target['key']}:\n{_tail(result)}"
            )


def build_failure(result: subprocess.CompletedProcess) -> str:
    """pip wheel's failure on the controller (the servers' Python is the controller's), with the fix when a
    package that compiles could not be built here."""
    output = result.stdout + result.stderr
    failed = sorted(
        {canonical_name(name) for name in re.findall(r"Failed (?:building wheel for|to build) ([\w.-]+)", output)}
    )
    collected = re.findall(r"^Collecting ([A-Za-z0-9][A-Za-z0-9._-]*)", output, re.M)
    if not failed and collected and "did not run successfully" in output:
        failed = [requirement_name(collected[-1])]  # its build requirements or metadata could not be prepared
    if not failed:
        return f"pip wheel failed:\n{_tail(result)}"
    packages = " ".join(BUILD_HINTS[name][0] for name in failed if name in BUILD_HINTS)
    alternatives = "; ".join(f"{name}: {BUILD_HINTS[name][1]}" for name in failed if name in BUILD_HINTS)
    return (
        f"{', '.join(failed)} has no wheel for this Python and building it from source on this controller (whose "
        "Python the servers run, so it is built here) failed. Fix: install what the build needs on the controller"
        f" ({'apt-get install ' + packages if packages else 'its headers, libraries and a compiler'}), or build"
        " the wheelhouse on a machine that has them and matches the servers"
        f"{', or use a package with wheels (' + alternatives + ')' if alternatives else ''}.\n{_tail(result)}"
    )


def _wheels(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.whl"))


def _tail(result: subprocess.CompletedProcess, lines: int = 15) -> str:
    text = (result.stdout + result.stderr).strip().splitlines()
    return "\n".join(line for line in text[-lines:] if "is ignored: it is neither a file nor a directory" not in line)


# --- command line ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("target")
    build = sub.add_parser("build")
    build.add_argument("--target", required=True, type=Path)
    build.add_argument("--requirements", required=True, type=Path)
    build.add_argument("--dest", required=True, type=Path)
    pip = sub.add_parser("pip")
    pip.add_argument("--markers", required=True)
    pip.add_argument("pip_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "target":
        print(json.dumps(current_target(), sort_keys=True))
        return 0
    if args.command == "pip":
        pip_args = args.pip_args[1:] if args.pip_args[:1] == ["--"] else args.pip_args
        return run_pip_with_markers(json.loads(args.markers), pip_args)
    target = json.loads(args.target.read_text())
    try:
        print(json.dumps(Builder(target, args.requirements, args.dest).build(), sort_keys=True))
    except WheelhouseError as error:
        print(f"code_sync: cannot build the wheelhouse for {target.get('key')}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
