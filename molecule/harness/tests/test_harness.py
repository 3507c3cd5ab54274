"""The harness container really runs systemd, PostgreSQL and nginx."""

import os

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")


def test_systemd_is_pid_1_and_running(host):
    assert host.process.get(pid=1).comm == "systemd"
    state = host.run("systemctl is-system-running --wait").stdout.strip()
    assert state in ("running", "degraded"), host.run("systemctl --failed --no-legend").stdout


def test_postgresql_answers_a_query(host):
    assert host.service("postgresql@15-main").is_running
    out = host.run("sudo -u postgres psql -XAtq -d harness -c 'SELECT sum(n) FROM t'")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "42"


def test_nginx_serves_a_page(host):
    assert host.service("nginx").is_running
    assert host.socket("tcp://0.0.0.0:80").is_listening
    page = host.run("curl -fsS http://127.0.0.1/")
    assert page.rc == 0, page.stderr
    assert page.stdout.strip() == "greenlight harness"
