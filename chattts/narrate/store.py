"""The progress of a narration, in SQLite in its output folder (docs/narrate.md, "Resuming").

``OUTDIR/narration.sqlite`` holds every finished segment (its id, its audio as 16-bit PCM, its
draws), a log of renders (one row per segment rendered, with the run that rendered it), the
files written (with the digest of what they hold), and the narration's state (``id``,
``state``: ``new``, ``running``, ``done``, ``failed`` or ``cancelled``; ``error``). A batch's
segments are committed in one transaction (WAL journal, ``synchronous=FULL``), so a process
killed at any moment leaves whole batches or nothing, and the next run renders only what is
missing. One narration at a time per folder: a second one gets a :class:`StoreError` (the lock
is released when the process ends, however it ends). Every SQLite or file-system failure (a
full disk, a read-only folder) is a :class:`StoreError` naming the folder; what was committed
stays.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
from filelock import FileLock, Timeout

from ..audio import to_pcm16
from ..errors import StoreError

#: The store's file name in the output folder.
STORE_NAME = "narration.sqlite"
#: Version of the tables; another version is refused (``--force`` starts over).
SCHEMA = 1
_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS segments (
    id TEXT PRIMARY KEY, samples INTEGER NOT NULL, attempts INTEGER NOT NULL,
    seed INTEGER NOT NULL, text TEXT NOT NULL, audio BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS renders (
    n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, attempts INTEGER NOT NULL,
    run INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outputs (name TEXT PRIMARY KEY, digest TEXT NOT NULL);
"""


@dataclass(frozen=True)
class StoredSegment:
    """A finished segment: ``attempts`` 0 when its first draw gave audio, else the redraw
    that did; ``seed`` that draw's seed; ``samples`` its length (at the model's rate)."""

    id: str
    samples: int
    attempts: int
    seed: int
    text: str


@dataclass(frozen=True)
class Rendered:
    """A segment's audio as a render produced it: float32 (n,), n > 0, at the model's rate."""

    id: str
    audio: np.ndarray
    attempts: int
    seed: int
    text: str


class ProgressStore:
    """The SQLite progress store of the output folder ``folder`` (created if missing).

    Raises:
        StoreError: the folder or its database cannot be created or written, holds another
            schema, or another narration holds its lock.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.path = os.path.join(folder, STORE_NAME)
        with self._errors("cannot open the progress store"):
            os.makedirs(folder, exist_ok=True)
            self._lock = _lock(self.path + ".lock", folder)
        try:
            with self._errors("cannot open the progress store"):
                self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_TABLES)
                self._check_schema()
        except BaseException:
            self._lock.release()
            raise

    # ---- plumbing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except (sqlite3.Error, OSError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise StoreError(f"{self.folder}: {what}: {reason}") from e

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (rolled back on any error)."""
        with self._errors("cannot write the progress store"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._commit()
            except BaseException:
                if self._db.in_transaction:  # (SQLite may have rolled back a failed commit)
                    self._db.execute("ROLLBACK")
                raise

    def _commit(self) -> None:
        self._db.execute("COMMIT")

    def _check_schema(self) -> None:
        found = self.get("schema")
        if found is None:
            with self._transaction() as db:
                rows = [("schema", str(SCHEMA)), ("id", uuid.uuid4().hex), ("state", "new")]
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", rows)
        elif found != str(SCHEMA):
            raise StoreError(
                f"{self.path}: a progress store of another version ({found}, not {SCHEMA}): "
                "start over with --force"
            )

    def close(self) -> None:
        """Close the database and release the folder's lock (closing twice does nothing)."""
        db = getattr(self, "_db", None)
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()
            self._db = None  # type: ignore[assignment]
        self._lock.release()

    def __enter__(self) -> ProgressStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- metadata and state ---------------------------------------------------------------

    def get(self, key: str) -> Optional[str]:
        """A metadata value (``id``, ``state``, ``error``...), None when unset."""
        with self._errors("cannot read the progress store"):
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set(self, key: str, value: Optional[str]) -> None:
        """Set (or, with None, remove) a metadata value."""
        with self._transaction() as db:
            if value is None:
                db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def id(self) -> str:
        """The narration's id (made when the store was created; ``reset`` keeps it)."""
        return self.get("id") or ""

    @property
    def state(self) -> str:
        return self.get("state") or "new"

    def set_state(self, state: str, error: Optional[str] = None) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('state', ?)", (state,))
            db.execute("DELETE FROM meta WHERE key = 'error'")
            if error is not None:
                db.execute("INSERT INTO meta VALUES ('error', ?)", (error,))

    def new_run(self) -> int:
        """Count a new run (a process working on this narration); returns its number."""
        run = int(self.get("runs") or 0) + 1
        self.set("runs", str(run))
        return run

    def reset(self) -> None:
        """Forget every segment, render and output (``--force``); the id stays."""
        with self._transaction() as db:
            for table in ("segments", "renders", "outputs"):
                db.execute(f"DELETE FROM {table}")
            db.execute("DELETE FROM meta WHERE key NOT IN ('schema', 'id')")
            db.execute("INSERT INTO meta VALUES ('state', 'new')")

    # ---- segments -------------------------------------------------------------------------

    def done(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` are finished."""
        wanted = set(ids)
        with self._errors("cannot read the progress store"):
            rows = self._db.execute("SELECT id FROM segments").fetchall()
        return wanted & {r[0] for r in rows}

    def put(self, rendered: Sequence[Rendered], run: int) -> None:
        """Store finished segments, and log their renders, in one transaction."""
        with self._transaction() as db:
            for r in rendered:
                db.execute(
                    "INSERT OR REPLACE INTO segments VALUES (?, ?, ?, ?, ?, ?)",
                    (r.id, int(r.audio.size), r.attempts, r.seed, r.text, to_pcm16(r.audio)),
                )
                db.execute(
                    "INSERT INTO renders (id, attempts, run) VALUES (?, ?, ?)",
                    (r.id, r.attempts, run),
                )

    def segment(self, id: str) -> StoredSegment:
        """A finished segment's record (KeyError when it is not finished)."""
        with self._errors("cannot read the progress store"):
            row = self._db.execute(
                "SELECT id, samples, attempts, seed, text FROM segments WHERE id = ?", (id,)
            ).fetchone()
        if row is None:
            raise KeyError(id)
        return StoredSegment(*row)

    def audio(self, id: str) -> np.ndarray:
        """A finished segment's audio, float32 (n,) (its 16-bit samples / 32767, so that
        writing 16-bit PCM gives back exactly the stored samples)."""
        with self._errors("cannot read the progress store"):
            row = self._db.execute("SELECT audio FROM segments WHERE id = ?", (id,)).fetchone()
        if row is None:
            raise KeyError(id)
        return np.frombuffer(row[0], dtype="<i2").astype(np.float32) / 32767.0

    def renders(self, run: Optional[int] = None) -> list[tuple[str, int, int]]:
        """(segment id, attempts, run) of every render logged (of run ``run`` only)."""
        query, args = "SELECT id, attempts, run FROM renders", ()
        if run is not None:
            query, args = query + " WHERE run = ?", (run,)
        with self._errors("cannot read the progress store"):
            return [tuple(r) for r in self._db.execute(query + " ORDER BY n", args)]

    def prune(self, keep: Iterable[str]) -> int:
        """Delete the segments whose ids are not in ``keep``; returns how many."""
        kept = set(keep)
        with self._errors("cannot read the progress store"):
            ids = [r[0] for r in self._db.execute("SELECT id FROM segments")]
        stale = [i for i in ids if i not in kept]
        with self._transaction() as db:
            db.executemany("DELETE FROM segments WHERE id = ?", [(i,) for i in stale])
        return len(stale)

    # ---- output files ---------------------------------------------------------------------

    def outputs(self) -> dict[str, str]:
        """The files written: name (relative to the folder) -> digest of what it holds."""
        with self._errors("cannot read the progress store"):
            return dict(self._db.execute("SELECT name, digest FROM outputs").fetchall())

    def set_output(self, name: str, digest: Optional[str]) -> None:
        """Record a file written (or, with None, removed)."""
        with self._transaction() as db:
            if digest is None:
                db.execute("DELETE FROM outputs WHERE name = ?", (name,))
            else:
                db.execute("INSERT OR REPLACE INTO outputs VALUES (?, ?)", (name, digest))


def _lock(path: str, folder: str) -> FileLock:
    """The folder's lock, held until released (or the process ends)."""
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout as e:
        raise StoreError(f"{folder}: another narration is running in this folder") from e
    return lock


__all__ = ["SCHEMA", "STORE_NAME", "ProgressStore", "Rendered", "StoredSegment"]
