#!/usr/bin/env bash
# The ksql-python acceptance test: builds brook-server, starts it on free ports with a
# temporary data directory and its embedded broker, runs test_ksql_python.py in a cached
# virtualenv, and stops the server (whatever happened).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brook/target}"
# Next to the target directory, so CI reruns reuse it; rebuilt when requirements.txt changes.
venv="${BROOK_PYTHON_VENV:-$(dirname "$CARGO_TARGET_DIR")/venv-ksql-python}"

(cd "$root" && cargo build --quiet -p brook-server --bin brook-server)
server_bin="$CARGO_TARGET_DIR/debug/brook-server"

want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  echo "creating the ksql-python virtualenv in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    $(grep -E '^(setuptools|wheel)==' "$here/requirements.txt")
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation \
    -r "$here/requirements.txt"
  echo "$want" >"$venv/.requirements.sha256"
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
api_port="$(free_port)"
broker_port="$(free_port)"
data_dir="$(mktemp -d)"
log="$data_dir/brook-server.log"
server_pid=""
cleanup() {
  status=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ]; then
    echo "--- brook-server log (last 50 lines) ---"
    tail -n 50 "$log" 2>/dev/null || true
  fi
  rm -rf "$data_dir"
  exit "$status"
}
trap cleanup EXIT

BROOK_LOG="${BROOK_LOG:-warn,brook_server=info}" "$server_bin" \
  --data-dir "$data_dir" \
  --broker-listen "127.0.0.1:$broker_port" \
  --listen "127.0.0.1:$api_port" \
  >"$log" 2>&1 &
server_pid=$!

url="http://127.0.0.1:$api_port"
for _ in $(seq 1 600); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "brook-server exited before it was ready"
    exit 1
  fi
  grep -q "brook-server ready" "$log" && break
  sleep 0.1
done
grep -q "brook-server ready" "$log" || { echo "brook-server not ready after 60 s"; exit 1; }

BROOK_URL="$url" "$venv/bin/python" "$here/test_ksql_python.py"
