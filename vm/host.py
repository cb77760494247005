"""The `host` target: programs run by a local `zcexec --stdio` on the running kernel.

The executor process is kept across programs (starting it costs more than most programs); if it
dies or stops answering, the program that was running is named in the error and the next program
gets a fresh executor. The executor dies with the thread that started it (vm.lifetime).
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import shutil
import signal
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path

from zcfuzz.vm import kbuild
from zcfuzz.vm.executor import READY_LINE, executor_binary
from zcfuzz.vm.lifetime import die_with_parent
from zcfuzz.vm.program import ExecutorError, Program, ProgramResult, decode_reply
from zcfuzz.vm.target import Target

START_TIMEOUT_S = 10.0
HOST_INCLUDE = Path("/usr/include")


def answer_timeout_s(program: Program) -> float:
    """Every op may run into its own timeout, then the final drain settles."""
    return 5.0 + len(program.ops) * program.timeout_ms / 1000 + program.settle_ms / 1000


def program_summary(program: Program, limit: int = 300) -> str:
    text = program.dumps()
    return text if len(text) <= limit else text[: limit - 3] + "..."


class HostTarget(Target):
    name = "host"

    def __init__(self) -> None:
        self.binary = executor_binary()
        self.process: subprocess.Popen | None = None
        self.workdir: str | None = None
        self.pending = b""

    def kernel_info(self) -> dict:
        include_dirs = [HOST_INCLUDE]
        multiarch = sysconfig.get_config_var("MULTIARCH") or f"{os.uname().machine}-linux-gnu"
        if multiarch and (HOST_INCLUDE / multiarch).is_dir():
            include_dirs.append(HOST_INCLUDE / multiarch)
        abi = kbuild.read_abi_from_headers(*include_dirs)
        return {"target": "host", "base_version": os.uname().release, **abi}

    def run(self, program: Program) -> ProgramResult:
        process = self._executor()
        try:
            process.stdin.write(program.encode().encode())
            process.stdin.flush()
        except BrokenPipeError:
            pass  # reported below as the executor's death
        line = self._read_line(time.monotonic() + answer_timeout_s(program))
        if line is None:
            reason = self._stop()
            raise ExecutorError(f"host executor {reason} while running program {program_summary(program)}")
        return decode_reply(line)

    def request(self, line: str, timeout_s: float = 60.0) -> str:
        """Send a request other than a program (`ping`, `c-loop N`) and return the raw answer."""
        process = self._executor()
        process.stdin.write(line.encode() + b"\n")
        process.stdin.flush()
        answer = self._read_line(time.monotonic() + timeout_s)
        if answer is None:
            raise ExecutorError(f"host executor {self._stop()} during {line!r}")
        return answer

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def _executor(self) -> subprocess.Popen:
        if self.process is not None and self.process.poll() is None:
            return self.process
        self._stop()
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # tmpfs, as in the guest
        self.workdir = tempfile.mkdtemp(prefix="zcexec-", dir=base)
        self.process = subprocess.Popen([str(self.binary), "--stdio", "--workdir", self.workdir],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        preexec_fn=functools.partial(die_with_parent, signal.SIGKILL, os.getpid()))
        ready = self._read_line(time.monotonic() + START_TIMEOUT_S)
        if ready != READY_LINE:
            reason = self._stop()
            raise ExecutorError(f"host executor did not start ({reason}, said {ready!r})")
        return self.process

    def _read_line(self, deadline: float) -> str | None:
        """One line from the executor; None if it died or the deadline passed."""
        fd = self.process.stdout.fileno()
        while b"\n" not in self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode(errors="replace")

    def _stop(self) -> str:
        """Stop the executor if it runs; say how it ended."""
        if self.process is None:
            return "was not running"
        if self.process.poll() is None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
            try:
                self.process.wait(timeout=2)
                reason = "stopped answering"
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                reason = "stopped answering and was killed"
        else:
            status = self.process.returncode
            reason = f"died (signal {-status})" if status < 0 else f"exited with status {status}"
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(BrokenPipeError):
                stream.close()
        self.process = None
        self.pending = b""
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        return reason

    def close(self) -> None:
        self._stop()
