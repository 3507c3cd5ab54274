"""Environment files read the way systemd's EnvironmentFile= and the manage wrapper read them."""

import pytest
from ansible_collections.greenlight.django.plugins.module_utils import _dotenv as dotenv


def test_values_bare_single_and_double_quoted():
    text = (
        "# a comment\n"
        "; another\n"
        "\n"
        "PLAIN=value with spaces  \n"
        "SINGLE='keeps \\\\ and \"as is\"'\n"
        'DOUBLE="a \\"quoted\\" \\$value with \\`ticks\\`, a \\\\backslash and \\n kept"\n'
        "  SPACED = 1\n"
        "EMPTY=\n"
        "PLAIN=later wins\n"
    )
    assert dotenv.parse(text) == {
        "PLAIN": "later wins",
        "SINGLE": 'keeps \\\\ and "as is"',
        "DOUBLE": 'a "quoted" $value with `ticks`, a \\backslash and \\n kept',
        "SPACED": "1",
        "EMPTY": "",
    }


def test_what_code_sync_writes_reads_back():
    """The env.j2 template escapes \\ " ` $ inside double quotes; reading gives the value back."""
    value = "a \"quoted\" $value with `ticks`, a \\backslash and 'single quotes'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
    assert dotenv.parse(f'GREENLIGHT_PROBE="{escaped}"\n') == {"GREENLIGHT_PROBE": value}


@pytest.mark.parametrize("line", ["not a variable", "1BAD=x", "export X=1", "=x"])
def test_a_line_that_is_not_key_value_is_named(line):
    with pytest.raises(dotenv.EnvFileError, match=r"^app.env line 2: expected KEY=value$"):
        dotenv.parse(f"OK=1\n{line}\n", "app.env")


def test_read_names_the_file(tmp_path):
    with pytest.raises(dotenv.EnvFileError, match=r"cannot read .*missing.env: No such file or directory"):
        dotenv.read(tmp_path / "missing.env")
    (tmp_path / "latin1.env").write_bytes(b"A=\xe9\n")
    with pytest.raises(dotenv.EnvFileError, match="it is not UTF-8 text"):
        dotenv.read(tmp_path / "latin1.env")
    (tmp_path / "ok.env").write_text("A=1\n")
    assert dotenv.read(tmp_path / "ok.env") == {"A": "1"}
