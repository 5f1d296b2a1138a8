"""A configuration mistake is one line naming the variable, exit status 1, before migrations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PAYHOOK = Path(sys.executable).parent / "payhook"
MISTAKES = [
    ({"PORT": "abc"}, "PORT: Input should be a valid integer"),
    ({"ENVIRONMENT": "production"}, "ENVIRONMENT=production refuses unsigned webhooks"),
    ({"EXECUTOR": "celery"}, "EXECUTOR=celery needs REDIS_URL"),
    (
        {"WEBHOOK_SIGNATURE_SCHEME": "standard-webhooks", "WEBHOOK_SECRET": "not base64!"},
        "WEBHOOK_SECRET must be whsec_<base64> for standard-webhooks",
    ),
    ({"PROCESSING_STEP": "garbage"}, "PROCESSING_STEP must look like 'package.module:function'"),
    ({"PROCESSING_STEP": "no_such_module:step"}, "PROCESSING_STEP: importing 'no_such_module'"),
    ({"PROCESSING_STEP": "json:no_such_step"}, "PROCESSING_STEP: 'json' has no 'no_such_step'"),
    ({"PROCESSING_STEP": "json:dumps"}, "PROCESSING_STEP 'json:dumps' must be an async function"),
]
# Each case starts a real process: every mistake on `serve`, and the step's on `worker` too.
CASES = [("serve", *mistake) for mistake in MISTAKES] + [("worker", *MISTAKES[-1])]


@pytest.mark.parametrize(("command", "variables", "message"), CASES)
def test_a_mistake_is_one_line_and_nothing_runs(
    tmp_path: Path, command: str, variables: dict[str, str], message: str
) -> None:
    database = tmp_path / "payhook.db"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", **variables}
    result = subprocess.run(
        [str(PAYHOOK), command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines
    assert message in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not database.exists(), "the configuration is checked before any migration"
