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

# DeepSeek-Coder's multilingual HumanEval also runs TypeScript, PHP and C#: three Debian
# packages (23 with their dependencies, about 25 s). TOOLCHAINS=install (make install
# TOOLCHAINS=install) installs the missing ones as root with apt-get; otherwise the command is printed.
packages=""
command -v tsc >/dev/null 2>&1 || packages="$packages node-typescript"
command -v php >/dev/null 2>&1 || packages="$packages php-cli"
{ command -v mcs >/dev/null 2>&1 && command -v mono >/dev/null 2>&1; } || packages="$packages mono-mcs"
if [ -n "$packages" ]; then
    if [ "${TOOLCHAINS:-}" = "install" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "install: installing$packages (TypeScript, PHP, C# for multilingual HumanEval) with apt-get" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages ||
            echo "install: warning: apt-get could not install$packages; those languages are judged 'unavailable'" >&2
    else
        echo "install: note: TypeScript/PHP/C# toolchains missing (humaneval-ts/php/cs are judged 'unavailable');" \
             "install them with: sudo apt-get install -y --no-install-recommends$packages" \
             "(or make install TOOLCHAINS=install as root)" >&2
    fi
fi
exit 0
