#!/usr/bin/env bash
# The sandbox tests as an unprivileged user: the project usually runs as one, where the
# sandbox has no uid change, no writable memory cgroup and no root-only fallbacks.
# As root (CI), a throw-away system user runs them from a copy of the sources and a small
# venv of the system Python that it can read; as anyone else, they run as that user.
set -euo pipefail
cd "$(dirname "$0")/.."
tests=(tests/sandbox tests/test_sandbox_api.py tests/test_sandbox_direct.py tests/test_sandbox_hostile.py tests/test_sandbox_languages.py)
if [ "$(id -u)" != 0 ]; then
    exec "${PYTHON:-.venv/bin/python}" -m pytest -q -p no:cacheprovider "${tests[@]}"
fi
user=coder-align-ci
id -u "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
py=$(command -v python3)
case "$(readlink -f "$py")" in
    /usr/*) ;;
    *) py=/usr/bin/python3 ;;
esac
[ -x "$py" ] || { echo "no system python3 under /usr for the unprivileged run: apt-get install python3 python3-venv" >&2; exit 1; }
work=$(mktemp -d /tmp/coder_align_unprivileged.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r coder_align tests pyproject.toml "$work"/
"$py" -m venv "$work/venv"
# pyyaml: `coder_align.rewards` (tested here as a user of the sandbox) reads configs; numpy: its task
# pools are decontaminated on import of the row reader; h11: the server's connection deadlines
"$work/venv/bin/pip" install -q pytest pytest-timeout pyyaml numpy h11
chown -R "$user" "$work"
chmod 755 "$work"
cd "$work"
setpriv --reuid "$user" --regid "$user" --clear-groups --reset-env \
    env HOME="$work" PATH=/usr/local/bin:/usr/bin:/bin PYTHONPATH="$work" \
    "$work/venv/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]}"
