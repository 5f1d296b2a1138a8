"""Prove a lock installs on other platforms: download every wheel it names for each of them.

`pip download --platform` fetches wheels for another platform but evaluates environment markers
for the machine it runs on (so Linux would still ask for uvloop on Windows). This writes, for
each target, the lock with its markers evaluated for that target (hashes kept), then runs
`pip download --only-binary=:all: --require-hashes` for it. Usage:

    python .ci/check_locks.py requirements/prod.lock
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.markers import Marker

PYTHON = "3.11"
# pip platform tag, and the marker environment of that platform.
TARGETS: dict[str, tuple[str, dict[str, str]]] = {
    "Windows x86-64": (
        "win_amd64",
        {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"},
    ),
    "macOS arm64": (
        "macosx_14_0_arm64",
        {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix"},
    ),
}
COMMON = {
    "platform_python_implementation": "CPython",
    "implementation_name": "cpython",
    "python_version": PYTHON,
    "python_full_version": f"{PYTHON}.9",
}


def entries(lock: str) -> list[list[str]]:
    """The lock's requirements, each as its lines (`name==version ; marker \\`, hashes)."""
    found: list[list[str]] = []
    for line in lock.splitlines():
        if line.startswith("#") or not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            found[-1].append(line)
        else:
            found.append([line])
    return found


def for_platform(lock: str, environment: dict[str, str]) -> str:
    """The lock without the requirements whose marker is false on that platform."""
    kept = []
    for lines in entries(lock):
        requirement, _, marker = lines[0].removesuffix("\\").partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate({**COMMON, **environment}):
            continue
        kept.append("\n".join([f"{requirement.strip()} \\", *lines[1:]]))
    return "\n".join(kept) + "\n"


def check(lock_path: Path) -> int:
    lock = lock_path.read_text()
    failed = 0
    for name, (tag, environment) in TARGETS.items():
        with tempfile.TemporaryDirectory() as work:
            requirements = Path(work) / "requirements.txt"
            requirements.write_text(for_platform(lock, environment))
            command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
            command += ["--only-binary=:all:", "--platform", tag, "--python-version", PYTHON]
            command += ["--require-hashes", "-r", str(requirements), "-d", str(Path(work) / "w")]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            wheels = len(list((Path(work) / "w").glob("*.whl")))
            verdict = "ok" if result.returncode == 0 else "FAILED"
            print(f"{lock_path} on {name} ({tag}): {wheels} wheels, {verdict}")
            if result.returncode != 0:
                print(result.stderr.strip()[-2000:])
                failed += 1
    return failed


if __name__ == "__main__":
    sys.exit(sum(check(Path(path)) for path in sys.argv[1:]) and 1)
