"""Fixtures shared by zcfuzz's own tests, and what running them in parallel needs.

Markers say what a test needs (pyproject.toml): `host` the executor or campaigns on this
machine's kernel, `vm` a built kernel and QEMU, `kbuild` kernel builds; a test with none is a
unit test. Under pytest-xdist (`./zcfuzz test`), tests that share a guest carry one
`xdist_group`, so one worker boots it.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from zcfuzz.fuzz.profiles import profile_for_tests
from zcfuzz.vm.errors import UserError

settings.load_profile(profile_for_tests())  # every test's default, whatever ran before it


def pytest_sessionstart(session: pytest.Session) -> None:
    """Before xdist's workers start: the executor and its initramfs, which the workers' tests
    (and the zcfuzz commands they run) would otherwise each build at once into the same files."""
    config = session.config
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return  # a worker, or no workers: whoever needs them builds them, alone
    from zcfuzz.vm.executor import executor_binary
    from zcfuzz.vm.qemu import initramfs_for

    try:
        initramfs_for(executor_binary())
    except (UserError, OSError):
        pass  # the tests that need them say why they cannot run


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that takes the `host` fixture runs the host executor, whether or not it says so."""
    for item in items:
        if "host" in getattr(item, "fixturenames", ()) and item.get_closest_marker("host") is None:
            item.add_marker(pytest.mark.host)


@pytest.fixture(scope="module")
def host():
    """The host target; skipped, with the one-line reason, where the executor cannot be built."""
    from zcfuzz.vm.host import HostTarget

    try:
        target = HostTarget()
    except UserError as err:
        pytest.skip(str(err))
    with target:
        yield target
