# Copyright: greenlight.django contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""PRIVATE to the greenlight.django collection. Do not use it from other collections.

Environment files (``KEY=value`` lines) read the way systemd's ``EnvironmentFile=`` and the collection's
manage wrapper read them: blank lines and lines starting with ``#`` or ``;`` are skipped; a value is bare,
``'single-quoted'`` (taken as is) or ``"double-quoted"`` (where ``\\`` escapes ``"``, ``\\``, a backtick and
``$``). greenlight.django.code_sync writes ``<app_root>/shared/.env`` in that form.
"""

from __future__ import annotations

import re

KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
ESCAPABLE_IN_DOUBLE_QUOTES = '"\\`$'


class EnvFileError(Exception):
    """A line that is not KEY=value, or a file that cannot be read: the message names the file and line."""


def unquote(value):
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        out, chars = [], iter(value[1:-1])
        for char in chars:
            if char == "\\":
                following = next(chars, "")
                out.append(following if following in ESCAPABLE_IN_DOUBLE_QUOTES else "\\" + following)
            else:
                out.append(char)
        return "".join(out)
    return value


def parse(text, path="<text>"):
    """The variables of an environment file's text, in order; a later line for a key wins."""
    environment = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, separator, value = line.partition("=")
        key = key.strip()
        if not separator or not KEY.match(key):
            raise EnvFileError(f"{path} line {number}: expected KEY=value")
        environment[key] = unquote(value.strip())
    return environment


def read(path):
    """The variables of the environment file at path."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise EnvFileError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise EnvFileError(f"cannot read {path}: it is not UTF-8 text") from None
    return parse(text, path)
