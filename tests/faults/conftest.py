"""Print the fault suite's figures at the end of every run, CI's included."""

from __future__ import annotations

import pytest

from tests.faults.test_partition import FIGURES
from tests.faults.test_topology import SUMMARY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in [*SUMMARY, *FIGURES]:
        terminalreporter.write_line(line)
