"""liteshort, the peer, as a WSGI app that keeps its config and database under bench/.work.

liteshort reads config.yml from /etc/liteshort, then the XDG config dirs, and puts its database in
/var/lib/liteshort/ when it can create that directory (as root it can), else in the XDG data dir.
run.py points the XDG variables into bench/.work; refusing the /var/lib directory here sends the
database there too. Served by the peer venv's gunicorn: `gunicorn peer_liteshort:app`.
"""

from __future__ import annotations

import pathlib
from typing import Any

_SYSTEM_DIR = "/var/lib/liteshort"
_mkdir = pathlib.Path.mkdir


def _mkdir_outside_system_dir(self: pathlib.Path, *args: Any, **kwargs: Any) -> None:
    if str(self).startswith(_SYSTEM_DIR):
        raise PermissionError(f"the benchmark keeps liteshort out of {_SYSTEM_DIR}")
    _mkdir(self, *args, **kwargs)


pathlib.Path.mkdir = _mkdir_outside_system_dir  # type: ignore[method-assign]
try:
    from liteshort.liteshort import app  # type: ignore[import-not-found]  # in the peer venv
finally:
    pathlib.Path.mkdir = _mkdir  # type: ignore[method-assign]

__all__ = ["app"]
