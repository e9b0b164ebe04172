"""The learning-rate schedule, and the time budget that sizes it from the measured speed."""

from __future__ import annotations

import math
from collections.abc import Callable


class Schedule:
    """Linear warm-up, then cosine decay to zero at ``total`` steps (re-plannable once the speed is known)."""

    def __init__(self, total: int, warmup: float) -> None:
        self.total = max(1, total)
        self.warmup = warmup

    def __call__(self, step: int) -> float:
        w = max(1, int(self.warmup * self.total))
        if step < w:
            return (step + 1) / w
        progress = min(1.0, (step - w) / max(1, self.total - w))
        return 0.5 * (1.0 + math.cos(math.pi * progress))


class TimeBudget:
    """A budget of minutes: a cap on the run, and with ``fit`` the length of its schedule.

    Without ``fit`` the schedule is the configured epochs whatever the machine's speed, and the
    budget only stops a run that would take longer (``spent``). With ``fit`` the cosine decay is
    planned to end when the time does: the first plan comes from the first ``PLAN_AFTER`` steps;
    fresh runs re-plan at the start of epochs 2 and 3 from whole epochs, validation included.
    Every rank must call the planners (``broadcast`` makes the steps agree); the returned lines
    are for rank 0 to log.
    """

    PLAN_AFTER = 12

    def __init__(self, minutes: float | None, schedule: Schedule, *, steps_per_epoch: int, batch: int,
                 max_steps: int, broadcast: Callable[[int], int], resumed: bool, fit: bool = False) -> None:
        self.fit = fit
        self.minutes = minutes
        self.seconds = minutes * 60 if minutes else None
        self.schedule = schedule
        self.steps_per_epoch = steps_per_epoch
        self.batch = batch
        self.max_steps = max_steps
        self.broadcast = broadcast
        self.resumed = resumed
        self.planned = resumed  # a resumed run keeps the schedule it saved

    def replan(self, epoch: int, step: int, spent: float) -> str | None:
        """At the start of ``epoch`` (0-based): re-plan from the whole epochs done so far."""
        if not self.fit or not self.seconds or self.resumed or epoch not in (1, 2):
            return None
        # A plan made from 12 steps on a busy machine can be far off in either direction.
        fit = step + int(max(0.0, self.seconds * 0.93 - spent) * step / spent)
        fit -= fit % self.steps_per_epoch  # end on a whole epoch, not on a stub of a few steps
        self.schedule.total = self.broadcast(min(self.max_steps, max(step + 1, fit)))
        return (f"time budget {self.minutes:g} min: re-planned to {self.schedule.total} steps "
                f"({self.schedule.total / self.steps_per_epoch:.1f} epochs) from {step * self.batch / spent:.0f} img/s")

    def plan(self, step: int, steps_this_epoch: int, epoch_seconds: float, elapsed: float) -> str | None:
        """After each step: the first plan, once ``PLAN_AFTER`` steps of this run have been timed."""
        if not self.fit or not self.seconds or self.planned or steps_this_epoch != self.PLAN_AFTER:
            return None
        rate = steps_this_epoch / epoch_seconds
        # Keep 10% of the budget for validation and export.
        fit = step + int(max(0.0, self.seconds * 0.9 - elapsed) * rate)
        self.schedule.total = self.broadcast(min(self.schedule.total, max(step + 1, fit)))
        self.planned = True
        if self.schedule.total >= self.max_steps:
            return None
        return (f"time budget {self.minutes:g} min: {rate * self.batch:.0f} img/s, so the schedule "
                f"is {self.schedule.total} steps ({self.schedule.total / self.steps_per_epoch:.1f} epochs)")

    def spent(self, elapsed: float) -> bool:
        """Whether the run must stop now (``elapsed`` seconds since it began)."""
        return bool(self.seconds and elapsed > self.seconds * 0.97)
