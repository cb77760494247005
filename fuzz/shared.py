"""Campaigns on several machines sharing one Redis: one corpus, one set of findings, one progress line.

Each machine's findings folder stays the truth and Redis the meeting place, so Redis may go away
and come back without a finding being lost: a machine works on alone while it is away, and what
it found meanwhile reaches Redis at its next sync. Everything lives under `zcfuzz:`:

- `zcfuzz:examples:*`: Hypothesis's example database (RedisExampleDatabase), multiplexed with the
  local folder's, written from a background thread so a slow Redis does not slow the programs.
- `zcfuzz:findings:REV`: a hash of finding key -> the finding as its `finding.json` says it, with
  the machine that found it first and when. A program replaces the one there only if it is
  smaller, and a machine offers only programs that passed its own confirmation rule.
- `zcfuzz:progress:REV:CAMPAIGN`: each running campaign's totals, gone when it stops refreshing them.

Machines sharing a Redis run the same zcfuzz and the same Hypothesis format (pyproject's pin):
Hypothesis keys examples by the test's source, and reads only examples of its own format.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

from hypothesis.database import (
    BackgroundWriteDatabase,
    DirectoryBasedExampleDatabase,
    ExampleDatabase,
    MultiplexedDatabase,
)
from zcfuzz.fuzz.findings import finding_from_json, smaller_than_recorded
from zcfuzz.vm import schema
from zcfuzz.vm.errors import UserError
from zcfuzz.vm.program import Program

MACHINE_ENV = "ZCFUZZ_MACHINE"  # names the machine in findings; set it when campaigns share a host
PREFIX = "zcfuzz:"
CONNECT_TIMEOUT_S = 2.0
REPLY_TIMEOUT_S = 10.0
RETRY_AFTER_S = 5.0  # while Redis is away, a machine tries it again this often
PROGRESS_TTL_S = 10  # a campaign that stops refreshing its totals leaves the combined line
PENDING_WRITES = 100_000  # example writes kept for Redis while it is away (the local folder keeps all)


def machine_name() -> str:
    return os.environ.get(MACHINE_ENV) or socket.gethostname()


def parse_database_url(url: str) -> str:
    """`redis://HOST:PORT/DB` (or rediss://): the URL, or a one-line error saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise UserError(f"bad database {url!r}: give redis://HOST:PORT/DB")
    try:
        if parts.port == 0:
            raise ValueError
    except ValueError:
        raise UserError(f"bad database {url!r}: the port is not a number from 1 to 65535") from None
    if parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise UserError(f"bad database {url!r}: the database is a number, as in redis://HOST:PORT/0")
    return url


class Shared:
    """One machine's connection to the shared Redis. Calls made while Redis is away return a
    default and say so once; the first that gets through again says it is back."""

    def __init__(self, url: str, log=sys.stderr):
        try:
            import redis
        except ImportError:
            raise UserError("--database needs the Redis client: pip install 'zcfuzz[redis]'") from None
        self.url = parse_database_url(url)
        self.redis = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                                          socket_timeout=REPLY_TIMEOUT_S)
        self.errors = (redis.RedisError, OSError)
        self.log = log
        self.away_since: float | None = None
        self.last_try = 0.0
        self.lock = threading.Lock()

    def unreachable(self, err: Exception) -> UserError:
        return UserError(f"cannot use Redis at {self.url}: {str(err).rstrip('.')}: start redis-server there, or give "
                         "--database (or ZCFUZZ_DATABASE) the URL of one that runs")

    def check(self) -> None:
        """At the start: Redis answers, or a one-line error."""
        try:
            self.redis.ping()
        except self.errors as err:
            raise self.unreachable(err) from None

    def call(self, fn: Callable, default=None):
        """`fn()`, or `default` while Redis is away (tried again every RETRY_AFTER_S)."""
        with self.lock:
            if self.away_since is not None and time.monotonic() - self.last_try < RETRY_AFTER_S:
                return default
            self.last_try = time.monotonic()
        try:
            result = fn()
        except self.errors as err:
            with self.lock:
                if self.away_since is None:
                    self.away_since = time.monotonic()
                    print(f"zcfuzz: Redis at {self.url} is away ({err}); findings stay in the local folder "
                          f"and reach Redis when it is back", file=self.log, flush=True)
            return default
        with self.lock:
            if self.away_since is not None:
                print(f"zcfuzz: Redis at {self.url} is back after {time.monotonic() - self.away_since:.0f}s",
                      file=self.log, flush=True)
                self.away_since = None
        return result

    # --- findings ---------------------------------------------------------------------------

    def findings(self, revision: str) -> dict[str, dict] | None:
        """The shared findings of a revision by key; None while Redis is away."""
        name = f"{PREFIX}findings:{revision}"
        raw = self.call(lambda: self.redis.hgetall(name))
        return None if raw is None else {k.decode(): shared_finding(name, k.decode(), v) for k, v in raw.items()}

    def offer(self, doc: dict) -> bool:
        """Share a finding, or its smaller program: the first machine's name and time stay."""
        from redis import WatchError

        name, key = f"{PREFIX}findings:{doc['revision']}", doc["key"]

        def replace(pipe) -> bool:
            old = pipe.hget(name, key)
            old = shared_finding(name, key, old) if old else None
            if not smaller_than_recorded(Program.from_json(doc["program"]), old):
                return False
            first = {k: old[k] for k in ("machine", "found", "found_after_s") if k in old} if old else {}
            new = {k: v for k, v in doc.items() if k != "folder"} | first
            pipe.multi()
            pipe.hset(name, key, json.dumps(new))
            pipe.execute()
            return True

        def transaction() -> bool:
            with self.redis.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(name)
                        return replace(pipe)
                    except WatchError:
                        continue  # another machine wrote this revision's findings meanwhile

        return bool(self.call(transaction, False))

    def revisions(self) -> list[str]:
        """Revisions with shared findings; a one-line error if Redis does not answer."""
        try:
            names = self.redis.scan_iter(match=f"{PREFIX}findings:*")
            return sorted(name.decode()[len(f"{PREFIX}findings:"):] for name in names)
        except self.errors as err:
            raise self.unreachable(err) from None

    # --- progress ---------------------------------------------------------------------------

    def report(self, revision: str, campaign: str, totals: dict) -> None:
        self.call(lambda: self.redis.set(f"{PREFIX}progress:{revision}:{campaign}", json.dumps(totals),
                                         ex=PROGRESS_TTL_S))

    def combined(self, revision: str) -> dict | None:
        """Totals over every running campaign on the revision; None while Redis is away."""
        def read() -> dict:
            names = list(self.redis.scan_iter(match=f"{PREFIX}progress:{revision}:*"))
            campaigns = [json.loads(v) for v in (self.redis.mget(names) if names else []) if v]
            return {"campaigns": len(campaigns),
                    "programs": sum(c["programs"] for c in campaigns),
                    "programs_per_s": sum(c["programs_per_s"] for c in campaigns),
                    "findings": self.redis.hlen(f"{PREFIX}findings:{revision}")}
        return self.call(read)

    # --- examples ---------------------------------------------------------------------------

    def examples(self) -> ExampleDatabase:
        from hypothesis.extra.redis import RedisExampleDatabase

        return BackgroundWriteDatabase(WhileReachable(self, RedisExampleDatabase(
            self.redis, key_prefix=f"{PREFIX}examples:".encode())))


def shared_finding(name: str, key: str, value: bytes) -> dict:
    """A finding as Redis holds it (field `key` of hash `name`), or a one-line error naming it."""
    what = f"shared finding {key!r} in {name}"
    return finding_from_json(schema.parse(value, what), what)


class WhileReachable(ExampleDatabase):
    """An example database used through `Shared.call`: while Redis is away, fetches find nothing
    (the local database has this machine's own) and writes wait, in order, until it is back."""

    def __init__(self, shared: Shared, db: ExampleDatabase):
        super().__init__()
        self.shared, self.db = shared, db
        self.pending: deque[tuple[str, tuple]] = deque(maxlen=PENDING_WRITES)

    def fetch(self, key: bytes) -> Iterable[bytes]:
        return self.shared.call(lambda: (self.flush(), list(self.db.fetch(key)))[1], [])

    def save(self, key: bytes, value: bytes) -> None:
        self.write("save", key, value)

    def delete(self, key: bytes, value: bytes) -> None:
        self.write("delete", key, value)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self.write("move", src, dest, value)

    def write(self, method: str, *args: bytes) -> None:
        self.pending.append((method, args))
        self.shared.call(self.flush)

    def flush(self) -> None:
        while self.pending:
            method, args = self.pending[0]
            getattr(self.db, method)(*args)
            self.pending.popleft()


def example_database(local: Path, shared: Shared | None) -> ExampleDatabase:
    """The campaign's example database: the local folder's, and Redis's too when shared."""
    here = DirectoryBasedExampleDatabase(str(local))
    return here if shared is None else MultiplexedDatabase(here, shared.examples())
