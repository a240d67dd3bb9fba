"""What a teacher may do that a student may not, and the class's standings.

The teacher's key (TLCORE_TEACHER_KEY, set by the host) is the one deliberate exception to "only
a run's owner may change it": with it, the teacher's view can stop any run. Students are shown
by a short pseudonym, never by the token that is their identity.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from . import settings


def teacher_key_set() -> bool:
    return bool(settings.read("TLCORE_TEACHER_KEY"))


def is_teacher(key: str | None) -> bool:
    """True for the host's teacher key (compared in constant time); never when the host set none."""
    expected = settings.read("TLCORE_TEACHER_KEY")
    return bool(expected and key) and hmac.compare_digest(str(key).encode(), str(expected).encode())


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
