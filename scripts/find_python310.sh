#!/usr/bin/env bash
# Print the path of a Python 3.10 interpreter: python3.10 on PATH first, then
# any 3.10.x that pyenv manages. Exits 1 with a readable message when neither
# has one, because TFX 1.16 supports only Python 3.9 and 3.10.
set -euo pipefail

is_310() { "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' 2>/dev/null; }

if [ -n "${PYTHON310:-}" ] && is_310 "$PYTHON310"; then
  echo "$PYTHON310"; exit 0
fi
if command -v python3.10 >/dev/null 2>&1 && is_310 "$(command -v python3.10)"; then
  command -v python3.10; exit 0
fi
pyenv_root="${PYENV_ROOT:-}"
if [ -z "$pyenv_root" ] && command -v pyenv >/dev/null 2>&1; then
  pyenv_root="$(pyenv root)"
fi
[ -n "$pyenv_root" ] || pyenv_root="$HOME/.pyenv"
for candidate in $(ls -d "$pyenv_root"/versions/3.10*/bin/python 2>/dev/null | sort -V -r); do
  if is_310 "$candidate"; then echo "$candidate"; exit 0; fi
done
cat >&2 <<MSG
error: Python 3.10 not found.
  Looked for: \$PYTHON310, python3.10 on PATH, and pyenv versions under $pyenv_root/versions/3.10*.
  TFX 1.16 supports Python 3.9 and 3.10 only. Install one, for example:
    pyenv install 3.10.13
  or point PYTHON310=/path/to/python3.10 at an existing interpreter.
MSG
exit 1
