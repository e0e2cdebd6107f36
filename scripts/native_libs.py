"""Which shared libraries an environment's native code needs that a minimal Debian 12 machine lacks.

Reads the ELF dynamic section of every shared object (stdlib only; ``ldd`` resolves against the host it
runs on) and accounts for each ``DT_NEEDED`` library by a file in the environment or the allowlist
``tests/data/debian12_base_libs.txt``. Runs with any Python 3.10+, no third-party packages::

    python scripts/native_libs.py check [ENV ...]       # default: .venv and .venv-mediapipe (if present)
    python scripts/native_libs.py base-libs ROOT > tests/data/debian12_base_libs.txt
    docker run --rm -i IMAGE python - ldd /opt/venv < scripts/native_libs.py

See docs/kubeflow.md#native-libraries-in-the-image for every command and the rules.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import struct
import subprocess
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# parent.parent, not parents[1]: read from standard input (``python - ...``) the file is ``/<stdin>``.
REPO = Path(__file__).resolve().parent.parent
ALLOWLIST = REPO / "tests" / "data" / "debian12_base_libs.txt"
ENVIRONMENTS = (".venv", ".venv-mediapipe")

# --- ELF dynamic section ---------------------------------------------------------------------

_ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr
_PROGRAM_HEADER = struct.Struct("<IIQQQQQQ")  # Elf64_Phdr
_DYN = struct.Struct("<qQ")  # Elf64_Dyn
PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 10, 14, 15, 29


class NotElfError(ValueError):
    """The file is not an ELF object (a linker script, a text file, ...)."""


class UnsupportedElfError(ValueError):
    """An ELF object this reader does not parse: only 64-bit little-endian ELF is read."""


@dataclasses.dataclass(frozen=True)
class Dynamic:
    """What the dynamic loader reads from an object: the libraries it needs and where to look."""

    needed: tuple[str, ...]
    soname: str | None = None
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()


def read_dynamic(path: Path | str) -> Dynamic:
    """The ``DT_NEEDED``, ``DT_SONAME``, ``DT_RPATH`` and ``DT_RUNPATH`` entries of an ELF object.

    Reads only the ELF header, the program headers, the dynamic segment and its string table
    (through the ``PT_LOAD`` segment that maps it), never the whole file. An ELF object without
    a dynamic segment (static) needs nothing.

    Raises:
        NotElfError: the file does not start with the ELF magic.
        UnsupportedElfError: a 32-bit or big-endian ELF object, or a malformed one.
    """
    with open(path, "rb") as f:
        header = f.read(_ELF_HEADER.size)
        if header[:4] != b"\x7fELF":
            raise NotElfError(f"{path}: not an ELF object")
        if len(header) < _ELF_HEADER.size or header[4] != 2 or header[5] != 1:
            raise UnsupportedElfError(f"{path}: not 64-bit little-endian ELF (class {header[4]}, data {header[5]})")
        fields = _ELF_HEADER.unpack(header)
        phoff, phentsize, phnum = fields[5], fields[9], fields[10]
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        segments = [_PROGRAM_HEADER.unpack_from(table, i * phentsize) for i in range(phnum)]
        dynamic = [s for s in segments if s[0] == PT_DYNAMIC]
        if not dynamic:
            return Dynamic(needed=())
        _, _, offset, _, _, filesz, _, _ = dynamic[0]
        f.seek(offset)
        raw = f.read(filesz)
        entries: list[tuple[int, int]] = []
        for tag, value in _DYN.iter_unpack(raw[: len(raw) - len(raw) % _DYN.size]):
            if tag == DT_NULL:
                break
            entries.append((tag, value))
        strtab = next((v for t, v in entries if t == DT_STRTAB), None)
        strsz = next((v for t, v in entries if t == DT_STRSZ), None)
        if strtab is None or strsz is None:
            raise UnsupportedElfError(f"{path}: dynamic segment without a string table")
        # DT_STRTAB is a virtual address: the PT_LOAD segment that covers it gives its file offset.
        load = [s for s in segments if s[0] == PT_LOAD and s[3] <= strtab < s[3] + s[5]]
        if not load:
            raise UnsupportedElfError(f"{path}: string table at {strtab:#x} is in no loaded segment")
        f.seek(strtab - load[0][3] + load[0][2])
        strings = f.read(strsz)

    def string(offset: int) -> str:
        end = strings.find(b"\0", offset)
        return strings[offset : end if end >= 0 else len(strings)].decode("utf-8", "surrogateescape")

    def paths(tag: int) -> tuple[str, ...]:
        return tuple(p for t, v in entries if t == tag for p in string(v).split(":") if p)

    soname = [string(v) for t, v in entries if t == DT_SONAME]
    return Dynamic(
        needed=tuple(string(v) for t, v in entries if t == DT_NEEDED),
        soname=soname[0] if soname else None,
        rpath=paths(DT_RPATH),
        runpath=paths(DT_RUNPATH),
    )


# --- An environment's native objects -----------------------------------------------------------

_SHARED_OBJECT = re.compile(r"\.so(\.|$)")


def is_shared_object_name(name: str) -> bool:
    """``foo.so``, ``libfoo.so.1.2``, ``x.cpython-310-x86_64-linux-gnu.so``: a name the loader could open."""
    return bool(_SHARED_OBJECT.search(name))


def shared_objects(env: Path) -> Iterator[Path]:
    """Every regular file named ``*.so`` or ``*.so.*`` under ``env`` (symbolic links not followed)."""
    for folder, dirs, files in os.walk(env):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder, name)
            if is_shared_object_name(name) and path.is_file() and not path.is_symlink():
                yield path


@dataclasses.dataclass(frozen=True)
class EnvReport:
    """One environment's native objects, and the needed libraries that nothing accounts for."""

    env: Path
    objects: int
    not_elf: tuple[str, ...]  # relative paths of ``*.so`` files that are not ELF (skipped)
    missing: dict[str, tuple[str, ...]]  # needed library -> relative paths of the objects that need it


def check_env(env: Path | str, allowed: Iterable[str]) -> EnvReport:
    """Read every shared object under ``env`` and find the needed libraries neither it nor ``allowed`` provides."""
    env = Path(env)
    allowed = set(allowed)
    # Every name the environment answers to: file and link names, and the SONAMEs of its objects.
    provided = {name for _, _, files in os.walk(env) for name in files if is_shared_object_name(name)}
    needs: dict[Path, tuple[str, ...]] = {}
    not_elf: list[str] = []
    for path in shared_objects(env):
        try:
            dynamic = read_dynamic(path)
        except NotElfError:
            not_elf.append(str(path.relative_to(env)))
            continue
        needs[path] = dynamic.needed
        if dynamic.soname:
            provided.add(dynamic.soname)
    missing: dict[str, list[str]] = {}
    for path, needed in needs.items():
        for name in needed:
            if name not in provided and name not in allowed:
                missing.setdefault(name, []).append(str(path.relative_to(env)))
    return EnvReport(
        env=env,
        objects=len(needs),
        not_elf=tuple(not_elf),
        missing={name: tuple(sorted(paths)) for name, paths in sorted(missing.items())},
    )


def format_report(report: EnvReport, show: int = 5) -> str:
    """One line per missing library: ``LIB needed by A, B, ... (N objects)``, paths relative to the env."""
    lines = [f"{report.env}: {report.objects} native objects read, {len(report.missing)} missing libraries"]
    for name, paths in report.missing.items():
        more = f", ... ({len(paths)} objects)" if len(paths) > show else ""
        lines.append(f"  {name} needed by {', '.join(paths[:show])}{more}")
    return "\n".join(lines)


def load_allowlist(path: Path | str = ALLOWLIST) -> set[str]:
    """The library names of an allowlist file: the first word of each line; ``#`` starts a comment."""
    names = set()
    for line in Path(path).read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            names.add(words[0])
    return names


# The folders the dynamic loader searches on a Debian system (ld.so.conf and its defaults).
SYSTEM_LIBRARY_DIRS = ("/lib/*-linux-gnu", "/usr/lib/*-linux-gnu", "/lib64", "/lib", "/usr/lib", "/usr/local/lib")


def system_libraries(dirs: Iterable[str] = SYSTEM_LIBRARY_DIRS) -> set[str]:
    """The shared library names in this machine's library folders: the allowlist of the system it runs on."""
    names = set()
    for pattern in dirs:
        for folder in sorted(Path("/").glob(pattern.lstrip("/"))):
            if folder.is_dir():
                names.update(name for name in os.listdir(folder) if is_shared_object_name(name))
    return names


# --- Real ldd, inside an image ------------------------------------------------------------------

_NOT_FOUND = re.compile(r"^\s*(\S+) => not found\s*$", re.M)


def ldd_not_found(path: Path, library_path: Iterable[Path] = ()) -> list[str]:
    """The libraries ``ldd PATH`` prints as ``not found`` (with ``LD_LIBRARY_PATH`` set to ``library_path``)."""
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    folders = [str(folder) for folder in library_path]
    if folders:
        env["LD_LIBRARY_PATH"] = ":".join(folders)
    result = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env, check=False)
    return _NOT_FOUND.findall(result.stdout)


@dataclasses.dataclass(frozen=True)
class Resolution:
    """A library ``ldd`` does not find for one object, and where the environment holds it."""

    obj: str  # relative to the environment
    library: str
    folder: str  # relative to the environment
    via: str  # why the loader finds it there at run time


@dataclasses.dataclass(frozen=True)
class LddReport:
    """Real ``ldd`` over one environment's native objects."""

    env: Path
    objects: int
    missing: dict[str, tuple[str, ...]]  # library -> objects that need it; found nowhere
    resolved: tuple[Resolution, ...]  # not found by ldd alone, shipped by the environment


def _expanded_rpath(path: Path, entries: Iterable[str]) -> set[Path]:
    return {
        Path(os.path.normpath(e.replace("$ORIGIN", str(path.parent)).replace("${ORIGIN}", str(path.parent))))
        for e in entries
    }


def ldd_env(env: Path | str, jobs: int = 8) -> LddReport:
    """Run ``ldd`` on every shared object under ``env``; account for what it prints as ``not found``.

    ``ldd`` resolves each object alone, the way the loader would if a program loaded just that object.
    In the running process two things it cannot see also hold: a ``DT_RPATH`` (unlike ``DT_RUNPATH``)
    is searched for the libraries of every object loaded through the one that carries it (auditwheel's
    grafted ``numpy.libs``/``scipy.libs``: an extension module's ``DT_RPATH`` finds ``libgfortran`` for
    ``libopenblas``), and a library already loaded matches by ``SONAME`` (a plugin ``dlopen``-ed by
    TensorFlow after ``libtensorflow_framework.so.2`` is loaded). So a ``not found`` library counts as
    resolved only when the environment ships a file of that name and ``ldd`` finds every library of
    the object once ``LD_LIBRARY_PATH`` names that file's folder; each such case is listed with the
    ``DT_RPATH`` that names the folder, if any. Anything else is missing.
    """
    env = Path(env)
    objects = list(shared_objects(env))
    where: dict[str, list[Path]] = {}
    for folder, _, files in os.walk(env):
        for name in files:
            if is_shared_object_name(name):
                where.setdefault(name, []).append(Path(folder))
    with ThreadPoolExecutor(jobs) as pool:
        first = dict(zip(objects, pool.map(ldd_not_found, objects), strict=True))
    rpath_folders: dict[Path, list[Path]] = {}
    for path in objects:
        try:
            dynamic = read_dynamic(path)
        except ValueError:
            continue
        if not dynamic.runpath:  # a DT_RUNPATH makes the loader ignore the object's DT_RPATH
            for folder in _expanded_rpath(path, dynamic.rpath):
                rpath_folders.setdefault(folder, []).append(path)
    missing: dict[str, list[str]] = {}
    resolved: list[Resolution] = []
    for path, not_found in first.items():
        if not not_found:
            continue
        # The object's own folder first (numpy.libs and scipy.libs both ship a libgfortran of one name).
        folders = {
            name: path.parent if path.parent in where[name] else sorted(where[name])[0]
            for name in not_found
            if name in where
        }
        still = ldd_not_found(path, sorted(set(folders.values()))) if folders else not_found
        for name in not_found:
            if name in still or name not in folders:
                missing.setdefault(name, []).append(str(path.relative_to(env)))
                continue
            loaders = rpath_folders.get(folders[name], [])
            via = (
                f"the DT_RPATH of {loaders[0].relative_to(env)}"
                + (f" and {len(loaders) - 1} more" if loaders[1:] else "")
                if loaders
                else f"no DT_RPATH: found by its SONAME, loaded before {path.name} is"
            )
            resolved.append(Resolution(str(path.relative_to(env)), name, str(folders[name].relative_to(env)), via))
    return LddReport(
        env=env,
        objects=len(objects),
        missing={name: tuple(sorted(paths)) for name, paths in sorted(missing.items())},
        resolved=tuple(sorted(resolved, key=lambda r: (r.obj, r.library))),
    )


def format_ldd_report(report: LddReport) -> str:
    """The missing libraries (``LIB needed by ...``), then each library ldd alone does not find and where it is."""
    lines = [f"{report.env}: ldd on {report.objects} native objects, {len(report.missing)} missing libraries"]
    lines += [f"  {name} needed by {', '.join(paths)}" for name, paths in report.missing.items()]
    if report.resolved:
        lines.append(f"  {len(report.resolved)} not found by ldd alone, shipped by the environment:")
        lines += [f"    {r.obj} needs {r.library}: in {r.folder}/ ({r.via})" for r in report.resolved]
    return "\n".join(lines)


# --- The allowlist from a Debian root ----------------------------------------------------------

# What python:3.10-slim-bookworm adds to debian:bookworm-slim (its Dockerfile's runtime
# dependencies): ca-certificates, netbase and tzdata (no libraries), then the libraries that the
# interpreter and its lib-dynload modules link (the Dockerfile keeps the packages `ldd` names
# there, tkinter's excluded): bz2, dbm (Berkeley DB), pyexpat, ctypes, gdbm, lzma, curses,
# readline, sqlite3, ssl/hashlib, uuid, zlib.
PYTHON_IMAGE_PACKAGES = (
    "libbz2-1.0",
    "libdb5.3",
    "libexpat1",
    "libffi8",
    "libgdbm6",
    "liblzma5",
    "libncursesw6",
    "libreadline8",
    "libsqlite3-0",
    "libssl3",
    "libtinfo6",
    "libuuid1",
    "zlib1g",
)
_LIBRARY_DIRS = re.compile(r"^(/usr)?/lib(64|32|x32)?(/[a-z0-9_]+-linux-gnu[a-z0-9_]*)?$")


def _dpkg_status(root: Path) -> dict[str, dict[str, str]]:
    """The installed packages of a Debian root, by name: their control fields (``var/lib/dpkg/status``)."""
    packages = {}
    for paragraph in (root / "var/lib/dpkg/status").read_text().split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if fields.get("Package") and fields.get("Status", "").endswith(" installed"):
            packages[fields["Package"]] = fields
    return packages


def base_packages(status: dict[str, dict[str, str]], extra: Iterable[str] = PYTHON_IMAGE_PACKAGES) -> list[str]:
    """The packages of ``Priority: required`` plus ``extra``, and everything they depend on, among ``status``.

    ``Depends`` and ``Pre-Depends`` are followed; of alternatives (``a | b``) the installed ones count.

    Raises:
        KeyError: a package of ``extra`` is not installed in the root.
    """
    wanted = [name for name, fields in status.items() if fields.get("Priority") == "required"]
    for name in extra:
        if name not in status:
            raise KeyError(f"{name} is not installed in the root: apt-get install it there first")
        wanted.append(name)
    seen: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        relations = ", ".join(status[name].get(k, "") for k in ("Pre-Depends", "Depends"))
        for clause in relations.split(","):
            for alternative in clause.split("|"):
                dependency = alternative.split("(")[0].split(":")[0].strip()
                if dependency in status:
                    wanted.append(dependency)
    return sorted(seen)


def package_libraries(root: Path, package: str) -> list[str]:
    """The shared library names a package installs in the root's library folders.

    The files ``dpkg -L PACKAGE`` lists in the root, directly in ``/lib``, ``/usr/lib`` and their
    multiarch folders (not plugins such as ``security/pam_*.so``) and named ``lib*.so*`` or
    ``ld-linux*.so*``: each link by its name, each file by its ``SONAME`` (what the loader
    looks up; ``libdb-5.3.so`` has no version suffix). The ``lib*.so`` development links are
    in ``-dev`` packages, which no base package depends on.
    """
    info = root / "var/lib/dpkg/info"
    names = set()
    for listing in [info / f"{package}.list", *sorted(info.glob(f"{package}:*.list"))]:
        if not listing.is_file():
            continue
        for line in listing.read_text().splitlines():
            folder, _, name = line.rpartition("/")
            if not (_LIBRARY_DIRS.match(folder) and re.match(r"(lib|ld-linux).*\.so(\.|$)", name)):
                continue
            path = root / line.lstrip("/")
            if path.is_symlink() or not path.is_file():
                names.add(name)
                continue
            try:
                names.add(read_dynamic(path).soname or name)
            except ValueError:
                names.add(name)
    return sorted(names)


def base_libs_text(root: Path | str) -> str:
    """The allowlist file for a Debian 12 root: its header, then each package's libraries.

    ``root`` is ``debootstrap --variant=minbase bookworm ROOT`` (what debian:bookworm-slim is
    built from: every ``Priority: required`` package, apt among them) with
    :data:`PYTHON_IMAGE_PACKAGES` installed in it (``chroot ROOT apt-get install ...``). Other
    packages installed there (a compiler, git) are ignored.
    """
    root = Path(root)
    status = _dpkg_status(root)
    os_release = (root / "etc/os-release").read_text()
    pretty = re.search(r'^PRETTY_NAME="?([^"\n]*)', os_release, re.M)
    lines = [
        "# Shared libraries that a minimal Debian 12 machine provides, i.e. python:3.10-slim-bookworm:",
        "# debian:bookworm-slim (every Priority: required package of bookworm, apt among them) plus what the",
        "# python image installs for its interpreter (PYTHON_IMAGE_PACKAGES in scripts/native_libs.py), and",
        "# every package those depend on. One library name a line, grouped by the Debian package (and",
        "# version) that installs it. tests/test_native_libs.py lets a native object of .venv or",
        "# .venv-mediapipe need these and what its own environment ships, nothing else.",
        "#",
        f"# Generated by scripts/native_libs.py from a {pretty.group(1) if pretty else 'Debian'} root; packages",
        "# installed there beyond those (a compiler, git) are ignored. To regenerate:",
        "#   debootstrap --variant=minbase bookworm ROOT",
        "#   chroot ROOT sh -c 'apt-get update && apt-get install -y --no-install-recommends \\",
        "#     " + " ".join(PYTHON_IMAGE_PACKAGES) + "'",
        "#   python3 scripts/native_libs.py base-libs ROOT > tests/data/debian12_base_libs.txt",
    ]
    for package in base_packages(status):
        libraries = package_libraries(root, package)
        if libraries:
            lines += ["", f"# {package} {status[package].get('Version', '')}".rstrip(), *libraries]
    return "\n".join(lines) + "\n"


# --- Command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``check`` environments (exit 1 when a library is missing) or print the allowlist of a root."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="list the libraries an environment's native objects need and lack")
    check.add_argument("envs", nargs="*", type=Path, help="environments (default: .venv, .venv-mediapipe)")
    check.add_argument("--allowlist", type=Path, default=ALLOWLIST)
    check.add_argument("--system", action="store_true", help="allow this machine's libraries instead (in an image)")
    ldd = commands.add_parser("ldd", help="run ldd on an environment's native objects (in an image)")
    ldd.add_argument("envs", nargs="+", type=Path)
    base = commands.add_parser("base-libs", help="print the allowlist of a Debian 12 root")
    base.add_argument("root", type=Path)
    commands.add_parser("python-packages", help="print the Debian packages the interpreter needs, one a line")
    args = parser.parse_args(argv)
    if args.command == "base-libs":
        sys.stdout.write(base_libs_text(args.root))
        return 0
    if args.command == "python-packages":
        print("\n".join(PYTHON_IMAGE_PACKAGES))
        return 0
    if args.command == "ldd":
        ldd_reports = [ldd_env(env) for env in args.envs]
        print("\n".join(format_ldd_report(r) for r in ldd_reports))
        return 1 if any(r.missing for r in ldd_reports) else 0
    envs = args.envs or [REPO / name for name in ENVIRONMENTS if (REPO / name).is_dir()]
    allowed = system_libraries() if args.system else load_allowlist(args.allowlist)
    reports = [check_env(env, allowed) for env in envs]
    print("\n".join(format_report(r, show=1000) for r in reports))
    return 1 if any(r.missing for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
