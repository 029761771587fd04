"""A training health monitor: bands for the numbers a run logs, with a warning (or a stop) that says what to do.

:class:`HealthMonitor` is an ``on_step_end(step, values)`` callback for :func:`~polyformer.apps.engine.train`.
Each :class:`HealthRule` names a logged value (``grad_norm``, or a task's own, such as wav2vec 2.0's
``code_perplexity`` or ``accuracy``), the band it should stay in and what to try when it leaves it. A rule is
checked from its ``after`` step on; the first time it fails, the monitor calls ``warn`` and appends a ``health``
event to the run's ``metrics.jsonl``, or, for a rule with ``stop``, raises
:class:`~polyformer.apps.engine.tasks.TrainingHealthError` (the run's last checkpoint stays on disk). A value must
stay outside its band for ``patience`` consecutive checks before it counts, so one noisy batch does not fire.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .run_log import MetricsLog
from .tasks import TrainingHealthError

__all__ = ["HealthMonitor", "HealthRule"]


@dataclass(frozen=True)
class HealthRule:
    """One value's healthy band.

    Attributes:
        name: the logged value (a key of the values ``on_step_end`` receives).
        low, high: the band (either may be None: unbounded); NaN or infinity is always outside.
        advice: what is wrong and what to try, said when the value leaves the band.
        after: first step the rule is checked at (values are meant to be out of band at the start).
        stop: stop the run instead of warning.
        patience: consecutive out-of-band checks before the rule fires.
    """

    name: str
    low: float | None = None
    high: float | None = None
    advice: str = ""
    after: int = 0
    stop: bool = False
    patience: int = 3

    def healthy(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


class HealthMonitor:
    """Checks :class:`HealthRule` s after every optimizer step; see the module docstring.

    Args:
        rules: the bands to watch.
        warn: where warnings go.
        log_path: the run's ``metrics.jsonl`` (a ``health`` event per warning); None = not logged.
        then: another ``on_step_end`` callback to run after the checks.
    """

    def __init__(
        self,
        rules: Sequence[HealthRule],
        warn: Callable[[str], None] | None = print,
        log_path: str | Path | None = None,
        then: Callable[[int, dict[str, Any]], None] | None = None,
    ):
        self.rules, self.warn, self.then = list(rules), warn, then
        self.log = MetricsLog(Path(log_path)) if log_path is not None else None
        self.fired: dict[str, int] = {}  # rule name -> step it fired at
        self._strikes = {rule.name: 0 for rule in self.rules}

    def __call__(self, step: int, values: dict[str, Any]) -> None:
        for rule in self.rules:
            if step < rule.after or rule.name in self.fired or rule.name not in values:
                continue
            value = float(values[rule.name])
            self._strikes[rule.name] = 0 if rule.healthy(value) else self._strikes[rule.name] + 1
            if self._strikes[rule.name] >= rule.patience:
                self._fire(rule, step, value)
        if self.then is not None:
            self.then(step, values)

    def _fire(self, rule: HealthRule, step: int, value: float) -> None:
        low = "-inf" if rule.low is None else f"{rule.low:g}"
        band = f"[{low}, {'inf' if rule.high is None else f'{rule.high:g}'}]"
        message = f"{rule.name} is {value:.4g} at step {step}, outside {band} for {rule.patience} checks: {rule.advice}"
        self.fired[rule.name] = step
        if self.log is not None:
            self.log.write("health", step=step, value=rule.name, observed=value, band=band, stop=rule.stop,
                           advice=rule.advice)  # fmt: skip
        if rule.stop:
            raise TrainingHealthError(f"stopped: {message}")
        if self.warn is not None:
            self.warn(f"warning: {message}")
