"""What a teacher may do that a student may not, and the class's standings.

The teacher's key (TLCORE_TEACHER_KEY, set by the host) is the one deliberate exception to "only
a run's owner may change it": with it, the teacher's view can stop any run. Students are shown
by a short pseudonym, never by the token that is their identity.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Literal

from . import settings

log = logging.getLogger(__name__)


def teacher_key_set() -> bool:
    return bool(settings.read("TLCORE_TEACHER_KEY"))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def is_teacher(key: str | None) -> bool:
    """True for the host's teacher key; never when the host set none. Digests of equal length are
    compared in constant time, so neither the time taken nor an early exit on length tells a guesser
    how close a guess was."""
    expected = settings.read("TLCORE_TEACHER_KEY")
    return bool(expected and key) and hmac.compare_digest(_digest(str(key)), _digest(str(expected)))


Verdict = Literal["teacher", "wrong", "wait"]


@dataclass
class KeyGate:
    """Slows down whoever guesses the teacher's key: after n wrong guesses from one browser session,
    or from one client address (a new tab is a new session, so both count), its next guess is not even
    compared until base_s * 2**(n-1) seconds have passed (at most cap_s). Every wrong guess is logged
    with its running count. One gate per server (ui.services.teacher_gate)."""
    base_s: float = 1.0
    cap_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _wrong: dict[str, tuple[int, float]] = field(default_factory=dict)   # who -> (wrong guesses, last one at)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _delay(self, n: int) -> float:
        return 0.0 if n == 0 else min(self.cap_s, self.base_s * 2 ** (n - 1))

    def wait_s(self, *who: str) -> float:
        """Seconds before any of `who` may guess again (0: now)."""
        now = self.clock()
        with self._lock:
            return max((self._delay(n) - (now - t) for n, t in (self._wrong.get(w, (0, now)) for w in who)),
                       default=0.0) if who else 0.0

    def check(self, key: str, *, session: str, address: str | None) -> tuple[Verdict, float]:
        """("teacher", 0) for the right key; ("wrong", seconds until the next try) for a wrong one;
        ("wait", seconds left) while this session or address is slowed down: the key is not compared."""
        who = [f"session {hashlib.sha256(session.encode()).hexdigest()[:12]}"] + \
            ([f"address {address}"] if address else [])
        left = self.wait_s(*who)
        if left > 0:
            return "wait", left
        if is_teacher(key):
            with self._lock:
                for w in who:
                    self._wrong.pop(w, None)
            return "teacher", 0.0
        now = self.clock()
        with self._lock:
            self._forget_old(now)
            counts = []
            for w in who:
                n = self._wrong.get(w, (0, now))[0] + 1
                self._wrong[w] = (n, now)
                counts.append(n)
        log.warning("wrong teacher key from %s: wrong guesses %s; the next is compared in %.0f s or later",
                    " and ".join(who), "/".join(map(str, counts)), self._delay(max(counts)))
        return "wrong", self._delay(max(counts))

    def _forget_old(self, now: float) -> None:
        """Entries quiet for twice the longest delay are forgotten, so the table stays small."""
        if len(self._wrong) > 10_000:
            for w in [w for w, (_, t) in self._wrong.items() if now - t > 2 * self.cap_s]:
                del self._wrong[w]


def pseudonym(owner: str) -> str:
    """"student 3f9a": stable for one browser, and reveals nothing that would let anyone act as it."""
    if not owner:
        return "—"
    if owner == "cli":
        return "command line"
    return "student " + hashlib.sha256(owner.encode()).hexdigest()[:4]


@dataclass(frozen=True)
class Standing:
    rank: int
    who: str
    run_id: str
    run: str
    val_acc: float
    seconds: float | None


def leaderboard(summaries, lesson: str, limit: int = 20) -> list[Standing]:
    """The lesson's finished runs by validation accuracy, best first; one line per student (their best)."""
    best: dict[str, object] = {}
    for s in summaries:
        if s.lesson != lesson or s.status != "finished" or s.val_acc is None:
            continue
        if s.owner not in best or s.val_acc > best[s.owner].val_acc:
            best[s.owner] = s
    ranked = sorted(best.values(), key=lambda s: (-s.val_acc, s.seconds or 0.0))[:limit]
    return [Standing(i + 1, pseudonym(s.owner), s.id, f"{s.strategy} · {s.model} · {s.dataset_name or s.dataset}",
                     s.val_acc, s.seconds) for i, s in enumerate(ranked)]


def lessons(summaries) -> list[str]:
    """The lessons the class's runs came from, most recent first."""
    seen: dict[str, float] = {}
    for s in summaries:
        if s.lesson:
            seen[s.lesson] = max(seen.get(s.lesson, 0.0), s.created)
    return sorted(seen, key=lambda k: -seen[k])
