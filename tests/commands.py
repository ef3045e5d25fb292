"""The project's own commands, found beside the running interpreter, never on whatever ``PATH`` holds.

A newcomer's machine has no ``idp`` on ``PATH``: ``make`` installs it into the checkout's ``.venv``. Tests that
run the project's commands use these helpers so that a stray ``idp`` elsewhere can neither help nor hide a
missing install step.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
IDP_COMMAND = VENV_BIN / "idp"


def path_without_foreign_commands(path: str | None = None, *, with_venv: bool = True, name: str = "idp") -> str:
    """Return ``path`` (default: this process's ``PATH``) without any folder that holds a ``name`` command.

    With ``with_venv`` the folder of the running interpreter goes first, so a child process finds the
    project's own commands; without it the child sees what a newcomer's shell sees: no ``idp`` at all.
    """
    folders = [VENV_BIN.as_posix()] if with_venv else []
    for folder in (path if path is not None else os.environ.get("PATH", "")).split(os.pathsep):
        if not folder or folder in folders or (Path(folder) / name).exists():
            continue
        folders.append(folder)
    return os.pathsep.join(folders)


def child_env(extra: dict[str, str] | None = None, *, with_venv: bool = True) -> dict[str, str]:
    """Return an environment for a child process: no ``IDP_*`` from the caller, a ``PATH`` as above."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env["PATH"] = path_without_foreign_commands(with_venv=with_venv)
    env.update(extra or {})
    return env
