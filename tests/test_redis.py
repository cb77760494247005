"""Campaigns sharing a real Redis: one set of findings, nothing lost to a kill or an outage.

Each test starts its own `redis-server` on 127.0.0.1 at a free port and stops it. Campaigns run
as a user starts them, `zcfuzz fuzz --target host`, through this file run as a script: the host
kernel has nothing for the oracles to find, so the script adds one oracle that fails every
program with a `sendmsg` call (SEEDED), a finding Hypothesis makes within seconds and shrinks to one
call, then runs zcfuzz's command line.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.host  # campaigns on this machine's kernel, and redis-server

ROOT = Path(__file__).resolve().parent.parent
SEEDED_OP = "sendmsg"  # among the ops the generator draws most often
SEEDED_KEY = f"seeded:{SEEDED_OP}"


def seeded_judge(judge):
    """`judge`, plus a violation for every program that calls SEEDED_OP."""
    from zcfuzz.conformance.oracles import Violation

    def judged(target, program, abi, info):
        verdict = judge(target, program, abi, info)
        calls = [i for i, op in enumerate(program.ops) if op.op == SEEDED_OP]
        if calls and verdict.result is not None:
            verdict.violations.append(Violation("seeded", SEEDED_OP, calls[0], f"seeded: {SEEDED_OP} was called"))
        return verdict
    return judged


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from zcfuzz import cli
    from zcfuzz.fuzz import campaign

    campaign.judge = seeded_judge(campaign.judge)  # the workers are forked: they have it too
    sys.exit(cli.main())

from tests.test_fuzz_campaign import SPLICE_WARNING, SpliceWarns, executor  # noqa: F401  (a fixture)


@dataclass
class RedisServer:
    """A `redis-server` of the test's own, stopped and started again on the same port."""

    port: int
    folder: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)], stdout=(self.folder / "redis.log").open("a"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                assert self.process.poll() is None, (self.folder / "redis.log").read_text()
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def client(self):
        import redis

        return redis.Redis(port=self.port)

    def findings(self, revision: str = "host") -> dict[str, dict]:
        return {k.decode(): json.loads(v) for k, v in self.client().hgetall(f"zcfuzz:findings:{revision}").items()}


PORTS = range(20000, 32000)  # below the kernel's ephemeral ports (from 32768 unless set lower)


def free_port() -> int:
    """A port free now, for a test's own redis-server: not an ephemeral one, which a connection
    (the executor's TCP pairs, a Redis client) could take while the server is stopped and started
    again; and in a part of PORTS of this xdist worker's own, so no test in another worker picks
    it meanwhile."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    share = len(PORTS) // max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    ports = list(PORTS[worker * share:(worker + 1) * share])
    random.shuffle(ports)  # not the port a test just stopped using, nor one of another run of the tests
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {ports[0]}-{ports[-1]}")


@pytest.fixture
def redis_server(tmp_path):
    from zcfuzz.vm.errors import UserError, require

    try:
        require("Redis for the shared-database tests", "redis-server")
        import redis  # noqa: F401  the extra
    except UserError as err:
        pytest.skip(str(err))
    except ImportError:
        pytest.skip("the Redis client is missing: pip install '.[redis]'")
    (tmp_path / "redis").mkdir()
    server = RedisServer(free_port(), tmp_path / "redis")
    server.start()
    yield server
    if server.process.poll() is None:
        server.stop()


def campaign(findings: Path, budget: str, log: Path, database: str, machine: str, *args: str) -> subprocess.Popen:
    """A seeded `zcfuzz fuzz --target host` on the shared database, as machine `machine`."""
    return subprocess.Popen([sys.executable, __file__, "fuzz", "--target", "host", "--budget", budget,
                             "--findings", str(findings), "--no-spec-programs", *args],
                            env=dict(os.environ, ZCFUZZ_DATABASE=database, ZCFUZZ_MACHINE=machine),
                            stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)


def local_finding(findings: Path) -> dict | None:
    for path in findings.glob("*/finding.json"):
        if not path.parent.name.startswith("."):
            doc = json.loads(path.read_text())
            if doc["key"] == SEEDED_KEY:
                return doc
    return None


def wait_for(what: str, check, timeout_s: float, campaign: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if campaign is not None and campaign.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"no {what} in {timeout_s}s" + (f"; the campaign said:\n{log.read_text()}" if log else ""))


@pytest.mark.usefixtures("executor")
def test_a_finding_one_machine_shared_is_replayed_not_searched_for_by_another(tmp_path, redis_server):
    first = campaign(tmp_path / "a", "60s", tmp_path / "a.log", redis_server.url, "machine-a")
    def shrunk() -> dict | None:  # shared when found, then replaced by each smaller program confirmed
        shared = redis_server.findings().get(SEEDED_KEY)
        return shared if shared and [op["op"] for op in shared["program"]["ops"]] == [SEEDED_OP] else None

    shared = wait_for("shrunk shared finding", shrunk, 60, first, tmp_path / "a.log")
    assert shared["machine"] == "machine-a"
    first.send_signal(signal.SIGINT)
    first.wait(timeout=30)

    second = campaign(tmp_path / "b", "5s", tmp_path / "b.log", redis_server.url, "machine-b")
    assert second.wait(timeout=120) == 0, (tmp_path / "b.log").read_text()
    replayed = local_finding(tmp_path / "b")
    assert replayed is not None, (tmp_path / "b.log").read_text()
    # Found first by the other machine, when it found it; its program, confirmed here.
    assert (replayed["machine"], replayed["found"]) == ("machine-a", shared["found"])
    assert replayed["program"] == redis_server.findings()[SEEDED_KEY]["program"]
    assert redis_server.findings()[SEEDED_KEY]["machine"] == "machine-a"
    assert "on host: " in (tmp_path / "b.log").read_text()  # the line over every campaign
    assert "findings shared in " + redis_server.url + ": 1" in (tmp_path / "b.log").read_text()

    listed = subprocess.run([sys.executable, "-m", "zcfuzz.cli", "findings", "--database", redis_server.url, "--json"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr
    assert [(d["key"], d["machine"]) for d in json.loads(listed.stdout)] == [(SEEDED_KEY, "machine-a")]
    replay = subprocess.run([sys.executable, __file__, "repro", "--target", "host", "--database", redis_server.url],
                            capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert replay.returncode == 1 and f"seeded: {SEEDED_OP}: still fails" in replay.stdout, replay.stdout + replay.stderr


@pytest.mark.usefixtures("executor")
def test_a_campaign_killed_and_restarted_loses_nothing(tmp_path, redis_server):
    import psutil
    from zcfuzz.fuzz.campaign import EXIT_GRACE_S

    log = tmp_path / "first.log"
    first = campaign(tmp_path / "findings", "120s", log, redis_server.url, "machine-a", "--workers", "2")
    wait_for("local finding", lambda: local_finding(tmp_path / "findings"), 60, first, log)
    family = psutil.Process(first.pid).children(recursive=True)
    first.kill()  # perhaps before the finding reached Redis, perhaps mid-write of a smaller one
    first.wait()
    _, alive = psutil.wait_procs(family, timeout=EXIT_GRACE_S + 5)  # a worker's last resort: SIGALRM
    assert not alive, f"still running after kill -9 of the campaign: {[p.pid for p in alive]}"
    before = local_finding(tmp_path / "findings")

    rerun = campaign(tmp_path / "findings", "5s", tmp_path / "rerun.log", redis_server.url, "machine-a")
    assert rerun.wait(timeout=120) == 0, (tmp_path / "rerun.log").read_text()
    after = local_finding(tmp_path / "findings")
    assert after["found"] == before["found"] and len(after["program"]["ops"]) <= len(before["program"]["ops"])
    assert redis_server.findings()[SEEDED_KEY]["program"] == after["program"]


@pytest.mark.usefixtures("executor")
def test_redis_stopped_mid_campaign_and_started_again(tmp_path, redis_server):
    import psutil

    log = tmp_path / "campaign.log"
    running = campaign(tmp_path / "findings", "90s", log, redis_server.url, "machine-a")
    family = psutil.Process(running.pid)

    def executor_runs() -> bool:
        for process in family.children(recursive=True):
            try:
                if process.name() == "zcexec":
                    return True
            except psutil.NoSuchProcess:  # gone since it was listed: the make that built the executor, say
                continue
        return False

    wait_for("executor", executor_runs, 60, running, log)
    redis_server.stop()
    # The campaign asks Redis every second (its progress): the outage is seen, however soon the
    # finding came, and Redis comes back only then.
    wait_for("word that Redis is away", lambda: "is away" in log.read_text(), 60, running, log)
    found = wait_for("local finding with Redis away", lambda: local_finding(tmp_path / "findings"), 60, running, log)
    redis_server.start()  # empty: it kept nothing on disk
    shared = wait_for("finding in Redis again", lambda: redis_server.findings().get(SEEDED_KEY), 60, running, log)
    assert shared["found"] == found["found"]
    wait_for("word that Redis is back", lambda: "is back" in log.read_text(), 60, running, log)
    running.send_signal(signal.SIGINT)
    assert running.wait(timeout=30) == 130
    text = log.read_text()
    assert "is away" in text and "is back" in text, text
    assert "Traceback" not in text, text


def test_an_unreachable_or_bad_database_is_a_one_line_error(tmp_path):
    for url, said in ((f"redis://127.0.0.1:{free_port()}/0", "cannot use Redis"),
                      (f"redis://127.0.0.1:{free_port()}/0", "start redis-server there"),
                      ("http://127.0.0.1/0", "bad database"), ("redis://127.0.0.1:x/0", "bad database"),
                      ("redis://127.0.0.1/db", "bad database")):
        ran = subprocess.run([sys.executable, "-m", "zcfuzz.cli", "fuzz", "--target", "host", "--budget", "5s",
                              "--findings", str(tmp_path), "--database", url], capture_output=True, text=True,
                             cwd=ROOT, timeout=60, check=False)
        assert ran.returncode == 2 and said in ran.stderr and len(ran.stderr.splitlines()) == 1, ran.stderr
    ran = subprocess.run([sys.executable, "-m", "zcfuzz.cli", "findings"], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, ZCFUZZ_DATABASE="redis://127.0.0.1:x/0"), timeout=60, check=False)
    assert ran.returncode == 2 and ran.stderr.startswith("zcfuzz: error: bad database"), ran.stderr


# --- the shared database, in one process -------------------------------------------------------

def program(n_ops: int):
    from zcfuzz.vm.program import Program

    return Program.from_json({"sysno": {"sendfile2": 467}, "fds": [{"name": "src", "kind": "file"},
                              {"name": "sock", "kind": "tcp4", "zerocopy": True}],
                              "ops": [{"op": "sendfile2", "out": "sock", "in": "src", "offset": 0, "count": 512,
                                       "flags": 2}] * n_ops})


def test_a_shared_finding_keeps_its_first_machine_and_takes_only_smaller_programs(tmp_path, redis_server):
    from zcfuzz.conformance.oracles import Violation
    from zcfuzz.fuzz.findings import FindingStore
    from zcfuzz.fuzz.shared import Shared

    lost = Violation("accounting", "ZC-NOTIFY-ONCE", 0, "sock: ids 0 never notified", "sendfile2 not notified")
    info = {"revision": "rfc-v1", "base_version": "6.12.117", "nr_sendfile2": 467}
    shared = Shared(redis_server.url)

    def offered(machine: str, n_ops: int) -> bool:
        store = FindingStore(tmp_path / machine / str(n_ops), info, machine=machine)
        store.record(lost, program(n_ops))
        return shared.offer(store.findings()[0])

    assert offered("a", 3)
    assert not offered("b", 5) and not offered("b", 3)
    assert offered("b", 1)
    doc = redis_server.findings("rfc-v1")[lost.key]
    assert (doc["machine"], len(doc["program"]["ops"]), doc["kernel"]) == ("a", 1, "6.12.117")
    assert "folder" not in doc


def test_examples_written_while_redis_is_away_reach_it_when_it_is_back(tmp_path, redis_server, monkeypatch):
    from zcfuzz.fuzz import shared
    from zcfuzz.fuzz.shared import Shared, example_database

    monkeypatch.setattr(shared, "RETRY_AFTER_S", 0.2)
    log = tmp_path / "log"
    with log.open("w") as out:
        database = example_database(tmp_path / "examples", Shared(redis_server.url, log=out))
        redis_server.stop()
        database.save(b"key", b"while away")
        assert list(database.fetch(b"key")) == [b"while away"]  # the local folder has it
        redis_server.start()
        time.sleep(0.3)
        database.save(b"key", b"back")
        list(database.fetch(b"key"))  # waits for the background writes
    elsewhere = Shared(redis_server.url).examples()
    assert sorted(elsewhere.fetch(b"key")) == [b"back", b"while away"]
    assert "is away" in log.read_text() and "is back" in log.read_text()


def test_a_worker_replays_a_shared_finding_on_a_fresh_kernel_instead_of_searching(tmp_path, redis_server):
    from zcfuzz.fuzz.campaign import Fuzzer
    from zcfuzz.fuzz.findings import FindingStore
    from zcfuzz.fuzz.shared import Shared, example_database

    def fuzzer(machine: str, kernel: SpliceWarns) -> Fuzzer:
        shared = Shared(redis_server.url)
        store = FindingStore(tmp_path / machine, kernel.kernel_info(), machine=machine)
        return Fuzzer(kernel, store, example_database(tmp_path / machine / "examples", shared),
                      time.monotonic() + 120, shared=shared)

    fuzzer("a", SpliceWarns()).run_round(1)
    (shared,) = redis_server.findings("fake").values()
    assert shared["title"] == SPLICE_WARNING and [op["op"] for op in shared["program"]["ops"]] == ["splice"]

    kernel = SpliceWarns()
    second = fuzzer("b", kernel)
    second.run_round(2)
    assert [p.ops for p in kernel.runs[:2]] == [second.store.program(shared["key"]).ops] * 2  # replayed first
    assert not second.found  # and not searched for: the round had it settled
    (local,) = second.store.findings()
    assert (local["machine"], local["found"], local["program"]) == ("a", shared["found"], shared["program"])
