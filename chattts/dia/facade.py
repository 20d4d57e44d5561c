"""The Dia-style methods of :class:`chattts.Chat`: ``from_pretrained``, ``generate``,
``generate_batch``, ``save_audio`` and the ``dia`` view, as a mixin over :class:`.api.Dia`
(docs/dia.md)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Optional, TypeVar

from .api import Dia, pretrained_options

T = TypeVar("T")
C = TypeVar("C", bound="DiaMethods")


def _dia_call(method: Callable[..., T]) -> Callable[..., T]:
    """A method that forwards to the same method of ``self.dia`` (with its signature and
    docstring)."""

    @functools.wraps(method)
    def call(self: DiaMethods, *args: Any, **kwargs: Any) -> T:
        return method(self.dia, *args, **kwargs)

    return call


class DiaMethods:
    """The Dia-style calls of a class whose instances hold their :class:`Dia` in ``_dia`` and
    load with ``load_options`` (:class:`chattts.Chat`)."""

    _dia: Dia

    @classmethod
    def from_pretrained(
        cls: type[C],
        model_id_or_path: str = "2Noise/ChatTTS",
        compute_dtype: str = "float32",
        device: Optional[str] = None,
        *,
        cache_dir: Optional[str] = None,
        revision: Optional[str] = None,
        **kwargs: object,
    ) -> C:
        """A loaded ``Chat`` from a local model root or a Hub model repo; see
        :func:`chattts.dia.pretrained_options` for the arguments."""
        options = pretrained_options(
            model_id_or_path,
            compute_dtype,
            device,
            cache_dir=cache_dir,
            revision=revision,
            **kwargs,
        )
        chat = cls()
        chat.load_options(options)  # type: ignore[attr-defined]
        return chat

    @property
    def dia(self) -> Dia:
        """The Dia-style calls over this chat's pipeline (``chat.generate`` etc. are these)."""
        return self._dia

    generate = _dia_call(Dia.generate)
    generate_batch = _dia_call(Dia.generate_batch)
    save_audio = staticmethod(Dia.save_audio)


__all__ = ["DiaMethods"]
