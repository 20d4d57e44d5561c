"""A narration job's request (:class:`JobBody`, JSON or form fields) and what the index keeps of
it (:class:`JobSpec`), read into the narration's settings when the job runs (docs/narrate.md,
"The job API").

Nothing here imports FastAPI: the rules are a pydantic model and plain functions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..errors import RequestError
from ..validation import MAX_SEED, MIN_TEMPERATURE
from .schemas import MODEL_NAMES, VoiceId, VoiceText, _first_error, integral, load_json

if TYPE_CHECKING:
    from ..narrate.book import OutputOptions
    from ..narrate.segments import NarrationSettings

#: Document types a job takes: text in JSON (``input``), or any of them as an uploaded file.
TEXT_KINDS = ("txt", "md", "html")
KINDS = (*TEXT_KINDS, "epub")
#: Formats of a job's chapter files (OpenAI's response formats).
JOB_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


def _none(value: Any) -> Any:
    """A form field cannot send null: ``"none"`` (or an empty field) means None."""
    return (
        None if isinstance(value, str) and value.strip().lower() in ("", "none", "null") else value
    )


_Int = BeforeValidator(integral)


class JobBody(BaseModel):
    """The fields of ``POST /v1/audio/jobs``: the document (``input`` text in a JSON body, or
    an uploaded file), the voice, the files wanted, the finishing and the sampling. Times:
    seconds; ``speed`` is exact tempo, as in ``/v1/audio/speech``."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    model: str = Field("chattts", json_schema_extra={"enum": list(MODEL_NAMES)})
    input: Optional[str] = Field(
        None,
        description="the document's text (a JSON body); an upload sends the file instead",
        json_schema_extra={"minLength": 1, "pattern": r"\S"},
    )
    format: Optional[Literal["txt", "md", "html", "epub"]] = Field(
        None, description="the document's type (default: txt, or the uploaded file's suffix)"
    )
    voice: Union[VoiceText, VoiceId] = Field(description="as in /v1/audio/speech")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    captions: Annotated[Optional[Literal["json", "srt", "vtt"]], BeforeValidator(_none)] = "json"
    book: Annotated[Optional[Literal["m4b", "mp3"]], BeforeValidator(_none)] = "m4b"
    # finishing of each chapter
    speed: float = Field(1.0, ge=0.25, le=4.0)
    pitch: Optional[float] = Field(None, ge=-12.0, le=12.0)
    gain: Optional[float] = Field(None, ge=-60.0, le=40.0)
    loudness: Optional[float] = Field(None, ge=-70.0, le=0.0)
    # sampling
    seed: Optional[Annotated[int, Field(ge=0, le=MAX_SEED), _Int]] = None
    temperature: Optional[float] = Field(None, ge=MIN_TEMPERATURE, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    top_k: Optional[Annotated[int, Field(ge=1, le=1000), _Int]] = None
    refine: bool = False
    max_new_token: Optional[Annotated[int, Field(ge=1), _Int]] = None
    chattts_speed: Optional[Annotated[int, Field(ge=0, le=9), _Int]] = None


def check_model(body: JobBody) -> JobBody:
    if body.model not in MODEL_NAMES:
        raise RequestError(
            f"the model {body.model!r} does not exist: use one of {', '.join(MODEL_NAMES)}",
            "model",
            "model_not_found",
            status=404,
        )
    return body


def parse_job_json(raw: bytes) -> JobBody:
    """A JSON body (bounded by the caller) into a :class:`JobBody`, or a 400 naming the field
    (the same JSON guards as ``/v1/audio/speech``: depth, NaN, huge integers)."""
    data = load_json(raw)
    if data.get("input") is None:
        raise RequestError(
            "missing required parameter: 'input' (or upload the document as multipart/form-data)",
            "input",
            "missing_required",
        )
    return _validated(data, strict=True)


def parse_job_form(fields: dict[str, str]) -> JobBody:
    """Form fields (strings) of an upload into a :class:`JobBody` (numbers and booleans read
    from their text); the document is the upload, so ``input`` is refused."""
    if "input" in fields:
        raise RequestError(
            "send the document either as 'input' text (JSON) or as the 'file' upload",
            "input",
            "invalid_value",
        )
    return _validated(dict(fields), strict=False)


def _validated(data: dict[str, Any], strict: bool) -> JobBody:
    try:
        body = JobBody.model_validate(data, strict=strict)
    except ValidationError as e:
        raise _first_error(e) from e
    return check_model(body)


@dataclass(frozen=True)
class JobSpec:
    """What the index keeps of a job: everything its narration needs, resolved at submission
    (the voice's speaker string, so that a later change of the voice table does not change a
    job under way).

    Attributes:
        kind: the document's type (:data:`KINDS`); ``document``: its file in the job's folder.
        voice: the voice's ``InferCodeParams`` fields; ``voice_label``: how it was named.
        seed: the narration's base seed.
        sampling: :class:`chattts.params.Sampling` fields (temperature, top_p, top_k,
            max_new_token, speed).
        refine: run the refine pass on each segment.
        format, book, captions: the files (:class:`chattts.narrate.book.OutputOptions`).
        finish: :class:`chattts.audio.finish.Finish` fields (tempo, pitch, gain, loudness).
    """

    kind: str
    document: str
    voice: dict[str, Optional[str]]
    voice_label: str
    seed: int = 0
    sampling: dict[str, Any] = field(default_factory=dict)
    refine: bool = False
    format: str = "mp3"
    book: Optional[str] = "m4b"
    captions: Optional[str] = "json"
    finish: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        body: JobBody,
        kind: str,
        document: str,
        voice: dict[str, Any],
        max_new_token: int,
    ) -> JobSpec:
        """The spec of a checked body, with its resolved ``voice`` fields."""
        label = getattr(body.voice, "id", body.voice)
        sampling = {
            "temperature": body.temperature,
            "top_p": body.top_p,
            "top_k": body.top_k,
            "max_new_token": body.max_new_token or max_new_token,
            "speed": body.chattts_speed,
        }
        finish = {"tempo": body.speed, "pitch": body.pitch or 0.0, "gain": body.gain or 0.0}
        return cls(
            kind=kind,
            document=document,
            voice={k: voice.get(k) for k in ("spk_emb", "spk_smp", "txt_smp")},
            voice_label=label if len(label) <= 64 else "speaker string",
            seed=body.seed or 0,
            sampling={k: v for k, v in sampling.items() if v is not None},
            refine=body.refine,
            format=body.response_format,
            book=body.book,
            captions=body.captions,
            finish={**finish, "loudness": body.loudness},
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> JobSpec:
        return cls(**value)

    def settings(self, model: str) -> NarrationSettings:
        """The narration's settings (``model``: the loaded model's identity)."""
        from ..narrate.segments import NarrationSettings, NarrationVoice
        from ..params import Sampling

        sampling = Sampling(**self.sampling)
        return NarrationSettings(
            NarrationVoice(**self.voice, label=self.voice_label),
            code=sampling.code_params(),
            refine=sampling.refine_params() if self.refine else None,
            seed=self.seed,
            model=model,
        )

    def output(self) -> OutputOptions:
        from ..audio.finish import Finish
        from ..narrate.book import OutputOptions

        return OutputOptions(
            format=self.format, book=self.book, captions=self.captions, finish=Finish(**self.finish)
        )


__all__ = [
    "JOB_FORMATS",
    "KINDS",
    "TEXT_KINDS",
    "JobBody",
    "JobSpec",
    "check_model",
    "parse_job_form",
    "parse_job_json",
]
