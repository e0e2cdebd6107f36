"""The console script's quick exit: atexit handlers, buffered output and exit statuses all survive it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit

# The installed console script runs shelf_audit.cli:console_main (pyproject's [project.scripts]).
CONSOLE_SCRIPT = os.path.join(os.path.dirname(sys.executable), "shelf-audit")


def _console_main_with(body: str) -> subprocess.CompletedProcess:
    """Run console_main in a fresh interpreter with ``main`` replaced by ``body`` (stdout and stderr piped)."""
    script = textwrap.dedent(
        """
        import atexit, logging, sys
        from shelf_audit import cli

        def main(argv=None):
        {body}

        cli.main = main
        cli.console_main()
        """
    ).format(body=textwrap.indent(textwrap.dedent(body), "    "))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


def test_later_atexit_handlers_run_and_buffered_output_is_written():
    done = _console_main_with(
        """
        atexit.register(lambda: print("handler registered by a subcommand ran"))
        print("a line", end="")  # block-buffered on a pipe: lost by a bare os._exit
        logging.basicConfig(format="%(message)s")
        logging.getLogger("x").warning("a log line")
        return 3
        """
    )
    assert done.returncode == 3
    assert done.stdout == "a linehandler registered by a subcommand ran\n"
    assert done.stderr == "a log line\n"


@pytest.mark.parametrize(
    ("body", "status", "stderr"),
    [
        ("return 0", 0, ""),
        ("raise SystemExit(2)", 2, ""),  # what argparse does on bad arguments
        ("raise SystemExit", 0, ""),
        ('raise SystemExit("fatal: said on stderr")', 1, "fatal: said on stderr"),
        ('raise RuntimeError("boom")', 1, "RuntimeError: boom"),  # the traceback is printed first
    ],
)
def test_exit_status_is_the_one_python_would_give(body, status, stderr):
    done = _console_main_with(body)
    assert done.returncode == status
    assert stderr in done.stderr


def test_the_installed_command_exits_with_argparse_statuses():
    assert subprocess.run([CONSOLE_SCRIPT, "--help"], capture_output=True, timeout=60).returncode == 0
    bad = subprocess.run([CONSOLE_SCRIPT, "no-such-command"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
