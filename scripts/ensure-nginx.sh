#!/usr/bin/env bash
# Make sure an nginx binary is on PATH, for the benchmark's nginx target (the C proxy floor).
# Idempotent: does nothing when nginx is already there; otherwise installs Debian's package,
# refreshing the package lists first only when the package is not known to apt yet.
# Prints the path of the nginx binary on success.
set -euo pipefail

if command -v nginx >/dev/null 2>&1; then
    command -v nginx
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-nginx: nginx is not installed and apt-get is not available; install nginx" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
package=nginx-light
if ! apt-cache show "$package" >/dev/null 2>&1; then
    $SUDO apt-get update -qq
fi
if ! apt-cache show "$package" >/dev/null 2>&1; then
    package=nginx
fi
# --no-install-recommends: the binary is all the benchmark needs. The package's own service
# is neither started nor wanted; policy-rc.d keeps it from starting where one is honoured.
$SUDO apt-get install -y -qq --no-install-recommends "$package" >/dev/null

# Debian's post-install may start the packaged service on port 80; the benchmark runs its own
# nginx with a generated configuration and never uses that one.
if command -v nginx >/dev/null 2>&1; then
    command -v nginx
    exit 0
fi
for candidate in /usr/sbin/nginx /sbin/nginx; do
    if [ -x "$candidate" ]; then
        echo "$candidate"
        exit 0
    fi
done
echo "ensure-nginx: installing $package did not provide an nginx binary" >&2
exit 1
