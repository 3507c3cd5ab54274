#!/usr/bin/python
# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later


DOCUMENTATION = r"""
---
module: instance
short_description: Stop, start or restart an application's gunicorn instance and wait until it serves, in one call
version_added: "1.1.0"
description:
  - Brings a systemd unit of the application (an instance of C(greenlight-<app>@.service), such as
    C(greenlight-shop@current.service)) to O(state) in one module call, with what a deploy does around it on the
    same host - the maintenance page, the pointer the instance runs from, the health probe.
  - In this order - the maintenance page on (O(maintenance.state=on) - the flag file is created and
    O(maintenance.reload) is reloaded, which closes nginx's idle connections to gunicorn), the pointer swapped
    (O(pointer), atomic like M(greenlight.django.release)), C(systemctl daemon-reload) if needed
    (O(daemon_reload)), the unit enabled or disabled (O(enabled)), the unit started, stopped, restarted or
    reloaded, the health URL probed until it answers 2xx O(health.successes) times in a row (O(health)), and last
    the maintenance page off (O(maintenance.state=off)), only once the instance serves.
  - An instance that was running already and that a start leaves alone needs one healthy answer, not a series.
  - Whatever fails, the message says which step and ends with the unit's last O(journal_lines) journal lines;
    the result still says what was done (RV(actions)) and what the pointer referenced before (RV(pointer_before)),
    so that a caller can put things back.
  - The application's other processes of the instance (O(processes) - Celery workers, a scheduler) follow the
    unit - stopped in the same C(systemctl stop), so that the slowest graceful stop alone sets how long it
    takes, and started or restarted with it.
  - Used by the M(greenlight.django.wsgi) role for every start, stop, restart and reload, and by the deploy
    playbooks for their downtime window (maintenance page on and stop as one step; switch, start, health and
    maintenance page off as another).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Nothing is started, stopped, probed or written; the result says what would change.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  unit:
    description:
      - The systemd unit, with its suffix, for example C(greenlight-shop@current.service).
    type: str
    required: true
  state:
    description:
      - V(started) starts the unit unless it runs; V(stopped) stops it (gracefully - gunicorn finishes its
        requests on SIGTERM); V(restarted) stops and starts it; V(reloaded) sends it its reload signal (a unit
        that does not run is started instead).
    type: str
    required: true
    choices: [started, stopped, restarted, reloaded]
  enabled:
    description:
      - Whether the unit (and each of O(processes)) starts at boot. Unset - left as it is.
    type: bool
  processes:
    description:
      - Units of the application's other processes that run from the same pointer, for example
        C(greenlight-shop-worker-1@current.service). They go with O(state) - V(stopped) stops them in the same
        C(systemctl stop) as the unit (all at once, each within its own stop timeout); V(started) starts those
        that do not run, in the same C(systemctl start) as the unit; V(restarted) restarts them with it;
        V(reloaded) restarts them (they have no reload). They have no health probe - started means running.
    type: list
    elements: str
    default: []
  daemon_reload:
    description:
      - Run C(systemctl daemon-reload) before acting, so that systemd reads unit files changed since - but only
        when systemd needs it, which one C(systemctl show) of the unit tells. The reload is done when systemd
        reports the unit changed on disk (its unit file, its template's file or one of their drop-ins -
        C(NeedDaemonReload=yes)) or not loaded (C(LoadState) other than C(loaded), for example a unit file
        written for the first time), when a drop-in file is on disk that systemd does not list for the unit yet
        (systemd before 257, as in Debian 12, does not report a drop-in directory created since the last
        reload), or when C(systemctl show) fails. RV(daemon_reloaded) says whether it was done.
      - A reload takes a few tenths of a second on a busy host, inside the downtime window of a deploy.
    type: bool
    default: false
  pointer:
    description:
      - Before the unit acts, point C(<app_root>/<name>) at C(<app_root>/releases/<release>) - the release the
        instance then runs. A release without its C(REVISION) file is refused, as by M(greenlight.django.release).
    type: dict
    suboptions:
      app_root:
        description: The application's root directory, the one with C(releases/) and the pointers.
        type: path
        required: true
      name:
        description: Name of the pointer, for example C(current).
        type: str
        required: true
      release:
        description: Id (directory name under C(<app_root>/releases)) of the release to point at.
        type: str
        required: true
  health:
    description:
      - After a start, restart or reload, probe O(health.url) until it answers 2xx O(health.successes) times in a
        row, within O(health.timeout) seconds. Ignored with O(state=stopped). Unset - no probe.
    type: dict
    suboptions:
      url:
        description:
          - C(http://) or C(https://) URL to probe. With O(health.unix_socket), the path and (unless
            O(health.host)) the Host header.
        type: str
        required: true
      host:
        description: Host header to send (a name the application accepts, in C(ALLOWED_HOSTS)). Empty - from the URL.
        type: str
        default: ""
      unix_socket:
        description: Send the requests to the server listening on this unix socket. Empty - to the URL's address.
        type: str
        default: ""
      successes:
        description: Consecutive 2xx answers that count as serving.
        type: int
        default: 3
      timeout:
        description: Seconds to wait for them.
        type: float
        default: 60
      interval:
        description: Seconds between two probes.
        type: float
        default: 1
  maintenance:
    description:
      - The maintenance page's flag file (nginx shows the page while it exists, see the
        M(greenlight.django.traffic) role). V(on) creates it before the unit acts; V(off) removes it once the
        unit serves. Unset - left as it is.
    type: dict
    suboptions:
      flag:
        description: Path of the flag file.
        type: path
        required: true
      state:
        description: Whether the maintenance page is shown.
        type: str
        required: true
        choices: ["on", "off"]
      reload:
        description:
          - Unit reloaded after the flag is created (when it runs), so that nginx closes its idle keep-alive
            connections to gunicorn and a graceful stop need not wait for them. Empty - none.
        type: str
        default: nginx
  journal_lines:
    description: Lines of the unit's journal that a failure message ends with.
    type: int
    default: 30
notes:
  - Run it as root (C(become)).
seealso:
  - module: greenlight.django.release
author:
  - greenlight.django contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Show the maintenance page and stop the serving instance (the window opens)
  greenlight.django.instance:
    unit: greenlight-shop@current.service
    state: stopped
    maintenance:
      flag: /etc/nginx/greenlight/shop/maintenance.on
      state: "on"
  become: true

- name: Switch to the new release, start it, wait until it serves, hide the maintenance page (the window closes)
  greenlight.django.instance:
    unit: greenlight-shop@current.service
    state: started
    enabled: true
    daemon_reload: true
    pointer:
      app_root: /srv/shop
      name: current
      release: 20260101T120000Z-3f2c1a9d8e7b
    health:
      url: http://127.0.0.1/healthz
      unix_socket: /run/greenlight-shop/current.sock
      host: shop.example.com
    maintenance:
      flag: /etc/nginx/greenlight/shop/maintenance.on
      state: "off"
  become: true
"""

RETURN = r"""
actions:
  description: What was done (would be, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["maintenance page on", "nginx reloaded", "stopped", "stopped greenlight-shop-worker-1@current.service"]
was_active:
  description: Whether the unit ran before the module acted.
  returned: always
  type: bool
  sample: true
processes:
  description: Each unit of O(processes) and whether it runs (C(active), C(inactive), ...) once the module acted.
  returned: always
  type: dict
  sample: {greenlight-shop-worker-1@current.service: active}
pointer_before:
  description: With O(pointer), the release the pointer referenced before (empty - none).
  returned: always
  type: str
  sample: 20251231T090000Z-0a1b2c3d4e5f
daemon_reloaded:
  description:
    - Whether C(systemctl daemon-reload) ran (never without O(daemon_reload), never in check mode).
  returned: always
  type: bool
  sample: false
health:
  description: With O(health) and a state other than V(stopped), what the probe saw.
  returned: when probed
  type: dict
  sample: {url: "http://127.0.0.1/healthz", unix_socket: /run/greenlight-shop/current.sock, probes: 4, streak: 3,
           last: "HTTP 200 ok"}
step:
  description: On failure, the step that failed (V(maintenance), V(pointer), V(systemd), V(health)).
  returned: failure
  type: str
  sample: health
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.greenlight.django.plugins.module_utils._health import wait  # noqa: E402
from ansible_collections.greenlight.django.plugins.module_utils._pointer import (  # noqa: E402
    PointerError,
    point,
)

SYSTEMCTL_VERBS = {"started": "start", "stopped": "stop", "restarted": "restart", "reloaded": "reload"}

# Whether systemd must reload its units first: `systemctl show --property=NeedDaemonReload,LoadState` of the
# instance, checked on Debian 12 (systemd 252) and Debian 13 (systemd 257) with a running instance of a
# template: editing the template, one of its drop-ins, or removing a drop-in gives NeedDaemonReload=yes on
# both; a stopped instance is dropped from memory and loaded afresh, so an edit while stopped reports "no" and
# needs no reload; a template never loaded and just written gives LoadState=loaded without any reload. But a
# drop-in in a directory created since the last reload (<template>.service.d, <unit>.service.d, prefix.d)
# gives NeedDaemonReload=no on 252 (fixed in systemd 257), so the drop-in directories are looked at too: a
# .conf file there that systemd does not list in DropInPaths needs a reload. In an idle container the show
# took about 10 ms, a daemon-reload about 0.1 s (more on a host with more units).
#
# The system manager's unit search path (systemd.unit(5)), where drop-in directories can be.
UNIT_DIRS = (
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
    "/run/systemd/generator.late",
)


def argument_spec():
    return dict(
        unit=dict(type="str", required=True),
        state=dict(type="str", required=True, choices=list(SYSTEMCTL_VERBS)),
        enabled=dict(type="bool"),
        processes=dict(type="list", elements="str", default=[]),
        daemon_reload=dict(type="bool", default=False),
        pointer=dict(
            type="dict",
            options=dict(
                app_root=dict(type="path", required=True),
                name=dict(type="str", required=True),
                release=dict(type="str", required=True),
            ),
        ),
        health=dict(
            type="dict",
            options=dict(
                url=dict(type="str", required=True),
                host=dict(type="str", default=""),
                unix_socket=dict(type="str", default=""),
                successes=dict(type="int", default=3),
                timeout=dict(type="float", default=60),
                interval=dict(type="float", default=1),
            ),
        ),
        maintenance=dict(
            type="dict",
            options=dict(
                flag=dict(type="path", required=True),
                state=dict(type="str", required=True, choices=["on", "off"]),
                reload=dict(type="str", default="nginx"),
            ),
        ),
        journal_lines=dict(type="int", default=30),
    )


def input_errors(params):
    """What is wrong with the arguments, before anything changes."""
    errors = []
    health = params["health"]
    if health:
        if not health["url"].startswith(("http://", "https://")):
            errors.append(f"health.url must be an http:// or https:// URL (got {health['url']!r})")
        if health["successes"] < 1 or health["timeout"] <= 0 or health["interval"] <= 0:
            errors.append("health.successes must be at least 1, health.timeout and health.interval more than 0")
    if params["journal_lines"] < 0:
        errors.append("journal_lines must be 0 or more")
    return errors


def dropin_dirs(unit):
    """Names of the directories whose drop-ins apply to the unit, as systemd looks for them.

    greenlight-shop@current.service: greenlight-shop@current.service.d, greenlight-shop@.service.d,
    greenlight-.service.d (the name's prefixes up to each dash, before any @) and service.d.
    """
    name, dot, suffix = unit.rpartition(".")
    if not dot:
        return [f"{unit}.d"]
    names = [f"{unit}.d"]
    prefix, at, _instance = name.partition("@")
    if at:
        names.append(f"{prefix}@.{suffix}.d")
    dash = prefix.rfind("-")
    while dash > 0:
        names.append(f"{prefix[: dash + 1]}.{suffix}.d")
        dash = prefix.rfind("-", 0, dash)
    names.append(f"{suffix}.d")
    return names


def unlisted_dropins(unit, listed):
    """Drop-in files on disk for the unit that systemd does not list (its DropInPaths) - it has not read them.

    systemd lists one file per name (the first in the search path wins) and leaves out masked ones (linked to
    /dev/null), so a name counts as known when systemd lists it or some file of that name is masked.
    """
    known = {os.path.basename(path) for path in listed}
    found = {}
    for base in UNIT_DIRS:
        for name in dropin_dirs(unit):
            directory = os.path.join(base, name)
            try:
                entries = os.listdir(directory)
            except OSError:
                continue
            for entry in entries:
                if not entry.endswith(".conf"):
                    continue
                path = os.path.join(directory, entry)
                if os.path.realpath(path) == os.devnull:
                    known.add(entry)
                else:
                    found.setdefault(entry, path)
    return sorted(path for entry, path in found.items() if entry not in known)


# What systemctl is-active calls running (a stop of these is needed, a start is not).
RUNNING = ("active", "activating", "reloading", "deactivating")
PAST = {"start": "started", "stop": "stopped", "restart": "restarted", "reload": "reloaded"}


def states_by_unit(units, out):
    """systemctl is-active's answer for several units (one line each, in order), as unit -> state."""
    lines = out.splitlines()
    return {unit: (lines[index].strip() if index < len(lines) else "unknown") for index, unit in enumerate(units)}


def unit_plan(unit, state, unit_active, processes, running):
    """The systemctl calls (verb, units) that bring the unit and its processes to the state, in order.

    A stop stops whatever runs in one call (systemd stops them side by side: the slowest graceful stop sets the
    time); a start starts whatever does not run in one call; a restart restarts all in one call; a reload
    reloads the unit (starts it when it does not run) and restarts the processes, which have no reload.
    """
    idle = [name for name in processes if name not in running]
    if state == "stopped":
        units = ([unit] if unit_active else []) + [name for name in processes if name in running]
        return [("stop", units)] if units else []
    if state == "started":
        units = ([] if unit_active else [unit]) + idle
        return [("start", units)] if units else []
    if state == "restarted":
        return [("restart", [unit, *processes])]
    plan = [("reload" if unit_active else "start", [unit])]
    return plan + ([("restart", list(processes))] if processes else [])


class Instance:
    """One call's work on the unit; each step appends to actions, a failure ends the module."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.unit = module.params["unit"]
        self.actions = []
        self.result = {
            "changed": False,
            "actions": self.actions,
            "was_active": False,
            "pointer_before": "",
            "daemon_reloaded": False,
            "processes": {},
        }
        self.systemctl = module.get_bin_path("systemctl", required=True)

    def fail(self, step, problem):
        lines = self.params["journal_lines"]
        journal = ""
        if lines:
            units = [self.unit, *self.params["processes"]]
            _rc, out, _err = self.module.run_command(
                [self.module.get_bin_path("journalctl") or "journalctl"]
                + [arg for unit in units for arg in ("--unit", unit)]
                + ["--lines", str(lines), "--no-pager"]
            )
            journal = f"\nLast {lines} journal lines of {', '.join(units)}:\n{out.rstrip()}"
        self.module.fail_json(msg=f"{problem}{journal}", step=step, **self.result)

    def done(self, action):
        self.actions.append(action)
        self.result["changed"] = True

    def run(self, step, *args, problem=None):
        rc, out, err = self.module.run_command([self.systemctl, *args])
        if rc != 0:
            problem = problem or f"{self.unit} could not be {self.params['state']}"
            self.fail(step, f"{problem}: systemctl {' '.join(args)} failed: {(err or out).strip()}")
        return out

    def query(self, verb, unit=None):
        _rc, out, _err = self.module.run_command([self.systemctl, verb, unit or self.unit])
        return out.strip()

    def process_states(self):
        """What systemd says of each of the processes (active, inactive, failed, ...), in one call."""
        processes = self.params["processes"]
        if not processes:
            return {}
        _rc, out, _err = self.module.run_command([self.systemctl, "is-active", *processes])
        return states_by_unit(processes, out)

    def needs_daemon_reload(self, unit):
        """Whether systemd has to reload its units before the unit acts (see UNIT_DIRS); a failed question: yes."""
        rc, out, _err = self.module.run_command(
            [self.systemctl, "show", "--property=NeedDaemonReload,LoadState,DropInPaths", unit]
        )
        if rc != 0:
            return True
        shown = dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)
        if shown.get("NeedDaemonReload") != "no" or shown.get("LoadState") != "loaded":
            return True
        return bool(unlisted_dropins(unit, shown.get("DropInPaths", "").split()))

    def daemon_reload(self):
        if not self.params["daemon_reload"] or self.module.check_mode:
            return
        if not any(self.needs_daemon_reload(unit) for unit in [self.unit, *self.params["processes"]]):
            return
        self.run("systemd", "daemon-reload")
        self.result["daemon_reloaded"] = True

    def maintenance(self, wanted):
        given = self.params["maintenance"]
        if not given or given["state"] != wanted:
            return
        flag = given["flag"]
        if wanted == "on":
            if not os.path.exists(flag):
                if not self.module.check_mode:
                    try:
                        with open(flag, "w", encoding="utf-8") as handle:
                            handle.write("on\n")
                        os.chmod(flag, 0o644)
                    except OSError as exc:
                        self.fail(
                            "maintenance",
                            f"the maintenance page could not be switched on: {flag}: "
                            f"{exc.strerror}. Install the site first (greenlight.django.traffic).",
                        )
                self.done("maintenance page on")
            reload_unit = given["reload"]
            if reload_unit and not self.module.check_mode:
                _rc, active, _err = self.module.run_command([self.systemctl, "is-active", reload_unit])
                if active.strip() == "active":
                    self.run(
                        "maintenance",
                        "reload",
                        reload_unit,
                        problem=f"the maintenance page is on, but {reload_unit} could not be reloaded",
                    )
                    self.actions.append(f"{reload_unit} reloaded")
        elif os.path.lexists(flag):
            if not self.module.check_mode:
                try:
                    os.unlink(flag)
                except OSError as exc:
                    self.fail("maintenance", f"the maintenance page could not be switched off: {flag}: {exc.strerror}.")
            self.done("maintenance page off")

    def pointer(self):
        given = self.params["pointer"]
        if not given:
            return
        try:
            changed, before = point(given["app_root"], given["name"], given["release"], self.module.check_mode)
        except PointerError as exc:
            self.fail("pointer", f"{self.unit} was not {self.params['state']}: {exc}")
        self.result["pointer_before"] = before
        if changed:
            self.done(f"{given['name']} points at {given['release']}")

    def enable(self):
        wanted = self.params["enabled"]
        if wanted is None:
            return
        is_enabled = self.query("is-enabled") in ("enabled", "enabled-runtime")
        if is_enabled != wanted:
            if not self.module.check_mode:
                self.run("systemd", "enable" if wanted else "disable", self.unit)
            self.done("enabled" if wanted else "disabled")
        others = [
            unit
            for unit in self.params["processes"]
            if (self.query("is-enabled", unit) in ("enabled", "enabled-runtime")) != wanted
        ]
        if others:
            if not self.module.check_mode:
                self.run("systemd", "enable" if wanted else "disable", *others)
            for unit in others:
                self.done(f"{'enabled' if wanted else 'disabled'} {unit}")

    def act(self):
        """Bring the unit and its processes to the state; whether the unit (re)started (health needs a series)."""
        state = self.params["state"]
        active = self.result["was_active"]
        running = self.process_states()
        processes = self.params["processes"]
        plan = unit_plan(self.unit, state, active, processes, [unit for unit in processes if running[unit] in RUNNING])
        for verb, units in plan:
            if not self.module.check_mode:
                self.run("systemd", verb, *units)
            for unit in units:
                past = PAST[verb]
                self.done(past if unit == self.unit else f"{past} {unit}")
        self.result["processes"] = running if self.module.check_mode else self.process_states()
        return any(self.unit in units for verb, units in plan if verb != "stop")

    def probe(self, acted):
        health = self.params["health"]
        if not health or self.params["state"] == "stopped" or self.module.check_mode:
            return
        successes = health["successes"] if acted else 1
        healthy, seen = wait(
            health["url"], successes, health["timeout"], health["interval"], health["host"], health["unix_socket"]
        )
        self.result["health"] = seen
        if not healthy:
            through = f" through unix:{health['unix_socket']}" if health["unix_socket"] else ""
            self.fail(
                "health",
                f"{self.unit} did not answer {health['url']}{through} with 2xx {successes} times in a row within "
                f"{health['timeout']:g}s: last probe: {seen['last']}",
            )

    def apply(self):
        self.maintenance("on")
        self.pointer()
        self.daemon_reload()
        self.result["was_active"] = self.query("is-active") in ("active", "activating", "reloading")
        self.enable()
        acted = self.act()
        self.probe(acted)
        self.maintenance("off")
        return self.result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    errors = input_errors(module.params)
    if errors:
        module.fail_json(msg="instance: " + "; ".join(errors) + ".")
    module.exit_json(**Instance(module).apply())


if __name__ == "__main__":
    main()
