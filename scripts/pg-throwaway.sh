#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and simulator runs.
#
#   scripts/pg-throwaway.sh start     # initdb + pg_ctl start; prints the postgres://... URL on
#                                     # stdout and, on stderr, the export line for the others
#   scripts/pg-throwaway.sh url       # prints the URL of the cluster
#   scripts/pg-throwaway.sh restart   # starts a cluster whose server died (a crash, a reboot)
#                                     # again on its port: crash recovery replays the WAL
#   scripts/pg-throwaway.sh stop      # stops the server and removes the directory
#
# Each `start` makes a directory of its own (mktemp, mode 700) holding the data directory, the
# socket, the log, the port and the URL, so that two invocations never share a cluster;
# `url`, `restart` and `stop` act on the one named by $PG_THROWAWAY_DIR, which `start` tells you
# to export. Set PG_THROWAWAY_DIR before `start` to choose the directory yourself (a new or
# empty directory of yours). Root writes nothing into the directory once it is the cluster
# owner's (`postgres`): its own files are written before, and the rest as the owner.
#
# The server listens on 127.0.0.1 only, on a free port, and on the unix socket in the state
# directory (mode 700: no other user may enter it), with password authentication
# (SCRAM) for both: the superuser's password is random, made for the cluster, given to initdb in
# a file only the owner may read (removed once read), and carried by the URL that `start` prints
# and keeps in $PG_THROWAWAY_DIR/url (mode 600); keep it to yourself. initdb, pg_ctl and the server
# run with a cleared environment (PATH and the locale's and time zone's variables alone), so
# nothing of yours (PGPASSWORD, cloud keys) reaches the server's. When run as root, initdb and the
# server run as the `postgres` user, because initdb refuses root.
#
# The server is fast and not durable (fsync, synchronous_commit and full_page_writes off): a
# crash may lose what it acknowledged. PG_THROWAWAY_DURABLE=1 at `start` turns all three on.
# If DATABASE_URL is set, `start` and `url` print it and start nothing; the others do nothing.
set -euo pipefail

DIR="${PG_THROWAWAY_DIR:-}"

die() { echo "pg-throwaway: $*" >&2; exit 1; }

need_dir() {
    [[ -n "$DIR" ]] || die "which cluster? set PG_THROWAWAY_DIR to the directory \`start\` printed"
    [[ -d "$DIR" ]] || die "no cluster in $DIR"
}

# True when the postmaster of $DIR is alive.
running() {
    local pid
    [[ -f "$DIR/data/postmaster.pid" ]] || return 1
    pid=$(head -n 1 "$DIR/data/postmaster.pid")
    # A killed postmaster may linger as a zombie until its parent reaps it: that is dead.
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" != Z* ]]
}

# As ledger-sim looks: PG_BIN alone when it is set (and not empty), else the newest
# /usr/lib/postgresql/N/bin (compared as version numbers), else PATH.
find_bin() {
    local name="$1" d
    if [[ -n "${PG_BIN:-}" ]]; then
        [[ -x "$PG_BIN/$name" ]] || die "PG_BIN is set to '$PG_BIN', which holds no PostgreSQL program $name"
        echo "$PG_BIN/$name"
        return
    fi
    while IFS= read -r d; do
        if [[ -x "$d/$name" ]]; then echo "$d/$name"; return; fi
    done < <(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r)
    command -v "$name" || die "cannot find $name under /usr/lib/postgresql/*/bin or on PATH (set PG_BIN to the PostgreSQL bin directory)"
}

# The environment the cluster's programs get: PATH, and the locale's and time zone's variables;
# nothing else of ours (runuser keeps what it is given, and the server keeps pg_ctl's).
kept_env() {
    local v
    KEPT_ENV=("PATH=${PATH:-/usr/bin:/bin}")
    for v in LANG LANGUAGE TZ $(compgen -v LC_ || true); do
        if [[ -n "${!v+set}" ]]; then KEPT_ENV+=("$v=${!v}"); fi
    done
}

# Runs a command as the cluster owner (`postgres` when we are root, ourselves otherwise), with
# a cleared environment but for kept_env's.
as_owner() {
    kept_env
    if [[ "$(id -u)" == 0 ]]; then
        env -i "${KEPT_ENV[@]}" runuser -u postgres -- "$@"
    else
        env -i "${KEPT_ENV[@]}" "$@"
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

# One try of `start` in the empty directory $DIR, with initdb $1 and pg_ctl $2: fails when the
# server does not start (its log says why). Sets port, password, options and url.
start_once() {
    # Everything of ours is written now, while the directory is ours alone (mode 700), each file
    # new (noclobber) and readable by us alone: once the directory is the cluster owner's, a
    # file there may be a link the owner planted, so nothing more is written there but as the
    # owner, and what is read back must be ours (own_file).
    password=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    [[ ${#password} == 64 ]] || die "could not read a password from /dev/urandom"
    port=$(free_port)
    if [[ "${PG_THROWAWAY_DURABLE:-0}" == 1 ]]; then
        settings="-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
    else
        settings="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    fi
    options="-c listen_addresses=127.0.0.1 -p $port -k $DIR -c unix_socket_permissions=0700 $settings -c max_connections=200"
    # The URL carries the password.
    url="postgres://postgres:$password@127.0.0.1:$port/postgres"
    (
        umask 077
        set -C
        printf '%s\n' "$password" >"$DIR/pwfile"
        printf '%s\n' "$options" >"$DIR/options"
        printf '%s\n' "$port" >"$DIR/port"
        printf '%s\n' "$url" >"$DIR/url"
    ) || die "cannot write the cluster's files in $DIR"
    # The password reaches initdb in a file only the owner may read, removed once read.
    if [[ "$(id -u)" == 0 ]]; then chown postgres: "$DIR/pwfile" "$DIR"; fi
    if ! log=$(as_owner "$1" -D "$DIR/data" -U postgres --auth=scram-sha-256 --pwfile="$DIR/pwfile" \
        --encoding=UTF8 --locale=C 2>&1); then
        rm -f "$DIR/pwfile"
        printf '%s\n' "$log" >&2
        die "initdb failed"
    fi
    rm -f "$DIR/pwfile"
    # Loopback and the private socket only, each with the password.
    as_owner tee "$DIR/data/pg_hba.conf" >/dev/null <<'EOF'
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
EOF
    as_owner "$2" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 -o "$options" start >/dev/null
}

cmd_start() {
    if [[ -n "${DATABASE_URL:-}" ]]; then echo "$DATABASE_URL"; return; fi
    local initdb pg_ctl
    initdb=$(find_bin initdb)
    pg_ctl=$(find_bin pg_ctl)
    if [[ -z "$DIR" ]]; then
        DIR=$(mktemp -d /tmp/pg-throwaway.XXXXXX)
    elif [[ -e "$DIR/data" ]]; then
        die "$DIR already holds a cluster: \`restart\` or \`stop\` it"
    elif [[ -L "$DIR" ]]; then
        die "$DIR is a symbolic link: set PG_THROWAWAY_DIR to a new or empty directory of yours"
    fi
    mkdir -p "$DIR"
    [[ -d "$DIR" && ! -L "$DIR" && -O "$DIR" ]] || die "$DIR is not a directory of yours"
    [[ -z "$(ls -A "$DIR")" ]] || die "$DIR is not empty: set PG_THROWAWAY_DIR to a new or empty directory"
    chmod 700 "$DIR"
    # The port is free when picked, but another server can take it before this one binds it
    # (initdb runs in between): a start that cannot bind its port starts over, from an empty
    # directory, on another port.
    local try
    for try in 1 2 3 4 5; do
        if start_once "$initdb" "$pg_ctl"; then
            break
        fi
        if [[ $try == 5 ]] || ! as_owner grep -q "could not bind\|Address already in use" "$DIR/server.log"; then
            as_owner cat "$DIR/server.log" >&2
            die "pg_ctl start failed"
        fi
        echo "pg-throwaway: port $port was taken before the server bound it; starting over on another" >&2
        # Nothing in it is followed: rm removes links, not what they point at.
        rm -rf "${DIR:?}/data" "$DIR/server.log" "$DIR/options" "$DIR/port" "$DIR/url" "$DIR/pwfile"
        [[ -z "$(ls -A "$DIR")" ]] || die "$DIR holds files this script did not make; not starting over"
        if [[ "$(id -u)" == 0 ]]; then chown root: "$DIR"; fi
        chmod 700 "$DIR"
    done
    printf '%s\n' "$url"
    echo "pg-throwaway: cluster in $DIR; for url, restart and stop: export PG_THROWAWAY_DIR=$DIR" >&2
}

# Prints the file $1 of the cluster's directory, which `start` wrote: refused unless it is a
# file of ours (not a link, not the owner's) once the directory is the cluster owner's.
own_file() {
    [[ -f "$1" && ! -L "$1" && -O "$1" ]] || die "$1 is not the file \`start\` wrote (not a file of yours)"
    cat -- "$1"
}

cmd_restart() {
    if [[ -n "${DATABASE_URL:-}" ]]; then return; fi
    need_dir
    if running; then
        echo "pg-throwaway: the server in $DIR is running" >&2
        own_file "$DIR/url"
        return
    fi
    # The killed postmaster's backends exit once they notice; until the last one has, the old
    # shared memory is in use and the server refuses to start. Try for 30 s.
    local pg_ctl options
    pg_ctl=$(find_bin pg_ctl)
    options=$(own_file "$DIR/options")
    for _ in $(seq 1 30); do
        if as_owner "$pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 -o "$options" \
            start >/dev/null 2>&1; then
            own_file "$DIR/url"
            return
        fi
        sleep 1
    done
    as_owner tail -n 20 "$DIR/server.log" >&2
    die "the server in $DIR did not start again within 30 s"
}

cmd_url() {
    if [[ -n "${DATABASE_URL:-}" ]]; then echo "$DATABASE_URL"; return; fi
    need_dir
    [[ -e "$DIR/url" ]] || die "no cluster in $DIR (run start first)"
    own_file "$DIR/url"
}

cmd_stop() {
    if [[ -n "${DATABASE_URL:-}" ]]; then return; fi
    need_dir
    if running; then
        as_owner "$(find_bin pg_ctl)" -D "$DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    url) cmd_url ;;
    restart) cmd_restart ;;
    *) echo "usage: $0 start|url|restart|stop" >&2; exit 2 ;;
esac
