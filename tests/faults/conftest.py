"""Print the fault suite's figures at the end of every run, CI's included.

Each fault test records its figures line as a user property (`figures`); the reports carry it
to the process that prints the summary, which is the controller when pytest-xdist runs the suite.
"""

from __future__ import annotations

import pytest

FIGURES = "figures"
_lines: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _lines.extend(str(value) for name, value in report.user_properties if name == FIGURES)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _lines:
        terminalreporter.write_line(line)
