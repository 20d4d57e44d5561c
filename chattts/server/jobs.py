"""Narration jobs of the server: documents narrated in the background, on the model that serves
live requests, kept on disk so that a restart resumes them (docs/narrate.md, "The job API").

A job is a :class:`~chattts.narrate.Narration` of an uploaded document into its own folder
under the data dir (:mod:`.jobs_store`). :class:`JobManager` keeps ``job_workers`` runner
threads (1 by default: one job runs at a time, the others wait in submission order); a runner
takes the oldest job it can lock, narrates it, and records its progress, result or error. The
narration draws its audio through :func:`background_synthesize`: each segment is a
``BACKGROUND`` ticket of the server's scheduler, so live requests are admitted first and take
a job's slot when none is free (the job's row starts again later and draws the same tokens).

Every state is in the index (SQLite), and each narration's progress in its own store, so a
server killed at any moment (SIGKILL) resumes its queued and running jobs when it starts
again, rendering only the segments it had not finished. A job's lock file says who runs it:
servers that share a data dir (Ray replicas on one machine) each take different jobs, any of
them answers any job id, and a job whose server died is taken over by another.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, BinaryIO, Optional

from ..assets.cache import user_cache_dir
from ..cli.args import DATA_DIR_ENV
from ..errors import (
    DocumentError,
    MissingDependencyError,
    NarrationCancelled,
    RequestError,
    StoreError,
)
from .jobs_spec import TEXT_KINDS, JobBody, JobSpec
from .jobs_store import ACTIVE, JOBS, JobRecord, JobStore
from .jobs_synth import background_synthesize

if TYPE_CHECKING:
    from ..narrate.narration import Narration
    from ..narrate.render import NarrationProgress
    from .service import SpeechService

logger = logging.getLogger("chattts.server")

#: Seconds between a runner's looks for work, and the janitor's rounds.
POLL_S, TIDY_S = 1.0, 60.0
#: Seconds between looks at the index for jobs cancelled through another server.
WATCH_S = 0.5
#: A job folder that the index does not know is removed after this many seconds (a
#: submission interrupted between its upload and its row).
ORPHAN_S = 3600.0
_SUFFIX = {"txt": ".txt", "md": ".md", "html": ".html", "epub": ".epub"}


def data_dir(path: Optional[str]) -> str:
    """The jobs' data dir: ``path``, else ``$CHATTTS_DATA_DIR``, else the user cache's."""
    return path or os.environ.get(DATA_DIR_ENV) or user_cache_dir("server")


class JobManager:
    """The jobs of one server (see the module docstring).

    Args:
        service: the server's model, worker and voices.
        folder: the data dir (:func:`data_dir`); created with the first job.
        max_jobs: queued and running jobs at most (more: 429).
        max_bytes: the largest document accepted (more: 413).
        ttl: seconds a finished job's results are kept.
        workers: jobs running at once.
        replica: this server's name (the replica header's), recorded with the jobs it runs.
    """

    def __init__(
        self,
        service: SpeechService,
        folder: str,
        *,
        max_jobs: int = 16,
        max_bytes: int = 50 << 20,
        ttl: float = 24 * 3600.0,
        workers: int = 1,
        replica: str = "",
    ) -> None:
        self.service, self.store = service, JobStore(folder)
        self.max_jobs, self.max_bytes, self.ttl = max_jobs, max_bytes, ttl
        self.workers, self.replica = workers, replica or f"pid {os.getpid()}"
        self.batch = service.worker.max_batch
        self._synthesize = background_synthesize(service.worker.scheduler)
        self._lock = threading.Lock()
        self._running: dict[str, Optional[Narration]] = {}  # jobs this process runs
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._threads: list[threading.Thread] = []
        self._identity: Optional[str] = None
        self._tidied = 0.0

    # ---- control ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the runners (and the watcher of cancels made through other servers)."""
        self._stopping.clear()
        names = [f"chattts-job-{i}" for i in range(self.workers)] + ["chattts-job-watch"]
        targets = [self._loop] * self.workers + [self._watch]
        self._threads = [
            threading.Thread(target=t, name=n, daemon=True)
            for t, n in zip(targets, names, strict=True)
        ]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the runners: a job under way stops within one generation step and stays
        ``running`` in the index, so the next start resumes it."""
        self._stopping.set()
        self._wake.set()
        with self._lock:
            for narration in self._running.values():
                if narration is not None:
                    narration.cancel()
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    @property
    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    # ---- the API ----------------------------------------------------------------------------

    def submit(
        self, body: JobBody, document: BinaryIO, filename: Optional[str], field: str
    ) -> JobRecord:
        """Queue a job for ``document`` (a binary file object: the ``input`` text, or the
        upload named ``filename``); ``field`` names it in errors (``input`` or ``file``).

        Raises:
            RequestError: 400 (a bad voice, format, or document: empty, not UTF-8, not an
            EPUB...; naming the field), 413 (larger than the limit), 429 (too many jobs).
        """
        kind = self._kind(body, filename, field)
        if body.max_new_token is not None and body.max_new_token > self.service.max_new_token_limit:
            raise RequestError(
                f"'max_new_token' must be at most {self.service.max_new_token_limit}",
                "max_new_token",
                "invalid_value",
            )
        voice = self.service.voices.fields(body.voice)  # 400 naming 'voice'
        if body.speed != 1.0 or body.pitch:
            _check_stretch("speed" if body.speed != 1.0 else "pitch")
        if len(self.store.active()) >= self.max_jobs:
            raise self._busy()
        id = uuid.uuid4().hex
        name = "input" + _SUFFIX[kind]
        try:
            size = self._save(id, name, document, field)
            self._check_document(os.path.join(self.store.folder(id), name), kind, field)
            spec = JobSpec.of(body, kind, name, voice, self.service.max_new_token_limit)
            record = JobRecord(id, "queued", time.time(), spec=spec.as_json(), bytes=size)
            if not self.store.insert(record, self.max_jobs):
                raise self._busy()
        except BaseException:
            self.store.remove_files(id)
            raise
        logger.info("job %s queued (%s, %d bytes)", id, kind, size)
        self._wake.set()
        return self.store.get(id) or record

    def get(self, id: str) -> Optional[JobRecord]:
        """The job (None: unknown, or its results expired)."""
        if not _is_id(id):
            return None
        record = self.store.get(id)
        if record is None or (record.expires is not None and record.expires <= time.time()):
            return None
        return record

    def cancel(self, id: str) -> Optional[tuple[JobRecord, bool]]:
        """``DELETE``: an active job is cancelled (its files removed; its record kept until
        it expires); a finished one is deleted with its files. Returns (the job, whether it
        was deleted: False for a cancelled job, or a finished one a runner still holds); None
        for an unknown job."""
        record = self.get(id)
        if record is None:
            return None
        if record.active and self.store.finish(id, "cancelled", self.ttl):
            logger.info("job %s cancelled", id)
            with self._lock:
                narration = self._running.get(id)
            if narration is not None:
                narration.cancel()  # its runner removes the files
            else:
                self._remove(id, keep_record=True)  # (runs elsewhere: that server removes them)
            return self.store.get(id) or record, False
        return record, self._remove(id, keep_record=False)

    def expire(self, now: Optional[float] = None) -> list[str]:
        """Delete the jobs whose results have expired (and job folders the index does not
        know, left by an interrupted submission); returns the deleted ids."""
        now = time.time() if now is None else now
        gone = [id for id in self.store.expired(now) if self._remove(id, keep_record=False)]
        root = os.path.join(self.store.data_dir, JOBS)
        if os.path.isdir(root):
            known = self.store.ids()
            for name in os.listdir(root):
                path = os.path.join(root, name)
                if name not in known and now - os.path.getmtime(path) > ORPHAN_S:
                    self.store.remove_files(name)
        return gone

    def path(self, record: JobRecord, name: str) -> str:
        """An output file of a job (a name from ``record.files``)."""
        return os.path.join(self.store.out(record.id), name)

    # ---- submission ---------------------------------------------------------------------

    def _kind(self, body: JobBody, filename: Optional[str], field: str) -> str:
        from ..narrate.documents import document_kind

        if field == "input":
            kind = body.format or "txt"
            if kind not in TEXT_KINDS:
                msg = f"'format' {kind!r} cannot be sent as 'input' text: upload the file"
                raise RequestError(msg, "format", "invalid_value")
            return kind
        try:
            return document_kind(filename or "", body.format)
        except DocumentError as e:
            raise RequestError(f"'file': {e}: or give 'format'", "file", "invalid_document") from e

    def _busy(self) -> RequestError:
        return RequestError(
            f"{self.max_jobs} jobs are already queued or running: retry later",
            code="rate_limit_exceeded",
            status=429,
            type="rate_limit_error",
        )

    def _save(self, id: str, name: str, document: BinaryIO, field: str) -> int:
        folder = self.store.folder(id)
        try:
            os.makedirs(folder)
            size = 0
            with open(os.path.join(folder, name), "wb") as f:
                while block := document.read(1 << 20):
                    size += len(block)
                    if size > self.max_bytes:
                        raise RequestError(
                            f"'{field}' is larger than {self.max_bytes} bytes",
                            field,
                            "too_large",
                            status=413,
                        )
                    f.write(block)
        except OSError as e:
            raise StoreError(f"{folder}: cannot store the document: {e.strerror or e}") from e
        if size == 0:
            raise RequestError(f"'{field}' is empty: nothing to narrate", field, "empty_input")
        return size

    def _check_document(self, path: str, kind: str, field: str) -> None:
        """Read the document as its job will (400 naming ``field`` when it cannot be)."""
        from ..narrate.documents import load_document
        from ..narrate.segments import speakable as has_words

        try:
            doc = load_document(path, kind=kind)
        except DocumentError as e:
            msg = str(e).replace(path, f"'{field}'")
            code = "empty_input" if "nothing to narrate" in msg else "invalid_document"
            status = 413 if "too large" in msg else 400  # (the narration's own limits)
            raise RequestError(msg, field, code, status=status) from e
        if not any(has_words(p) for c in doc.chapters for p in c.paragraphs):
            raise RequestError(
                f"'{field}': nothing to narrate (no letter or digit)", field, "empty_input"
            )

    # ---- the runners ----------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._tidy()
                claimed = self._claim()
            except Exception:  # the index or the disk failed: try again later, never die
                logger.exception("the job runner could not look for work")
                claimed = None
            if claimed is None:
                self._wake.wait(POLL_S)
                self._wake.clear()
                continue
            record, lock = claimed
            try:
                self._run(record)
            except Exception:  # a bug must not stop the runner: the job fails, others go on
                logger.exception("job %s failed", record.id)
                self.store.finish(record.id, "failed", self.ttl, error="internal error")
            finally:
                with self._lock:
                    self._running.pop(record.id, None)
                lock.release()

    def _claim(self) -> Optional[tuple[JobRecord, object]]:
        """The oldest active job that nobody runs, locked and marked running here."""
        try:
            candidates = self.store.active()
        except StoreError:
            logger.exception("cannot read the jobs index")
            return None
        for record in candidates:
            with self._lock:
                if self._stopping.is_set() or record.id in self._running:
                    continue
                lock = self.store.lock(record.id)
                if lock is None:
                    continue  # another server (or runner) has it
                if not self.store.start(record.id, self.replica):
                    lock.release()  # cancelled meanwhile
                    continue
                self._running[record.id] = None
            again = "resumed" if record.state == "running" else "started"
            logger.info("job %s %s on %s", record.id, again, self.replica)
            return record, lock
        return None

    def _run(self, record: JobRecord) -> None:
        from ..narrate.documents import load_document
        from ..narrate.narration import Narration

        id, spec = record.id, JobSpec.from_json(record.spec)
        try:
            document = load_document(
                os.path.join(self.store.folder(id), spec.document), kind=spec.kind
            )
            settings = spec.settings(self._model_identity())
            narration = Narration(
                document, self.store.out(id), settings, spec.output(), batch=self.batch
            )
        except Exception as e:
            self.store.finish(id, "failed", self.ttl, error=f"{type(e).__name__}: {e}")
            return
        with narration:
            with self._lock:
                self._running[id] = narration
            if self._stopping.is_set():
                return
            current = self.store.get(id)
            if current is None or current.state != "running":  # cancelled since it was taken
                narration.close()
                self._ended(id, None)
                return
            try:
                manifest = narration.run(
                    self.service.chat,
                    lambda p: self._progress(id, narration, p),
                    synthesize=self._synthesize,
                )
            except NarrationCancelled:
                manifest = None
            except Exception as e:
                logger.warning("job %s failed: %s", id, e)
                self.store.finish(id, "failed", self.ttl, error=f"{type(e).__name__}: {e}")
                return
        self._ended(id, manifest)

    def _ended(self, id: str, manifest: Optional[dict]) -> None:
        record = self.store.get(id)
        if manifest is None and record is not None and record.state != "cancelled":
            logger.info("job %s paused: the server stops; the next start resumes it", id)
            return
        if manifest is not None:
            files = _outputs(manifest)
            one = len(manifest["chapters"]) == 1
            result = manifest["chapters"][0]["file"] if one else "result.zip"
            if self.store.finish(id, "succeeded", self.ttl, result=result, files=files):
                logger.info("job %s succeeded", id)
                return
        self.store.remove_files(id)  # cancelled (this runner holds its lock): the record stays

    def _progress(self, id: str, narration: Narration, p: NarrationProgress) -> None:
        """After every batch (and before the first): the progress into the index; a stop
        seen here ends the run (``Narration.run`` clears a cancel made before it began)."""
        if self._stopping.is_set():
            narration.cancel()
        self.store.progress(
            id,
            {
                "chapters_done": p.chapters_done,
                "chapters": p.chapters,
                "segments_done": p.segments_done,
                "segments": p.segments,
                "audio_seconds": round(p.audio_seconds, 3),
                "elapsed": round(p.elapsed, 3),
                "eta_seconds": None if p.eta is None else round(p.eta, 1),
                "real_time_factor": p.real_time_factor,
            },
        )

    def _watch(self) -> None:
        """Cancel the jobs run here that were cancelled through another server."""
        while not self._stopping.wait(WATCH_S):
            with self._lock:
                running = {i: n for i, n in self._running.items() if n is not None}
            for id, narration in running.items():
                try:
                    record = self.store.get(id)
                except StoreError:
                    continue
                if record is None or record.state not in ACTIVE:
                    narration.cancel()

    def _tidy(self) -> None:
        now = time.time()
        if now - self._tidied >= TIDY_S:
            self._tidied = now
            try:
                gone = self.expire(now)
            except (StoreError, OSError):
                logger.exception("cannot remove expired jobs")
                return
            if gone:
                logger.info("%d expired jobs removed", len(gone))

    def _remove(self, id: str, keep_record: bool) -> bool:
        """Remove a job's files (and its record) unless a runner holds it."""
        lock = self.store.lock(id)
        if lock is None and os.path.isdir(self.store.folder(id)):
            return False
        try:
            self.store.remove_files(id)
            if not keep_record:
                self.store.delete(id)
        finally:
            if lock is not None:
                lock.release()
        return True

    def _model_identity(self) -> str:
        from ..narrate.render import model_identity

        with self._lock:
            if self._identity is None:
                self._identity = model_identity(self.service.chat)
            return self._identity


def _check_stretch(field: str) -> None:
    """A tempo or pitch change needs pedalboard: without it, a 400 naming ``field``."""
    from ..audio.dsp import require_stretch

    try:
        require_stretch()
    except MissingDependencyError as e:
        msg = f"'{field}': this server cannot change tempo or pitch ({e})"
        raise RequestError(msg, field, "unsupported_value") from e


def _outputs(manifest: dict) -> tuple[str, ...]:
    """The files a narration wrote (its manifest names them), the manifest last."""
    names = [c[k] for c in manifest["chapters"] for k in ("file", "captions") if c.get(k)]
    if manifest["book"] is not None:
        names.append(manifest["book"]["file"])
    return (*names, "manifest.json")


def _is_id(id: str) -> bool:
    return len(id) == 32 and all(c in "0123456789abcdef" for c in id)


__all__ = ["JobManager", "data_dir"]
