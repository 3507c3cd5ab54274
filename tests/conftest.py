"""Make ``ansible_collections.greenlight.django`` importable from the checkout.

The collection must live at ``ansible_collections/greenlight/django`` for its
absolute imports to work. ``build/`` (git-ignored) gets a symlink to the
repository root, and ``build/collections`` goes on ``sys.path``.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLLECTIONS = REPO / "build" / "collections"
LINK = COLLECTIONS / "ansible_collections" / "greenlight" / "django"


def _ensure_collection_link():
    if not LINK.exists():
        LINK.parent.mkdir(parents=True, exist_ok=True)
        if LINK.is_symlink():  # dangling
            LINK.unlink()
        LINK.symlink_to(REPO, target_is_directory=True)
    if str(COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS))


_ensure_collection_link()
