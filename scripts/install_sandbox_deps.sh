#!/bin/sh
# System packages the execution sandbox needs; run by `make install`.
#
# bubblewrap is required: without it GRPO rewards and `eval` cannot judge any code.
# As root with apt-get it is installed; otherwise this stops and prints the exact
# command to run, because a silently missing sandbox makes every score meaningless.
# SANDBOX=skip (make install SANDBOX=skip) goes on without it, for SFT-only machines.
# Compilers for the other languages are optional (a missing one is `unavailable` for
# that language only) and are only mentioned.
set -u

if [ "${SANDBOX:-}" = "skip" ]; then
    echo "install: SANDBOX=skip: not checking for bubblewrap; GRPO and eval will refuse to score without it" >&2
    exit 0
fi

if ! command -v bwrap >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "install: installing bubblewrap (the execution sandbox) with apt-get" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap || {
            echo "install: error: apt-get could not install bubblewrap; run: apt-get install -y bubblewrap" >&2
            exit 1
        }
    else
        if command -v apt-get >/dev/null 2>&1; then
            cmd="sudo apt-get install -y bubblewrap"
        elif command -v dnf >/dev/null 2>&1; then
            cmd="sudo dnf install -y bubblewrap"
        else
            cmd="install the package 'bubblewrap' (it provides the 'bwrap' command) with your system's package manager"
        fi
        echo "install: error: the execution sandbox needs bubblewrap, which is not installed. Run:" >&2
        echo "    $cmd" >&2
        echo "then rerun make (or 'make install SANDBOX=skip' to go on without a sandbox: SFT works, GRPO and eval will not score)" >&2
        exit 1
    fi
fi

# bwrap present but unable to create namespaces (e.g. some containers): say so now.
if ! bwrap --ro-bind / / --unshare-all true >/dev/null 2>&1; then
    echo "install: warning: bwrap is installed but cannot create a sandbox here (user namespaces disabled?); GRPO and eval will refuse to score" >&2
fi

missing=""
for tool in gcc g++ javac node go rustc; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -z "$missing" ] || echo "install: note: optional toolchains not found:$missing (code in those languages is judged 'unavailable')" >&2
exit 0
