"""Unit tier: every native object of the test environments loads on a minimal Debian 12 machine.

Each ``*.so`` in ``.venv`` (``sys.prefix``, where the tests run) and in ``.venv-mediapipe`` may
need only libraries that its own environment ships or that ``python:3.10-slim-bookworm``
provides (``tests/data/debian12_base_libs.txt``, made from a Debian 12 root by
``scripts/native_libs.py base-libs``). The check reads each object's ELF dynamic section
itself: ``ldd`` would resolve against this host, whose extra packages hide exactly the
libraries a fresh machine lacks. The reader is checked here against the dynamic loader itself
(what it mapped for numpy), and the rules on tiny ELF objects built in the test.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path
from types import ModuleType

import numpy
import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
MEDIAPIPE_ENV = REPO / ".venv-mediapipe"


def _load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


native_libs = _load_script("native_libs")


def _tiny_elf(needed: list[str], soname: str | None = None, runpath: str | None = None) -> bytes:
    """A minimal 64-bit little-endian ELF shared object: one PT_LOAD over the file, a PT_DYNAMIC."""
    strings = b"\0"
    entries = []
    for tag, value in [(1, n) for n in needed] + [(14, soname), (29, runpath)]:
        if value is not None:
            entries.append((tag, len(strings)))
            strings += value.encode() + b"\0"
    strings += b"\0" * (-len(strings) % 8)
    strtab = 64 + 2 * 56
    dynamic = strtab + len(strings)
    entries += [(5, strtab), (10, len(strings)), (0, 0)]
    body = strings + b"".join(struct.pack("<qQ", tag, value) for tag, value in entries)
    size = strtab + len(body)
    header = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01", 3, 62, 1, 0, 64, 0, 0, 64, 56, 2, 64, 0, 0)
    load = struct.pack("<IIQQQQQQ", 1, 4, 0, 0, 0, size, size, 0x1000)
    dyn = struct.pack("<IIQQQQQQ", 2, 6, dynamic, dynamic, dynamic, size - dynamic, size - dynamic, 8)
    return header + load + dyn + body


# --- The ELF reader -------------------------------------------------------------------------------


def test_reader_names_what_the_loader_mapped_for_numpy():
    extension = Path(numpy.core._multiarray_umath.__file__)
    dynamic = native_libs.read_dynamic(extension)
    assert "libc.so.6" in dynamic.needed
    assert dynamic.rpath + dynamic.runpath == ("$ORIGIN/../../numpy.libs",)
    # numpy is imported: each library the reader names is mapped into this process.
    mapped = {line.split()[-1].rsplit("/", 1)[-1] for line in Path("/proc/self/maps").read_text().splitlines()}
    assert set(dynamic.needed) <= mapped
    vendored = [name for name in dynamic.needed if (extension.parents[2] / "numpy.libs" / name).is_file()]
    assert vendored, f"numpy's extension names no library of numpy.libs: {dynamic.needed}"


def test_reader_reads_the_soname_and_runpath():
    tensorflow = importlib.util.find_spec("tensorflow")  # found, not imported
    dynamic = native_libs.read_dynamic(Path(tensorflow.origin).parent / "libtensorflow_framework.so.2")
    assert dynamic.soname == "libtensorflow_framework.so.2"
    assert "$ORIGIN/" in dynamic.runpath
    assert "libstdc++.so.6" in dynamic.needed


def test_reader_on_a_tiny_object(tmp_path):
    path = tmp_path / "libtiny.so.1"
    path.write_bytes(_tiny_elf(["libz.so.1", "libfoo.so.2"], soname="libtiny.so.1", runpath="$ORIGIN:$ORIGIN/../x"))
    assert native_libs.read_dynamic(path) == native_libs.Dynamic(
        needed=("libz.so.1", "libfoo.so.2"), soname="libtiny.so.1", runpath=("$ORIGIN", "$ORIGIN/../x")
    )


def test_reader_refuses_what_it_cannot_read(tmp_path):
    script = tmp_path / "libc.so"
    script.write_text("/* GNU ld script */\nGROUP ( libc.so.6 )\n")
    with pytest.raises(native_libs.NotElfError):
        native_libs.read_dynamic(script)
    elf32 = tmp_path / "lib32.so"
    elf32.write_bytes(b"\x7fELF\x01\x01\x01" + b"\0" * 45)
    with pytest.raises(native_libs.UnsupportedElfError, match="not 64-bit little-endian"):
        native_libs.read_dynamic(elf32)


# --- The rules -------------------------------------------------------------------------------------


def test_a_library_is_accounted_for_by_the_env_or_the_allowlist(tmp_path):
    site = tmp_path / "lib/python3.10/site-packages"
    (site / "pkg.libs").mkdir(parents=True)
    (site / "pkg/sub").mkdir(parents=True)
    (site / "pkg.libs/libvendored-1a2b.so.3").write_bytes(_tiny_elf(["libc.so.6"], soname="libvendored-1a2b.so.3"))
    needs = ["libvendored-1a2b.so.3", "libc.so.6", "libz.so.1", "libusb-1.0.so.0"]
    (site / "pkg/_ext.cpython-310-x86_64-linux-gnu.so").write_bytes(_tiny_elf(needs))
    (site / "pkg/sub/_other.so").write_bytes(_tiny_elf(["libusb-1.0.so.0", "libGL.so.1"]))
    (site / "pkg/linker-script.so").write_text("INPUT(-lfoo)\n")

    report = native_libs.check_env(tmp_path, {"libc.so.6", "libz.so.1"})

    assert report.objects == 3
    assert report.not_elf == ("lib/python3.10/site-packages/pkg/linker-script.so",)
    assert report.missing == {
        "libGL.so.1": ("lib/python3.10/site-packages/pkg/sub/_other.so",),
        "libusb-1.0.so.0": (
            "lib/python3.10/site-packages/pkg/_ext.cpython-310-x86_64-linux-gnu.so",
            "lib/python3.10/site-packages/pkg/sub/_other.so",
        ),
    }
    assert (
        "  libusb-1.0.so.0 needed by lib/python3.10/site-packages/pkg/_ext.cpython-310-x86_64-linux-gnu.so, "
        "lib/python3.10/site-packages/pkg/sub/_other.so"
    ) in native_libs.format_report(report).splitlines()


def test_base_packages_follow_depends_of_required_and_python_image_packages():
    status = {
        "bash": {"Priority": "required", "Pre-Depends": "libc6 (>= 2.36)", "Depends": "base-files (>= 2.1.12)"},
        "base-files": {"Priority": "required"},
        "libc6": {"Priority": "optional", "Depends": "libgcc-s1"},
        "libgcc-s1": {"Priority": "optional", "Depends": "gcc-12-base (= 12.2.0-14), libc6 (>= 2.35)"},
        "gcc-12-base": {"Priority": "optional"},
        "libssl3": {"Priority": "optional", "Depends": "libc6, debconf (>= 0.5) | debconf-2.0"},
        "debconf": {"Priority": "required"},
        "g++": {"Priority": "optional", "Depends": "libstdc++-12-dev, libc6"},
        "libstdc++-12-dev": {"Priority": "optional", "Depends": "libgomp1"},
        "libgomp1": {"Priority": "optional"},
    }
    assert native_libs.base_packages(status, extra=["libssl3"]) == [
        "base-files",
        "bash",
        "debconf",
        "gcc-12-base",
        "libc6",
        "libgcc-s1",
        "libssl3",
    ]
    with pytest.raises(KeyError, match="libffi8 is not installed"):
        native_libs.base_packages(status, extra=["libffi8"])


def test_allowlist_holds_only_what_a_slim_python_image_has():
    allowed = native_libs.load_allowlist()
    text = native_libs.ALLOWLIST.read_text()
    assert "python3 scripts/native_libs.py base-libs ROOT" in text
    assert {"libc.so.6", "ld-linux-x86-64.so.2", "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1"} <= allowed
    assert {"libssl.so.3", "libsqlite3.so.0", "libffi.so.8", "libexpat.so.1", "libbz2.so.1.0"} <= allowed
    # What a compiler, git or a desktop bring, and slim machines lack.
    assert not {"libgomp.so.1", "libcurl-gnutls.so.4", "libusb-1.0.so.0", "libGL.so.1", "libX11.so.6"} & allowed
    assert all(name.startswith(("lib", "ld-linux")) and ".so" in name for name in allowed)


# --- The environments --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".venv", ".venv-mediapipe"])
def test_native_objects_need_only_base_libraries(name):
    if name == ".venv":
        env = Path(sys.prefix)  # the environment these tests run in
    elif MEDIAPIPE_ENV.is_dir():
        env = MEDIAPIPE_ENV
    else:
        pytest.skip(".venv-mediapipe is not built (make env-mediapipe): only the tests' environment was checked")
    report = native_libs.check_env(env, native_libs.load_allowlist())
    assert report.objects > 0, f"no native object under {env}"
    if report.missing:
        pytest.fail(
            "native objects need libraries that neither their environment ships nor a minimal Debian 12 "
            f"machine has ({native_libs.ALLOWLIST.relative_to(REPO)}); they fail to load there:\n"
            + native_libs.format_report(report, show=1000),
            pytrace=False,
        )
