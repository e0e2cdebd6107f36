"""Unit tier: the one-machine retrain recipes in deploy/ (systemd service and timer, crontab line).

They are parsed, not installed: the service's ExecStart must be a real
``shelf-audit run`` whose flags the CLI's own parser accepts, the timer must
start that service, and the crontab line must run the very same command on a
5-field schedule at the timer's time.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from shelf_audit import cli, schedule_cmd

pytestmark = pytest.mark.unit

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SERVICE = DEPLOY / "shelf-audit-retrain.service"
TIMER = DEPLOY / "shelf-audit-retrain.timer"
CRONTAB = DEPLOY / "crontab"
VENV_BIN = "/.venv/bin/shelf-audit"


def _unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit file as section -> [(key, value)] in file order (keys may repeat, e.g. Environment=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}: {line!r} before any [Section]"
        assert not line.endswith("\\"), f"{path.name}: keep {line!r} on one line"
        key, eq, value = line.partition("=")
        assert eq, f"{path.name}: {line!r} is not Key=Value"
        current.append((key.strip(), value.strip()))
    return sections


def _values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def _one(section: list[tuple[str, str]], key: str) -> str:
    values = _values(section, key)
    assert len(values) == 1, f"{key}= appears {len(values)} times"
    return values[0]


def _exec_start() -> list[str]:
    return shlex.split(_one(_unit(SERVICE)["Service"], "ExecStart"))


def _crontab_entry() -> tuple[list[str], str]:
    """``(five schedule fields, command text)`` of the single entry of deploy/crontab."""
    entries = [
        line
        for line in CRONTAB.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#") and not re.match(r"^\s*[A-Za-z_]+\s*=", line)
    ]
    assert len(entries) == 1, entries
    fields = entries[0].split(None, 5)
    assert len(fields) == 6, f"5 schedule fields and a command: {entries[0]!r}"
    return fields[:5], fields[5]


def _run_argv(words: list[str]) -> list[str]:
    """The ``shelf-audit ...`` invocation inside a shell command: from the venv binary up to a redirection."""
    starts = [i for i, w in enumerate(words) if w.endswith(VENV_BIN)]
    assert len(starts) == 1, words
    argv = []
    for word in words[starts[0] :]:
        if word in ("&&", "||", ";", "|") or word.startswith((">", "<", "2>", "1>")):
            break
        argv.append(word)
    return argv


def test_the_service_runs_shelf_audit_run_from_a_checkout_venv_with_flags_the_cli_accepts():
    service = _unit(SERVICE)["Service"]
    argv = _exec_start()
    assert argv[0].startswith("/") and argv[0].endswith(VENV_BIN), argv[0]
    assert _one(service, "WorkingDirectory") == argv[0].removesuffix(VENV_BIN)
    args = cli.build_parser(argv[1:]).parse_args(argv[1:])
    assert args.command == "run"
    assert args.handler.__module__ == "shelf_audit.run_cmd"
    # explicit paths, not the defaults meant for a developer's checkout
    assert "--config" in argv and "--home" in argv
    assert args.config.startswith("/") and args.home.startswith("/")


def test_the_service_is_a_oneshot_of_a_dedicated_user_with_the_keras_2_environment():
    service = _unit(SERVICE)["Service"]
    assert _one(service, "Type") == "oneshot"
    assert _one(service, "User") not in ("", "root")
    environment = dict(v.split("=", 1) for v in _values(service, "Environment"))
    assert environment["TF_USE_LEGACY_KERAS"] == "1"
    # another run holding the home (exit 75) is "try later", not a failed retrain
    assert str(cli.EXIT_BUSY) in _one(service, "SuccessExitStatus").split()
    assert str(cli.EXIT_NOT_BLESSED) not in _one(service, "SuccessExitStatus").split()


def test_the_timer_starts_the_service_persistently_on_a_calendar():
    timer = _unit(TIMER)
    assert _one(timer["Timer"], "Unit") == SERVICE.name
    assert _one(timer["Timer"], "Persistent") == "true"
    assert _one(timer["Timer"], "OnCalendar")
    assert _one(timer["Install"], "WantedBy") == "timers.target"


def test_the_crontab_line_has_five_fields_and_runs_the_same_command_without_flock():
    schedule, command = _crontab_entry()
    assert schedule_cmd.kfp_cron(" ".join(schedule)).converted  # a valid 5-field crontab schedule
    words = shlex.split(command)
    assert _run_argv(words) == _exec_start()
    assert "flock" not in command
    assert re.search(r">>\s*/\S+\.log\s+2>&1\s*$", command), f"appends its output to a log file: {command!r}"
    assert "TF_USE_LEGACY_KERAS=1" in words


def test_the_crontab_runs_at_the_time_the_timer_does():
    (minute, hour, dom, month, dow), _ = _crontab_entry()
    on_calendar = _one(_unit(TIMER)["Timer"], "OnCalendar")
    match = re.fullmatch(r"\*-\*-\* (\d\d):(\d\d):00", on_calendar)
    assert match, f"a daily OnCalendar: {on_calendar!r}"
    assert (int(hour), int(minute)) == (int(match[1]), int(match[2]))
    assert (dom, month, dow) == ("*", "*", "*")
