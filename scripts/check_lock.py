"""Check that the running environment holds exactly the versions pinned in a lock file.

`make install` runs it after installing, so an install that drifted from the lock (a package pip upgraded, a
pin that no longer applies) fails there instead of in a test. A local version label is ignored when the lock
pins none (`torch==2.13.0` is satisfied by the CPU build `2.13.0+cpu` and by a CUDA build of 2.13.0).

Usage: python scripts/check_lock.py requirements.lock [--complete]
(--complete: every locked package must be installed too, as after `make install-test`, which installs every
extra; without it only the installed ones are compared, as after `make install`.)
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path) -> dict[str, str]:
    found = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            found[normalise(match[1])] = match[2]
    return found


def drift(lock: Path, *, complete: bool = False) -> list[str]:
    """One line per locked package whose installed version differs (or, with `complete`, that is missing)."""
    installed = {normalise(d.metadata["Name"]): d.version for d in metadata.distributions()}
    problems = []
    for name, wanted in sorted(pins(lock).items()):
        have = installed.get(name)
        if have is None:
            if complete:
                problems.append(f"{name}: locked at {wanted}, not installed")
        elif have != wanted and (have.split("+")[0] != wanted or "+" in wanted):
            problems.append(f"{name}: locked at {wanted}, installed {have}")
    return problems


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--complete"]
    lock = Path(args[0] if args else "requirements.lock")
    problems = drift(lock, complete="--complete" in sys.argv[1:])
    for line in problems:
        print(f"lock drift: {line}", file=sys.stderr)
    if problems:
        print(f"the environment differs from {lock}: run `make clean-venv install` (or refresh the lock with "
              "`make lock`)", file=sys.stderr)
        return 1
    print(f"{len(pins(lock))} packages match {lock}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
