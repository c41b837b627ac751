#!/usr/bin/env python3
"""Correctness check of the validating peers that run.sh measures (and of the proxy, as a reference).

The cases and verdicts are those of ../shared/bench/validating-peers/check.py (19 cases plus five bodies on
one keep-alive connection), run against the *same files* run.sh benchmarks: nginx-njs.conf.tmpl +
twilio_validate.js, haproxy-validating.cfg, and (with --proxy) proxy.yaml.tmpl. Each is started here in
front of a recording upstream (Python, HTTP/1.1 keep-alive), so that "forwarded intact" and "not forwarded
at all" can be seen: a signed request must answer 200 and reach the upstream byte for byte (path, query,
signature header, body); every refused case must answer its status and reach nothing.

Differences from check.py: no dependency on Twilio's SDK (the signature of a JSON-body request is
base64(HMAC-SHA1(token, url)), which run.sh cross-checks against the proxy's own `sign`), ports and
scratch paths come from the caller, and the last line says which targets passed:
    CHECK_RESULT nginx-njs=pass haproxy-val=pass proxy=pass
Exit status 1 if any target failed a case that is not a documented limitation (KNOWN below).

usage: check_peers.py --work DIR --token T [--nginx BIN] [--haproxy BIN] [--njs-module PATH]
                      [--user-directive 'user a b;'] [--proxy BIN --schema PATH]
"""
import argparse, base64, hashlib, hmac, http.client, json, os, re, socket, subprocess, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ORIGIN = "https://voice.example.com"
PATH = "/twilio/client-notify"
GOOD = {
    "twi_account_sid": "AC0123456789abcdef0123456789abcdef",
    "twi_bridge_token": "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.c2lnbmF0dXJl",
    "twi_call_sid": "CA0123456789abcdef0123456789abcdef",
    "twi_from": "client:alice",
    "twi_message_id": "WB0123456789abcdef0123456789abcdef",
    "twi_message_type": "twilio.voice.call",
    "twi_to": "client:bob",
}
# Target -> case names whose different answer is a documented limitation (validating-peers/README.md),
# not a failure: HAProxy's json_query is not a JSON validator, and req.body sees one buffer.
KNOWN = {"haproxy-val": {"json-trailing-garbage", "json-truncated-after-fields", "signed-too-large-70k"}}
TOKEN = None


def free_ports(n):
    ss = [socket.socket() for _ in range(n)]
    for s in ss:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in ss]
    for s in ss:
        s.close()
    return ports


class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen = []
    lock = threading.Lock()

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        with Recorder.lock:
            Recorder.seen.append((self.path, self.headers.get_all("X-Twilio-Signature") or [], body))
        out = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


def sign(url, token=None):
    """Twilio's signature of a request with a JSON body: the URL alone (no form parameters)."""
    key = (token if token is not None else TOKEN).encode()
    return base64.b64encode(hmac.new(key, url.encode(), hashlib.sha1).digest()).decode()


def case(name, want, body, *, sig="good", query=None, sign_body=None, extra_sig=None, method="POST", sig_value=None):
    hb = hashlib.sha256(sign_body if sign_body is not None else body).hexdigest()
    q = query if query is not None else "bodySHA256=" + hb
    pq = PATH + "?" + q
    headers = {"Content-Type": "application/json", "I-Twilio-Idempotency-Token": name + "-" + str(time.time_ns())}
    sigs = []
    if sig == "good":
        sigs = [sign(ORIGIN + pq)]
    elif sig == "wrong-token":
        sigs = [sign(ORIGIN + pq, token="not-the-token")]
    elif sig == "wrong-url":
        sigs = [sign("https://evil.example.com" + pq)]
    if sig_value:
        sigs = [sig_value]
    if extra_sig:
        sigs.append(extra_sig)
    return dict(name=name, want=want, body=body, pq=pq, headers=headers, sigs=sigs, method=method)


def cases():
    good = json.dumps(GOOD, separators=(",", ":")).encode()
    drop_to = {k: v for k, v in GOOD.items() if k != "twi_to"}
    num_to = dict(GOOD, twi_to=42)
    big = dict(GOOD, twi_bridge_token="x" * 15000, twi_params="p" * 5000)
    tampered = good.replace(b"client:bob", b"client:eve")
    evil_hash = hashlib.sha256(tampered).hexdigest()
    return [
        case("signed", 200, good),
        case("signed-large-20k", 200, json.dumps(big).encode()),
        case("signed-too-large-70k", 413, json.dumps(dict(GOOD, twi_params="p" * 70000)).encode()),
        case("tampered-body", 403, tampered, sign_body=good),
        case("rehashed-unsigned", 403, tampered, query="bodySHA256=" + evil_hash,
             sig_value=sign(ORIGIN + PATH + "?bodySHA256=" + hashlib.sha256(good).hexdigest())),
        case("wrong-signature", 403, good, sig="wrong-token"),
        case("signature-for-other-host", 403, good, sig="wrong-url"),
        case("missing-signature", 403, good, sig=None),
        case("two-signatures", 403, good, extra_sig="AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        case("missing-bodySHA256", 403, good, query="x=1"),
        case("json-truncated", 400, good[:-25]),
        case("json-truncated-after-fields", 400, good[:-25].replace(b'"twi_account_sid"', b'"twi_to":"client:bob","twi_account_sid"')),
        case("json-trailing-garbage", 400, good + b"}garbage"),
        case("not-json", 400, b"hello, world"),
        case("json-array", 400, b"[1,2,3]"),
        case("missing-twi_to", 400, json.dumps(drop_to).encode()),
        case("twi_to-number", 400, json.dumps(num_to).encode()),
        case("empty-twi_to", 400, json.dumps(dict(GOOD, twi_to="")).encode()),
        case("GET", 405, b"", method="GET"),
    ]


def send(port, c):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest(c["method"], c["pq"], skip_accept_encoding=True)
    for k, v in c["headers"].items():
        conn.putheader(k, v)
    for s in c["sigs"]:
        conn.putheader("X-Twilio-Signature", s)
    conn.putheader("Content-Length", str(len(c["body"])))
    conn.endheaders(c["body"])
    r = conn.getresponse()
    r.read()
    conn.close()
    return r.status


def wait_port(port, proc, secs=10):
    t = time.time() + secs
    while time.time() < t:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def render(template, out, values):
    text = open(os.path.join(HERE, template)).read()
    for k, v in values.items():
        text = text.replace("@" + k + "@", v)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        sys.exit(f"unfilled placeholder in {out}: {sorted(set(left))}")
    open(out, "w").write(text)


def main():
    global TOKEN
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True, help="scratch dir (configs, logs)")
    ap.add_argument("--token", required=True, help="the auth token the targets are started with")
    ap.add_argument("--nginx", default="nginx")
    ap.add_argument("--haproxy", default="haproxy")
    ap.add_argument("--njs-module", help="ngx_http_js_module.so; without it nginx-njs is not checked")
    ap.add_argument("--no-haproxy", action="store_true")
    ap.add_argument("--user-directive", default="")
    ap.add_argument("--proxy", help="our proxy's binary (reference column, with proxy.yaml.tmpl)")
    ap.add_argument("--schema")
    a = ap.parse_args()
    TOKEN = a.token
    os.makedirs(a.work, exist_ok=True)

    up_port, ng_port, ha_port, px_port, adm_port = free_ports(5)
    srv = ThreadingHTTPServer(("127.0.0.1", up_port), Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    env = dict(os.environ, TWILIO_AUTH_TOKEN=TOKEN, TWILIO_AUTH_TOKEN_B64=base64.b64encode(TOKEN.encode()).decode(),
               HA_LISTEN=f"127.0.0.1:{ha_port}", HA_UPSTREAM=f"127.0.0.1:{up_port}")
    procs, peers = [], []
    try:
        if a.njs_module:
            d = os.path.join(a.work, "nginx-njs")
            os.makedirs(d, exist_ok=True)
            render("nginx-njs.conf.tmpl", os.path.join(d, "nginx.conf"),
                   {"PREFIX": d, "PORT": str(ng_port), "UP_PORT": str(up_port), "JSDIR": HERE,
                    "NJS_MODULE": a.njs_module, "USER_DIRECTIVE": a.user_directive})
            log = open(os.path.join(d, "stdout.log"), "w")
            p = subprocess.Popen([a.nginx, "-p", d, "-c", os.path.join(d, "nginx.conf"), "-e", os.path.join(d, "error.log")],
                                 env=env, stdout=log, stderr=subprocess.STDOUT)
            procs.append(p)
            peers.append(("nginx-njs", ng_port, p))
        if not a.no_haproxy:
            log = open(os.path.join(a.work, "haproxy-val.log"), "w")
            p = subprocess.Popen([a.haproxy, "-db", "-f", os.path.join(HERE, "haproxy-validating.cfg")],
                                 env=env, stdout=log, stderr=subprocess.STDOUT)
            procs.append(p)
            peers.append(("haproxy-val", ha_port, p))
        if a.proxy:
            cfg = os.path.join(a.work, "proxy.yaml")
            render("proxy.yaml.tmpl", cfg,
                   {"PROXY_PORT": str(px_port), "ADMIN_PORT": str(adm_port), "UP_PORT": str(up_port),
                    "PUBLIC_URL": ORIGIN + PATH, "SCHEMA": os.path.abspath(a.schema), "ACCESS_LOG": "false"})
            log = open(os.path.join(a.work, "proxy.log"), "w")
            p = subprocess.Popen([a.proxy, "run", "--config", cfg], env=env, stdout=log, stderr=subprocess.STDOUT)
            procs.append(p)
            peers.append(("proxy", px_port, p))
        for name, port, p in peers:
            if not wait_port(port, p):
                sys.exit(f"{name} did not start (logs in {a.work})")

        failed = {name: 0 for name, _, _ in peers}
        known = []
        cs = cases()
        print(f"{'case':28} want  " + "  ".join(f"{n:>14}" for n, _, _ in peers))
        for c in cs:
            row = []
            for name, port, _ in peers:
                before = len(Recorder.seen)
                st = send(port, c)
                time.sleep(0.02)
                got = Recorder.seen[before:]
                ok = st == c["want"]
                if c["want"] == 200:
                    ok = ok and len(got) == 1 and got[0][0] == c["pq"] and got[0][2] == c["body"] \
                        and got[0][1] == c["sigs"]
                else:
                    ok = ok and not got
                fwd = "+fwd" if got else ""
                if ok:
                    mark = "ok"
                elif c["name"] in KNOWN.get(name, ()):
                    mark = "KNOWN"
                    known.append(f"{name}:{c['name']}={st}")
                else:
                    mark = "FAIL"
                    failed[name] += 1
                row.append(f"{str(st) + fwd + ' ' + mark:>14}")
            print(f"{c['name']:28} {c['want']:4}  " + "  ".join(row))
        row = []
        for name, port, _ in peers:
            before = len(Recorder.seen)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            sent, sts = [], []
            for i in range(5):
                c = case(f"ka{i}", 200, json.dumps(dict(GOOD, twi_to=f"client:bob{i}")).encode())
                conn.request("POST", c["pq"], c["body"], dict(c["headers"], **{"X-Twilio-Signature": c["sigs"][0]}))
                r = conn.getresponse(); r.read(); sts.append(r.status); sent.append(c["body"])
            conn.close()
            time.sleep(0.05)
            got = [b for _, _, b in Recorder.seen[before:]]
            ok = sts == [200] * 5 and got == sent
            failed[name] += 0 if ok else 1
            row.append(f"{'5x200+fwd ' + ('ok' if ok else 'FAIL'):>14}")
        print(f"{'keepalive-5-bodies':28} {200:4}  " + "  ".join(row))
        n = (len(cs) + 1) * len(peers)
        bad = sum(failed.values())
        print(f"{n - bad - len(known)} of {n} passed, {bad} failed")
        if known:
            print(f"known limitations (validating-peers/README.md), not counted: {len(known)}: " + " ".join(known))
        print("CHECK_RESULT " + " ".join(f"{k}={'pass' if v == 0 else 'FAIL'}" for k, v in failed.items()))
        return 1 if bad else 0
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        srv.shutdown()


if __name__ == "__main__":
    sys.exit(main())
