"""The backends behind the Target interface, by their command-line names: `host` (the host's own
kernel) and `vm:REV` (a QEMU guest booted on a revision). The one module that knows them all, so
vm.target stays the interface alone."""

from __future__ import annotations

from zcfuzz.vm.errors import UserError
from zcfuzz.vm.program import ExecutorError
from zcfuzz.vm.target import Target


def open_target(spec: str, **options) -> Target:
    """Make a target from its command-line name: `host` or `vm:REV`."""
    rev = revision_of(spec)
    if rev is None:
        from zcfuzz.vm.host import HostTarget

        return HostTarget(**options)
    from zcfuzz.vm.qemu import VmTarget

    return VmTarget(rev, **options)


def revision_of(spec: str) -> str | None:
    """REV of a target named `vm:REV`, None for `host`; any other name is a one-line error."""
    if spec == "host":
        return None
    if spec.startswith("vm:") and len(spec) > 3:
        return spec[3:]
    raise UserError(f"unknown target {spec!r}: use 'host' or 'vm:REV' (REV a revision name or folder)")


def check_target(spec: str, source: str | None = None) -> None:
    """A target's name, and a guest's revision, checked before anything starts for it: a
    campaign's workers would otherwise each fail alone with the same error."""
    rev = revision_of(spec)
    if rev is not None:
        from zcfuzz.vm import kbuild

        kbuild.resolve_revision(rev, source)


REQUEST_TIMEOUT_S = 300.0


def executor_request(target: Target, line: str, timeout_s: float = REQUEST_TIMEOUT_S) -> dict:
    """A request other than a program (`ping`, `c-loop N`, `spares N`; vm/PROGRAM.md, "Wire
    format") to the executor under `target` (host or vm:REV), answered as JSON."""
    import json
    import time

    from zcfuzz.vm.host import HostTarget

    if isinstance(target, HostTarget):
        answer = target.request(line, timeout_s)
    else:
        guest = target.boot()
        guest.send(line.encode() + b"\n")
        raw = guest.read_line(time.monotonic() + timeout_s)
        if raw is None:
            raise ExecutorError(f"no answer to {line!r}: the guest died")
        answer = raw.decode(errors="replace")
    reply = json.loads(answer)
    if "error" in reply:
        raise ExecutorError(f"executor: {reply['error']} (request {line!r})")
    return reply
