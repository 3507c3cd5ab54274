"""Helpers to run a module's ``main()`` in-process in unit tests.

``set_module_args`` hands arguments to the next ``AnsibleModule``: on
ansible-core 2.19+ through ``ansible.module_utils.testing.patch_module_args``,
before that by patching the serialized ``basic._ANSIBLE_ARGS``.
``exit_json``/``fail_json`` are replaced by functions that raise
``AnsibleExitJson``/``AnsibleFailJson`` carrying the result dict.
"""

import contextlib
import http.server
import json
import socketserver
import threading
from unittest import mock

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes


@contextlib.contextmanager
def set_module_args(args):
    args = dict(args)
    args.setdefault("_ansible_remote_tmp", "/tmp")
    args.setdefault("_ansible_keep_remote_files", False)
    try:
        from ansible.module_utils.testing import patch_module_args
    except ImportError:  # ansible-core < 2.19
        serialized = to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        with mock.patch.object(basic, "_ANSIBLE_ARGS", serialized):
            yield
        return
    with patch_module_args(args):
        yield


class AnsibleExitJson(Exception):
    """Raised by the patched ``exit_json``; ``result`` is what the module returned."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


class AnsibleFailJson(Exception):
    """Raised by the patched ``fail_json``; ``result`` holds ``msg`` and the other keys."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


def exit_json(self, **kwargs):
    kwargs.setdefault("changed", False)
    raise AnsibleExitJson(kwargs)


def fail_json(self, msg, **kwargs):
    kwargs["failed"] = True
    kwargs["msg"] = msg
    raise AnsibleFailJson(kwargs)


@contextlib.contextmanager
def patched_exits():
    with mock.patch.multiple(basic.AnsibleModule, exit_json=exit_json, fail_json=fail_json):
        yield


class HealthHandler(http.server.BaseHTTPRequestHandler):
    """Answers /healthz with the server's ``status`` and ``ok host=<Host header>``; any other path with 404."""

    def do_GET(self):  # noqa: N802 - the name http.server calls
        ok = self.path == "/healthz"
        body = f"{'ok' if ok else 'missing'} host={self.headers['Host']}".encode()
        self.send_response(self.server.status if ok else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """An HTTP server on a unix socket, as gunicorn listens by default; ``status`` is what handlers may answer."""

    daemon_threads = True
    status = 200

    def get_request(self):
        request, _address = super().get_request()
        return request, ("unix", 0)


@contextlib.contextmanager
def serving(path, handler=HealthHandler):
    """Serve ``handler`` on the unix socket ``path`` in a thread; yields the server."""
    server = UnixHTTPServer(path, handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
