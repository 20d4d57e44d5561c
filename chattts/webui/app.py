"""The Gradio page: text and Generate first, the main controls beside them, the details folded.

Left: the text (or an SSML document, or a .txt / .md file opened into it), Generate and
Interrupt, the status line, the live player, the finished audio, its captions and the
downloads. Right: voice, speed, language, format and the refine pass; folded below them, the
Voice section (seeds, speaker strings, mixes, sample recordings, saving), sampling and
finishing (loudness, pitch, gain), and where long texts go. Built by :func:`build_ui` over a
loaded :class:`chattts.Chat`; the callbacks are :class:`~.callbacks.WebUI`'s. Generation runs
one at a time (Gradio's queue); each browser session has its own cancel flag.
"""

from __future__ import annotations

import importlib.util
import logging
import random
import shutil
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Optional

import gradio as gr

from ..voices import VoiceLibrary
from .callbacks import DICE_SEEDS, WebUI
from .generate import FORMATS, LANGUAGES, OUTPUTS, Settings
from .text import EXAMPLE, LONG_TEXT_HINT, MAX_TEXT_CHARS, TEXT_FILE_TYPES
from .voices import DEFAULT_VOICE

if TYPE_CHECKING:
    from ..chat import Chat

logger = logging.getLogger("chattts.webui")

#: Tempo and pitch need Rubber Band (pedalboard, the optional ``stretch`` extra: GPLv3);
#: without it their sliders stay at 1× and 0 and say what to install.
_CAN_STRETCH = importlib.util.find_spec("pedalboard") is not None
_STRETCH_NOTE = "" if _CAN_STRETCH else " — needs pip install 'chattts[stretch]'"

#: The controls :class:`~.generate.Settings` is read from, by field name.
SETTINGS = tuple(f.name for f in fields(Settings))

# system fonts only: the default theme would fetch its fonts from the network
_THEME_FONT = ["ui-sans-serif", "system-ui", "Segoe UI", "Helvetica", "Arial", "sans-serif"]
_THEME_MONO = ["ui-monospace", "SFMono-Regular", "Consolas", "monospace"]

#: A denser page, so that the text and Generate fit the first screen.
CSS = """
#header p { margin: 0; }
#status { min-height: 1.5em; }
#speaker textarea, #sample-code textarea { font-size: 11px; line-height: 1.2; }
"""


def theme() -> gr.themes.Base:
    """Gradio's default theme with system fonts (nothing fetched from the network)."""
    return gr.themes.Default(font=_THEME_FONT, font_mono=_THEME_MONO, spacing_size="sm")


def _text_column(c: dict[str, Any]) -> None:
    """The text, its file and SSML switches, Generate / Interrupt and the outputs."""
    c["text"] = gr.Textbox(
        value=EXAMPLE,
        label=f"Text (up to {MAX_TEXT_CHARS:,} characters)",
        placeholder="Type or paste what to say",
        lines=6,
        max_lines=16,
        elem_id="input-text",
    )
    with gr.Row(equal_height=True):
        c["open_file"] = gr.UploadButton(
            "Open a text file (.txt, .md)",
            file_types=list(TEXT_FILE_TYPES),
            type="filepath",
            size="sm",
            scale=1,
            elem_id="open-file",
        )
        c["ssml"] = gr.Checkbox(
            label="SSML document (pauses, voices, prosody: docs/ssml.md)",
            value=False,
            scale=2,
            elem_id="ssml",
        )
    with gr.Row():
        c["generate"] = gr.Button("Generate", variant="primary", elem_id="generate", scale=3)
        c["interrupt"] = gr.Button("Interrupt", variant="stop", elem_id="interrupt", scale=1)
    c["status"] = gr.Markdown("Type a text, pick a voice, press **Generate**.", elem_id="status")
    can_stream = shutil.which("ffmpeg") is not None
    c["live"] = gr.Audio(
        label="Live playback (while it is made)",
        streaming=True,
        autoplay=True,
        interactive=False,
        visible=can_stream,
        buttons=[],
        elem_id="stream-audio",
    )
    c["audio"] = gr.Audio(
        label="Audio",
        type="filepath",
        interactive=False,
        buttons=["download"],
        elem_id="final-audio",
    )
    c["captions"] = gr.Dataframe(
        headers=["start", "end", "caption"],
        value=[],
        label="Captions",
        interactive=False,
        wrap=True,
        column_widths=["12%", "12%", "76%"],
        max_height=260,
        elem_id="captions",
    )
    c["files"] = gr.File(
        label="Downloads: the audio, and its captions as .srt and .vtt",
        file_count="multiple",
        interactive=False,
        height=180,
        elem_id="downloads",
    )


def _main_controls(ui: WebUI, c: dict[str, Any]) -> None:
    """Voice, speed, language, format and the refine pass."""
    c["voice"] = gr.Dropdown(
        ui.voices.choices(),
        value=DEFAULT_VOICE,
        allow_custom_value=True,
        label="Voice",
        info="A name, seed_N, or a mix (the Mix button below makes one)",
        elem_id="voice",
    )
    c["tempo"] = gr.Slider(
        0.5,
        2.0,
        value=1.0,
        step=0.05,
        label="Speed (× tempo, pitch kept)" + _STRETCH_NOTE,
        interactive=_CAN_STRETCH,
        elem_id="tempo",
    )
    with gr.Row():
        c["lang"] = gr.Dropdown(LANGUAGES, value="auto", label="Language", elem_id="lang")
        c["format"] = gr.Dropdown(list(FORMATS), value="mp3", label="Format", elem_id="format")
    c["speed"] = gr.Slider(
        0, 9, value=5, step=1, label="ChatTTS speed prompt [speed_N], 0–9", elem_id="speed"
    )
    with gr.Row(equal_height=True):
        c["refine"] = gr.Checkbox(label="Refine text", value=True, elem_id="refine", scale=1)
        c["refine_prompt"] = gr.Textbox(
            label="Refine prompt",
            placeholder="[oral_2][laugh_0][break_6]",
            elem_id="refine-prompt",
            scale=2,
        )


def _voice_section(ui: WebUI, c: dict[str, Any]) -> None:
    """The folded Voice section: seed, speaker string, mix, sample recording, saving."""
    mixable = ui.voices.mixable()
    default, _, note = ui.on_voice(DEFAULT_VOICE)
    with gr.Accordion("Voice: seed, speaker string, mix, sample, save", open=False):
        c["voice_note"] = gr.Markdown(note, elem_id="voice-note")
        with gr.Row(equal_height=True):
            c["audio_seed"] = gr.Number(2, label="Voice seed", precision=0, elem_id="audio-seed")
            c["audio_dice"] = gr.Button("Random voice", elem_id="audio-dice", size="sm")
        c["speaker"] = gr.Textbox(
            default,
            label="Speaker string (copy it to reuse the voice; paste one to speak with it)",
            lines=2,
            max_lines=4,
            buttons=["copy"],
            elem_id="speaker",
        )
        with gr.Row(equal_height=True):
            c["mix_a"] = gr.Dropdown(mixable, value=mixable[0][1], label="Mix", elem_id="mix-a")
            c["mix_b"] = gr.Dropdown(mixable, value=mixable[1][1], label="with", elem_id="mix-b")
        with gr.Row(equal_height=True):
            c["mix_weight"] = gr.Slider(
                0.0, 1.0, value=0.5, step=0.05, label="share of the second", elem_id="mix-weight"
            )
            c["mix"] = gr.Button("Mix", elem_id="mix", size="sm")
        c["sample_audio"] = gr.Audio(
            label="Sample recording (a voice to imitate: 5–10 s of clean speech)",
            sources=["upload"],
            type="filepath",
            elem_id="sample-audio",
        )
        c["sample"] = gr.Textbox(
            label="Sample code", lines=1, max_lines=3, buttons=["copy"], elem_id="sample-code"
        )
        c["sample_text"] = gr.Textbox(
            label="Sample text (what the recording says)", elem_id="sample-text"
        )
        with gr.Row(equal_height=True):
            c["voice_name"] = gr.Textbox(label="Save this voice as", elem_id="voice-name")
            c["save_voice"] = gr.Button("Save voice", elem_id="save-voice", size="sm")


def _more_sections(c: dict[str, Any]) -> None:
    """The folded sampling and finishing sections, and the note on long texts."""
    with gr.Accordion("Sampling and length", open=False):
        with gr.Row():
            c["temperature"] = gr.Slider(0.01, 1.0, value=0.3, step=0.01, label="Temperature")
            c["top_p"] = gr.Slider(0.1, 1.0, value=0.7, step=0.05, label="top_P")
            c["top_k"] = gr.Slider(1, 50, value=20, step=1, label="top_K")
        with gr.Row(equal_height=True):
            c["seed"] = gr.Number(
                42, label="Seed (empty: new each time)", precision=0, elem_id="text-seed"
            )
            c["seed_dice"] = gr.Button("Random", elem_id="text-dice", size="sm")
        can_stream = shutil.which("ffmpeg") is not None
        if not can_stream:
            logger.warning("ffmpeg is not on PATH: live playback is off")
        with gr.Row(equal_height=True):
            c["max_steps"] = gr.Number(
                2048, label="Max code steps per sentence (21.3 ms each)", precision=0,
                minimum=1, elem_id="max-steps",
            )  # fmt: skip
            c["stream"] = gr.Checkbox(
                label="Live playback" if can_stream else "Live playback (needs ffmpeg)",
                value=can_stream,
                interactive=can_stream,
                elem_id="stream",
            )
    with gr.Accordion("Finishing: loudness, pitch, gain", open=False):
        with gr.Row(equal_height=True):
            c["loudness_on"] = gr.Checkbox(
                label="Normalise loudness", value=False, elem_id="loudness-on"
            )
            c["loudness"] = gr.Slider(
                -40, -5, value=-16, step=1, label="Target (LUFS)", elem_id="loudness"
            )
        c["pitch"] = gr.Slider(
            -12,
            12,
            value=0,
            step=0.5,
            label="Pitch (semitones)" + _STRETCH_NOTE,
            interactive=_CAN_STRETCH,
            elem_id="pitch",
        )
        c["gain"] = gr.Slider(-20, 20, value=0, step=0.5, label="Gain (dB)", elem_id="gain")
    with gr.Accordion("Long text", open=False, elem_id="long-text"):
        gr.Markdown(LONG_TEXT_HINT)


def _wire_voice(ui: WebUI, c: dict[str, Any]) -> None:
    """The Voice section's events (quick: no queue, except the sample's encoding)."""
    c["voice"].change(
        ui.on_voice, c["voice"], [c["speaker"], c["audio_seed"], c["voice_note"]], queue=False
    )
    c["audio_dice"].click(ui.random_voice, None, [c["audio_seed"], c["voice"]], queue=False)
    c["audio_seed"].input(ui.on_seed, c["audio_seed"], c["voice"], queue=False)
    for edited in ("speaker", "sample", "sample_text"):
        c[edited].input(ui.to_custom, c[edited], c["voice"], queue=False)
    c["mix"].click(ui.mix, [c["mix_a"], c["mix_b"], c["mix_weight"]], c["voice"], queue=False)
    # the encoder shares the model with generation: one at a time
    c["sample_audio"].change(
        ui.sample_code,
        c["sample_audio"],
        [c["sample"], c["voice"]],
        concurrency_limit=1,
        concurrency_id="model",
    )
    c["save_voice"].click(
        ui.save_voice,
        [c["voice_name"], c["voice"], c["speaker"], c["sample"], c["sample_text"]],
        [c["voice"], c["mix_a"], c["mix_b"], c["voice_note"]],
        queue=False,
    )


def _wire(ui: WebUI, c: dict[str, Any]) -> None:
    """Generate, Interrupt, text files, SSML and the dice."""
    inputs = {c[name] for name in SETTINGS}
    outputs = [c[name] for name in OUTPUTS]

    def on_generate(data: dict, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        settings = Settings(**{name: data[c[name]] for name in SETTINGS})
        for update in ui.generate(settings, request, progress):
            yield {c[k]: v for k, v in update.items() if k in OUTPUTS}

    c["generate"].click(
        on_generate,
        inputs,
        outputs,
        concurrency_limit=1,
        concurrency_id="model",
        show_progress="minimal",
    )
    c["interrupt"].click(ui.interrupt, None, c["status"], queue=False)
    c["open_file"].upload(
        ui.open_file, c["open_file"], [c["text"], c["ssml"], c["status"]], queue=False
    )
    c["ssml"].input(ui.on_ssml, [c["ssml"], c["text"]], c["text"], queue=False)
    c["seed_dice"].click(lambda: random.randint(1, DICE_SEEDS), None, c["seed"], queue=False)
    _wire_voice(ui, c)


def build_ui(
    chat: Chat,
    voices: Optional[dict[str, Any]] = None,
    library: Optional[VoiceLibrary] = None,
) -> gr.Blocks:
    """The interface over a loaded Chat; ``voices``: extra named voices, name -> seed or
    speaker string; ``library``: where voices are saved and listed (default ``chat.voices``).
    The callbacks are ``demo.ui`` (a :class:`~.callbacks.WebUI`), the components
    ``demo.controls`` (by name)."""
    ui = WebUI(chat, voices, library)
    c: dict[str, Any] = {}
    with gr.Blocks(title="ChatTTS", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "## ChatTTS · text to speech for dialogue\n"
            "Type or open a text, pick a voice, press **Generate**: the audio plays below "
            "with its captions, ready to download. Books and long documents: "
            "`chattts narrate` (see *Long text*).",
            elem_id="header",
        )
        with gr.Row():
            with gr.Column(scale=3):
                _text_column(c)
            with gr.Column(scale=2):
                _main_controls(ui, c)
                _voice_section(ui, c)
                _more_sections(c)
        _wire(ui, c)
    demo.ui = ui  # for callers (tests) that want the callbacks
    demo.controls = c
    return demo


__all__ = ["CSS", "SETTINGS", "build_ui", "theme"]
