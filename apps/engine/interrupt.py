"""Ctrl-C and SIGTERM during training: finish the step, save a checkpoint, say how to resume.

:class:`StopRequests` replaces the SIGINT and SIGTERM handlers for the duration of a run (only in
the main thread, where Python delivers signals). The first signal only sets a flag; the loop
checks it after each optimizer step, every process agrees on it (a one-number all-reduce, so
all ranks stop at the same step), saves a checkpoint and raises :class:`TrainingInterrupted`.
A second Ctrl-C while that happens stops at once, as Ctrl-C normally does. SIGKILL cannot be
caught: a killed run resumes from its last periodic checkpoint.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

from .distributed import DistributedContext, all_reduce_sum, under_torchrun

__all__ = ["StopRequests", "TrainingInterrupted"]

HANDLED = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(BaseException):
    """Training stopped on SIGINT or SIGTERM after saving a checkpoint.

    Like :class:`KeyboardInterrupt` it derives from :class:`BaseException`, so an
    ``except Exception`` around a training call (a script's, a notebook helper's, a test
    runner's) does not swallow a scheduler's stop request: the process ends after the
    checkpoint unless the caller catches this class by name.

    Attributes:
        step: the last optimizer step done (the checkpoint's step).
        checkpoint: the checkpoint written at that step.
        run_dir: the run directory; resuming from it continues exactly.
        signal_number: ``signal.SIGINT`` or ``signal.SIGTERM``.
        exit_code: what a command should exit with (128 + the signal number: 130 or 143).
    """

    def __init__(self, step: int, checkpoint: Path, run_dir: Path, signal_number: int):
        self.step, self.checkpoint, self.run_dir, self.signal_number = step, checkpoint, run_dir, signal_number
        self.exit_code = 128 + signal_number
        name = signal.Signals(signal_number).name
        super().__init__(
            f"interrupted by {name} after step {step}; checkpoint {checkpoint}. "
            f"Continue with --resume {run_dir} (resume={str(run_dir)!r} in a TrainingConfig)"
        )


class StopRequests:
    """A context manager that turns SIGINT/SIGTERM into a stop request the loop polls.

    Outside the main thread (where handlers cannot be installed) it does nothing and
    :meth:`requested` only reports other ranks' requests.
    """

    def __init__(self) -> None:
        self.signal_number = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for number in HANDLED:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.signal_number and number == signal.SIGINT and not under_torchrun():
            # a second Ctrl-C: stop now, without the checkpoint. (Under torchrun the launcher passes
            # the Ctrl-C the terminal already sent on to every process: the same request again.)
            raise KeyboardInterrupt
        self.signal_number = number

    def requested(self, context: DistributedContext) -> int:
        """The signal number if any process got a stop signal, else 0 (a collective when distributed)."""
        if not context.is_distributed:
            return self.signal_number
        (received,) = all_reduce_sum([float(self.signal_number)], context)
        if received and not self.signal_number:
            self.signal_number = signal.SIGTERM  # another rank was signalled; report it as a termination
        return self.signal_number if received else 0
