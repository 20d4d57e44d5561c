"""Where the server's narration jobs are kept: an SQLite index and a folder per job under the
data dir (docs/narrate.md, "The job API").

::

    DATA_DIR/jobs.sqlite          the index: one row per job (state, times, spec, progress)
    DATA_DIR/jobs/<id>/input.md   the document as it was sent
    DATA_DIR/jobs/<id>/job.lock   held by the process running the job
    DATA_DIR/jobs/<id>/out/       the narration's folder: its progress store and its files

Every state change is one conditional ``UPDATE`` in its own transaction, so two processes
sharing the data dir (Ray replicas on one machine) never both finish, or both cancel, a job.
A job runs where its ``job.lock`` is held: a file lock, released by the operating system when
its process ends, however it ends, so a job whose process died is free to be taken again and
its narration resumes from its own progress store. Nothing is created until the first job is
submitted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

from filelock import FileLock, Timeout

from ..errors import StoreError

#: The index's file name in the data dir, and the folder of the jobs' folders.
INDEX = "jobs.sqlite"
JOBS = "jobs"
#: A job's states; ``queued`` and ``running`` are active (they count against the limit).
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
_TABLE = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, created REAL NOT NULL, started REAL,
    finished REAL, expires REAL, spec TEXT NOT NULL, error TEXT, progress TEXT,
    result TEXT, files TEXT NOT NULL DEFAULT '[]', replica TEXT, bytes INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created);
"""
_COLUMNS = "id, state, created, started, finished, expires, spec, error, progress, result, files"
_COLUMNS += ", replica, bytes"


@dataclass(frozen=True)
class JobRecord:
    """A job as the index holds it.

    Attributes:
        id: 32 hex digits.
        state: one of :data:`STATES`.
        created, started, finished, expires: Unix times (seconds); None until they happen.
        spec: what to narrate and how (JSON values: :class:`chattts.server.jobs.JobSpec`).
        error: why it failed.
        progress: the last progress (segments and chapters done, seconds, ETA), or None.
        result: the file ``GET .../result`` answers (a chapter file, or ``result.zip``).
        files: the output files (names in the job's ``out`` folder).
        replica: the server (replica) that ran it last.
        bytes: size of the document sent.
    """

    id: str
    state: str
    created: float
    started: Optional[float] = None
    finished: Optional[float] = None
    expires: Optional[float] = None
    spec: dict[str, Any] = field(default_factory=dict)
    error: Optional[str] = None
    progress: Optional[dict[str, Any]] = None
    result: Optional[str] = None
    files: tuple[str, ...] = ()
    replica: Optional[str] = None
    bytes: int = 0

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @classmethod
    def _of(cls, row: tuple) -> JobRecord:
        values = list(row)
        values[6] = json.loads(values[6])
        values[8] = None if values[8] is None else json.loads(values[8])
        values[10] = tuple(json.loads(values[10]))
        return cls(*values)


class JobStore:
    """The index and the folders of the jobs under ``data_dir`` (see the module docstring).

    Every method opens its own short connection, so a store is shared by threads and by the
    processes that share the folder.

    Raises:
        StoreError: the data dir or its index cannot be created, read or written.
    """

    def __init__(self, data_dir: str) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.path = os.path.join(self.data_dir, INDEX)

    # ---- plumbing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _db(self, write: bool = False) -> Iterator[Optional[sqlite3.Connection]]:
        """A connection (None when nothing was ever stored and ``write`` is false); with
        ``write``, one immediate transaction, committed at the end or rolled back."""
        if not os.path.exists(self.path):
            if not write:
                yield None
                return
            self._create()
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"{self.data_dir}: cannot open the jobs index: {e}") from e
        try:
            if write:
                db.execute("BEGIN IMMEDIATE")
            yield db
            if write:
                db.execute("COMMIT")
        except sqlite3.Error as e:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"{self.data_dir}: the jobs index: {e}") from e
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def _create(self) -> None:
        """The index with its table, made aside and linked into place (a reader never sees
        an index without its table; of two processes creating it, one wins, whole)."""
        tmp = f"{self.path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            os.makedirs(os.path.join(self.data_dir, JOBS), exist_ok=True)
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")  # (kept in the file)
                db.executescript(_TABLE)
            finally:
                db.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"{self.data_dir}: cannot create the jobs index: {e}") from e
        finally:
            with contextlib.suppress(OSError):
                os.remove(tmp)

    def folder(self, id: str) -> str:
        """The job's folder (its document, its lock, its ``out`` folder)."""
        return os.path.join(self.data_dir, JOBS, id)

    def out(self, id: str) -> str:
        """The job's narration folder."""
        return os.path.join(self.folder(id), "out")

    def lock(self, id: str) -> Optional[FileLock]:
        """The job's lock, held (None when another process or thread holds it, or the job's
        folder is gone)."""
        folder = self.folder(id)
        if not os.path.isdir(folder):  # (FileLock would create it again)
            return None
        lock = FileLock(os.path.join(folder, "job.lock"), timeout=0)
        try:
            lock.acquire()
        except (Timeout, OSError):
            return None
        return lock

    def remove_files(self, id: str) -> None:
        """Delete the job's folder (its document and its outputs)."""
        shutil.rmtree(self.folder(id), ignore_errors=True)

    # ---- reading --------------------------------------------------------------------------

    def get(self, id: str) -> Optional[JobRecord]:
        with self._db() as db:
            if db is None:
                return None
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (id,)).fetchone()
        return None if row is None else JobRecord._of(row)

    def active(self) -> list[JobRecord]:
        """Queued and running jobs, oldest first."""
        with self._db() as db:
            if db is None:
                return []
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state IN (?, ?) ORDER BY created, id", ACTIVE
            ).fetchall()
        return [JobRecord._of(r) for r in rows]

    def expired(self, now: float) -> list[str]:
        """Ids of the finished jobs whose results have expired."""
        with self._db() as db:
            if db is None:
                return []
            rows = db.execute(
                "SELECT id FROM jobs WHERE state NOT IN (?, ?) AND expires <= ?", (*ACTIVE, now)
            ).fetchall()
        return [r[0] for r in rows]

    def ids(self) -> set[str]:
        with self._db() as db:
            return set() if db is None else {r[0] for r in db.execute("SELECT id FROM jobs")}

    # ---- writing --------------------------------------------------------------------------

    def insert(self, job: JobRecord, max_active: int) -> bool:
        """Add a queued job, unless ``max_active`` jobs are already queued or running (then
        False, and nothing is added)."""
        with self._db(write=True) as db:
            assert db is not None
            (n,) = db.execute("SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)", ACTIVE).fetchone()
            if n >= max_active:
                return False
            db.execute(
                f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * 13)})",
                (job.id, "queued", job.created, None, None, None, json.dumps(job.spec))
                + (None, None, None, "[]", None, job.bytes),
            )
        return True

    def _update(self, id: str, sql: str, args: tuple, states: tuple[str, ...] = ACTIVE) -> bool:
        with self._db(write=True) as db:
            assert db is not None
            marks = ", ".join("?" * len(states))
            cur = db.execute(
                f"UPDATE jobs SET {sql} WHERE id = ? AND state IN ({marks})", (*args, id, *states)
            )
            return cur.rowcount == 1

    def start(self, id: str, replica: str) -> bool:
        """The job runs (again, after a restart) on ``replica``; False when it is no longer
        active (cancelled meanwhile)."""
        now = time.time()
        return self._update(
            id, "state = 'running', started = COALESCE(started, ?), replica = ?", (now, replica)
        )

    def progress(self, id: str, progress: dict[str, Any]) -> None:
        self._update(id, "progress = ?", (json.dumps(progress),), ("running",))

    def finish(
        self,
        id: str,
        state: str,
        ttl: float,
        *,
        error: Optional[str] = None,
        result: Optional[str] = None,
        files: tuple[str, ...] = (),
    ) -> bool:
        """An active job ends in ``state`` (``succeeded``, ``failed`` or ``cancelled``); its
        result expires ``ttl`` seconds from now. False when it had already ended."""
        now = time.time()
        sql = "state = ?, finished = ?, expires = ?, error = ?, result = ?, files = ?"
        return self._update(id, sql, (state, now, now + ttl, error, result, json.dumps(files)))

    def delete(self, id: str) -> None:
        with self._db(write=True) as db:
            assert db is not None
            db.execute("DELETE FROM jobs WHERE id = ?", (id,))


__all__ = ["ACTIVE", "INDEX", "JOBS", "STATES", "JobRecord", "JobStore"]
