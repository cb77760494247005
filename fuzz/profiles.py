"""Hypothesis settings profiles, registered here only: `dev`, `ci` and `campaign`.

Campaigns run under `campaign`; zcfuzz's own tests under the one ZCFUZZ_PROFILE names, else `ci`
in CI, else `dev` (tests/conftest.py). Programs run real syscalls, so no profile has a deadline:
a blocking call legitimately takes its timeout.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, Verbosity, settings

PROFILE_ENV = "ZCFUZZ_PROFILE"
SLOW_IS_NORMAL = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile("dev", max_examples=50, deadline=None, suppress_health_check=SLOW_IS_NORMAL)
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, database=None,
                          suppress_health_check=SLOW_IS_NORMAL, print_blob=True)
# A campaign runs rounds of this many examples until its budget is spent (campaign.py). No
# target phase: with hill climbing on clauses reached, rfc-v1's median time to find was longer
# on three seeds of four (70-114 s against 26-48 s) and fewer findings came on three of four.
settings.register_profile("campaign", max_examples=200, deadline=None, suppress_health_check=list(HealthCheck),
                          verbosity=Verbosity.quiet, report_multiple_bugs=False,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])


def profile(name: str) -> settings:
    """The named profile, for a `@settings(...)` of its own: Hypothesis's default stays as it is."""
    return settings.get_profile(name)


def profile_for_tests() -> str:
    """The profile zcfuzz's own tests run under."""
    return os.environ.get(PROFILE_ENV) or ("ci" if os.environ.get("CI") else "dev")
