"""The core's ``inline`` executor against the executor conformance kit.

Being synchronous, it meets the promises that apply to it: ``synchronous``
is a bool, ``stop`` is idempotent, nothing runs in the background.
"""

from __future__ import annotations

import pytest

from rocketman_core import Executor
from rocketman_core._builtin import InlineExecutor
from rocketman_core.testing import ExecutorContract


class TestInlineExecutor(ExecutorContract):
    """The Executor contract, on the synchronous inline executor."""

    @pytest.fixture
    def executor(self) -> Executor:
        return InlineExecutor()


def test_the_inline_executor_says_it_is_synchronous() -> None:
    """``synchronous`` is True: the core dispatches in the emitting thread, never calls start."""
    assert InlineExecutor.synchronous is True
