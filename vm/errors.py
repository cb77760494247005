"""Errors that zcfuzz reports to the user as one line, without a traceback."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

DEBIAN_PACKAGES = Path(__file__).resolve().parent / "debian-packages"


class UserError(Exception):
    """Bad input or a missing tool: the message says what to do. Exit status 2."""

    exit_status = 2


@functools.cache
def debian_package_of() -> dict[str, str]:
    """Command or file -> the Debian package that provides it, from the list ./zcfuzz installs."""
    provides = {}
    for line in DEBIAN_PACKAGES.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        for needed in fields[1:]:
            provides[needed] = fields[0]
    return provides


def missing(what: str, *needed: str) -> UserError:
    """`what` cannot go on without the commands or files `needed`: say which packages to install."""
    packages = " ".join(dict.fromkeys(debian_package_of()[item] for item in needed))
    return UserError(f"{what}: run 'apt-get install {packages}'")


def require(what: str, *needed: str) -> None:
    """Raise `missing` for those of `needed` (commands, or absolute paths of files) not here."""
    absent = [item for item in needed if not (Path(item).exists() if item.startswith("/") else shutil.which(item))]
    if absent:
        raise missing(f"missing {what} ({', '.join(absent)})", *absent)


def cannot_write(path: str | Path, err: OSError) -> UserError:
    return UserError(f"cannot write {path}: {err.strerror}")


def check_outputs(*paths: str | Path | None) -> None:
    """Fail before a long run, not after it, when a file it would write for the user cannot be
    written. A file that did not exist is not left behind."""
    for path in filter(None, paths):
        existed = Path(path).exists()
        try:
            with open(path, "a", encoding="utf-8"):
                pass
        except OSError as err:
            raise cannot_write(path, err) from None
        if not existed:
            Path(path).unlink()


def write_output(path: str | Path | None, text: str) -> None:
    """Write a file the user asked for (a report, a trace); nothing when they did not ask."""
    if not path:
        return
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as err:
        raise cannot_write(path, err) from None
