"""The deployment files name real commands, real settings and safe defaults (read, not run)."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml
from packaging.specifiers import SpecifierSet

from payhook import health
from payhook.cli import main
from payhook.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {name.upper() for name in Settings.model_fields}
# Documented variables of the postgres image; the redis image is configured by its command.
POSTGRES_IMAGE_VARIABLES = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "PGDATA"}
# Read by the interpreter and pip inside the image, not by payhook.
INTERPRETER_VARIABLES = {
    "PATH",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "PIP_NO_CACHE_DIR",
}
RAILWAY_FILES = ("railway.json", "railway.worker.json")
ASSIGNMENT = re.compile(r"^[A-Z][A-Z0-9_]*=")


def read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(read("docker-compose.yml"))
    return document


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per stage, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", read("Dockerfile"))
    stages: list[list[tuple[str, str]]] = []
    for line in joined.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, arguments = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def runtime_stage() -> list[tuple[str, str]]:
    return dockerfile_stages()[-1]


def procfile() -> dict[str, str]:
    entries = (line.partition(":") for line in read("Procfile").splitlines() if line.strip())
    return {kind.strip(): command.strip() for kind, _, command in entries}


def split_command(command: str | list[str]) -> tuple[dict[str, str], list[str]]:
    """Leading VAR=value assignments (as a shell runs them) and the argv that follows."""
    words = shlex.split(command) if isinstance(command, str) else list(command)
    assignments: dict[str, str] = {}
    while words and ASSIGNMENT.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        assignments[name] = value
    if len(words) == 1 and " " in words[0]:
        words = shlex.split(words[0])  # YAML/JSON lists holding one shell string
    return assignments, words


def heroku_commands() -> Iterator[str | list[str]]:
    manifest = yaml.safe_load(read("heroku.yml"))
    yield from manifest["release"]["command"]
    for process in manifest["run"].values():
        yield from process["command"] if isinstance(process, dict) else [process]


def every_command() -> Iterator[tuple[str, str | list[str]]]:
    """(where, command) for each process command any deployment file runs."""
    cmd = [json.loads(args) for name, args in runtime_stage() if name == "CMD"]
    yield from (("Dockerfile CMD", command) for command in cmd)
    for name, service in services().items():
        if "command" in service and service.get("image", "").startswith("payhook"):
            yield f"compose {name}", service["command"]
    yield from ((f"Procfile {kind}", command) for kind, command in procfile().items())
    for file in RAILWAY_FILES:
        deploy = json.loads(read(file))["deploy"]
        yield from ((file, command) for command in deploy.get("preDeployCommand", []))
        yield file, deploy["startCommand"]
    yield from (("heroku.yml", command) for command in heroku_commands())


def test_every_command_is_a_payhook_subcommand() -> None:
    used = set()
    for where, command in every_command():
        _, argv = split_command(command)
        assert argv[:1] == ["payhook"], f"{where} runs {argv}, not payhook"
        assert argv[1] in main.commands, f"{where}: no `payhook {argv[1]}` command"
        used.add(argv[1])
    assert {"serve", "worker", "migrate"} <= used


def environment_set() -> Iterator[tuple[str, str]]:
    """(where, NAME) for every environment variable a deployment file sets."""
    for index, stage in enumerate(dockerfile_stages()):
        for instruction, arguments in stage:
            if instruction == "ENV":
                names = (word.partition("=")[0] for word in shlex.split(arguments))
                yield from ((f"Dockerfile stage {index}", name) for name in names)
    for name, service in services().items():
        yield from ((f"compose {name}", variable) for variable in service.get("environment", {}))
    for kind, command in procfile().items():
        assignments, _ = split_command(command)
        yield from ((f"Procfile {kind}", variable) for variable in assignments)


def test_every_variable_set_is_a_setting_or_an_image_variable() -> None:
    known = SETTINGS | POSTGRES_IMAGE_VARIABLES | INTERPRETER_VARIABLES
    unknown = [(where, name) for where, name in environment_set() if name not in known]
    assert not unknown


def test_only_postgres_gets_postgres_image_variables() -> None:
    for name, service in services().items():
        if name != "postgres":
            assert not POSTGRES_IMAGE_VARIABLES & set(service.get("environment", {})), name


def test_runtime_stage_runs_as_a_fixed_non_root_user() -> None:
    users = [arguments for name, arguments in runtime_stage() if name == "USER"]
    assert users, "the runtime stage has no USER"
    user = users[-1].partition(":")[0]
    args = {a.partition("=")[0]: a.partition("=")[2] for n, a in runtime_stage() if n == "ARG"}
    uid = args.get(user.strip("${}"), user)
    assert uid.isdigit(), f"USER {users[-1]} is not a fixed uid"
    assert int(uid) != 0


def test_runtime_stage_checks_health_without_curl_and_serves_on_8000() -> None:
    stage = dict(runtime_stage())
    healthcheck = stage["HEALTHCHECK"]
    assert "urllib.request" in healthcheck
    assert not re.search(r"\b(curl|wget)\b", healthcheck)
    assert "'http://127.0.0.1:%s/' %" in healthcheck, "liveness is GET /"
    assert stage["EXPOSE"] == "8000"
    assert json.loads(stage["CMD"]) == ["payhook", "serve"]
    env = dict(word.partition("=")[::2] for word in shlex.split(stage["ENV"]))
    assert (env["HOST"], env["PORT"]) == ("0.0.0.0", "8000")


def test_image_installs_the_lock_with_hashes_and_copies_only_the_venv() -> None:
    builder, runtime = dockerfile_stages()[0], runtime_stage()
    runs = [arguments for name, arguments in builder if name == "RUN"]
    assert any("--require-hashes -r requirements/prod.lock" in run for run in runs)
    assert any("pip wheel --no-deps" in run for run in runs)
    copies = [arguments for name, arguments in runtime if name == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    assert all(name.split(":")[0] == "python" for name in _base_images())


def _base_images() -> list[str]:
    return [stage[0][1].split()[0] for stage in dockerfile_stages()]


def test_api_and_worker_start_after_the_migration_completes() -> None:
    found = services()
    for name in ("api", "worker"):
        depends = found[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
    migrate = found["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_services_share_one_environment_and_keep_redis_as_a_queue() -> None:
    found = services()
    shared = found["migrate"]["environment"]
    for name in ("api", "worker"):
        assert shared.items() <= found[name]["environment"].items()
    assert shared["ENVIRONMENT"] == "production"
    assert "${WEBHOOK_SECRET:?" in shared["WEBHOOK_SECRET"]
    redis = " ".join(found["redis"]["command"])
    assert "--maxmemory-policy noeviction" in redis
    assert "--appendonly yes" in redis
    assert found["postgres"]["image"] == "postgres:15"
    assert found["redis"]["image"] == "redis:7"


def test_health_paths_are_real_routes() -> None:
    routes = {getattr(route, "path", None) for route in health.router.routes}
    for file in RAILWAY_FILES:
        path = json.loads(read(file))["deploy"].get("healthcheckPath")
        assert path is None or path in routes, file
    assert json.loads(read("railway.json"))["deploy"]["healthcheckPath"] == "/health/ready"
    api_check = " ".join(services()["api"]["healthcheck"]["test"])
    assert any(f":8000{path}'" in api_check for path in routes if path)


def env_example() -> list[str]:
    """Variable names in .env.example, set (NAME=value) or shown commented out (# NAME=value)."""
    names = []
    for line in read(".env.example").splitlines():
        match = re.match(r"^(?:# ?)?([A-Z][A-Z0-9_]*)=(\S*)$", line)
        if match:
            names.append(match.group(1))
        elif line and not line.startswith("#"):
            pytest.fail(f".env.example: {line!r} is neither a NAME=value nor a comment line")
    return names


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    names = env_example()
    assert len(names) == len(set(names)), "a variable is listed twice"
    assert set(names) == SETTINGS


def test_env_example_values_carry_no_trailing_comment() -> None:
    for line in read(".env.example").splitlines():
        if not line.startswith("#"):
            assert not re.search(r"\s#", line), line


def test_runtime_txt_names_the_image_python_and_satisfies_requires_python() -> None:
    match = re.fullmatch(r"python-(\d+\.\d+\.\d+)\n", read("runtime.txt"))
    assert match, "runtime.txt must be python-X.Y.Z"
    version = match.group(1)
    requires = tomllib.loads(read("pyproject.toml"))["project"]["requires-python"]
    assert SpecifierSet(requires).contains(version)
    assert f"ARG PYTHON_VERSION={version}" in read("Dockerfile")


COMPOSE_SPEC = Path(__file__).parent.parent / "fixtures" / "compose-spec" / "compose-spec.json"


def test_docker_compose_file_follows_the_compose_specification() -> None:
    """The Compose Specification's own JSON schema (tests/fixtures/compose-spec/README.md).

    It runs everywhere: `docker compose config` needs Docker's compose plugin, which Debian's
    packages lack (their docker-compose 1.29 predates the top-level `name`).
    """
    validator = jsonschema_rs.Draft7Validator(json.loads(COMPOSE_SPEC.read_text()))
    compose = yaml.safe_load(read("docker-compose.yml"))
    assert [error.message for error in validator.iter_errors(compose)] == []
    misspelt = {**compose, "servics": compose["services"]}
    assert not validator.is_valid(misspelt)  # the schema refuses what it does not know


def test_build_context_leaves_out_secrets_and_local_state() -> None:
    ignored = set(read(".dockerignore").splitlines())
    assert {".git", ".venv", ".env", "*.db", "benchmarks/results"} <= ignored
