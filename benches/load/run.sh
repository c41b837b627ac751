#!/usr/bin/env bash
# Load benchmark: twilio-notify-proxy vs. nginx and HAProxy made to validate Twilio's signature,
# vs. plain nginx and HAProxy reverse proxies, vs. direct.
#
# Starts, all on 127.0.0.1 with free ephemeral ports and under one temp dir:
#   * nginx "upstream"  - stand-in notification handler, answers 200 {"ok":true}
#   * nginx proxy       - plain reverse proxy to the upstream (a baseline)
#   * haproxy           - plain reverse proxy to the upstream (the other baseline; nbthread 1)
#   * nginx-njs         - nginx + njs validating signature, body hash, required fields (1 worker)
#   * haproxy-val       - HAProxy validating the same with its converters (nbthread 1)
#   * the proxy         - $BIN run --config <generated yaml>
#   * proxy-base        - with BASE_BIN set: another build of the proxy (say main's), same config,
#                         interleaved with the first, for an A/B comparison on a noisy machine
# checks that the validating peers (and the proxy) answer a set of good and bad requests correctly
# (check_peers.py; a peer that fails is not measured: the run stops), then sends the same pre-signed
# Twilio client notification with wrk to each target, interleaved over ROUNDS rounds, and prints the
# medians, the spread, CPU per request (from /proc/PID/stat) and the ratios.
#
# Usage: benches/load/run.sh            (after: cargo build --release)
# Knobs (env): BIN BASE_BIN ROUNDS DURATION CONNECTIONS THREADS WARMUP SKIP_PROXY SKIP_VALIDATING
#              NJS_MODULE CHECK_REQUEST_US ALLOW_SOCKET_ERRORS COUNT_2XX KEEP_TMP NGINX HAPROXY WRK
#              (see README.md)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)

BIN=${BIN:-$REPO_DIR/target/release/twilio-notify-proxy}
# Another build of the proxy to measure beside BIN in the same interleaved run (empty: none).
BASE_BIN=${BASE_BIN:-}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-1}
SKIP_PROXY=${SKIP_PROXY:-0}
SKIP_VALIDATING=${SKIP_VALIDATING:-0}
# ngx_http_js_module.so; found from `nginx -V` (--modules-path) or the usual Debian places if unset.
NJS_MODULE=${NJS_MODULE:-}
# The criterion cost of check_request (cargo bench --bench hot_path), to print the CPU budget.
CHECK_REQUEST_US=${CHECK_REQUEST_US:-}
ALLOW_SOCKET_ERRORS=${ALLOW_SOCKET_ERRORS:-0}
COUNT_2XX=${COUNT_2XX:-0}
KEEP_TMP=${KEEP_TMP:-0}
# nginx runs with access_log off; the proxy's access log is off too unless ACCESS_LOG=true.
ACCESS_LOG=${ACCESS_LOG:-false}
NGINX=${NGINX:-nginx}
HAPROXY=${HAPROXY:-haproxy}
WRK=${WRK:-wrk}

# Fixed bench secret: only ever used against 127.0.0.1.
BENCH_TOKEN=bench-auth-token-0123456789abcdef
PUBLIC_URL=https://voice.example.com/twilio/client-notify
SCHEMA=$REPO_DIR/conf/schemas/client-notification.schema.json
BODY='{"twi_account_sid":"AC0123456789abcdef0123456789abcdef","twi_bridge_token":"eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.c2lnbmF0dXJl","twi_call_sid":"CA0123456789abcdef0123456789abcdef","twi_from":"client:alice","twi_message_id":"WB0123456789abcdef0123456789abcdef","twi_message_type":"twilio.voice.call","twi_to":"client:bob"}'

# Reconstruct the exact command line (with the knobs that were set) for the report.
CMDLINE=""
for v in BIN BASE_BIN ROUNDS DURATION CONNECTIONS THREADS WARMUP SKIP_PROXY SKIP_VALIDATING NJS_MODULE CHECK_REQUEST_US ALLOW_SOCKET_ERRORS COUNT_2XX KEEP_TMP ACCESS_LOG NGINX HAPROXY WRK; do
  if printenv "$v" >/dev/null 2>&1; then
    CMDLINE+="$v=$(printf '%q' "${!v}") "
  fi
done
CMDLINE+="$(printf '%q' "$0")"
for a in "$@"; do CMDLINE+=" $(printf '%q' "$a")"; done

log() { printf '[load] %s\n' "$*"; }
warn() { printf '[load] %s\n' "$*" >&2; }
die() { printf '\n[load] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- checks ----
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_uint "$ROUNDS" && ((ROUNDS >= 1)) || die "ROUNDS must be a positive integer (got '$ROUNDS')"
is_uint "$DURATION" && ((DURATION >= 1)) || die "DURATION must be a positive integer number of seconds (got '$DURATION')"
is_uint "$WARMUP" || die "WARMUP must be a non-negative integer number of seconds (got '$WARMUP')"
is_uint "$THREADS" && ((THREADS >= 1)) || die "THREADS must be a positive integer (got '$THREADS')"
is_uint "$CONNECTIONS" && ((CONNECTIONS >= THREADS)) || die "CONNECTIONS must be an integer >= THREADS (got '$CONNECTIONS')"
(($# == 0)) || die "run.sh takes no arguments; use the env knobs (see $SCRIPT_DIR/README.md)"

for tool in "$NGINX" "$HAPROXY" "$WRK" curl python3 sed; do
  command -v "$tool" >/dev/null 2>&1 || die "required tool not found: $tool (Debian: apt-get install nginx libnginx-mod-http-js haproxy wrk curl python3)"
done
for f in upstream.nginx.conf.tmpl nginx-proxy.conf.tmpl haproxy.cfg.tmpl proxy.yaml.tmpl request.lua \
  nginx-njs.conf.tmpl twilio_validate.js haproxy-validating.cfg check_peers.py; do
  [[ -f $SCRIPT_DIR/$f ]] || die "missing bench file: $SCRIPT_DIR/$f"
done

if [[ $SKIP_VALIDATING != 1 && -z $NJS_MODULE ]]; then
  mods=$("$NGINX" -V 2>&1 | grep -o -- '--modules-path=[^ ]*' | cut -d= -f2 || true)
  for cand in ${mods:+$mods/ngx_http_js_module.so} /usr/lib/nginx/modules/ngx_http_js_module.so \
    /usr/lib64/nginx/modules/ngx_http_js_module.so /usr/share/nginx/modules/ngx_http_js_module.so; do
    if [[ -f $cand ]]; then NJS_MODULE=$cand; break; fi
  done
  [[ -n $NJS_MODULE ]] || die "ngx_http_js_module.so not found (Debian: apt-get install libnginx-mod-http-js; or set NJS_MODULE=..., or SKIP_VALIDATING=1)"
fi
CLK_TCK=$(getconf CLK_TCK)

if [[ $SKIP_PROXY != 1 ]]; then
  [[ -e $BIN ]] || die "binary not found: $BIN (build it first: cargo build --release, or set BIN=...)"
  [[ -x $BIN ]] || die "binary not executable: $BIN"
  [[ -f $SCHEMA ]] || die "schema not found: $SCHEMA"
  if [[ -n $BASE_BIN ]]; then
    [[ -x $BASE_BIN ]] || die "BASE_BIN not found or not executable: $BASE_BIN"
  fi
elif [[ -n $BASE_BIN ]]; then
  die "BASE_BIN needs the proxy (SKIP_PROXY=1 is set)"
fi

# ------------------------------------------------------ temp dir + cleanup ----
TMP=$(mktemp -d "${TMPDIR:-/tmp}/notify-proxy-load.XXXXXX")
UP_PID="" NGINX_PID="" HAPROXY_PID="" PROXY_PID="" BASE_PID="" WRK_PID="" NJS_PID="" HAVAL_PID=""

stop_pid() { # name pid
  local name=$1 pid=$2 i
  [[ -n $pid ]] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    warn "$name (pid $pid) did not stop after SIGTERM, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  stop_pid wrk "$WRK_PID"
  stop_pid proxy "$PROXY_PID"
  stop_pid proxy-base "$BASE_PID"
  stop_pid "nginx proxy" "$NGINX_PID"
  stop_pid haproxy "$HAPROXY_PID"
  stop_pid nginx-njs "$NJS_PID"
  stop_pid haproxy-val "$HAVAL_PID"
  stop_pid "nginx upstream" "$UP_PID"
  if ((rc != 0)); then
    warn "failed (exit $rc); logs kept in $TMP"
    for f in "$TMP"/proxy.log "$TMP"/proxy-base.log "$TMP"/upstream/error.log "$TMP"/nginx/error.log "$TMP"/haproxy/haproxy.log \
      "$TMP"/nginx-njs/error.log "$TMP"/haproxy-val/haproxy.log "$TMP"/check.log; do
      if [[ -s $f ]]; then
        warn "---- last lines of $f ----"
        tail -n 20 "$f" >&2
      fi
    done
  elif [[ $KEEP_TMP == 1 ]]; then
    log "temp dir kept: $TMP"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ ports ----
PORTS=$(python3 - <<'EOF'
import socket
socks = []
for _ in range(9):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
) || die "could not pick free ports with python3"
read -r UP_PORT NGINX_PORT PROXY_PORT ADMIN_PORT HAPROXY_PORT NJS_PORT HAVAL_PORT BASE_PORT BASE_ADMIN_PORT <<<"$PORTS"
[[ -n ${BASE_ADMIN_PORT:-} ]] || die "could not pick free ports (got '$PORTS')"

# ------------------------------------------------------------------ nginx ----
USER_DIRECTIVE=""
if [[ $(id -u) == 0 ]]; then
  # As root nginx would drop its worker to 'nobody', which cannot use the
  # mktemp dir; keep the worker as the invoking user.
  USER_DIRECTIVE="user $(id -un) $(id -gn);"
fi

render() { # template out key=value...
  local tmpl=$1 out=$2 kv expr=()
  shift 2
  for kv in "$@"; do
    expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
  done
  sed "${expr[@]}" "$tmpl" >"$out"
  if grep -q '@[A-Z_]*@' "$out"; then
    die "unfilled placeholder in $out: $(grep -o '@[A-Z_]*@' "$out" | sort -u | tr '\n' ' ')"
  fi
}

wait_http() { # name pid url [method] ; waits up to ~10 s for any HTTP answer
  local name=$1 pid=$2 url=$3 method=${4:-GET} i code
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || die "$name exited during startup (see the error.log below)"
    code=$(curl -s -o /dev/null -m 1 -X "$method" -w '%{http_code}' "$url" 2>/dev/null) || code=000
    [[ $code == 000 ]] || { printf '%s' "$code"; return 0; }
    sleep 0.1
  done
  die "$name did not answer on $url within 10 s"
}

start_nginx() { # name dir template port [extra key=value...]
  local name=$1 dir=$2 tmpl=$3 port=$4
  shift 4
  mkdir -p "$dir"
  render "$SCRIPT_DIR/$tmpl" "$dir/nginx.conf" \
    "PREFIX=$dir" "PORT=$port" "USER_DIRECTIVE=$USER_DIRECTIVE" "$@"
  if ! "$NGINX" -q -t -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/test.log" 2>&1; then
    cat "$dir/test.log" >&2
    die "$name: nginx config test failed ($dir/nginx.conf)"
  fi
  TWILIO_AUTH_TOKEN=$BENCH_TOKEN "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
  STARTED_PID=$!
}

log "temp dir: $TMP"
log "ports: upstream=$UP_PORT nginx=$NGINX_PORT haproxy=$HAPROXY_PORT nginx-njs=$NJS_PORT haproxy-val=$HAVAL_PORT proxy=$PROXY_PORT admin=$ADMIN_PORT"

start_nginx "nginx upstream" "$TMP/upstream" upstream.nginx.conf.tmpl "$UP_PORT"
UP_PID=$STARTED_PID
start_nginx "nginx proxy" "$TMP/nginx" nginx-proxy.conf.tmpl "$NGINX_PORT" "UP_PORT=$UP_PORT"
NGINX_PID=$STARTED_PID
wait_http "nginx upstream" "$UP_PID" "http://127.0.0.1:$UP_PORT/" POST >/dev/null
wait_http "nginx proxy" "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/" POST >/dev/null

# ---------------------------------------------------------------- haproxy ----
mkdir -p "$TMP/haproxy"
render "$SCRIPT_DIR/haproxy.cfg.tmpl" "$TMP/haproxy/haproxy.cfg" \
  "PREFIX=$TMP/haproxy" "PORT=$HAPROXY_PORT" "UP_PORT=$UP_PORT"
"$HAPROXY" -c -q -f "$TMP/haproxy/haproxy.cfg" >"$TMP/haproxy/haproxy.log" 2>&1 ||
  { cat "$TMP/haproxy/haproxy.log" >&2; die "haproxy config check failed ($TMP/haproxy/haproxy.cfg)"; }
# -db: foreground, no daemon, so its pid is ours to stop.
"$HAPROXY" -db -f "$TMP/haproxy/haproxy.cfg" >>"$TMP/haproxy/haproxy.log" 2>&1 &
HAPROXY_PID=$!
wait_http haproxy "$HAPROXY_PID" "http://127.0.0.1:$HAPROXY_PORT/" POST >/dev/null

# ----------------------------------------------------- validating peers ----
if [[ $SKIP_VALIDATING != 1 ]]; then
  # Correctness first: the same config files, in front of a recording upstream (check_peers.py).
  # A peer whose numbers count must refuse what it should and forward the rest intact.
  check_args=(--work "$TMP/check" --token "$BENCH_TOKEN" --nginx "$NGINX" --haproxy "$HAPROXY"
    --njs-module "$NJS_MODULE" --user-directive "$USER_DIRECTIVE")
  [[ $SKIP_PROXY == 1 ]] || check_args+=(--proxy "$BIN" --schema "$SCHEMA")
  log "correctness check: python3 $SCRIPT_DIR/check_peers.py ${check_args[*]}"
  if ! python3 "$SCRIPT_DIR/check_peers.py" "${check_args[@]}" >"$TMP/check.log" 2>&1; then
    cat "$TMP/check.log" >&2
    die "a validating peer (or the proxy) failed the correctness check; its numbers would not count"
  fi
  CHECK_SUMMARY=$(grep -E '^[0-9]+ of [0-9]+ passed|^known limitations|^CHECK_RESULT' "$TMP/check.log")
  sed 's/^/[load]   /' <<<"$CHECK_SUMMARY"

  start_nginx nginx-njs "$TMP/nginx-njs" nginx-njs.conf.tmpl "$NJS_PORT" "UP_PORT=$UP_PORT" \
    "JSDIR=$SCRIPT_DIR" "NJS_MODULE=$NJS_MODULE"
  NJS_PID=$STARTED_PID
  mkdir -p "$TMP/haproxy-val"
  # haproxy-validating.cfg takes its addresses and key from the environment (used as it is).
  HAVAL_ENV=(HA_LISTEN="127.0.0.1:$HAVAL_PORT" HA_UPSTREAM="127.0.0.1:$UP_PORT"
    TWILIO_AUTH_TOKEN_B64="$(printf '%s' "$BENCH_TOKEN" | base64 -w0)")
  env "${HAVAL_ENV[@]}" "$HAPROXY" -c -q -f "$SCRIPT_DIR/haproxy-validating.cfg" >"$TMP/haproxy-val/haproxy.log" 2>&1 ||
    { cat "$TMP/haproxy-val/haproxy.log" >&2; die "haproxy-val config check failed"; }
  env "${HAVAL_ENV[@]}" "$HAPROXY" -db -f "$SCRIPT_DIR/haproxy-validating.cfg" >>"$TMP/haproxy-val/haproxy.log" 2>&1 &
  HAVAL_PID=$!
  wait_http nginx-njs "$NJS_PID" "http://127.0.0.1:$NJS_PORT/" POST >/dev/null
  wait_http haproxy-val "$HAVAL_PID" "http://127.0.0.1:$HAVAL_PORT/" POST >/dev/null
fi

# ------------------------------------------------------ body + signature ----
BODY_FILE=$TMP/body.json
printf '%s' "$BODY" >"$BODY_FILE"

# Reference implementation of Twilio's signature for JSON bodies:
# url = public_url + "?bodySHA256=" + hex(sha256(body)); sig = b64(hmac_sha1(token, url)).
REF_SIGN=$(python3 - "$BENCH_TOKEN" "$PUBLIC_URL" "$BODY_FILE" <<'EOF'
import base64, hashlib, hmac, sys
token, public_url, body_file = sys.argv[1:4]
body = open(body_file, "rb").read()
url = public_url + "?bodySHA256=" + hashlib.sha256(body).hexdigest()
sig = base64.b64encode(hmac.new(token.encode(), url.encode(), hashlib.sha1).digest()).decode()
print(url, sig)
EOF
)
read -r REF_URL REF_SIG <<<"$REF_SIGN"

SIGNED_URL=$REF_URL
SIGNATURE=$REF_SIG
SIGN_SOURCE="python3 reference (proxy not used)"
if [[ $SKIP_PROXY != 1 ]]; then
  if SIGN_OUT=$(TWILIO_AUTH_TOKEN=$BENCH_TOKEN timeout 10 "$BIN" sign --url "$PUBLIC_URL" --json "$BODY_FILE" --format json </dev/null 2>"$TMP/sign.err") &&
    PARSED=$(printf '%s' "$SIGN_OUT" | python3 -c '
import json, sys
raw = sys.stdin.read()
try:
    d = json.loads(raw)
    print(d["url"], d["signature"])
except Exception as e:
    sys.exit("sign output is not JSON with \"url\" and \"signature\" (%s: %s): %r" % (type(e).__name__, e, raw[:300]))
' 2>>"$TMP/sign.err"); then
    read -r SIGNED_URL SIGNATURE <<<"$PARSED"
    SIGN_SOURCE="$BIN sign"
    if [[ $SIGNED_URL != "$REF_URL" || $SIGNATURE != "$REF_SIG" ]]; then
      warn "WARNING: '$BIN sign' disagrees with the python3 reference signature:"
      warn "  sign:      $SIGNED_URL $SIGNATURE"
      warn "  reference: $REF_URL $REF_SIG"
      warn "  (using the proxy's own signature)"
    fi
  else
    warn "WARNING: '$BIN sign' failed or printed unexpected output; falling back to the python3 reference signature"
    sed 's/^/[load]   /' "$TMP/sign.err" >&2 || true
    SIGN_SOURCE="python3 reference (fallback: sign CLI unavailable)"
  fi
fi
# Path + query: everything after scheme://host.
REQ_PATH=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(p.path + ("?" + p.query if p.query else ""))' "$SIGNED_URL")
[[ $REQ_PATH == /* ]] || die "could not derive the request path from '$SIGNED_URL'"

# ------------------------------------------------------------------ proxy ----
start_proxy() { # name bin port admin_port ; sets STARTED_PID once its /healthz answers
  local name=$1 bin=$2 port=$3 admin=$4 cfg=$TMP/$1.yaml st i
  render "$SCRIPT_DIR/proxy.yaml.tmpl" "$cfg" \
    "PROXY_PORT=$port" "ADMIN_PORT=$admin" "UP_PORT=$UP_PORT" \
    "PUBLIC_URL=$PUBLIC_URL" "SCHEMA=$SCHEMA" "ACCESS_LOG=$ACCESS_LOG"
  log "starting $name: TWILIO_AUTH_TOKEN=<bench token> $bin run --config $cfg"
  TWILIO_AUTH_TOKEN=$BENCH_TOKEN "$bin" run --config "$cfg" >"$TMP/$name.log" 2>&1 &
  STARTED_PID=$!
  for ((i = 0; i < 100; i++)); do
    if ! kill -0 "$STARTED_PID" 2>/dev/null; then
      st=0
      wait "$STARTED_PID" || st=$?
      die "$name exited during startup with status $st (log: $TMP/$name.log; config: $cfg)"
    fi
    if curl -fsS -o /dev/null -m 1 "http://127.0.0.1:$admin/healthz" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  die "$name not healthy: http://127.0.0.1:$admin/healthz did not answer 2xx within 10 s"
}

if [[ $SKIP_PROXY != 1 ]]; then
  start_proxy proxy "$BIN" "$PROXY_PORT" "$ADMIN_PORT"
  PROXY_PID=$STARTED_PID
  if [[ -n $BASE_BIN ]]; then
    start_proxy proxy-base "$BASE_BIN" "$BASE_PORT" "$BASE_ADMIN_PORT"
    BASE_PID=$STARTED_PID
  fi
fi

# --------------------------------------------------------------- targets ----
TARGETS=(direct nginx haproxy)
[[ $SKIP_VALIDATING == 1 ]] || TARGETS+=(nginx-njs haproxy-val)
[[ $SKIP_PROXY == 1 ]] || TARGETS+=(proxy)
[[ -z $BASE_BIN ]] || TARGETS+=(proxy-base)
declare -A URL PID_OF
URL[direct]="http://127.0.0.1:$UP_PORT$REQ_PATH"
URL[nginx]="http://127.0.0.1:$NGINX_PORT$REQ_PATH"
URL[haproxy]="http://127.0.0.1:$HAPROXY_PORT$REQ_PATH"
URL[proxy]="http://127.0.0.1:$PROXY_PORT$REQ_PATH"
URL[nginx-njs]="http://127.0.0.1:$NJS_PORT$REQ_PATH"
URL[haproxy-val]="http://127.0.0.1:$HAVAL_PORT$REQ_PATH"
PID_OF[nginx-njs]=$NJS_PID
PID_OF[haproxy-val]=$HAVAL_PID
PID_OF[direct]=$UP_PID
PID_OF[nginx]=$NGINX_PID
PID_OF[haproxy]=$HAPROXY_PID
PID_OF[proxy]=$PROXY_PID
URL[proxy-base]="http://127.0.0.1:$BASE_PORT$REQ_PATH"
PID_OF[proxy-base]=$BASE_PID

curl_request() { # url [extra curl args...] ; the exact request wrk sends
  local url=$1
  shift
  curl -sS -m 5 -X POST "$@" \
    -H 'Content-Type: application/json' \
    -H "X-Twilio-Signature: $SIGNATURE" \
    -H 'I-Twilio-Idempotency-Token: bench' \
    --data-binary "@$BODY_FILE" "$url"
}

diagnose() { # target
  warn "diagnosis: one request to ${1} with the bench headers (curl -i):"
  curl_request "${URL[$1]}" -i >&2 || true
  printf '\n' >&2
}

# Smoke test every target once before measuring.
for t in "${TARGETS[@]}"; do
  code=$(curl_request "${URL[$t]}" -o "$TMP/smoke.$t.body" -w '%{http_code}') || code=000
  if [[ $code != 200 ]]; then
    diagnose "$t"
    die "smoke test: $t answered HTTP $code (expected 200) for POST ${URL[$t]}"
  fi
  if [[ $(cat "$TMP/smoke.$t.body") != '{"ok":true}' ]]; then
    log "note: $t answered 200 with body: $(head -c 300 "$TMP/smoke.$t.body")"
  fi
done
log "smoke test passed: every target answered 200"

# -------------------------------------------------------------------- wrk ----
RESULTS=$TMP/results.tsv
printf 'round\ttarget\trps\tp50_us\tp99_us\trequests\tuser_ticks\tsys_ticks\tupstream_ticks\tload1\trqwait_ns\tduration_us\n' >"$RESULTS"

cpu_ticks() { # pid -> "user system rqwait": clock ticks of the process and its children (nginx's
  # workers), and the ns its threads spent runnable but waiting for a CPU (schedstat field 2)
  local pid=$1 u=0 s=0 w=0 p stat f t sched
  for p in "$pid" $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
    stat=$(<"/proc/$p/stat") 2>/dev/null || continue
    stat=${stat##*) }
    read -r -a f <<<"$stat"
    # After "(comm) ": state is field 3, so utime (14) and stime (15) are f[11] and f[12].
    u=$((u + f[11])) s=$((s + f[12]))
    for t in /proc/"$p"/task/*/schedstat; do
      read -r -a sched <"$t" 2>/dev/null || continue
      w=$((w + sched[1]))
    done
  done
  printf '%d %d %d' "$u" "$s" "$w"
}

field() { # line key -> value (empty if absent)
  local re="(^| )$2=([^ ]+)"
  if [[ $1 =~ $re ]]; then printf '%s' "${BASH_REMATCH[2]}"; fi
}

run_wrk() { # target duration_s round(0=warm-up)
  local t=$1 d=$2 round=$3 out line u0 s0 u1 s1 up0 up1 load1 w0 w1
  out=$TMP/wrk.$t.r$round.txt
  read -r load1 _ </proc/loadavg
  read -r u0 s0 w0 <<<"$(cpu_ticks "${PID_OF[$t]}")"
  read -r up0 _ <<<"$(cpu_ticks "$UP_PID" | awk '{print $1 + $2}')"
  BENCH_BODY_FILE=$BODY_FILE BENCH_SIGNATURE=$SIGNATURE BENCH_COUNT_2XX=$COUNT_2XX \
    "$WRK" -t"$THREADS" -c"$CONNECTIONS" -d"${d}s" --latency \
    -s "$SCRIPT_DIR/request.lua" "${URL[$t]}" >"$out" 2>&1 &
  WRK_PID=$!
  if ! wait "$WRK_PID"; then
    WRK_PID=""
    cat "$out" >&2
    die "wrk failed against $t (${URL[$t]})"
  fi
  WRK_PID=""
  kill -0 "${PID_OF[$t]}" 2>/dev/null || die "$t server process died during the run"
  read -r u1 s1 w1 <<<"$(cpu_ticks "${PID_OF[$t]}")"
  read -r up1 _ <<<"$(cpu_ticks "$UP_PID" | awk '{print $1 + $2}')"

  line=$(grep -m1 '^BENCH_RESULT ' "$out") || {
    cat "$out" >&2
    die "no BENCH_RESULT line in wrk output for $t ($out)"
  }
  local reqs rps p50 p99 st n2 ce re we to dus
  reqs=$(field "$line" requests) rps=$(field "$line" rps) dus=$(field "$line" duration_us)
  p50=$(field "$line" p50_us) p99=$(field "$line" p99_us)
  st=$(field "$line" status_errors) n2=$(field "$line" non2xx)
  ce=$(field "$line" connect_errors) re=$(field "$line" read_errors)
  we=$(field "$line" write_errors) to=$(field "$line" timeouts)
  for v in "$reqs" "$st" "$ce" "$re" "$we" "$to"; do
    is_uint "$v" || die "could not parse wrk result for $t: $line"
  done

  local tag="round $round/$ROUNDS"
  ((round > 0)) || tag="warm-up  "
  printf '[load] %s  %-11s %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  cpu %5.1f us/req  waited %4.1f%%  load %s  (%d requests; >=400: %d; socket errors c/r/w/t: %d/%d/%d/%d)\n' \
    "$tag" "$t" "$rps" "$(awk -v v="$p50" 'BEGIN{print v/1000}')" "$(awk -v v="$p99" 'BEGIN{print v/1000}')" \
    "$(awk -v c=$((u1 - u0 + s1 - s0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN{print n ? c / hz * 1e6 / n : 0}')" \
    "$(awk -v w=$((w1 - w0)) -v d="$dus" 'BEGIN{print d ? w / 1e3 / d * 100 : 0}')" "$load1" \
    "$reqs" "$st" "$ce" "$re" "$we" "$to"

  if ((reqs == 0)); then
    cat "$out" >&2
    die "$t completed 0 requests"
  fi
  if ((st > 0 || n2 > 0)); then
    grep -E 'Non-2xx|Socket errors' "$out" >&2 || true
    diagnose "$t"
    die "$t answered non-2xx to $((n2 > 0 ? n2 : st)) of $reqs requests"
  fi
  if ((ce + re + we + to > 0)); then
    if [[ $ALLOW_SOCKET_ERRORS == 1 ]]; then
      warn "WARNING: $t had socket errors (connect $ce, read $re, write $we, timeout $to); ALLOW_SOCKET_ERRORS=1"
    else
      cat "$out" >&2
      die "$t had socket errors (connect $ce, read $re, write $we, timeout $to); set ALLOW_SOCKET_ERRORS=1 to only warn"
    fi
  fi
  if ((round > 0)); then
    printf '%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%d\t%s\n' "$round" "$t" "$rps" "$p50" "$p99" "$reqs" \
      $((u1 - u0)) $((s1 - s0)) $((up1 - up0)) "$load1" $((w1 - w0)) "$dus" >>"$RESULTS"
  fi
}

START_TS=$(date +%s)
if ((WARMUP > 0)); then
  for t in "${TARGETS[@]}"; do run_wrk "$t" "$WARMUP" 0; done
fi
for ((r = 1; r <= ROUNDS; r++)); do
  for t in "${TARGETS[@]}"; do run_wrk "$t" "$DURATION" "$r"; done
done
END_TS=$(date +%s)

# --------------------------------------------------------------- metrics ----
METRICS_LINES=""
if [[ $SKIP_PROXY != 1 ]]; then
  if METRICS=$(curl -fsS -m 5 "http://127.0.0.1:$ADMIN_PORT/metrics" 2>"$TMP/metrics.err"); then
    all=$(printf '%s\n' "$METRICS" | grep '^notify_proxy_requests_total' || true)
    if [[ -z $all ]]; then
      METRICS_LINES="(no line matching notify_proxy_requests_total in /metrics)"
    else
      # Zero-valued series are left out to keep the report short.
      METRICS_LINES=$(printf '%s\n' "$all" | awk '$NF != 0' || true)
      zero=$(printf '%s\n' "$all" | awk '$NF == 0' | wc -l)
      ((zero == 0)) || METRICS_LINES+=$'\n'"($zero zero-valued series not shown)"
    fi
  else
    METRICS_LINES="(could not scrape http://127.0.0.1:$ADMIN_PORT/metrics: $(cat "$TMP/metrics.err"))"
  fi
fi

# --------------------------------------------------------------- summary ----
cpu_model=$(LC_ALL=C lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1 || true)
bin_version="-"
if [[ $SKIP_PROXY != 1 ]]; then
  bin_version=$("$BIN" --version 2>/dev/null | head -n1 || true)
fi
git_rev=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo "-")

echo
echo "=============================== load benchmark ==============================="
echo "command:      $CMDLINE"
printf 'wrk:          %s -t%s -c%s -d%ss --latency -s %s <target-url>\n' "$WRK" "$THREADS" "$CONNECTIONS" "$DURATION" "$SCRIPT_DIR/request.lua"
echo "request:      POST $REQ_PATH ($(wc -c <"$BODY_FILE") byte JSON body, signed by $SIGN_SOURCE)"
echo "rounds:       $ROUNDS x ${DURATION}s per target, interleaved ($(IFS=,; echo "${TARGETS[*]}" | sed 's/,/, /g')), ${WARMUP}s warm-up each; measured wall time $((END_TS - START_TS))s"
echo "machine:      nproc=$(nproc), cpu=${cpu_model:-?}, kernel=$(uname -r)"
echo "date:         $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "versions:     $("$NGINX" -v 2>&1 | head -n1); $("$HAPROXY" -v 2>&1 | head -n1 | cut -d' ' -f1-3); $("$WRK" -v 2>&1 | head -n1 | cut -d' ' -f1-2); proxy: ${bin_version:--}; repo rev: $git_rev"
echo "targets:      direct = wrk -> nginx upstream (127.0.0.1:$UP_PORT)"
echo "              nginx  = wrk -> nginx proxy_pass, keepalive 64 -> upstream"
echo "              haproxy = wrk -> haproxy (nbthread 1, http-reuse always) -> upstream"
if [[ $SKIP_VALIDATING != 1 ]]; then
  echo "              nginx-njs = wrk -> nginx + njs (1 worker; signature, body hash, 3 required fields) -> upstream"
  echo "              haproxy-val = wrk -> haproxy converters (nbthread 1; signature, body hash, 3 fields) -> upstream"
fi
[[ $SKIP_PROXY == 1 ]] || echo "              proxy  = wrk -> $BIN (threads: 1) -> upstream"
[[ -z $BASE_BIN ]] || echo "              proxy-base = wrk -> $BASE_BIN (threads: 1, same config) -> upstream"
[[ $SKIP_VALIDATING == 1 ]] || echo "check:        $(tr '\n' ';' <<<"$CHECK_SUMMARY" | sed 's/;$//; s/;/; /g')"
echo
python3 - "$RESULTS" "$SKIP_PROXY" "$SKIP_VALIDATING" "$CLK_TCK" "$CHECK_REQUEST_US" "$BASE_BIN" <<'EOF'
import csv, statistics, sys
path, skip_proxy, skip_val, hz, check_us = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", int(sys.argv[4]), sys.argv[5]
base = sys.argv[6] != ""
rows = list(csv.DictReader(open(path), delimiter="\t"))
plain, validating = ["nginx", "haproxy"], ([] if skip_val else ["nginx-njs", "haproxy-val"])
order = ["direct"] + plain + validating + ([] if skip_proxy else ["proxy"]) + (["proxy-base"] if base else [])
med, cpu = {}, {}
print("per target: req/s over rounds; p50 and p99 = median over rounds; CPU = user + system time of the target's")
print("server process(es) from /proc/PID/stat over all measured rounds / requests served (upstream: the handler's)")
print("waited = time the target's threads were runnable but waiting for a CPU (schedstat), % of wall time")
print(f"{'target':<12}{'req/s min':>10}{'median':>9}{'max':>9}{'slow/med':>9}{'p50 ms':>8}{'p99 ms':>8}"
      f"{'user us':>9}{'sys us':>8}{'cpu us':>8}{'upstr us':>9}{'waited':>8}")
for t in order:
    rs = [r for r in rows if r["target"] == t]
    rps = [float(r["rps"]) for r in rs]
    p50 = [float(r["p50_us"]) / 1000 for r in rs]
    p99 = [float(r["p99_us"]) / 1000 for r in rs]
    n = sum(int(r["requests"]) for r in rs)
    us = lambda k: sum(int(r[k]) for r in rs) / hz * 1e6 / n
    med[t] = (statistics.median(rps), statistics.median(p50), statistics.median(p99), min(rps))
    cpu[t] = (us("user_ticks"), us("sys_ticks"), us("upstream_ticks"))
    waited = sum(int(r["rqwait_ns"]) for r in rs) / 1e3 / sum(int(r["duration_us"]) for r in rs) * 100
    print(f"{t:<12}{min(rps):>10.0f}{med[t][0]:>9.0f}{max(rps):>9.0f}{min(rps) / med[t][0]:>9.3f}{med[t][1]:>8.3f}"
          f"{med[t][2]:>8.3f}{cpu[t][0]:>9.2f}{cpu[t][1]:>8.2f}{cpu[t][0] + cpu[t][1]:>8.2f}"
          f"{'-' if t == 'direct' else f'{cpu[t][2]:.2f}':>9}{f'{waited:.1f}%':>8}")
loads = [float(r["load1"]) for r in rows]
print(f"1-minute load average at the start of each measured run: min {min(loads):.2f}, median "
      f"{statistics.median(loads):.2f}, max {max(loads):.2f}")
print()
def ratio(a, b, note=""):
    x, y = med[a], med[b]
    print(f"  {a + ' / ' + b:<26} req/s {x[0] / y[0]:6.3f}   p50 {x[1] / y[1]:6.3f}   p99 {x[2] / y[2]:6.3f}"
          f"   cpu/req {(sum(cpu[a][:2])) / sum(cpu[b][:2]):6.3f}{note}")
print("ratios of medians (req/s < 1 = fewer requests; latency, cpu > 1 = slower, more):")
if not skip_proxy:
    if validating:
        best_val = max(validating, key=lambda t: med[t][0])
        ratio("proxy", best_val, "   <- the better validating peer (req/s)")
        for t in validating:
            if t != best_val:
                ratio("proxy", t)
    best_plain = max(plain, key=lambda t: med[t][0])
    ratio("proxy", best_plain, "   <- the better plain proxy (req/s)")
    for t in plain:
        if t != best_plain:
            ratio("proxy", t)
    ratio("proxy", "direct")
    if base:
        ratio("proxy", "proxy-base", "   <- BIN against BASE_BIN, interleaved")
for t in plain + validating:
    ratio(t, "direct")
if not skip_proxy:
    d = sum(cpu["proxy"][:2]) - sum(cpu["nginx"][:2])
    line = f"CPU per request, proxy - plain nginx: {d:+.2f} us"
    if check_us:
        line += f" (budget: check_request {float(check_us):.2f} us + 2 us = {float(check_us) + 2:.2f} us)"
    print(line)
    if base:
        d = sum(cpu["proxy-base"][:2]) - sum(cpu["nginx"][:2])
        print(f"CPU per request, proxy-base - plain nginx: {d:+.2f} us")
EOF
if [[ $SKIP_PROXY != 1 ]]; then
  echo
  proxy_reqs=$(awk -F'\t' '$2 == "proxy" { n += $6 } END { print n + 0 }' "$RESULTS")
  echo "proxy /metrics (notify_proxy_requests_total), after wrk completed $proxy_reqs measured requests to the proxy"
  echo "(the counter also includes warm-up, the smoke test and requests still in flight when each wrk run stopped):"
  printf '%s\n' "$METRICS_LINES" | sed 's/^/  /'
fi
echo "=============================================================================="
