#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and simulator runs.
#
#   scripts/pg-throwaway.sh start   # initdb + pg_ctl start, prints postgres://... URL
#   scripts/pg-throwaway.sh url     # prints the URL of the running cluster
#   scripts/pg-throwaway.sh stop    # stops the server and removes the directory
#
# State (data directory, socket directory, log, port, url) lives in $PG_THROWAWAY_DIR
# (default /tmp/pg-throwaway). The server listens on 127.0.0.1 only, on a free port, with
# trust authentication for loopback and the unix socket in the state directory. When run as
# root, initdb and the server run as the `postgres` user, because initdb refuses root.
# If DATABASE_URL is set, `start` and `url` print it and start nothing; `stop` does nothing.
set -euo pipefail

DIR="${PG_THROWAWAY_DIR:-/tmp/pg-throwaway}"

die() { echo "pg-throwaway: $*" >&2; exit 1; }

find_bin() {
    local name="$1" d
    if [[ -n "${PG_BIN:-}" && -x "$PG_BIN/$name" ]]; then echo "$PG_BIN/$name"; return; fi
    for d in /usr/lib/postgresql/*/bin; do
        if [[ -x "$d/$name" ]]; then echo "$d/$name"; return; fi
    done
    command -v "$name" || die "cannot find $name (set PG_BIN to the PostgreSQL bin directory)"
}

# Runs a command as the cluster owner: `postgres` when we are root, ourselves otherwise.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$(( 20000 + RANDOM % 30000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

cmd_start() {
    if [[ -n "${DATABASE_URL:-}" ]]; then echo "$DATABASE_URL"; return; fi
    if [[ -f "$DIR/url" ]] && [[ -f "$DIR/data/postmaster.pid" ]]; then
        die "a cluster is already running in $DIR ($(cat "$DIR/url")); stop it first"
    fi
    local initdb pg_ctl port
    initdb=$(find_bin initdb)
    pg_ctl=$(find_bin pg_ctl)
    mkdir -p "$DIR"
    chmod 700 "$DIR"
    if [[ "$(id -u)" == 0 ]]; then chown postgres: "$DIR"; fi
    as_owner "$initdb" -D "$DIR/data" -U postgres --auth=trust --encoding=UTF8 --locale=C \
        >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
    # Trust only loopback and the private socket; nothing else may connect.
    as_owner tee "$DIR/data/pg_hba.conf" >/dev/null <<'EOF'
local all all trust
host  all all 127.0.0.1/32 trust
EOF
    port=$(free_port)
    as_owner "$pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null || { cat "$DIR/server.log" >&2; die "pg_ctl start failed"; }
    echo "$port" >"$DIR/port"
    echo "postgres://postgres@127.0.0.1:$port/postgres" >"$DIR/url"
    cat "$DIR/url"
}

cmd_url() {
    if [[ -n "${DATABASE_URL:-}" ]]; then echo "$DATABASE_URL"; return; fi
    [[ -f "$DIR/url" ]] || die "no cluster in $DIR (run start first)"
    cat "$DIR/url"
}

cmd_stop() {
    if [[ -n "${DATABASE_URL:-}" ]]; then return; fi
    [[ -d "$DIR" ]] || return 0
    if [[ -f "$DIR/data/postmaster.pid" ]]; then
        as_owner "$(find_bin pg_ctl)" -D "$DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    url) cmd_url ;;
    *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
