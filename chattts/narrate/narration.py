"""One narration: a document read into an output folder, resumable (docs/narrate.md).

:class:`Narration` is what ``chattts narrate`` runs and what a server job wraps: an id, a
state, progress, an output folder. :meth:`Narration.run` plans the segments, renders the
missing ones in batches (committing each batch to the progress store), writes each chapter's
files as soon as its last segment is done, then the book and the manifest. Run again (after a
crash, Ctrl-C, a full disk, or with a changed document or pauses), it renders only the segments
that are not in the store and rewrites only the files whose content changed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any, Optional

from .. import __version__
from ..errors import NarrationCancelled, NarrationError
from ..generation.engine import Interrupt
from . import book as files
from .book import MANIFEST, OutputOptions
from .documents import Document
from .render import (
    NarrationProgress,
    Progress,
    Renderer,
    Synthesize,
    batches,
    chat_synthesize,
    model_identity,
)
from .segments import NarrationSettings, Segment, plan
from .store import ProgressStore, StoredSegment

if TYPE_CHECKING:
    from ..chat import Chat

logger = logging.getLogger("chattts")


class Narration:
    """A document narrated into ``folder``.

    Args:
        document: what is read.
        folder: the output folder (created if missing).
        settings: how it is read (``settings.model`` empty: the loaded model's identity).
        output: which files are written.
        batch: segments rendered together (the engine's batch).
        force: forget what an earlier run did and start over.
        store: an open progress store of ``folder`` (default: opened here).

    Raises:
        StoreError: the folder cannot be written, or another narration runs in it.
    """

    def __init__(
        self,
        document: Document,
        folder: str,
        settings: NarrationSettings,
        output: OutputOptions = OutputOptions(),  # noqa: B008 - frozen
        *,
        batch: int = 8,
        force: bool = False,
        store: Optional[ProgressStore] = None,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        self.document, self.folder, self.settings = document, folder, settings
        self.output, self.batch = output, batch
        if store is None:
            files.check_folder(folder)
        self.store = store or ProgressStore(folder)
        if force:
            self.store.reset()
        self._id, self._state = self.store.id, self.store.state
        self.progress: Optional[NarrationProgress] = None
        self._interrupt = Interrupt()

    @property
    def id(self) -> str:
        """The narration's id (kept in its progress store)."""
        return self._id

    @property
    def state(self) -> str:
        """``new``, ``running``, ``done``, ``failed`` or ``cancelled`` (also kept in the
        progress store, for the next process)."""
        return self._state

    def _set_state(self, state: str, error: Optional[str] = None) -> None:
        self._state = state
        self.store.set_state(state, error)

    def cancel(self) -> None:
        """Stop the run in flight within one generation step (from any thread); what is
        finished stays, and a later :meth:`run` goes on from there."""
        self._interrupt.set()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Narration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the run --------------------------------------------------------------------------

    def run(
        self,
        chat: Chat,
        progress: Optional[Progress] = None,
        *,
        synthesize: Optional[Synthesize] = None,
    ) -> dict[str, Any]:
        """Narrate (or finish narrating) the document with the loaded ``chat``; returns the
        manifest (also written to ``folder/manifest.json``). ``synthesize`` draws the audio
        (default: ``chat.synthesize`` in this thread, :func:`~.render.chat_synthesize`; the
        server passes its scheduler's); ``chat`` gives the model's identity and rate.

        Raises:
            NarrationError: a segment gave no audio after every redraw (the others are kept).
            NarrationCancelled: :meth:`cancel` was called.
            StoreError: a file or the store cannot be written (what was done is kept).
        """
        self._interrupt = Interrupt()
        settings = self.settings
        if not settings.model:
            settings = replace(settings, model=model_identity(chat))
        chapters = plan(self.document, settings)
        self._set_state("running")
        try:
            draw = synthesize or chat_synthesize(chat)
            manifest = _Run(self, chat, settings, chapters, progress, draw).go()
        except NarrationCancelled:
            self._set_state("cancelled")
            raise
        except BaseException as e:
            self._state = "failed"
            try:
                self.store.set_state("failed", f"{type(e).__name__}: {e}")
            except Exception:  # the store itself failed (a full disk): keep the first error
                logger.debug("cannot record the failure", exc_info=True)
            raise
        self._set_state("done")
        return manifest


class _Run:
    """The state of one :meth:`Narration.run`."""

    def __init__(
        self,
        narration: Narration,
        chat: Chat,
        settings: NarrationSettings,
        chapters: tuple[tuple[Segment, ...], ...],
        progress: Optional[Progress],
        synthesize: Synthesize,
    ) -> None:
        self.n, self.settings, self.chapters = narration, settings, chapters
        self.synthesize = synthesize
        self.store, self.folder = narration.store, narration.folder
        self.callback = progress
        self.rate = int(chat.config.sample_rate)
        self.segments = [s for ch in chapters for s in ch]
        self.ids = {s.id for s in self.segments}
        self.done = self.store.done(self.ids)
        self.lengths = {i: self.store.segment(i).samples for i in self.done}
        self.written: set[int] = set()
        self.rendered_seconds, self.rendered, self.redraws = 0.0, 0, 0
        self.start = time.monotonic()

    def go(self) -> dict[str, Any]:
        store, n = self.store, self.n
        run = store.new_run()
        files.remove_temporaries(self.folder)
        files.remove_file(os.path.join(self.folder, MANIFEST))  # rewritten when all is done
        self._drop_stale_outputs()
        pending = self.ids - self.done
        logger.info(
            "%s: %d chapters, %d segments, %d to render",
            self.folder,
            len(self.chapters),
            len(self.ids),
            len(pending),
        )
        self._write_finished_chapters()
        self._report()
        renderer = Renderer(self.synthesize, self.settings, n._interrupt)
        failed: list[Segment] = []
        for batch in batches(self.segments, pending, n.batch):
            rendered, silent = renderer.render(batch)
            store.put(rendered, run)
            for r in rendered:
                self.done.add(r.id)
                self.lengths[r.id] = int(r.audio.size)
                self.rendered_seconds += r.audio.size / self.rate
                self.redraws += r.attempts > 0
            self.rendered += len(rendered)
            failed += silent
            self._write_finished_chapters()
            self._report()
        if failed:  # every other segment is rendered and kept
            s = failed[0]
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise NarrationError(
                f"chapter {s.chapter + 1}, segment {s.index + 1} gave no audio after "
                f"{self.settings.max_redraws + 1} draws{more}: {s.text!r}; try another "
                "--manual-seed"
            )
        manifest = self._finish()
        pruned = store.prune(self.ids)
        if pruned:
            logger.info("%d segments no longer in the book removed from the store", pruned)
        return manifest

    # ---- progress -------------------------------------------------------------------------

    def _report(self) -> None:
        done_chapters = sum(all(s.id in self.done for s in ch) for ch in self.chapters)
        p = NarrationProgress(
            chapters_done=done_chapters,
            chapters=len(self.chapters),
            segments_done=len(self.done),
            segments=len(self.ids),
            audio_seconds=sum(self.lengths.values()) / self.rate,
            rendered_seconds=self.rendered_seconds,
            rendered_segments=self.rendered,
            elapsed=time.monotonic() - self.start,
            redraws=self.redraws,
        )
        self.n.progress = p
        if self.callback is not None:
            self.callback(p)

    # ---- files ----------------------------------------------------------------------------

    def _names(self, c: int) -> tuple[str, Optional[str]]:
        """The chapter's audio file and its caption file (None without captions)."""
        count, out = len(self.chapters), self.n.output
        audio_name = files.chapter_name(c + 1, count, files.audio_suffix(out.format))
        if out.captions is None:
            return audio_name, None
        return audio_name, files.chapter_name(c + 1, count, files.captions_suffix(out.captions))

    def _expected_names(self) -> set[str]:
        names = {MANIFEST}
        for c in range(len(self.chapters)):
            names |= {name for name in self._names(c) if name is not None}
        if self.n.output.book is not None:
            names.add("book" + files.BOOK_FORMATS[self.n.output.book][1])
        return names

    def _drop_stale_outputs(self) -> None:
        """Files an earlier run wrote that this narration no longer has (fewer chapters,
        another format) are removed."""
        expected = self._expected_names()
        for name in self.store.outputs():
            if name not in expected:
                files.remove_file(os.path.join(self.folder, name))
                self.store.set_output(name, None)

    def _fresh(self, name: str, digest: str) -> bool:
        """True when ``name`` exists and holds what ``digest`` describes."""
        path = os.path.join(self.folder, name)
        return self.store.outputs().get(name) == digest and os.path.exists(path)

    def _write_finished_chapters(self) -> None:
        for c, segments in enumerate(self.chapters):
            if c in self.written or not all(s.id in self.done for s in segments):
                continue
            self._write_chapter(c, segments)
            self.written.add(c)

    def _write_chapter(self, c: int, segments: Sequence[Segment]) -> None:
        out, rate = self.n.output, self.rate
        records = self._records(segments)
        cues, _ = files.timeline(segments, records, rate, out.finish)
        title = self.n.document.chapters[c].title
        audio_name, captions_name = self._names(c)
        ids = [s.id for s in segments]
        pauses = [files.pause_samples(s, rate) for s in segments]
        finishing = [asdict(out.finish)] if out.finish.active else []  # none: keys as before
        key = files.digest(out.format, out.bit_rate, rate, title, ids, pauses, *finishing)
        if not self._fresh(audio_name, key):
            meta = {"title": title, "album": self.n.document.title, "track": str(c + 1)}
            chunks = files.chapter_audio(self.store, segments, rate, out.finish)
            path = os.path.join(self.folder, audio_name)
            files.write_audio(path, chunks, out.format, rate, out, metadata=meta)
            self.store.set_output(audio_name, key)
            logger.info("chapter %d written: %s", c + 1, path)
        if out.captions is not None and captions_name is not None:
            text = files.chapter_captions(cues, rate, out.captions, self.settings.max_chars)
            key = files.digest(text)
            if not self._fresh(captions_name, key):
                files.write_bytes(os.path.join(self.folder, captions_name), text.encode("utf-8"))
                self.store.set_output(captions_name, key)

    def _records(self, segments: Sequence[Segment]) -> dict[str, StoredSegment]:
        return {s.id: self.store.segment(s.id) for s in segments}

    def _finish(self) -> dict[str, Any]:
        """The book file and the manifest, once every segment is done."""
        rate, out = self.rate, self.n.output
        lengths = []
        for segments in self.chapters:
            records = self._records(segments)
            lengths.append(files.timeline(segments, records, rate, out.finish)[1])
        titles = [c.title for c in self.n.document.chapters]
        book_name = None
        if out.book is not None:
            fmt, suffix = files.BOOK_FORMATS[out.book]
            book_name = "book" + suffix
            ids = [s.id for s in self.segments]
            pauses = [files.pause_samples(s, rate) for s in self.segments]
            finishing = [asdict(out.finish)] if out.finish.active else []
            key = files.digest(out.book, out.bit_rate, rate, titles, ids, pauses, *finishing)
            if not self._fresh(book_name, key):
                chunks = (  # a chapter finished again here: the same samples as its file's
                    chunk
                    for segments in self.chapters
                    for chunk in files.chapter_audio(self.store, segments, rate, out.finish)
                )
                meta = {"title": self.n.document.title, "album": self.n.document.title}
                marks = files.book_chapters(lengths, titles)
                path = os.path.join(self.folder, book_name)
                files.write_audio(path, chunks, fmt, rate, out, marks, meta)
                self.store.set_output(book_name, key)
                logger.info("book written: %s", path)
        manifest = self._manifest(lengths, book_name)
        files.write_json(os.path.join(self.folder, MANIFEST), manifest)
        self.store.set_output(MANIFEST, files.digest(manifest))
        return manifest

    def _manifest(self, lengths: Sequence[int], book_name: Optional[str]) -> dict[str, Any]:
        rate, out, doc = self.rate, self.n.output, self.n.document
        chapters, redrawn, at = [], [], 0
        for c, (segments, n) in enumerate(zip(self.chapters, lengths, strict=True)):
            audio_name, captions_name = self._names(c)
            chapters.append(
                {
                    "number": c + 1,
                    "title": doc.chapters[c].title,
                    "file": audio_name,
                    "captions": captions_name,
                    "start": at / rate,
                    "duration": n / rate,
                    "samples": n,
                    "segments": len(segments),
                    "voice": self.settings.voice_of(c).label,
                }
            )
            at += n
            for s in segments:
                rec = self.store.segment(s.id)
                if rec.attempts:
                    redrawn.append(
                        {"chapter": c + 1, "segment": s.index + 1, "text": s.text}
                        | {"draws": rec.attempts + 1, "seed": rec.seed}
                    )
        return {
            "title": doc.title,
            "chattts": __version__,
            "sample_rate": rate,
            "format": out.format,
            "captions": out.captions,
            "finish": out.describe()["finish"],
            "book": None if book_name is None else {"file": book_name, "format": out.book},
            "duration": at / rate,
            "samples": at,
            "segments": len(self.segments),
            "voice": self.settings.voice.label,
            "settings": self.settings.describe(),
            "chapters": chapters,
            "redrawn": redrawn,
        }


__all__ = ["Narration"]
