#!/usr/bin/env bash
# Runs the nginx + nchan peer in the foreground: renders nginx.conf into a private prefix dir,
# starts nginx (master + 1 worker) on 127.0.0.1:PORT and publish.py feeding it, and stops both on
# exit (Ctrl-C / SIGTERM).
#
#   benches/peers/nchan/run.sh [--port 8082] [--speed 1] [--prefix DIR] [VIDEO]
#
# Subscribers: curl -sN http://127.0.0.1:PORT/events
# The nginx master pid is in DIR/nginx.pid (compare.sh reads it to measure CPU and RSS).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
port=8082
speed=1
prefix=""
video="$root/web/sample.mp4"
while [ $# -gt 0 ]; do
    case "$1" in
        --port) port="$2"; shift 2 ;;
        --speed) speed="$2"; shift 2 ;;
        --prefix) prefix="$2"; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
        *) video="$1"; shift ;;
    esac
done

find_nchan_module() {
    local so=/usr/lib/nginx/modules/ngx_nchan_module.so
    if [ -f "$so" ]; then echo "$so"; return 0; fi
    # Debian's module packages drop a load_module line into modules-enabled.
    local line
    line="$(grep -h -o 'load_module[[:space:]]\+[^;]*nchan[^;]*' /etc/nginx/modules-enabled/*.conf 2>/dev/null | head -n1 || true)"
    so="${line##* }"
    case "$so" in
        "") return 1 ;;
        /*) ;;
        *) so="/usr/share/nginx/$so" ;;
    esac
    [ -f "$so" ] && echo "$so"
}

if ! command -v nginx >/dev/null || ! module="$(find_nchan_module)"; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "run.sh: installing nginx-light and libnginx-mod-nchan" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light libnginx-mod-nchan >&2
        module="$(find_nchan_module)"
    else
        echo "run.sh: needs nginx and the nchan module (Debian: nginx-light libnginx-mod-nchan)" >&2
        exit 1
    fi
fi

own_prefix=0
if [ -z "$prefix" ]; then
    prefix="$(mktemp -d /tmp/ssecast-nchan.XXXXXX)"
    own_prefix=1
fi
mkdir -p "$prefix/tmp"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$port|g" -e "s|@NCHAN_MODULE@|$module|g" \
    "$here/nginx.conf" >"$prefix/nginx.conf"

nginx_pid=""
pub_pid=""
cleanup() {
    trap - EXIT INT TERM
    [ -n "$pub_pid" ] && kill "$pub_pid" 2>/dev/null || true
    if [ -n "$nginx_pid" ]; then
        # SIGTERM to the master is nginx's fast shutdown; it stops its worker itself.
        kill "$nginx_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$nginx_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$nginx_pid" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    [ "$own_prefix" = 1 ] && rm -rf "$prefix"
}
trap cleanup EXIT
trap 'exit 143' INT TERM

nginx -p "$prefix" -e "$prefix/error.log" -c "$prefix/nginx.conf" &
nginx_pid=$!

for _ in $(seq 100); do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/pub"; then
        break
    fi
    kill -0 "$nginx_pid" 2>/dev/null || { cat "$prefix/error.log" >&2; exit 1; }
    sleep 0.1
done

python3 "$here/publish.py" --url "http://127.0.0.1:$port/pub" --speed "$speed" "$video" &
pub_pid=$!
echo "run.sh: nginx+nchan on http://127.0.0.1:$port/events (master pid $nginx_pid, prefix $prefix)" >&2
wait "$nginx_pid"
