"""A Python that behaves as a bare ``pip install keystrap``: no media library.

A ``sitecustomize`` module on PYTHONPATH puts an import hook first on
``sys.meta_path`` that refuses NumPy, SciPy, OpenCV, segno, ggwave and ndeflib,
as if they were not installed. Every process started with that environment
(the services of a :class:`keystrap_lab.site.Site` too) then fails on the first
import of one of them.
"""

from __future__ import annotations

import os
from pathlib import Path

MEDIA_LIBRARIES = ("numpy", "scipy", "cv2", "segno", "ggwave", "ndef")

HOOK = f"""
import sys

BLOCKED = {MEDIA_LIBRARIES!r}


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
"""


def bare_environment(directory: Path) -> dict[str, str]:
    """``os.environ`` with the hook in ``directory`` first on PYTHONPATH."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(HOOK)
    rest = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(directory) + (os.pathsep + rest if rest else "")}
