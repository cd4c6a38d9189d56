#!/usr/bin/env bash
# Check that the servers the tests use for real answer: Postgres on 127.0.0.1:5432 (trust
# auth, user postgres) and Redis on 127.0.0.1:6379. One that does not is started once with
# the machine's own command; if it still does not answer, say which and how to start it,
# and fail. Uses pg_isready and redis-cli when present, bash's /dev/tcp otherwise.
set -uo pipefail

PG_START='pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start'
REDIS_START='redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no'

postgres_answers() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h 127.0.0.1 -p 5432 -U postgres -t 3
    else
        timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5432' 2>/dev/null
    fi
}

redis_answers() {
    if command -v redis-cli >/dev/null 2>&1; then
        [ "$(timeout 3 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]
    else
        timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/6379; printf "PING\r\n" >&3; head -c5 <&3' \
            2>/dev/null | grep -q PONG
    fi
}

# wait_for NAME CHECK START: true once CHECK passes, trying START once if it does not
wait_for() {
    local name=$1 check=$2 start=$3
    "$check" && return 0
    echo "check-services: $name does not answer; starting it: $start" >&2
    bash -c "$start" >/dev/null 2>&1 || true
    for _ in $(seq 1 20); do
        "$check" && return 0
        sleep 0.5
    done
    return 1
}

failed=0
if ! wait_for "Postgres on 127.0.0.1:5432" postgres_answers "$PG_START"; then
    echo "check-services: Postgres is missing: nothing answers on 127.0.0.1:5432." >&2
    echo "  start it with: $PG_START" >&2
    echo "  (the tests connect as user postgres with trust auth, and make their own database)" >&2
    failed=1
fi
if ! wait_for "Redis on 127.0.0.1:6379" redis_answers "$REDIS_START"; then
    echo "check-services: Redis is missing: nothing answers PING on 127.0.0.1:6379." >&2
    echo "  start it with: $REDIS_START" >&2
    failed=1
fi
[ "$failed" -eq 0 ] && echo "check-services: Postgres and Redis answer"
exit "$failed"
