#!/usr/bin/env bash
# Make sure system programs the tests use for real are installed, from Debian's packages.
# Usage: ensure-packages.sh COMMAND=PACKAGE [COMMAND=PACKAGE ...]
# Idempotent: a command already on PATH (or in /usr/sbin) is left alone; the package lists
# are refreshed only when a missing package is not known to apt yet. Prints each command's path.
set -euo pipefail

find_command() {
    command -v "$1" 2>/dev/null && return 0
    for dir in /usr/sbin /sbin /usr/bin; do
        if [ -x "$dir/$1" ]; then echo "$dir/$1"; return 0; fi
    done
    return 1
}

missing=()
programs=()
for pair in "$@"; do
    cmd=${pair%%=*}
    pkg=${pair#*=}
    if ! find_command "$cmd" >/dev/null; then
        missing+=("$pkg")
        programs+=("$cmd")
    fi
done

# One line that names what is missing and what to do, then a non-zero exit.
give_up() {
    echo "ensure-packages: ${programs[*]} not found (the tests run them for real) and $1;" \
        "install the Debian packages ${missing[*]} (or the same programs by other means)" \
        "and run it again" >&2
    exit 1
}

if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        give_up "apt-get is not available here"
    fi
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1 || ! sudo -n true 2>/dev/null; then
            give_up "installing them needs root (apt-get), which this user cannot get without a password"
        fi
        SUDO="sudo -n"
    fi
    export DEBIAN_FRONTEND=noninteractive
    for pkg in "${missing[@]}"; do
        if ! apt-cache show "$pkg" >/dev/null 2>&1; then
            $SUDO apt-get update -qq || give_up "apt-get update failed"
            break
        fi
    done
    # The packaged services (nginx, haproxy, caddy, prometheus) are never used: tests run
    # their own instances with generated configurations on free ports, or (promtool) only
    # check files.
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || give_up "apt-get install failed"
fi

for pair in "$@"; do
    cmd=${pair%%=*}
    if ! find_command "$cmd"; then
        echo "ensure-packages: installing ${pair#*=} did not provide $cmd" >&2
        exit 1
    fi
done
