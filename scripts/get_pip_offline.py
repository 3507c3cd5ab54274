"""Stand-in for the pip bootstrap script that ansible-test downloads.

ansible-test fetches ``get-pip-<version>.py`` from its own file host to put pip
into the empty virtualenvs of its sanity tests. Where only the Python package
index is reachable, this script does the same job: it seeds pip with the
interpreter's own ``ensurepip`` and then installs the requested packages
(``pip==<version>`` and friends) from the index. Options that only get-pip
understands are dropped.
"""

import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main() -> None:
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *args])


if __name__ == "__main__":
    main()
