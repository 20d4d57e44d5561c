"""The page's callbacks (:class:`WebUI`): generation with per-session interrupts, the Voice
section (seeds, speaker strings, mixes, sample recordings, saving), text files and SSML.

A user's mistake (no text, a bad SSML document, an unknown voice, a value out of range) is a
:class:`gradio.Error` shown in the page, with one line in the log and no traceback; the
library's warnings become :class:`gradio.Warning` toasts and a line of the status.
"""

from __future__ import annotations

import html
import logging
import os
import random
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Union

import gradio as gr

from ..errors import ChatTTSError
from ..generation.engine import Interrupt
from ..validation import MAX_SEED
from ..voices import SEED_VOICE, Voice, VoiceLibrary
from . import generate as gen
from .text import as_ssml, read_text_file
from .voices import CUSTOM, PageVoices, custom_voice, mix_spec

if TYPE_CHECKING:
    from ..chat import Chat

#: What ``gr.update()`` returns: a dict of a component's changed properties.
Update = dict[str, Any]

logger = logging.getLogger("chattts.webui")

#: Browser sessions remembered at most (their flags and output folders); the oldest go first.
MAX_SESSIONS = 1000
#: Largest seed the dice draw (any seed up to the library's bound may be typed).
DICE_SEEDS = 2**31 - 1

_MD_SPECIAL = re.compile(r"([\\`*_\[\]#<>|])")


def markdown_text(text: str) -> str:
    """``text`` shown literally in Markdown (``<speak>`` stays visible, ``*`` no emphasis)."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def user_error(e: BaseException) -> gr.Error:
    """The error box for a user's mistake: its message, no traceback in the log."""
    logger.info("refused: %s", e)
    return gr.Error(html.escape(str(e), quote=False), print_exception=False)


@dataclass
class _Session:
    """One browser session: its cancel flag, whether it is generating, and the folder of its
    last generation's files."""

    flag: Interrupt = field(default_factory=Interrupt)
    running: bool = False
    folder: Optional[str] = None


class WebUI:
    """The callbacks over one Chat, shared by every browser session.

    Args:
        chat: a loaded chat.
        voices: extra named voices (a voices file's): name -> seed, speaker string or Voice.
        library: where voices are listed and saved (default ``chat.voices``).
    """

    def __init__(
        self,
        chat: Chat,
        voices: Optional[dict[str, Any]] = None,
        library: Optional[VoiceLibrary] = None,
    ) -> None:
        self.chat = chat
        self.rate = int(chat.config.sample_rate)
        self.voices = PageVoices(chat, voices, library)
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self._files = tempfile.TemporaryDirectory(prefix="chattts-webui-")
        self.runs = 0  # generations finished
        self.interrupted = 0  # of which ended by an interrupt

    # ---- sessions -------------------------------------------------------------------------

    def _session(self, request: Optional[gr.Request]) -> _Session:
        key = getattr(request, "session_hash", None) or "-"
        with self._lock:
            if key not in self._sessions:
                while len(self._sessions) >= MAX_SESSIONS:
                    self._drop(next(iter(self._sessions)))
                self._sessions[key] = _Session()
            return self._sessions[key]

    def _drop(self, key: str) -> None:
        session = self._sessions.pop(key)
        if session.folder:
            shutil.rmtree(session.folder, ignore_errors=True)

    def _new_folder(self, session: _Session) -> str:
        """A fresh folder for this generation's files (the session's previous one is removed:
        Gradio has copied its files into its own cache by then)."""
        if session.folder:
            shutil.rmtree(session.folder, ignore_errors=True)
        session.folder = tempfile.mkdtemp(dir=self._files.name)
        return session.folder

    def interrupt(self, request: gr.Request = None) -> Union[str, Update]:
        """Stop this session's generation within one step (other sessions go on)."""
        session = self._session(request)
        session.flag.set()
        if not session.running:
            return gr.update()
        logger.info("interrupt asked for")
        return "**Stopping…** the audio made so far will be kept."

    # ---- generation -----------------------------------------------------------------------

    def generate(
        self,
        settings: gen.Settings,
        request: Optional[gr.Request] = None,
        progress: Optional[gr.Progress] = None,
    ) -> Iterator[dict[str, Any]]:
        """Updates of the outputs (:data:`~.generate.OUTPUTS`) while ``settings`` is spoken;
        a mistake is shown in the status line and an error box."""
        session = self._session(request)
        session.flag = flag = Interrupt()

        def on_step(step: int, max_steps: int, seconds: Optional[float]) -> None:
            if progress is not None:
                heard = "" if seconds is None else f" · {seconds:.1f} s of audio"
                progress((step, max_steps), desc=f"code step {step}/{max_steps}{heard}")

        updates = gen.generate(
            self.chat,
            self.voices,
            settings,
            cancel=flag,
            folder=self._new_folder(session),
            on_step=on_step,
        )
        session.running = True
        try:
            for update in updates:
                if "warnings" in update:
                    update["status"] = _with_warnings(update["status"], update["warnings"])
                yield update
        except ChatTTSError as e:
            yield {"status": f"**Error:** {markdown_text(str(e))}"}
            raise user_error(e) from None
        finally:
            session.running = False
        with self._lock:
            self.runs += 1
            self.interrupted += flag.is_set()

    # ---- text -----------------------------------------------------------------------------

    def open_file(self, path: Optional[str]) -> tuple[Any, Any, str]:
        """An uploaded .txt / .md file -> (the text box, the SSML box, the status line)."""
        if not path:
            return gr.update(), gr.update(), ""
        try:
            text = read_text_file(path)
        except (ChatTTSError, OSError) as e:
            raise user_error(e) from None
        name = markdown_text(os.path.basename(path))
        return text, False, f"Opened {name}: {len(text):,} characters."

    def on_ssml(self, ssml: bool, text: str) -> Union[str, Update]:
        """Ticking SSML wraps a plain text in ``<speak>`` (a document is kept as it is)."""
        return as_ssml(text or "") if ssml else gr.update()

    # ---- the Voice section ----------------------------------------------------------------

    def on_voice(self, spec: str) -> tuple[Any, Any, str]:
        """A voice picked in the list -> (its speaker string, its seed, a note)."""
        keep = gr.update()
        if spec == CUSTOM:
            return keep, keep, "Speaking with the speaker string or sample recording below."
        try:
            voice = self.voices.resolver().voice(spec)
        except ChatTTSError as e:
            return keep, keep, f"⚠ {markdown_text(str(e))}"
        m = SEED_VOICE.fullmatch((spec or "").strip())
        seed = int(m.group(1)) if m else keep
        shown = markdown_text(spec)
        if isinstance(voice.speaker, str):
            note = f"Speaking with **{shown}**: its speaker string is below (copy it to reuse)."
            return voice.speaker, seed, note
        return "", seed, f"**{shown}** was made from a recording: it has no speaker string."

    def random_voice(self) -> tuple[int, str]:
        """The dice: a random seed and its voice (``seed_N``)."""
        seed = random.randint(1, DICE_SEEDS)
        return seed, f"seed_{seed}"

    def on_seed(self, seed: Optional[float]) -> Union[str, Update]:
        """A seed typed -> its voice, ``seed_N``."""
        if seed is None or not 0 <= seed <= MAX_SEED or seed != int(seed):
            return gr.update()
        return f"seed_{int(seed)}"

    def to_custom(self, *_: object) -> str:
        """A speaker string or sample edited: the Custom voice speaks."""
        return CUSTOM

    def mix(self, a: str, b: str, share: float) -> str:
        """Mix ``a`` and ``b`` (``share``: b's part, 0–1) -> the voice list's value, the mix's
        spec (the list's change then shows its speaker string)."""
        if not a or not b:
            raise user_error(ChatTTSError("pick two voices to mix"))
        spec = mix_spec(a, b, share)
        try:
            self.voices.resolver().voice(spec)
        except ChatTTSError as e:
            raise user_error(e) from None
        return spec

    def sample_code(self, path: Optional[str]) -> tuple[str, Any]:
        """A sample recording uploaded -> (its speaker sample code, the Custom voice)."""
        if not path:
            return "", gr.update()
        try:
            return self.chat.sample_audio_speaker(path), CUSTOM
        except (ChatTTSError, ValueError, OSError) as e:
            raise user_error(ChatTTSError(f"cannot read the sample recording: {e}")) from None

    def save_voice(
        self, name: str, spec: str, speaker: str, sample: str, sample_text: str
    ) -> tuple[Any, Any, Any, str]:
        """Save the voice now picked under ``name`` in the library -> the voice list (now on
        it), the two mix lists, a note."""
        name = (name or "").strip()
        try:
            if spec == CUSTOM:
                voice = custom_voice(speaker, sample, sample_text)
            else:
                voice = self.voices.resolver().voice(spec)
            self.voices.library.add(name, **_stored(voice))
        except (ChatTTSError, OSError) as e:
            raise user_error(e) from None
        mixable = gr.update(choices=self.voices.mixable())
        note = f"Saved **{markdown_text(name)}** in the voice library."
        return gr.update(choices=self.voices.choices(), value=name), mixable, mixable, note


def _stored(voice: Voice) -> dict[str, Any]:
    """``VoiceLibrary.add``'s keywords for a resolved voice."""
    out: dict[str, Any] = {}
    if isinstance(voice.speaker, str):
        out["speaker"] = voice.speaker
    if voice.sample is not None:
        out.update(sample=voice.sample, text=voice.text)
    return out


def _with_warnings(status: str, messages: list[str]) -> str:
    """The status line with the library's warnings under it (each also a toast)."""
    for message in messages:
        gr.Warning(html.escape(message, quote=False))
    if not messages:
        return status
    shown = "\n".join(f"- ⚠ {markdown_text(m)}" for m in messages)
    return f"{status}\n\n{shown}"


__all__ = ["MAX_SESSIONS", "WebUI", "markdown_text", "user_error"]
