"""The set-up check: a module that cannot load its system library is named at set-up, with the library."""

from __future__ import annotations

import subprocess
import sys
from unittest import mock

import pytest

from shelf_audit import preflight


@pytest.mark.unit
def test_a_missing_system_library_is_named_with_how_to_find_its_package():
    error = ImportError("libusb-1.0.so.0: cannot open shared object file: No such file or directory")
    line = preflight.describe("some.native_module", error)
    assert line == (
        "some.native_module cannot load the system library libusb-1.0.so.0, which this machine lacks "
        "(Debian/Ubuntu: `apt-file search libusb-1.0.so.0` names the package to install)"
    )


@pytest.mark.unit
def test_any_other_import_error_says_to_rebuild_the_environment():
    line = preflight.describe("gone", ModuleNotFoundError("No module named 'gone'"))
    assert (
        line
        == "gone cannot be imported: ModuleNotFoundError: No module named 'gone' (rebuild the environment: make env)"
    )


@pytest.mark.unit
def test_problems_lists_each_module_that_cannot_load(tmp_path, monkeypatch):
    (tmp_path / "needs_libfoo.py").write_text(
        "raise ImportError('libfoo.so.3: cannot open shared object file: No such file or directory')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = preflight.problems(("json", "needs_libfoo", "no_such_module_here"))
    assert len(found) == 2
    assert found[0].startswith("needs_libfoo cannot load the system library libfoo.so.3")
    assert found[1].startswith("no_such_module_here cannot be imported: ModuleNotFoundError")


@pytest.mark.unit
def test_the_command_names_what_is_missing_and_exits_1(tmp_path):
    (tmp_path / "needs_libfoo.py").write_text(
        "import os\nos.write(2, b'native chatter\\n')\n"
        "raise ImportError('libfoo.so.3: cannot open shared object file: No such file or directory')\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "shelf_audit.preflight", "json", "needs_libfoo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: set-up: needs_libfoo cannot load the system library libfoo.so.3, which this machine lacks "
        "(Debian/Ubuntu: `apt-file search libfoo.so.3` names the package to install)",
        "error: set-up: 1 of 2 modules a run needs cannot load",
    ]


@pytest.mark.component
def test_a_run_stops_at_set_up_naming_the_library(tmp_path, caplog):
    from pipeline import config as config_lib
    from shelf_audit import cli, run_cmd

    (tmp_path / "data").mkdir()
    config = config_lib.from_dict({"data": {"input_base": str(tmp_path / "data")}})
    missing = ["ai_edge_litert.interpreter cannot load the system library libfoo.so.3, which this machine lacks"]
    with mock.patch.object(preflight, "problems", return_value=missing) as checked:
        status = run_cmd.run_pipeline(config, str(tmp_path / "home"))
    checked.assert_called_once_with()
    assert status == cli.EXIT_ERROR
    assert f"set-up: {missing[0]}" in caplog.text
    assert "nothing was run" in caplog.text
    assert not (tmp_path / "home").exists()
