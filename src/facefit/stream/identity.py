"""Who a track is: the answers of its identifications, a vote over them, and when to ask again."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from facefit.errors import UsageError


@dataclass
class TrackIdentity:
    """Every identification of one track, reduced to a stable label."""

    votes: Counter = field(default_factory=Counter)  # answer (name, or None = unknown) -> times given
    best: dict[str | None, float] = field(default_factory=dict)  # answer -> lowest distance seen with it
    count: int = 0
    last_hits: int = 0  # the track's detection count at the last identification

    def add(self, name: str | None, distance: float | None, hits: int) -> None:
        self.votes[name] += 1
        if distance is not None:
            self.best[name] = min(distance, self.best.get(name, float("inf")))
        self.count += 1
        self.last_hits = hits

    @property
    def name(self) -> str | None:
        """The most frequent answer; a tie goes to the closer one (so one accepted match beats one unknown)."""
        if not self.votes:
            return None
        return min(self.votes, key=lambda n: (-self.votes[n], self.best.get(n, float("inf"))))

    @property
    def distance(self) -> float | None:
        """The lowest distance seen for the current label (for unknown: to the nearest enrolled person)."""
        return self.best.get(self.name) if self.votes else None

    @property
    def pending(self) -> bool:
        return self.count == 0


@dataclass(frozen=True)
class IdentifyPolicy:
    """When a track is identified: on its first detection, then only now and then.

    Counts are in detections of that track. An unknown face is retried every
    ``retry_every`` detections up to ``unknown_tries`` answers (a first look is
    often blurred or turned); after that, and for named faces, every
    ``reid_every`` detections, which catches boxes that swapped faces.
    """

    reid_every: int = 10
    retry_every: int = 2
    unknown_tries: int = 3

    def __post_init__(self) -> None:
        for name in ("reid_every", "retry_every", "unknown_tries"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")

    def due(self, identity: TrackIdentity, hits: int) -> bool:
        if identity.count == 0:
            return True
        since = hits - identity.last_hits
        if identity.name is None and identity.count < self.unknown_tries:
            return since >= self.retry_every
        return since >= self.reid_every
