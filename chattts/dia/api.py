"""The Dia-style calls on :class:`chattts.Chat`: ``from_pretrained``, ``generate``,
``generate_batch`` and ``save_audio``, over texts and dialogue scripts (:mod:`.script`).

:class:`Dia` runs these calls over a :class:`chattts.pipeline.Pipeline`; ``Chat`` exposes them
(``chat.generate`` is ``chat.dia.generate``), so one ``Chat`` object offers both this API and
the reference's ``load``/``infer``::

    chat = Chat.from_pretrained("2Noise/ChatTTS")
    wav = chat.generate("[S1] Hi there! [S2] Hello. (laughs)", seed=7)
    chat.save_audio("hello.mp3", wav)

Every waveform returned is mono float32 (n,) at the ``sample_rate`` asked for (24 kHz native).
Generation runs through :meth:`chattts.pipeline.Pipeline.synthesize`, where each item's
``manual_seed`` seeds only that item: an item sounds the same whatever it is batched with.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple, Optional, TypeVar, Union

import numpy as np

from ..assets.hub import snapshot_repo
from ..audio.speech import Piece, Speech, assemble
from ..errors import AssetNotFoundError, EmptyInputError, UnsupportedOptionError
from ..options import LoadOptions
from ..params import InferCodeParams
from ..pipeline import Pipeline, Utterance, trim_silence
from ..pipeline.speech import spoken_words
from .script import (
    Voice,
    VoiceLike,
    as_voice,
    has_speaker_tags,
    parse_script,
    speaker_key,
)
from .voices import VoiceFields

if TYPE_CHECKING:
    from ..audio import AudioLike, Waveform

    #: A reference recording for cloning: audio in any accepted form, or (waveform, rate).
    AudioPrompt = Union[AudioLike, tuple[Waveform, int]]

logger = logging.getLogger("chattts")

#: Default pause between the turns of a script, in seconds.
DEFAULT_PAUSE = 0.3
#: Default largest number of texts (or turns) generated in one batch.
DEFAULT_BATCH_SIZE = 16
_LOG_EVERY = 100  # steps between verbose progress lines


class _Sampling(NamedTuple):
    top_p: Optional[float]
    top_k: Optional[int]
    temperature: Any
    max_new_tokens: int

    def params(self, voice: dict, manual_seed: Optional[int]) -> InferCodeParams:
        return InferCodeParams(
            top_P=self.top_p,
            top_K=self.top_k,
            temperature=self.temperature,
            max_new_token=self.max_new_tokens,
            manual_seed=manual_seed,
            show_tqdm=False,
            **voice,
        )


class _Segment(NamedTuple):
    text: str
    params: InferCodeParams
    speaker: Optional[str] = None  # the script's speaker ("S1"...), None for plain text


class _Progress:
    """Turns per-batch (step, max_steps) into one increasing count over all batches."""

    def __init__(
        self, callback: Optional[Callable[[int, int], None]], verbose: bool, steps: int
    ) -> None:
        self.callback, self.verbose = callback, verbose
        self.steps, self.total = steps, steps  # total: set once the batches are known
        self.done = 0
        self.start = time.perf_counter()

    def batch(self, b: int) -> Optional[Callable[[int, int], None]]:
        if self.callback is None and not self.verbose:
            return None
        return lambda step, _max: self.report(b * self.steps + step)

    def report(self, done: int) -> None:
        if done <= self.done:
            return
        before, self.done = self.done, done
        if self.callback is not None:
            self.callback(done, self.total)
        if self.verbose and (done // _LOG_EVERY > before // _LOG_EVERY or done == self.total):
            rate = done / max(time.perf_counter() - self.start, 1e-9)
            logger.info("generate: step %d/%d (%.1f steps/s)", done, self.total, rate)


T = TypeVar("T")


def _each(value: Union[T, list[T], None], n: int, name: str) -> list[Optional[T]]:
    """A list of n values (checked), or one value (not a list) for every item."""
    if isinstance(value, list):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries for {n} texts")
        return value
    return [value] * n


def _check(
    sample_rate: Any, max_new_tokens: Any, pause: Any, batch_size: Any, cfg_scale: Any
) -> None:
    if cfg_scale is not None:
        raise UnsupportedOptionError(
            "cfg_scale: classifier-free guidance is not available: the ChatTTS weights were "
            "never trained with an unconditional prompt to guide against, so leave "
            "cfg_scale=None (use temperature, top_p and top_k to steer sampling)"
        )
    for name, v, low in (("sample_rate", sample_rate, 1000), ("max_new_tokens", max_new_tokens, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"{name} must be an integer ≥ {low}, not {v!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer ≥ 1, not {batch_size!r}")
    if not isinstance(pause, (int, float)) or not math.isfinite(pause) or pause < 0:
        raise ValueError(f"pause must be a number of seconds ≥ 0, not {pause!r}")


def _join(parts: list[np.ndarray], gap: np.ndarray) -> np.ndarray:
    out: list[np.ndarray] = []
    for i, part in enumerate(parts):
        if i:
            out.append(gap)
        out.append(part)
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


def _is_repo_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(
        p and p not in (".", "..") and all(c.isalnum() or c in "-_." for c in p) for p in parts
    )


def pretrained_options(
    model_id_or_path: str = "2Noise/ChatTTS",
    compute_dtype: str = "float32",
    device: Optional[str] = None,
    *,
    cache_dir: Optional[str] = None,
    revision: Optional[str] = None,
    **kwargs: Any,  # Any: LoadOptions' fields, each with its own type
) -> LoadOptions:
    """The :class:`LoadOptions` of ``Chat.from_pretrained`` (fetching a Hub snapshot first
    when ``model_id_or_path`` is a repo other than the official one).

    Args:
        model_id_or_path: an existing folder (the model root, see ``Chat.load``) or a Hub
            repo id ``owner/name``; the official ``2Noise/ChatTTS`` goes through the
            library's verified download (``source="huggingface"``), another repo through a
            snapshot of the same files.
        compute_dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        device: ``"cpu"``, ``"cuda"``, ... (default: the best available).
        cache_dir: the Hub cache folder (default: the Hub's own).
        revision: a branch, tag or commit of the Hub repo.
        **kwargs: keywords of ``Chat.load``: ``verify`` (False for checkpoints other than
            the official one), ``compile``, ``quantize``, ``force_redownload``, ``coef``...

    Raises:
        AssetNotFoundError: neither a folder nor a repo id; DownloadError: the Hub failed;
        TypeError: a keyword that ``from_pretrained`` decides itself.
    """
    for key in ("source", "custom_path", "dtype", "raise_on_error"):
        if key in kwargs:
            raise TypeError(f"from_pretrained() does not take {key!r}")
    path = os.fspath(model_id_or_path)
    force = bool(kwargs.get("force_redownload", False))
    if os.path.isdir(path):
        source, root = "custom", path
    elif path == "2Noise/ChatTTS" and revision is None:
        source, root = "huggingface", cache_dir
    elif _is_repo_id(path):
        source, root = "custom", snapshot_repo(path, revision, cache_dir, force)
        kwargs.pop("force_redownload", None)
    else:
        raise AssetNotFoundError(
            f"{path!r} is neither a model folder nor a Hub repo id (owner/name)"
        )
    return LoadOptions.from_kwargs(
        source=source, custom_path=root, device=device, dtype=compute_dtype, **kwargs
    )


class Dia:
    """The Dia-style calls over a pipeline: ``generate``, ``generate_batch``, ``save_audio``.

    Args:
        pipeline: returns the pipeline to run on; called with ``compiled=True`` when a call
            asks for the compiled decode step (``use_torch_compile``).
        resolve: turns a library voice name or mix into a :class:`Voice`
            (``Chat.resolve_voice``); None: names are an error.
    """

    def __init__(
        self,
        pipeline: Callable[[bool], Pipeline],
        resolve: Optional[Callable[[str], Voice]] = None,
    ) -> None:
        self._pipeline = pipeline
        self._resolve = resolve

    def generate(
        self,
        text: Union[str, list[str]],
        *,
        audio_prompt: Union[AudioPrompt, Sequence[Optional[AudioPrompt]], None] = None,
        audio_prompt_text: Optional[str] = None,
        top_p: Optional[float] = 0.7,
        temperature: float = 0.3,
        top_k: Optional[int] = 20,
        sample_rate: int = 24000,
        max_new_tokens: int = 2048,
        use_torch_compile: bool = False,
        cfg_scale: Optional[float] = None,
        verbose: bool = False,
        callback: Optional[Callable[[int, int], None]] = None,
        seed: Optional[int] = None,
        speaker: Union[str, Sequence[Optional[str]], None] = None,
        speakers: Optional[Mapping[Union[str, int], VoiceLike]] = None,
        pause: float = DEFAULT_PAUSE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        return_speech: bool = False,
    ) -> Union[np.ndarray, list[np.ndarray], Speech, list[Speech]]:
        """Speak ``text`` (or a dialogue script); returns float32 mono audio (n,).

        Args:
            text: what to say, or a script with ``[S1]``/``[S2]``... speaker tags (see
                :mod:`chattts.dia.script`); a list of texts is :meth:`generate_batch`.
            audio_prompt: reference speech whose voice is cloned (a path, bytes, a 24 kHz
                waveform, or ``(waveform, rate)``); ``audio_prompt_text`` is its transcript.
            top_p, temperature, top_k: sampling of the audio codes.
            sample_rate: the rate of the returned audio (resampled from 24 kHz).
            max_new_tokens: the most code steps (about 47 per second of audio).
            use_torch_compile: compile the decode step first (as ``load(compile=True)``).
            cfg_scale: must be None (raises :class:`UnsupportedOptionError` otherwise).
            verbose: log progress and the real-time factor (INFO on the ``chattts`` logger).
            callback: called as ``callback(step, max_steps)`` after every code step, with
                steps increasing over all batches, and once more with (max_steps, max_steps).
            seed: seeds sampling, so the same seed gives the same audio; without a speaker or
                prompt it also picks the voice (``sample_random_speaker(seed)``). Without
                seed, speaker or prompt: a random voice.
            speaker: a speaker string (``spk_emb``), or a library voice name or mix
                (``"alice"``, ``"alice*0.7+bob*0.3"``, see :mod:`chattts.voices.library`).
            speakers: for scripts, ``{"S1": voice, ...}``: a seed, a speaker string, a voice
                name or mix, reference audio or a :class:`Voice`. Unmapped ``Sn`` speak with
                the voice of seed ``seed + n - 1`` (a random base seed without ``seed``);
                ``speaker`` or ``audio_prompt``, when given, is S1's voice unless ``speakers``
                maps S1.
                Turn i (from 0) is sampled with ``manual_seed = seed + i``.
            pause: seconds of silence between the turns of a script.
            batch_size: the most texts or turns generated in one batch.
            return_speech: return a :class:`~chattts.audio.speech.Speech` instead: the audio
                with each turn's measured start and end, its spoken text and speaker
                (``"S1"``...), ready for captions.

        Raises:
            EmptyInputError, ScriptError: nothing to speak; UnsupportedOptionError: cfg_scale;
            chattts.audio.AudioError: an unreadable prompt or a waveform that is not mono;
            SpeakerError: a bad speaker string.
        """
        batch = isinstance(text, (list, tuple))
        one = (lambda v: v) if batch else (lambda v: [v])  # per-text lists for generate_batch
        wavs = self.generate_batch(
            list(text) if batch else [text],
            audio_prompts=one(audio_prompt),
            audio_prompt_texts=one(audio_prompt_text),
            seeds=one(seed),
            speaker=one(speaker),
            **{"top_p": top_p, "temperature": temperature, "top_k": top_k},
            **{"sample_rate": sample_rate, "max_new_tokens": max_new_tokens},
            **{"use_torch_compile": use_torch_compile, "cfg_scale": cfg_scale},
            **{"verbose": verbose, "callback": callback, "speakers": speakers},
            **{"pause": pause, "batch_size": batch_size, "return_speech": return_speech},
        )
        return wavs if batch else wavs[0]

    def generate_batch(
        self,
        texts: Sequence[str],
        *,
        audio_prompts: Union[AudioPrompt, Sequence[Optional[AudioPrompt]], None] = None,
        audio_prompt_texts: Union[str, list[Optional[str]], None] = None,
        top_p: Optional[float] = 0.7,
        temperature: float = 0.3,
        top_k: Optional[int] = 20,
        sample_rate: int = 24000,
        max_new_tokens: int = 2048,
        use_torch_compile: bool = False,
        cfg_scale: Optional[float] = None,
        verbose: bool = False,
        callback: Optional[Callable[[int, int], None]] = None,
        seeds: Union[int, list[Optional[int]], None] = None,
        speaker: Union[str, Sequence[Optional[str]], None] = None,
        speakers: Optional[Mapping[Union[str, int], VoiceLike]] = None,
        pause: float = DEFAULT_PAUSE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        seed: Union[int, list[Optional[int]], None] = None,
        return_speech: bool = False,
    ) -> Union[list[np.ndarray], list[Speech]]:
        """:meth:`generate` for several texts at once: one float32 waveform (n_i,) per text.

        The texts (and the turns of scripts among them) are generated together, in batches of
        up to ``batch_size``; each is cut to its own length and sounds as it would alone, so
        ``generate_batch(texts, seeds=s)[i]`` equals ``generate(texts[i], seed=s[i])``.
        ``audio_prompts``, ``audio_prompt_texts``, ``seeds`` and ``speaker`` take a list (one
        entry per text) or one value for all; a tuple is one ``(waveform, rate)`` prompt.
        Items with different reference audio share batches too: each row takes its own
        prompt. ``seed`` is another name of ``seeds`` (as ``generate`` takes it); give one of
        the two. ``return_speech``: one :class:`~chattts.audio.speech.Speech` per text.
        """
        if seed is not None:
            if seeds is not None:
                raise TypeError("generate_batch takes seed or seeds, not both")
            seeds = seed
        _check(sample_rate, max_new_tokens, pause, batch_size, cfg_scale)
        if isinstance(texts, str):
            raise TypeError("generate_batch takes a list of texts; use generate for one")
        items = _items(list(texts), audio_prompts, audio_prompt_texts, seeds, speaker)
        cast = {speaker_key(k): as_voice(v) for k, v in (speakers or {}).items()}
        if not items:
            return []
        pipeline = self._pipeline(use_torch_compile)
        start = time.perf_counter()
        sampling = _Sampling(top_p, top_k, temperature, max_new_tokens)
        voices = VoiceFields(pipeline, self._resolve)
        plans = [_plan(t, voice, voice.seed, cast, sampling, voices) for t, voice in items]
        progress = _Progress(callback, verbose, max_new_tokens)
        turns = _run(pipeline, plans, batch_size, progress)
        rate = pipeline.sample_rate
        if return_speech:
            return [
                _speech(pipeline, plan, parts, pause, int(sample_rate))
                for plan, parts in zip(plans, turns, strict=True)
            ]
        gap = np.zeros(round(pause * rate), dtype=np.float32)
        wavs = [_join(parts, gap) for parts in turns]
        if verbose:
            seconds = sum(w.size for w in wavs) / rate
            elapsed = time.perf_counter() - start
            rtf = elapsed / seconds if seconds else float("inf")
            logger.info("generate: %.2f s of audio in %.2f s (real-time factor %.3f)",
                        seconds, elapsed, rtf)  # fmt: skip
        if sample_rate != rate:
            from ..audio import resample

            wavs = [resample(w, rate, int(sample_rate)) for w in wavs]
        return wavs

    @staticmethod
    def save_audio(
        path: Union[str, os.PathLike],
        audio: Waveform,
        sample_rate: int = 24000,
        format: Optional[str] = None,
    ) -> None:
        """Write mono audio (n,) to ``path``: wav, mp3, flac, ogg/opus, aac, m4a by suffix
        (or ``format``); see :func:`chattts.audio.save_audio`."""
        from ..audio import save_audio

        save_audio(path, audio, sample_rate, format)


def _items(
    texts: list[str], prompts: Any, transcripts: Any, seeds: Any, speakers: Any
) -> list[tuple[str, Voice]]:
    """Each text with its voice: the per-text lists (or one value for all) of
    ``generate_batch``, checked."""
    n = len(texts)
    each = [
        _each(prompts, n, "audio_prompts"),
        _each(transcripts, n, "audio_prompt_texts"),
        _each(seeds, n, "seeds"),
        _each(speakers, n, "speaker"),
    ]
    for s in each[2]:
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer))):
            raise TypeError(f"a seed must be an int, not {s!r}")
    return [
        (t, Voice(seed, spk, audio, transcript))
        for t, audio, transcript, seed, spk in zip(texts, *each, strict=True)
    ]


def _plan(
    text: str,
    voice: Voice,
    seed: Optional[int],
    cast: dict[str, Voice],
    sampling: _Sampling,
    voices: VoiceFields,
) -> list[_Segment]:
    """The segments (turns) of one text, each with its sampling parameters."""
    if not isinstance(text, str):
        raise TypeError(f"a text must be a str, not {type(text).__name__}")
    if not has_speaker_tags(text):
        if not text.strip():
            raise EmptyInputError(text)
        return [_Segment(text, sampling.params(voices.fields(voice), seed))]
    turns = parse_script(text)
    base = seed if seed is not None else secrets.randbits(30)
    fields = {}
    for name in dict.fromkeys(t.speaker for t in turns):
        if name in cast:
            who = cast[name]
        elif name == "S1" and voice.chosen:
            who = voice
        else:
            who = Voice(seed=base + int(name[1:]) - 1)
        fields[name] = voices.fields(who)
    return [
        _Segment(
            t.text,
            sampling.params(fields[t.speaker], None if seed is None else seed + i),
            t.speaker,
        )
        for i, t in enumerate(turns)
    ]


def _speech(
    pipeline: Pipeline, plan: list[_Segment], parts: list[np.ndarray], pause: float, rate: int
) -> Speech:
    """One text's turns as a Speech: each turn's spoken (normalised) words and speaker, with
    its measured time; resampled to ``rate`` (times are seconds: they do not change)."""
    pieces = [
        Piece(wav, spoken_words(pipeline.normalizer(seg.text)), seg.speaker)
        for seg, wav in zip(plan, parts, strict=True)
    ]
    speech = assemble(pieces, pipeline.sample_rate, gap=pause)
    if rate == pipeline.sample_rate:
        return speech
    from ..audio import resample

    audio = resample(speech.audio, pipeline.sample_rate, rate)
    end = audio.size / rate
    segments = tuple(replace(s, end=min(s.end, end)) for s in speech.segments)
    return Speech(audio, rate, segments)


def _run(
    pipeline: Pipeline, plans: list[list[_Segment]], batch_size: int, progress: _Progress
) -> list[list[np.ndarray]]:
    """Generate every segment, in batches of ``batch_size``; each trimmed of silence."""
    flat = [(p, j, seg) for p, plan in enumerate(plans) for j, seg in enumerate(plan)]
    # every row takes its own prompt (speaker, sample, transcript): any segments batch together
    batches = [
        list(range(i, min(i + batch_size, len(flat)))) for i in range(0, len(flat), batch_size)
    ]
    progress.total = len(batches) * progress.steps
    out: list[list[np.ndarray]] = [[] for _ in plans]
    done: dict[int, np.ndarray] = {}
    for b, batch in enumerate(batches):
        items = [Utterance(flat[k][2].text, flat[k][2].params) for k in batch]
        for wavs in pipeline.synthesize(items, progress=progress.batch(b)):
            done.update({k: trim_silence(w) for k, w in zip(batch, wavs, strict=True)})
        if len(batches) > 1:
            logger.debug("generate: batch %d/%d done", b + 1, len(batches))
    progress.report(progress.total)
    for k, (p, _, _) in enumerate(flat):
        out[p].append(done[k])
    return out


__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_PAUSE", "Dia", "pretrained_options"]
