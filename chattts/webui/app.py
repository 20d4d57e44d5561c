"""The Gradio interface: text, sampling, voices, generate / interrupt, streamed and final audio.

Built by :func:`build_ui` over a loaded :class:`chattts.Chat`. Voices: presets, the voices
file, and the voice library (:mod:`chattts.voices.library`), where the current voice can be saved
under a name and two voices mixed with a slider. Generation runs one at a time
(Gradio's queue); each browser session has its own cancel flag, carried by its request
through the pipeline, which ends that session's refine or code pass within one step and touches
no other session's generation.
"""

from __future__ import annotations

import logging
import random
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import gradio as gr
import numpy as np

from ..errors import ChatTTSError
from ..generation.engine import Interrupt
from ..params import InferCodeParams, RefineTextParams
from ..pipeline import Utterance
from ..voices import VoiceLibrary, mix_speakers

if TYPE_CHECKING:
    from ..chat import Chat

logger = logging.getLogger("chattts.webui")

#: Voice presets (name -> seed) offered besides the voices file; "Default" is seed 2.
PRESETS: dict[str, Any] = {
    "Default": 2,
    "Voice 1111": 1111,
    "Voice 2222": 2222,
    "Voice 3333": 3333,
    "Voice 4444": 4444,
    "Voice 5555": 5555,
    "Voice 6666": 6666,
    "Voice 7777": 7777,
    "Voice 8888": 8888,
    "Voice 9999": 9999,
}
CUSTOM = "Custom"
MAX_SEED = 2**31 - 1
EXAMPLE = "ChatTTS is a text-to-speech model designed for dialogue applications. [uv_break]"

# system fonts only: the default theme would fetch its fonts from the network
_THEME_FONT = ["ui-sans-serif", "system-ui", "Segoe UI", "Helvetica", "Arial", "sans-serif"]
_THEME_MONO = ["ui-monospace", "SFMono-Regular", "Consolas", "monospace"]


@dataclass
class _Session:
    """The cancel flag of one browser session's generation (refine and code pass)."""

    flag: Interrupt = field(default_factory=Interrupt)


class WebUI:
    """The callbacks of the interface over one Chat (shared by every session)."""

    def __init__(
        self,
        chat: Chat,
        voices: Optional[dict[str, Any]] = None,
        library: Optional[VoiceLibrary] = None,
    ) -> None:
        self.chat = chat
        self.rate = int(chat.config.sample_rate)
        self.presets = dict(PRESETS)
        self.presets.update(voices or {})
        self.library = library if library is not None else chat.voices
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self.runs = 0  # generations finished
        self.interrupted = 0  # of which ended by an interrupt

    # ---- sessions -------------------------------------------------------------------------

    def _session(self, request: Optional[gr.Request]) -> _Session:
        key = getattr(request, "session_hash", None) or "-"
        with self._lock:
            if key not in self._sessions:
                if len(self._sessions) > 1000:
                    self._sessions.clear()
                self._sessions[key] = _Session()
            return self._sessions[key]

    def interrupt(self, request: gr.Request = None) -> None:
        """Stop this session's generation within one step (other sessions go on)."""
        self._session(request).flag.set()
        logger.info("interrupt asked for")

    # ---- voices -----------------------------------------------------------------------------

    def speaker_of_seed(self, seed: Any) -> str:
        if seed is None:
            return ""
        return self.chat.sample_random_speaker(int(seed) % (MAX_SEED + 1))

    def choices(self) -> list[str]:
        """The voice names offered: presets, then the library's, then ``Custom``."""
        try:
            names = self.library.names()
        except (ChatTTSError, OSError) as e:
            logger.warning("voice library %s: %s", self.library.path, e)
            names = []
        return [*self.presets, *(n for n in names if n not in self.presets), CUSTOM]

    def on_preset(self, name: str) -> tuple[Any, Any, Any, Any]:
        """A voice name -> (audio seed, speaker string, sample code, sample text) updates."""
        keep = gr.update()
        value = self.presets.get(name)
        if isinstance(value, int):
            return value, self.speaker_of_seed(value), keep, keep
        if isinstance(value, str):
            return keep, value, keep, keep
        if name in (None, CUSTOM) or name not in self.choices():
            return keep, keep, keep, keep
        voice = self.library.get(name).voice
        if voice.sample is not None:
            return keep, voice.speaker or "", voice.sample, voice.text or ""
        if isinstance(voice.speaker, str):
            return keep, voice.speaker, keep, keep
        return voice.seed, self.speaker_of_seed(voice.seed), keep, keep

    def speaker_of(self, name: str) -> str:
        """The speaker string of a preset or library voice."""
        value = self.presets.get(name)
        if isinstance(value, int):
            return self.speaker_of_seed(value)
        if isinstance(value, str):
            return value
        return self.library.speaker(name, self.speaker_of_seed)

    def save_voice(self, name: str, spk: str, smp: str, smp_text: str) -> tuple[Any, Any, Any, str]:
        """Save the current voice (speaker string, or sample code + text) in the library;
        returns the updated voice lists and a status line."""
        name = (name or "").strip()
        try:
            if smp and smp.strip():
                if not (smp_text and smp_text.strip()):
                    raise gr.Error("a sample audio code needs the sample's text (its transcript)")
                spk = spk.strip() if spk and spk.strip() else None
                self.library.add(name, speaker=spk, sample=smp.strip(), text=smp_text.strip())
            elif spk and spk.strip():
                self.library.add(name, speaker=spk.strip())
            else:
                raise gr.Error("no voice to save: pick a voice or paste a speaker string")
        except (ChatTTSError, ValueError, OSError) as e:
            raise gr.Error(str(e)) from e
        choices = self.choices()
        update = gr.update(choices=choices)
        return gr.update(choices=choices, value=name), update, update, f"Saved **{name}**."

    def mix(self, a: str, b: str, weight: float) -> str:
        """The speaker string of ``a`` and ``b`` mixed, ``weight`` (0–1) being b's share."""
        if not a or not b or CUSTOM in (a, b):
            raise gr.Error("pick two voices to mix")
        w = float(weight)
        try:
            parts = [(self.speaker_of(a), 1.0 - w), (self.speaker_of(b), w)]
            return mix_speakers(parts, [a, b])
        except (ChatTTSError, ValueError) as e:
            raise gr.Error(str(e)) from e

    def sample_code(self, path: Optional[str]) -> str:
        """An uploaded sample recording -> its speaker sample code (``spk_smp``)."""
        if not path:
            return ""
        try:
            return self.chat.sample_audio_speaker(path)
        except (ChatTTSError, ValueError, OSError) as e:
            raise gr.Error(f"cannot read the sample audio: {e}") from e

    # ---- generation -------------------------------------------------------------------------

    def _params(self, temperature, top_p, top_k, spk, smp, smp_text, text_seed, max_tokens):
        code: dict[str, Any] = {
            "temperature": float(temperature),
            "top_P": float(top_p),
            "top_K": int(top_k),
            "manual_seed": None if text_seed is None else int(text_seed),
            "show_tqdm": False,
        }
        if max_tokens:
            code["max_new_token"] = int(max_tokens)
        if smp and smp.strip():
            if not (smp_text and smp_text.strip()):
                raise gr.Error("a sample audio code needs the sample's text (its transcript)")
            code.update(spk_smp=smp.strip(), txt_smp=smp_text.strip())
        elif spk and spk.strip():
            code["spk_emb"] = spk.strip()
        return InferCodeParams(**code)

    def _normalized(self, text: str) -> str:
        """``text`` normalised; :class:`~chattts.errors.EmptyInputError` (shown as the
        library's message) when it holds nothing to speak."""
        return self.chat.pipeline.prepare(text, split=False)[0]

    def _refine(self, text: str, seed: Optional[int], flag: Interrupt) -> str:
        """``text`` normalised and refined (stopped by this session's ``flag``)."""
        pipeline = self.chat.pipeline
        texts = pipeline.prepare(text, split=False)
        params = RefineTextParams(manual_seed=seed, show_tqdm=False)
        refined = pipeline.refine(texts, params, cancel=flag)[0] if texts[0].strip() else ""
        return refined or texts[0]

    def generate(
        self,
        text: str,
        refine: bool,
        temperature: float,
        top_p: float,
        top_k: int,
        spk: str,
        smp: str,
        smp_text: str,
        text_seed: Optional[float],
        stream: bool,
        max_tokens: Optional[float] = None,
        request: gr.Request = None,
    ) -> Iterator[tuple[Any, Any, Any]]:
        """Yields (refined text, streamed chunk, final audio) updates."""
        if not text or not text.strip():
            raise gr.Error("enter some text first")
        session = self._session(request)
        session.flag = Interrupt()
        flag = session.flag
        try:
            params = self._params(
                temperature, top_p, top_k, spk, smp, smp_text, text_seed, max_tokens
            )
            seed = params.manual_seed
            spoken = self._refine(text, seed, flag) if refine else self._normalized(text)
            yield spoken, None, None
            parts: list[np.ndarray] = []
            utterance = Utterance(spoken, params, cancel=flag)
            chunks = self.chat.pipeline.synthesize([utterance], stream=True, normalize=False)
            for (chunk,) in chunks:
                if chunk.size:
                    parts.append(chunk)
                    if stream:
                        yield gr.update(), (self.rate, _int16(chunk)), gr.update()
            wav = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        except (ChatTTSError, ValueError) as e:
            raise gr.Error(str(e)) from e
        with self._lock:
            self.runs += 1
            self.interrupted += flag.is_set()
        if flag.is_set():
            logger.info("generation interrupted after %.2f s of audio", wav.size / self.rate)
        yield gr.update(), gr.update(), (self.rate, _int16(wav))


def _int16(wav: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(wav * 32767.0), -32768, 32767).astype(np.int16)


def theme() -> Any:
    """Gradio's default theme with system fonts (nothing fetched from the network)."""
    return gr.themes.Default(font=_THEME_FONT, font_mono=_THEME_MONO)


def _inputs(ui: WebUI) -> dict[str, Any]:
    """Text, sampling and voice controls (laid out in the current Blocks)."""
    c: dict[str, Any] = {}
    c["text"] = gr.Textbox(label="Input text", lines=4, value=EXAMPLE, elem_id="input-text")
    with gr.Row():
        c["refine"] = gr.Checkbox(label="Refine text", value=True, elem_id="refine")
        c["temperature"] = gr.Slider(0.00001, 1.0, value=0.3, step=0.00001, label="Temperature")
        c["top_p"] = gr.Slider(0.1, 0.9, value=0.7, step=0.05, label="top_P")
        c["top_k"] = gr.Slider(1, 20, value=20, step=1, label="top_K")
    with gr.Row():
        c["preset"] = gr.Dropdown(ui.choices(), value="Default", label="Voice", elem_id="voice")
        c["audio_seed"] = gr.Number(2, label="Audio seed", precision=0, elem_id="audio-seed")
        c["audio_dice"] = gr.Button("Random", elem_id="audio-dice", scale=0, min_width=80)
        c["text_seed"] = gr.Number(42, label="Text seed", precision=0, elem_id="text-seed")
        c["text_dice"] = gr.Button("Random", elem_id="text-dice", scale=0, min_width=80)
    c["spk"] = gr.Textbox(
        ui.speaker_of_seed(2),
        label="Speaker string (copy it; edit it; it is what generation uses)",
        lines=2,
        max_lines=4,
        buttons=["copy"],
        elem_id="speaker",
    )
    c.update(_library_controls(ui))
    with gr.Row():
        c["sample"] = gr.Audio(
            label="Sample audio (a voice to imitate)",
            sources=["upload"],
            type="filepath",
            elem_id="sample-audio",
        )
        with gr.Column():
            c["smp"] = gr.Textbox(
                label="Sample audio code", lines=2, buttons=["copy"], elem_id="sample-code"
            )
            c["smp_text"] = gr.Textbox(
                label="Sample text (what the sample says)", lines=1, elem_id="sample-text"
            )
    return c


def _library_controls(ui: WebUI) -> dict[str, Any]:
    """Save the current voice under a name; mix two voices with a slider."""
    c: dict[str, Any] = {}
    names = [n for n in ui.choices() if n != CUSTOM]
    with gr.Row():
        c["voice_name"] = gr.Textbox(label="Save this voice as", elem_id="voice-name")
        c["save_voice"] = gr.Button("Save voice", elem_id="save-voice", scale=0, min_width=120)
        c["voice_status"] = gr.Markdown(elem_id="voice-status")
    with gr.Row():
        c["mix_a"] = gr.Dropdown(names, value=names[0], label="Mix: voice A", elem_id="mix-a")
        c["mix_b"] = gr.Dropdown(names, value=names[-1], label="voice B", elem_id="mix-b")
        c["mix_weight"] = gr.Slider(
            0.0, 1.0, value=0.5, step=0.05, label="B's share", elem_id="mix-weight"
        )
        c["mix"] = gr.Button("Mix", elem_id="mix", scale=0, min_width=80)
    return c


def _actions_and_outputs() -> dict[str, Any]:
    """Stream toggle, step limit, the buttons, and the outputs."""
    c: dict[str, Any] = {}
    with gr.Row():
        # Gradio encodes streamed audio with the ffmpeg program; without it, no streaming
        can_stream = shutil.which("ffmpeg") is not None
        if not can_stream:
            logger.warning("ffmpeg is not on PATH: streamed playback is off")
        c["stream"] = gr.Checkbox(
            label="Stream" if can_stream else "Stream (needs ffmpeg on PATH)",
            value=can_stream,
            interactive=can_stream,
            elem_id="stream",
        )
        c["max_tokens"] = gr.Number(
            2048, label="Max code steps", precision=0, minimum=1, elem_id="max-steps"
        )
        c["generate"] = gr.Button("Generate", variant="primary", elem_id="generate")
        c["interrupt"] = gr.Button("Interrupt", variant="stop", elem_id="interrupt")
    c["refined"] = gr.Textbox(label="Text spoken (refined)", interactive=False, elem_id="refined")
    c["stream_audio"] = gr.Audio(
        label="Streamed audio",
        streaming=True,
        autoplay=True,
        interactive=False,
        elem_id="stream-audio",
    )
    c["final_audio"] = gr.Audio(
        label="Audio", format="wav", interactive=False, elem_id="final-audio"
    )
    return c


#: The inputs of :meth:`WebUI.generate`, in order.
_GENERATE_INPUTS = (
    "text", "refine", "temperature", "top_p", "top_k", "spk", "smp", "smp_text", "text_seed",
    "stream", "max_tokens",
)  # fmt: skip


def _wire(ui: WebUI, c: dict[str, Any]) -> None:
    """The events: voice updates, dice, sample code, generate and interrupt."""
    c["preset"].change(
        ui.on_preset,
        c["preset"],
        [c["audio_seed"], c["spk"], c["smp"], c["smp_text"]],
        queue=False,
    )
    c["save_voice"].click(
        ui.save_voice,
        [c["voice_name"], c["spk"], c["smp"], c["smp_text"]],
        [c["preset"], c["mix_a"], c["mix_b"], c["voice_status"]],
        queue=False,
    )
    c["mix"].click(ui.mix, [c["mix_a"], c["mix_b"], c["mix_weight"]], c["spk"], queue=False)
    c["audio_seed"].change(ui.speaker_of_seed, c["audio_seed"], c["spk"], queue=False)
    for dice, seed in (("audio_dice", "audio_seed"), ("text_dice", "text_seed")):
        c[dice].click(lambda: random.randint(1, MAX_SEED), None, c[seed], queue=False)
    # the encoder shares the model with generation: one at a time
    c["sample"].change(
        ui.sample_code, c["sample"], c["smp"], concurrency_limit=1, concurrency_id="model"
    )
    c["generate"].click(
        ui.generate,
        [c[name] for name in _GENERATE_INPUTS],
        [c["refined"], c["stream_audio"], c["final_audio"]],
        concurrency_limit=1,
        concurrency_id="model",
    )
    c["interrupt"].click(ui.interrupt, None, None, queue=False)


def build_ui(
    chat: Chat,
    voices: Optional[dict[str, Any]] = None,
    library: Optional[VoiceLibrary] = None,
) -> gr.Blocks:
    """The interface over a loaded Chat; ``voices``: extra presets, name -> seed or speaker;
    ``library``: where voices are saved and listed (default ``chat.voices``)."""
    ui = WebUI(chat, voices, library)
    with gr.Blocks(title="ChatTTS", analytics_enabled=False) as demo:
        gr.Markdown("## ChatTTS\nText to speech for dialogue.")
        controls = _inputs(ui)
        controls.update(_actions_and_outputs())
        _wire(ui, controls)
    demo.ui = ui  # for callers (tests) that want the callbacks
    return demo
