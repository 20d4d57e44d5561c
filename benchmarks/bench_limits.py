"""The worst valid inputs: the server's /health latency and RSS while they run, and what the
audio bounds cost (docs/limits.md, "Measured").

Server part: starts ``python -m chattts.server`` on 127.0.0.1 (the tiny test model by default)
with a voice library holding a voice made from the longest recording allowed (five minutes),
polls ``/health`` every 100 ms and samples the server's RSS, and runs one phase after another
with ``--clients`` threads: idle; mixes of 16 seed voices never drawn before (the most terms, no
cache); the longest ``input`` (4,096 characters); the five-minute sample voice; and 50 slow
senders trickling request heads (cut at the header timeout). Audio part: in a fresh process each
(so that the peak RSS is the case's own), the probe's files: a 2 KB WAV that declares 1 Hz, an
endless WAV stream (no length in its header) read by ``load_audio`` and by
``Chat.sample_audio_speaker``, and a five-minute recording made into a speaker sample.

    python benchmarks/bench_limits.py                 # about 3 minutes on the tiny model
    python benchmarks/bench_limits.py --seconds 60 --clients 8

Exit status 1 when a good request failed or /health went unanswered.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "..", "tests", "fixtures", "tiny")
sys.path.insert(0, HERE)
from soak_server import free_port, launch_server, rss_mb  # noqa: E402


def start_server(model_dir: str, voices: str, port: int) -> subprocess.Popen:
    return launch_server(["--model-dir", model_dir, "--no-verify", "--voices", voices], port)


class Watch:
    """/health every 100 ms (latency, failures) and the server's RSS every 0.5 s."""

    def __init__(self, url: str, pid: int) -> None:
        self.url, self.pid = url, pid
        self.latency: list[float] = []
        self.failed = 0
        self.rss: list[float] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=f) for f in (self._health, self._rss)]
        for t in self.threads:
            t.start()

    def _health(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.wait(0.1):
                t = time.perf_counter()
                try:
                    ok = client.get(f"{self.url}/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.latency.append(time.perf_counter() - t)
                else:
                    self.failed += 1

    def _rss(self) -> None:
        while not self.stop.wait(0.5):
            self.rss.append(rss_mb(self.pid))

    def close(self) -> str:
        self.stop.set()
        for t in self.threads:
            t.join()
        lat = sorted(self.latency) or [float("nan")]
        pick = lambda q: lat[min(len(lat) - 1, int(len(lat) * q))] * 1000  # noqa: E731
        return (
            f"/health p50 {pick(0.5):.0f} ms, p99 {pick(0.99):.0f} ms, max {lat[-1] * 1000:.0f} "
            f"ms ({len(self.latency)} answered, {self.failed} failed); server RSS max "
            f"{max(self.rss or [float('nan')]):.0f} MB"
        )


def phase(url: str, pid: int, name: str, seconds: float, clients: int, one) -> bool:
    """Run ``one(client, rng) -> status`` in ``clients`` threads for ``seconds``."""
    counts: Counter[int] = Counter()
    lock = threading.Lock()
    end = time.monotonic() + seconds
    watch = Watch(url, pid)

    def worker(i: int) -> None:
        rng = random.Random(i)
        with httpx.Client(timeout=600) as client:
            while time.monotonic() < end:
                try:
                    status = one(client, rng)
                except httpx.HTTPError as e:
                    status = type(e).__name__
                with lock:
                    counts[status] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = watch.close()
    print(f"{name:12s} {dict(counts)}\n{'':12s} {summary}", flush=True)
    good = name == "slow heads" or set(counts) <= {200}
    return good and watch.failed == 0


def speech(url: str, **body):
    def one(client: httpx.Client, rng: random.Random):
        payload = {"model": "tts-1", "input": "hello", "voice": "alloy", "seed": 1, **body}
        if callable(payload["voice"]):
            payload["voice"] = payload["voice"](rng)
        return client.post(f"{url}/v1/audio/speech", json=payload).status_code

    return one


def slow_heads(port: int, header_timeout: float = 10.0):
    def one(client: httpx.Client, rng: random.Random):
        conns = []
        for _ in range(12):  # 12 per client: 48 with 4 clients
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: localhost\r\n")
            conns.append(s)
        deadline = time.monotonic() + header_timeout + 5
        closed = 0
        while conns and time.monotonic() < deadline:
            for s in list(conns):
                try:
                    s.send(b"X")
                    s.settimeout(0.05)
                    if s.recv(4096).startswith(b"HTTP/1.1 408"):
                        closed += 1
                        conns.remove(s)
                        s.close()
                except (TimeoutError, BlockingIOError):
                    pass
                except OSError:
                    closed += 1
                    conns.remove(s)
            time.sleep(0.2)
        for s in conns:
            s.close()
        return f"{closed}/12 cut"

    return one


# ---- the audio cases, each in a fresh process --------------------------------------------------

AUDIO_CASES = {
    "1 Hz WAV (2 KB)": "chat.sample_audio_speaker(wav(1, 1000))",
    "endless WAV, load_audio": "load_audio(Endless(), 24000)",
    "endless WAV, speaker sample": "chat.sample_audio_speaker(Endless())",
    "5-minute WAV, speaker sample": "chat.sample_audio_speaker(wav(24000, 300 * 24000))",
}
CASE = """
import io, struct, sys, time
import numpy as np
import chattts
from chattts.audio import load_audio, wav_header

def wav(rate, n):
    data = (np.random.default_rng(0).standard_normal(n) * 3000).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, rate, 2 * rate, 2, 16)
    head = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
    return head + fmt + b"data" + struct.pack("<I", len(data)) + data

class Endless(io.RawIOBase):
    '''A WAV stream with no length in its header and no end: 24 kHz noise for ever.'''
    def __init__(self):
        self.head = wav_header(24000)
        self.noise = (np.random.default_rng(0).standard_normal(1 << 16) * 3000).astype("<i2")
    def readable(self):
        return True
    def readinto(self, b):
        data = self.head or self.noise.tobytes()
        self.head = b""
        n = min(len(b), len(data))
        b[:n] = data[:n]
        return n

chat = chattts.Chat()
chat.load(source="custom", custom_path=sys.argv[1], verify=False, device="cpu", raise_on_error=True)
t = time.perf_counter()
try:
    out = CALL
    size = len(out) if isinstance(out, str) else out.size
    print(f"ok ({size}) in {time.perf_counter() - t:.2f} s")
except Exception as e:
    print(f"{type(e).__name__} in {time.perf_counter() - t:.2f} s: {str(e)[:90]}")
"""


def audio_cases(model_dir: str) -> None:
    base = subprocess.run(
        [sys.executable, "-c", CASE.replace("CALL", "''"), model_dir], capture_output=True
    )
    assert base.returncode == 0, base.stderr.decode()
    for name, call in AUDIO_CASES.items():
        proc = subprocess.Popen(
            [sys.executable, "-c", CASE.replace("CALL", call), model_dir],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        out = proc.stdout.read().decode().strip().splitlines()
        _, _, usage = os.wait4(proc.pid, 0)
        print(f"{name:30s} peak RSS {usage.ru_maxrss / 1024:5.0f} MB: {out[-1] if out else '?'}")


def make_library(model_dir: str, folder: str) -> None:
    """A library with "dan", a voice made from five minutes of audio (the most allowed)."""
    code = (
        "import sys, numpy as np, chattts\n"
        "from chattts.voices import VoiceLibrary\n"
        "c = chattts.Chat()\n"
        "c.load(source='custom', custom_path=sys.argv[1], verify=False, device='cpu',"
        " raise_on_error=True)\n"
        "wav = np.random.default_rng(0).standard_normal(300 * 24000).astype(np.float32) * 0.1\n"
        "VoiceLibrary(sys.argv[2]).add('dan', sample=c.sample_audio_speaker(wav), text='hi')\n"
    )
    subprocess.run([sys.executable, "-c", code, model_dir, folder], check=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="per phase")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--model-dir", default=TINY)
    args = p.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        voices = os.path.join(tmp, "voices")
        make_library(args.model_dir, voices)
        port = free_port()
        proc = start_server(args.model_dir, voices, port)
        url = f"http://127.0.0.1:{port}"
        try:
            seeds = lambda rng: "+".join(f"seed_{rng.randrange(10**15)}" for _ in range(16))  # noqa: E731
            text = ("Hello there, this is a long text. " * 121)[:4096]
            phases = [
                ("idle", lambda client, rng: (time.sleep(0.5), 200)[1]),
                ("16-term mix", speech(url, voice=seeds, max_new_token=16)),
                ("4096 chars", speech(url, input=text)),
                ("5-min sample", speech(url, voice="dan", max_new_token=64)),
                ("slow heads", slow_heads(port)),
            ]
            for name, one in phases:
                ok &= phase(url, proc.pid, name, args.seconds, args.clients, one)
        finally:
            proc.terminate()
            proc.wait(30)
    audio_cases(args.model_dir)
    print(f"load average at end: {os.getloadavg()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
