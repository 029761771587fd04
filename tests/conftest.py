"""Shared test settings: deterministic, single-threaded-friendly defaults, and a run that
stops when training was stopped by a signal."""

import pytest
import torch

from polyformer.apps.engine import TrainingInterrupted


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A SIGTERM/SIGINT that stopped a training run inside a test (a scheduler ending the job)
    ends the whole test session after that test, as an uncaught Ctrl-C would."""
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(TrainingInterrupted):
        item.session.shouldstop = f"training was stopped by a signal in {item.nodeid}"
    return report
