#!/usr/bin/env bash
# The ksql-python acceptance test: builds brook-server, starts two on free ports with
# temporary data directories and their embedded brokers — one plain, one with TLS and HTTP
# Basic logins (a test CA made with openssl, users.htpasswd) — runs test_ksql_python.py
# against the first and test_ksql_python_https.py against the second in a cached
# virtualenv, and stops the servers (whatever happened).
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
work="$(mktemp -d)"
pids=()
logs=()
cleanup() {
  status=$?
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ "$status" -ne 0 ]; then
    for log in "${logs[@]}"; do
      echo "--- $log (last 50 lines) ---"
      tail -n 50 "$log" 2>/dev/null || true
    done
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

# start NAME API_PORT [ARGS…]: a server with its own data directory and broker port.
start() {
  local name="$1" port="$2"
  shift 2
  mkdir -p "$work/$name"
  local log="$work/$name/brook-server.log"
  BROOK_LOG="${BROOK_LOG:-warn,brook_server=info}" "$server_bin" \
    --data-dir "$work/$name/data" \
    --broker-listen "127.0.0.1:$(free_port)" \
    --listen "127.0.0.1:$port" \
    "$@" >"$log" 2>&1 &
  pids+=("$!")
  logs+=("$log")
}

# ready LOG PID: waits for the server to say it is ready (60 s at most).
ready() {
  for _ in $(seq 1 600); do
    if ! kill -0 "$2" 2>/dev/null; then
      echo "brook-server exited before it was ready ($1)"
      exit 1
    fi
    grep -q "brook-server ready" "$1" && return 0
    sleep 0.1
  done
  echo "brook-server not ready after 60 s ($1)"
  exit 1
}

# The test CA and the https server's certificate for 127.0.0.1.
certs="$work/certs"
mkdir -p "$certs"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$certs/ca.key" -out "$certs/ca.pem" -days 2 \
  -subj "/CN=Brook test CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req "${ec[@]}" -keyout "$certs/server.key" -out "$certs/server.csr" \
  -subj "/CN=localhost" 2>/dev/null
echo "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$certs/san.cnf"
openssl x509 -req -in "$certs/server.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca.key" \
  -CAcreateserial -days 2 -out "$certs/server.pem" -extfile "$certs/san.cnf" 2>/dev/null

plain_port="$(free_port)"
tls_port="$(free_port)"
start plain "$plain_port"
start tls "$tls_port" \
  --tls-cert "$certs/server.pem" --tls-key "$certs/server.key" \
  --users "$here/users.htpasswd"
ready "${logs[0]}" "${pids[0]}"
ready "${logs[1]}" "${pids[1]}"

cd "$here"
BROOK_URL="http://127.0.0.1:$plain_port" "$venv/bin/python" test_ksql_python.py
BROOK_URL="https://127.0.0.1:$tls_port" BROOK_USER=ksql-python \
  BROOK_PASSWORD='ksql-python-Secret 1' \
  SSL_CERT_FILE="$certs/ca.pem" REQUESTS_CA_BUNDLE="$certs/ca.pem" \
  "$venv/bin/python" test_ksql_python_https.py
