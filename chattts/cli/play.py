"""``chattts say --play``: audio streamed to the default output device through ``sounddevice``
(the optional extra ``play``: ``pip install 'chattts[play]'``; on Linux it also needs the
PortAudio library, e.g. the ``libportaudio2`` package)."""

from __future__ import annotations

import logging
from typing import Any, Union

import numpy as np

from ..errors import AudioError, MissingDependencyError

logger = logging.getLogger("chattts")

PLAY_INSTALL = "pip install 'chattts[play]'"


def _sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError as e:
        raise MissingDependencyError(f"--play needs the sounddevice package: {PLAY_INSTALL}") from e
    except OSError as e:  # sounddevice imports, but the PortAudio library is missing
        raise AudioError(
            f"--play needs the PortAudio library ({e}); install it (e.g. the libportaudio2 "
            "package) or write a file with -o instead"
        ) from e
    return sounddevice


class Player:
    """A mono float32 output stream on the default (or a given) output device.

    Args:
        rate: the sample rate of what is written (24000 for ChatTTS).
        device: a sounddevice output device (index or name); None: the default.

    Raises:
        MissingDependencyError: sounddevice is not installed.
        AudioError: no output device (or it cannot be opened at ``rate``).
    """

    def __init__(self, rate: int, device: Union[int, str, None] = None) -> None:
        sd = _sounddevice()
        try:
            info = sd.query_devices(device, kind="output")
            self.stream = sd.OutputStream(
                samplerate=rate, channels=1, dtype="float32", device=device
            )
            self.stream.start()
        except Exception as e:  # sounddevice's PortAudioError, or ValueError for no device
            raise AudioError(
                f"no audio output device to play on ({str(e).strip() or type(e).__name__}); "
                "write a file with -o instead"
            ) from e
        name = info.get("name") if isinstance(info, dict) else None
        logger.info("playing on %s at %d Hz", name or "the default output", rate)

    def write(self, chunk: np.ndarray) -> None:
        """Play ``chunk`` (n,) float32 (blocks until the device has taken it)."""
        data = np.ascontiguousarray(np.asarray(chunk, dtype=np.float32).reshape(-1, 1))
        if data.size:
            self.stream.write(data)

    def close(self) -> None:
        """Let what was written finish playing, then release the device."""
        try:
            self.stream.stop()
        finally:
            self.stream.close()


__all__ = ["PLAY_INSTALL", "Player"]
