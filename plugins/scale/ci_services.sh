#!/usr/bin/env bash
# Make sure the services the scale-out tests need are up on loopback: PostgreSQL, Redis, RabbitMQ, NATS.
# Each one that does not answer is started with the command the python-svc machine uses
# (/work/.library/env/machines/python-svc.md), then waited for (bounded). Exits non-zero when a
# service still does not answer, so CI fails loudly instead of skipping the tests.
set -euo pipefail

port_open() {  # host port
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() {  # name seconds check...
    local name=$1 seconds=$2
    shift 2
    for ((i = 0; i < seconds * 2; i++)); do
        if "$@"; then
            echo "ci_services: $name is up"
            return 0
        fi
        sleep 0.5
    done
    echo "ci_services: $name did not come up within ${seconds}s" >&2
    return 1
}

postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }
rabbitmq_up() { port_open 127.0.0.1 5672; }
nats_up() { port_open 127.0.0.1 4222; }

if ! postgres_up; then
    echo "ci_services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
fi
if ! redis_up; then
    echo "ci_services: starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
if ! rabbitmq_up; then
    echo "ci_services: starting RabbitMQ"
    rabbitmq-server -detached || true
fi
if ! nats_up; then
    echo "ci_services: starting NATS (JetStream)"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
        -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || true
fi

status=0
wait_for PostgreSQL 30 postgres_up || status=1
wait_for Redis 30 redis_up || status=1
wait_for RabbitMQ 90 rabbitmq_up || status=1
wait_for NATS 30 nats_up || status=1
exit $status
