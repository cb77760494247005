"""`pytest conformance --target host|vm:REV`: one test per clause, the target opened once."""

from __future__ import annotations

import pytest


def pytest_addoption(parser) -> None:
    parser.addoption("--target", default="host", help="where the clauses run: host or vm:REV")


@pytest.fixture(scope="session")
def conformance_target(request):
    from vm.target import open_target

    with open_target(request.config.getoption("--target")) as target:
        yield target


@pytest.fixture(scope="session")
def kernel_info(conformance_target) -> dict:
    return conformance_target.kernel_info()


@pytest.fixture(scope="session")
def features(conformance_target, kernel_info):
    from conformance.suite import probe_features

    return probe_features(conformance_target, kernel_info)
