#!/usr/bin/env bash
# A Debian 12 image with CPython 3.10 in /usr/local, made from Debian's mirrors alone, for a machine
# that cannot pull python:3.10-slim-bookworm (the Dockerfile's default BASE_IMAGE). It is that image's
# equivalent:
#
#   1. debootstrap --variant=minbase bookworm: every Priority: required package (debian:bookworm-slim);
#   2. ca-certificates, netbase, tzdata and the libraries the interpreter links, the same list that
#      tests/data/debian12_base_libs.txt is made from (`scripts/native_libs.py python-packages`);
#   3. a CPython 3.10 copied into /usr/local (the one scripts/find_python310.sh finds, e.g. a pyenv
#      build; PYTHON310=/path/to/python3.10 picks another) without its site-packages, its tests and
#      the two modules python:3.10-slim-bookworm lacks too (_tkinter, nis); pip from its own ensurepip;
#      every library its modules link is checked with ldd in the new root;
#   4. `docker import` under TAG, with python:3.10-slim-bookworm's PATH, LANG and CMD.
#
# usage: scripts/base_image.sh TAG          (as root; `make base-image` names the project's tag)
#
# Nothing is built when TAG exists (`docker rmi TAG` to rebuild). DEBIAN_MIRROR overrides the mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

TAG="${1:-}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
STARTED=$SECONDS

has() { command -v "$1" >/dev/null 2>&1; }
fail() {
  echo "error: $*" >&2
  exit 1
}

[ -n "$TAG" ] || fail "name the image: scripts/base_image.sh TAG (make base-image names the project's)"
has docker || fail "docker is not installed (Debian: apt-get install docker.io)"
docker info >/dev/null 2>&1 || fail "the Docker daemon does not answer (docker info): start dockerd"
if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo ">> base image $TAG: already built"
  exit 0
fi
[ "$(id -u)" = 0 ] || fail "debootstrap and chroot need root: sudo $0 $*"
has debootstrap || fail "debootstrap is not installed (Debian: apt-get install debootstrap)"

PY310="$(scripts/find_python310.sh)"
PREFIX="$("$PY310" -c 'import sys; print(sys.base_prefix)')"
VERSION="$("$PY310" -c 'import platform; print(platform.python_version())')"
[ -x "$PREFIX/bin/python3.10" ] && [ -d "$PREFIX/lib/python3.10" ] ||
  fail "$PY310 is not a CPython installed under its own prefix ($PREFIX has no bin/python3.10 and lib/python3.10)"
case "$PREFIX" in /usr | /) fail "$PY310 is the system's Python ($PREFIX): point PYTHON310 at a CPython 3.10 of its own prefix" ;; esac
mapfile -t PACKAGES < <("$PY310" scripts/native_libs.py python-packages)

WORK="$(mktemp -d /var/tmp/shelf-audit-base.XXXXXX)"
ROOT="$WORK/root"
cleanup() {
  for mount in "$ROOT/proc" "$ROOT/dev/pts" "$ROOT/dev"; do
    mountpoint -q "$mount" 2>/dev/null && umount -l "$mount"
  done
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

echo ">> debootstrap --variant=minbase bookworm ($MIRROR) into $ROOT"
debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
  tail -n 30 "$WORK/debootstrap.log" >&2
  fail "debootstrap failed (log above)"
}

# The mirror's updates and security suites, as debian:bookworm-slim has them.
cat >"$ROOT/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
SOURCES
mount -t proc proc "$ROOT/proc"
echo ">> apt-get install ca-certificates netbase tzdata ${PACKAGES[*]}"
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive sh -ec "
  apt-get update -qq
  apt-get upgrade -y -qq >/dev/null
  apt-get install -y -qq --no-install-recommends ca-certificates netbase tzdata ${PACKAGES[*]} >/dev/null
  apt-get clean
  rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt/* /var/log/dpkg.log
"
umount "$ROOT/proc"

echo ">> CPython $VERSION from $PREFIX into /usr/local"
# The interpreter, its headers (for sdists built on this image), libpython and the standard library;
# site-packages starts empty and gets pip from ensurepip below.
mkdir -p "$ROOT/usr/local/lib" "$ROOT/usr/local/include"
cp -a "$PREFIX/bin/." "$ROOT/usr/local/bin/"
cp -a "$PREFIX/include/python3.10" "$ROOT/usr/local/include/"
cp -a "$PREFIX"/lib/libpython3* "$ROOT/usr/local/lib/"
[ -d "$PREFIX/lib/pkgconfig" ] && cp -a "$PREFIX/lib/pkgconfig" "$ROOT/usr/local/lib/"
tar -C "$PREFIX/lib" -cf - \
  --exclude=python3.10/site-packages --exclude=python3.10/test --exclude='python3.10/*/test' \
  --exclude='python3.10/*/tests' --exclude=python3.10/idlelib --exclude=python3.10/tkinter \
  --exclude=python3.10/turtledemo --exclude='python3.10/lib-dynload/_tkinter.*' \
  --exclude='python3.10/lib-dynload/nis.*' python3.10 | tar -C "$ROOT/usr/local/lib" -xf -
mkdir -p "$ROOT/usr/local/lib/python3.10/site-packages"
rm -f "$ROOT"/usr/local/bin/{2to3,2to3-3.10,idle,idle3,idle3.10,pip,pip3,pip3.10}
# Relocate: the scripts' shebangs and the build configuration (sysconfig, python3.10-config, the
# .pc files) name the old prefix; the interpreter finds its own from where it runs.
grep -rlI --null -F "$PREFIX" "$ROOT/usr/local/bin" "$ROOT/usr/local/lib/pkgconfig" \
  "$ROOT"/usr/local/lib/python3.10/_sysconfigdata_* "$ROOT"/usr/local/lib/python3.10/config-3.10-* 2>/dev/null |
  xargs -0 -r sed -i "s|$PREFIX|/usr/local|g"
find "$ROOT/usr/local/lib/python3.10" -name '*.pyc' -path '*/_sysconfigdata_*' -delete
chroot "$ROOT" /sbin/ldconfig
chroot "$ROOT" /usr/local/bin/python3.10 -m ensurepip --default-pip >/dev/null
find "$ROOT/usr/local/lib/python3.10/site-packages" -name __pycache__ -prune -exec rm -rf {} +

# Every native object of the interpreter resolves in the new root (python:3.10-slim-bookworm keeps
# exactly the packages ldd names there).
missing="$(chroot "$ROOT" sh -c 'for f in /usr/local/bin/python3.10 /usr/local/lib/libpython3*.so* \
  /usr/local/lib/python3.10/lib-dynload/*.so; do ldd "$f" | sed -n "s|^|$f: |; /not found/p"; done')"
[ -z "$missing" ] || fail "the interpreter needs libraries the root lacks:"$'\n'"$missing"
chroot "$ROOT" /usr/local/bin/python3 -c 'import ssl, sqlite3, ctypes, bz2, lzma, readline, curses, zlib, pyexpat, venv, pip'

echo ">> docker import $TAG"
tar --numeric-owner -C "$ROOT" -cf - . | docker import \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change "ENV PYTHON_VERSION=$VERSION" \
  --change 'CMD ["python3"]' \
  --message "debootstrap --variant=minbase bookworm + CPython $VERSION in /usr/local (scripts/base_image.sh)" \
  - "$TAG" >/dev/null
echo ">> base image $TAG: $(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1 / 1e6}')," \
  "built in $((SECONDS - STARTED))s"
