"""Fixtures shared by zcfuzz's own tests."""

from __future__ import annotations

import pytest
from hypothesis import settings
from zcfuzz.fuzz.profiles import profile_for_tests
from zcfuzz.vm.errors import UserError

settings.load_profile(profile_for_tests())  # every test's default, whatever ran before it


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
