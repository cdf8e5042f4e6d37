"""Voice: the message rendered to an audio file, saved with the case for the console to play.

Dialling the customer is out of scope: this channel produces the recording a telephony provider (or
an agent) would play, at `<DATA_DIR>/audio/<case_id>/<message_id>.(mp3|wav)`, and reports its path
as the result's reference. Two engines:

- gTTS (Google's online text-to-speech, MP3): natural voices, but it needs Google to be reachable;
- espeak-ng (Debian package, WAV): robotic, but offline, so it works on a closed bank network and in tests.

VOICE_ENGINE=auto uses gTTS only when the package is installed and a quick connection check to
Google passes (cached for a few minutes), else espeak-ng. A file is written under a temporary name
and renamed, so a crash never leaves half an audio file under the final name; a resend of a message
whose file exists reuses it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import threading
import time
import uuid
import wave
from pathlib import Path
from typing import Literal

from equilibrate.alert.channels import (
    DeliveryError,
    DeliveryResult,
    OutboundMessage,
    failure,
    message_problem,
    retrying,
)
from equilibrate.ops.net import port_open

__all__ = ["AUDIO_TYPES", "ESPEAK_VOICES", "GTTS_LANGUAGES", "VoiceChannel", "VoiceEngine", "find_audio"]

log = logging.getLogger(__name__)

VoiceEngine = Literal["auto", "gtts", "espeak"]

#: Audio files this channel writes, with the MIME type the console serves them as.
AUDIO_TYPES: dict[str, str] = {".mp3": "audio/mpeg", ".wav": "audio/wav"}
#: Policy language -> espeak-ng voice (British English for a UK bank).
ESPEAK_VOICES: dict[str, str] = {"en": "en-gb", "hi": "hi"}
#: Policy language -> gTTS (lang, Google domain), the domain picking the accent.
GTTS_LANGUAGES: dict[str, tuple[str, str]] = {"en": ("en", "co.uk"), "hi": ("hi", "co.in")}

#: How long the check that Google answers may take, and how long its answer is trusted (seconds).
PROBE_TIMEOUT_S = 2.0
PROBE_CACHE_S = 300.0
RENDER_TIMEOUT_S = 120.0

_ESPEAK_MISSING = (
    "espeak-ng is not installed: run `sudo apt-get install espeak-ng` (or `make setup`), "
    "or set VOICE_ENGINE=gtts where Google's text-to-speech is reachable"
)
_GTTS_MISSING = "gTTS is not installed: run `pip install gTTS` (or `make setup`), or set VOICE_ENGINE=espeak"


def find_audio(data_dir: Path, case_id: str, message_id: str) -> Path | None:
    """The rendered audio of a message, if there is any (for the console's player)."""
    for suffix in AUDIO_TYPES:
        path = data_dir / "audio" / case_id / f"{message_id}{suffix}"
        if path.is_file() and path.stat().st_size > 0:
            return path
    return None


class VoiceChannel:
    """Renders each message to speech under DATA_DIR/audio; never dials."""

    def __init__(
        self,
        data_dir: Path,
        engine: VoiceEngine = "auto",
        *,
        attempts: int = 3,
        backoff_s: float = 0.5,
        espeak_bin: str = "espeak-ng",
        gtts_probe: tuple[str, int] | None = None,
        probe_timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        self.data_dir = data_dir
        self.engine = engine
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.espeak_bin = espeak_bin
        self.gtts_probe = gtts_probe  # None: translate.google.<domain>:443
        self.probe_timeout_s = probe_timeout_s
        self._probes: dict[tuple[str, int], tuple[bool, float]] = {}

    def send(self, message: OutboundMessage) -> DeliveryResult:
        problem = message_problem(message)
        if problem is not None:
            return failure(problem, permanent=True)
        existing = find_audio(self.data_dir, message.case_id, message.message_id)
        if existing is not None:  # a resend after a crash: the recording is already there
            return DeliveryResult("sent", str(existing), f"already rendered: {existing.name}")
        if self.engine == "gtts" and importlib.util.find_spec("gtts") is None:
            return failure(_GTTS_MISSING, permanent=True)
        what = f"voice {message.message_id} (case {message.case_id})"
        return retrying(lambda: self._render(message), self.attempts, self.backoff_s, what=what)

    def _render(self, message: OutboundMessage) -> DeliveryResult:
        if self.engine == "espeak":
            return self._espeak(message)
        if self.engine == "gtts":
            probe = self._probe_target(message.language)
            if not self._reachable(probe):
                raise DeliveryError(
                    f"VOICE_ENGINE=gtts but Google's text-to-speech at {probe[0]}:{probe[1]} is unreachable; "
                    "set VOICE_ENGINE=auto or espeak to render offline with espeak-ng"
                )
            return self._gtts(message)
        if importlib.util.find_spec("gtts") is not None and self._reachable(self._probe_target(message.language)):
            try:
                return self._gtts(message)
            except DeliveryError as exc:
                log.warning("gTTS failed for %s, rendering with espeak-ng instead: %s", message.message_id, exc)
        return self._espeak(message)

    # --- engines ---------------------------------------------------------------------------------

    def _espeak(self, message: OutboundMessage) -> DeliveryResult:
        binary = shutil.which(self.espeak_bin)
        if binary is None:
            raise DeliveryError(_ESPEAK_MISSING, permanent=True)
        voice = ESPEAK_VOICES.get(message.language, message.language)
        final, tmp = self._paths(message, ".wav")
        try:
            done = subprocess.run(
                [binary, "-v", voice, "-b", "1", "-w", str(tmp), "--stdin"],
                input=message.body.encode("utf-8"),
                capture_output=True,
                timeout=RENDER_TIMEOUT_S,
                check=False,
            )
            if done.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
                said = " ".join((done.stderr or done.stdout).decode("utf-8", "replace").split())[:200]
                raise DeliveryError(f"espeak-ng (voice {voice}) failed with exit code {done.returncode}: {said}")
            os.replace(tmp, final)
        except subprocess.TimeoutExpired as exc:
            raise DeliveryError(f"espeak-ng took over {RENDER_TIMEOUT_S:.0f} s") from exc
        except OSError as exc:  # espeak-ng not executable, the disk full
            raise DeliveryError(f"espeak-ng could not render {final}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        seconds = _wav_seconds(final)
        length = f"{seconds:.1f} s of speech" if seconds is not None else "speech"
        return DeliveryResult("sent", str(final), f"rendered {length} with espeak-ng (voice {voice})")

    def _gtts(self, message: OutboundMessage) -> DeliveryResult:
        from gtts import gTTS

        lang, domain = GTTS_LANGUAGES.get(message.language, (message.language, "com"))
        final, tmp = self._paths(message, ".mp3")
        try:
            gTTS(text=message.body, lang=lang, tld=domain).save(str(tmp))
            if tmp.stat().st_size == 0:
                raise DeliveryError("gTTS returned no audio")
            os.replace(tmp, final)
        except DeliveryError:
            raise
        except Exception as exc:  # gTTSError, requests' errors, ValueError for an unsupported language
            raise DeliveryError(f"gTTS failed: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return DeliveryResult("sent", str(final), f"rendered with gTTS ({lang}, translate.google.{domain})")

    # --- helpers ---------------------------------------------------------------------------------

    def _paths(self, message: OutboundMessage, suffix: str) -> tuple[Path, Path]:
        folder = self.data_dir / "audio" / message.case_id
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"cannot create {folder}: {exc}") from exc
        final = folder / f"{message.message_id}{suffix}"
        return final, folder / f".{message.message_id}.{uuid.uuid4().hex[:8]}.tmp{suffix}"

    def _probe_target(self, language: str) -> tuple[str, int]:
        if self.gtts_probe is not None:
            return self.gtts_probe
        return f"translate.google.{GTTS_LANGUAGES.get(language, ('', 'com'))[1]}", 443

    def _reachable(self, target: tuple[str, int]) -> bool:
        """Whether Google answers, checked in a thread so a hanging DNS lookup cannot stall a send."""
        cached = self._probes.get(target)
        if cached is not None and time.monotonic() - cached[1] < PROBE_CACHE_S:
            return cached[0]
        answers: list[bool] = []
        probe = threading.Thread(
            target=lambda: answers.append(port_open(*target, timeout=self.probe_timeout_s)),
            name="gtts-probe",
            daemon=True,
        )
        probe.start()
        probe.join(self.probe_timeout_s + 0.5)
        reachable = bool(answers and answers[0])
        if not reachable:
            log.info("Google's text-to-speech at %s:%d is unreachable", *target)
        self._probes[target] = (reachable, time.monotonic())
        return reachable


def _wav_seconds(path: Path) -> float | None:
    try:
        with wave.open(str(path), "rb") as audio:
            return audio.getnframes() / audio.getframerate()
    except (wave.Error, EOFError, OSError, ZeroDivisionError):
        return None
