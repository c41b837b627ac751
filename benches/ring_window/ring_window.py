#!/usr/bin/env python3
"""Timeliness of buffered notifications after the handler recovers (issue 18, item 6).

From the user's point of view: N signed notifications are sent while the handler is down and
every one is answered `buffered`; then the handler comes back (or, with two instances on
PostgreSQL, the instance holding them is SIGKILLed or SIGSTOPped at that moment). The mock
handler records when each twi_message_id reaches it. Printed per scenario: first and last
delivered after t=0, how many were delivered, lost (not delivered within --bound), delivered
twice, the share delivered within --ring-window of their own arrival at the proxy, the longest
stretch after t=0 with no delivery, and what happened to a live notification sent 1 s after t=0
(forwarded, i.e. the handler's answer, or buffered).

Scenarios (select with --scenario 1,6):
  1  one instance, redb; handler back ~3 s after the last notification was buffered
  2  same, handler back ~15 s after
  3  same as 1 with `health_check: { interval: 1s }` on the upstream
  4  one instance, PostgreSQL
  5  two instances on one PostgreSQL schema, both alive; all traffic to A
  6  two instances on PostgreSQL; A (which buffered them) SIGKILLed as the handler comes back
  7  same, but A frozen with SIGSTOP (SIGCONT at the end, then stopped cleanly)

Usage:
  BIN=target/release/twilio-notify-proxy python3 benches/ring_window/ring_window.py \
      [--scenario 1,2,...] [--rounds N] [--json out.json] [--lease 7s] \
      [--extra-buffer-yaml 'key: value'] [--extra-upstream-yaml 'key: value'] ...

Python 3.11 standard library only. PostgreSQL (scenarios 4-7): 127.0.0.1:5432, trust auth, user
postgres, database test (override with --pg-url / $PG_URL); each scenario run gets a fresh schema,
dropped afterwards. All traffic stays on 127.0.0.1; every process started is killed at the end.
See benches/ring_window/README.md.
"""

import argparse
import asyncio
import base64
import ctypes
import hashlib
import hmac
import json
import os
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

TOKEN = "ring-window-bench-token"
TOKEN_ENV = "TNP_RINGBENCH_TOKEN"
DB_ENV = "TNP_RINGBENCH_DATABASE_URL"
PUBLIC_URL = "https://voice.example.com/twilio/client-notify"
PUBLIC_ORIGIN = "https://voice.example.com"
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SCHEMA_FILE = os.path.join(REPO, "conf", "schemas", "client-notification.schema.json")

HANDLER_BODY = b'{"handled":true}'
HANDLER_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(HANDLER_BODY)).encode()
    + b"\r\n\r\n"
    + HANDLER_BODY
)

SCENARIOS = {
    1: dict(title="1 instance, redb, handler back ~3 s after", backend="redb", instances=1,
            outage="short", health_check=False, event=None),
    2: dict(title="1 instance, redb, handler back ~15 s after", backend="redb", instances=1,
            outage="long", health_check=False, event=None),
    3: dict(title="1 instance, redb, ~3 s, health_check 1s", backend="redb", instances=1,
            outage="short", health_check=True, event=None),
    4: dict(title="1 instance, PostgreSQL, ~3 s", backend="postgres", instances=1,
            outage="short", health_check=False, event=None),
    5: dict(title="2 instances, PostgreSQL, both alive", backend="postgres", instances=2,
            outage="short", health_check=False, event=None),
    6: dict(title="2 instances, PostgreSQL, A SIGKILLed at t=0", backend="postgres", instances=2,
            outage="short", health_check=False, event="kill"),
    7: dict(title="2 instances, PostgreSQL, A SIGSTOPped at t=0", backend="postgres", instances=2,
            outage="short", health_check=False, event="stop"),
}


class BenchError(Exception):
    """The scenario could not be measured (set-up failed); the message says why."""


class PortLost(BenchError):
    """A port chosen free was taken meanwhile: the scenario is retried on new ports."""


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Signing (Twilio's rules for JSON bodies) and notifications
# ---------------------------------------------------------------------------------------------

def sign_json(token, public_url, body):
    """(the URL Twilio requests, X-Twilio-Signature): the URL plus bodySHA256, HMAC-SHA1 of it."""
    url = f"{public_url}{'&' if '?' in public_url else '?'}bodySHA256={hashlib.sha256(body).hexdigest()}"
    sig = base64.b64encode(hmac.new(token.encode(), url.encode(), hashlib.sha1).digest()).decode()
    return url, sig


def check_signing():
    # The vector of src/signature/tests.rs (sign_json_appends_body_hash_and_verifies).
    url, sig = sign_json("12345", "https://mycompany.com/myapp.php?foo=1&bar=2",
                         b'{"property": "value", "boolean": true}')
    assert url.endswith("bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"), url
    assert sig == "a9nBmqA0ju/hNViExpshrM61xv4=", sig


def notification(prefix=""):
    """(twi_message_id, raw HTTP/1.1 request) for a fresh notification, shaped as README's one."""
    msg_id = "WB" + prefix + uuid.uuid4().hex
    body = json.dumps({
        "twi_account_sid": "AC0123456789abcdef0123456789abcdef",
        "twi_bridge_token": "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.c2lnbmF0dXJl",
        "twi_call_sid": "CA" + uuid.uuid4().hex,
        "twi_from": "client:alice",
        "twi_message_id": msg_id,
        "twi_message_type": "twilio.voice.call",
        "twi_to": "client:bob",
    }, separators=(",", ":")).encode()
    url, sig = sign_json(TOKEN, PUBLIC_URL, body)
    head = (
        f"POST {url[len(PUBLIC_ORIGIN):]} HTTP/1.1\r\n"
        "Host: voice.example.com\r\n"
        "User-Agent: TwilioProxy/1.1\r\n"
        "Content-Type: application/json\r\n"
        f"I-Twilio-Idempotency-Token: {uuid.uuid4()}\r\n"
        f"X-Twilio-Signature: {sig}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return msg_id, head.encode() + body


def classify(status, body):
    if status is None:
        return "error"
    if status == 200 and body == HANDLER_BODY:
        return "forwarded"
    if status == 200 and b'"buffered"' in body:
        return "buffered"
    if status == 200 and b'"duplicate"' in body:
        return "duplicate"
    try:
        reason = json.loads(body).get("error", "")
    except Exception:
        reason = ""
    return f"{status}{':' + reason if reason else ''}"


# ---------------------------------------------------------------------------------------------
# HTTP/1.1 client (to the proxy)
# ---------------------------------------------------------------------------------------------

async def read_answer(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def send_all(port, requests, concurrency, timeout=20.0):
    """Send [(id, raw)] over `concurrency` keep-alive connections. Returns {id: (t_sent, t_answered,
    class)}; t_sent is the arrival at the proxy as the user sees it."""
    results = {}
    queue = list(reversed(requests))

    async def worker():
        reader = writer = None
        try:
            while queue:
                msg_id, raw = queue.pop()
                t_sent = time.monotonic()
                try:
                    if writer is None:
                        reader, writer = await asyncio.wait_for(
                            asyncio.open_connection("127.0.0.1", port), timeout)
                    writer.write(raw)
                    status, body = await asyncio.wait_for(read_answer(reader), timeout)
                    results[msg_id] = (t_sent, time.monotonic(), classify(status, body))
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError,
                        IndexError) as e:
                    results[msg_id] = (t_sent, time.monotonic(), f"error:{type(e).__name__}")
                    if writer is not None:
                        writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(requests))))))
    return results


# ---------------------------------------------------------------------------------------------
# The mock notification handler
# ---------------------------------------------------------------------------------------------

class HandlerProtocol(asyncio.Protocol):
    __slots__ = ("handler", "transport", "buf")

    def __init__(self, handler):
        self.handler = handler
        self.transport = None
        self.buf = bytearray()

    def connection_made(self, transport):
        self.transport = transport
        self.handler.transports.add(transport)

    def connection_lost(self, exc):
        self.handler.transports.discard(self.transport)

    def data_received(self, data):
        buf = self.buf
        buf += data
        out = []
        close = False
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = bytes(buf[:end]).lower()
            length = 0
            i = head.find(b"\r\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r\n", i + 17)
                length = int(head[i + 17:j if j >= 0 else len(head)].strip())
            elif b"\r\ntransfer-encoding:" in head:
                # Not used by the proxy towards its upstream (bodies are framed with Content-Length).
                self.transport.write(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n")
                self.transport.close()
                return
            total = end + 4 + length
            if len(buf) < total:
                break
            body = bytes(buf[end + 4:total])
            del buf[:total]
            now = time.monotonic()
            k = body.find(b'"twi_message_id":"')
            if k >= 0:
                k += 18
                self.handler.record(body[k:body.find(b'"', k)].decode("ascii", "replace"), now)
            else:
                self.handler.record("", now)
            out.append(HANDLER_ANSWER)
            if b"\r\nconnection: close" in head:
                close = True
                break
        if out:
            self.transport.write(b"".join(out))
        if close:
            self.transport.close()


class Handler:
    """Answers 200 with a tiny body; records (twi_message_id, monotonic time) of each request.
    down() closes the listening socket and every connection, so connects are refused."""

    def __init__(self, port):
        self.port = port
        self.server = None
        self.transports = set()
        self.seen = {}          # twi_message_id -> [monotonic times]
        self.count = 0

    def record(self, msg_id, now):
        self.count += 1
        if msg_id.startswith("WBselftest"):
            return
        times = self.seen.get(msg_id)
        if times is None:
            self.seen[msg_id] = [now]
        else:
            times.append(now)

    async def up(self):
        loop = asyncio.get_running_loop()
        last = None
        for _ in range(40):
            try:
                self.server = await loop.create_server(
                    lambda: HandlerProtocol(self), "127.0.0.1", self.port,
                    reuse_address=True, backlog=1024)
                return time.monotonic()
            except OSError as e:
                last = e
                await asyncio.sleep(0.025)
        raise PortLost(f"handler port {self.port} could not be bound again: {last}")

    async def down(self):
        if self.server is not None:
            self.server.close()
            self.server = None
        for t in list(self.transports):
            t.abort()
        self.transports.clear()
        await asyncio.sleep(0)


async def loadgen(port, seconds, concurrency):
    """Hidden mode (a separate process): plain keep-alive POSTs to the handler for `seconds`."""
    body = b'{"twi_message_id":"WBselftest"}'
    raw = (b"POST /n HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    done = 0
    stop_at = time.monotonic() + seconds

    async def worker():
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < stop_at:
            writer.write(raw)
            status, _ = await read_answer(reader)
            if status == 200:
                done += 1
        writer.close()

    t = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    print(json.dumps({"requests": done, "seconds": time.monotonic() - t}))


async def handler_selftest(workdir):
    port = pick_port()
    h = Handler(port)
    await h.up()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, os.path.abspath(__file__), "--_loadgen", str(port), "2", "16",
            stdout=asyncio.subprocess.PIPE)
        t = time.monotonic()
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        elapsed = time.monotonic() - t
        client = json.loads(out)
        rate = client["requests"] / client["seconds"]
        # Down and up again on the same port: connects are refused in between.
        await h.down()
        refused = False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            refused = True
        await h.up()
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return {"requests_per_s": round(rate), "handler_counted": h.count,
                "client_counted": client["requests"], "wall_s": round(elapsed, 2),
                "refused_while_down": refused}
    finally:
        await h.down()


# ---------------------------------------------------------------------------------------------
# Ports and processes
# ---------------------------------------------------------------------------------------------

def pick_port():
    """A free port below the kernel's ephemeral range, so no outgoing connection (the proxy's to
    PostgreSQL, ours to the proxy) takes the handler's port while the handler is down."""
    try:
        low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    hi = max(low - 1, 12000)
    for _ in range(200):
        port = random.randint(10000, hi)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise BenchError("no free port found")


PROCS = []


def _die_with_parent():
    # Linux: PR_SET_PDEATHSIG, so a proxy never outlives this script, even if it is SIGKILLed.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except Exception:
        pass


def spawn(args, env, log_path):
    logf = open(log_path, "wb")
    p = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                         start_new_session=True, preexec_fn=_die_with_parent)
    logf.close()
    PROCS.append(p)
    return p


def kill_all():
    for p in PROCS:
        if p.poll() is None:
            try:
                p.kill()
            except OSError:
                pass
    for p in PROCS:
        try:
            p.wait(timeout=5)
        except Exception:
            pass
    PROCS.clear()


async def stop_cleanly(p, timeout=15.0):
    if p.poll() is not None:
        return p.returncode
    try:
        p.send_signal(signal.SIGCONT)
        p.send_signal(signal.SIGTERM)
    except OSError:
        pass
    deadline = time.monotonic() + timeout
    while p.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if p.poll() is None:
        p.kill()
        p.wait()
        return "killed after SIGTERM timed out"
    return p.returncode


def http_get(port, path, timeout=3.0):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


METRIC_PREFIXES = (
    "notify_proxy_requests_total", "notify_proxy_redeliveries_total",
    "notify_proxy_buffer_lease_takeovers_total", "notify_proxy_circuit_state",
    "notify_proxy_dead_lettered_total", "notify_proxy_upstream_attempts_total",
    "notify_proxy_deduplicated_total",
)


def scrape(port):
    """The non-zero series of the metrics that say what the instance did."""
    try:
        _, text = http_get(port, "/metrics")
    except OSError:
        return None
    out = {}
    for line in text.decode().splitlines():
        if line.startswith(METRIC_PREFIXES):
            name, _, value = line.rpartition(" ")
            try:
                v = float(value)
            except ValueError:
                continue
            if v:
                out[name.replace("notify_proxy_", "")] = int(v) if v == int(v) else v
    return out


# ---------------------------------------------------------------------------------------------
# PostgreSQL: a minimal client (simple query protocol; trust, cleartext or md5 auth)
# ---------------------------------------------------------------------------------------------

class Pg:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        q = dict(urllib.parse.parse_qsl(u.query))
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 5432
        self.user = urllib.parse.unquote(u.username or "postgres")
        self.password = urllib.parse.unquote(u.password or "")
        self.database = (u.path or "/").lstrip("/") or q.get("dbname", self.user)

    def _recv(self, s, n):
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                raise BenchError("PostgreSQL closed the connection")
            data += chunk
        return data

    def _msg(self, s):
        kind = self._recv(s, 1)
        (length,) = struct.unpack("!i", self._recv(s, 4))
        return kind, self._recv(s, length - 4)

    @staticmethod
    def _error(body):
        fields = dict((f[:1].decode(), f[1:].decode("utf-8", "replace")) for f in body.split(b"\0") if f)
        return f"{fields.get('S', 'ERROR')}: {fields.get('M', '?')}"

    def query(self, sql):
        """Rows of the last result (tuples of str or None). Raises BenchError on an error."""
        with socket.create_connection((self.host, self.port), timeout=10) as s:
            params = f"user\0{self.user}\0database\0{self.database}\0\0".encode()
            s.sendall(struct.pack("!ii", len(params) + 8, 196608) + params)
            while True:
                kind, body = self._msg(s)
                if kind == b"R":
                    (code,) = struct.unpack("!i", body[:4])
                    if code == 3:
                        pw = self.password.encode() + b"\0"
                    elif code == 5:
                        inner = hashlib.md5(self.password.encode() + self.user.encode()).hexdigest()
                        pw = b"md5" + hashlib.md5(inner.encode() + body[4:8]).hexdigest().encode() + b"\0"
                    elif code == 0:
                        continue
                    else:
                        raise BenchError(f"PostgreSQL asks for auth method {code}: use trust, password or md5")
                    s.sendall(b"p" + struct.pack("!i", len(pw) + 4) + pw)
                elif kind == b"E":
                    raise BenchError(f"PostgreSQL: {self._error(body)}")
                elif kind == b"Z":
                    break
            q = sql.encode() + b"\0"
            s.sendall(b"Q" + struct.pack("!i", len(q) + 4) + q)
            rows, error = [], None
            while True:
                kind, body = self._msg(s)
                if kind == b"T":
                    rows = []
                elif kind == b"D":
                    (n,) = struct.unpack("!h", body[:2])
                    pos, row = 2, []
                    for _ in range(n):
                        (ln,) = struct.unpack("!i", body[pos:pos + 4])
                        pos += 4
                        if ln < 0:
                            row.append(None)
                        else:
                            row.append(body[pos:pos + ln].decode())
                            pos += ln
                    rows.append(tuple(row))
                elif kind == b"E":
                    error = self._error(body)
                elif kind == b"Z":
                    break
            s.sendall(b"X\0\0\0\4")
            if error:
                raise BenchError(f"PostgreSQL: {error}")
            return rows


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------

def parse_snippet(text):
    """Top-level `key: value` entries of a block-style YAML snippet, as {key: raw text after the
    colon, continuation lines included}. A snippet may be given as @FILE."""
    if text.startswith("@"):
        with open(text[1:]) as f:
            text = f.read()
    entries, key = {}, None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            if key is not None:
                entries[key] += "\n" + line
            continue
        if line[0] in " \t":
            if key is None:
                raise SystemExit(f"extra YAML: an indented line before any key: {line!r}")
            entries[key] += "\n" + line
            continue
        k, sep, rest = line.partition(":")
        if not sep or not k.strip():
            raise SystemExit(f"extra YAML: expected `key: value`, got {line!r}")
        key = k.strip()
        entries[key] = rest.strip() if rest.strip() else ""
    return entries


def emit(section, indent):
    out = []
    for k, v in section.items():
        first, *cont = v.split("\n")
        out.append(f"{indent}{k}: {first}".rstrip())
        out.extend(indent + c if c.strip() else "" for c in cont)
    return "\n".join(out)


def merged(base, snippets):
    section = dict(base)
    for s in snippets or []:
        section.update(parse_snippet(s))
    return section


def config_yaml(args, sc, listen_port, admin_port, handler_port, workdir, schema, name):
    server = {"threads": "1", "grace_period": "0s", "graceful_shutdown_timeout": "2s"}
    upstream = {"peers": f"[127.0.0.1:{handler_port}]", "connect_timeout": "2s",
                "response_timeout": args.response_timeout}
    if sc["health_check"]:
        upstream["health_check"] = "{ interval: 1s }"
    route = {"name": "client-notify", "path": "/twilio/client-notify", "public_url": PUBLIC_URL,
             "upstream": "handler", "body": "json", "schema": json.dumps(SCHEMA_FILE),
             "on_exhausted": "buffer", "buffer_ttl": args.ttl}
    if sc["backend"] == "redb":
        buffer = {"backend": "redb", "path": json.dumps(os.path.join(workdir, f"buffer-{name}.redb"))}
    else:
        buffer = {"backend": "postgres", "url": f"{{ env: {DB_ENV} }}", "schema": schema}
        if args.lease:
            buffer["lease"] = args.lease
    logging = {"level": args.log_level, "access_log": "true"}
    top = merged({}, args.extra_yaml)
    parts = [
        "# generated by benches/ring_window/ring_window.py",
        "server:", emit(merged(server, args.extra_server_yaml), "  "),
        "listeners:", f"  - address: 127.0.0.1:{listen_port}",
        "admin:", f"  address: 127.0.0.1:{admin_port}",
        "secrets:", f"  auth_token: {{ env: {TOKEN_ENV} }}",
        "upstreams:", "  handler:", emit(merged(upstream, args.extra_upstream_yaml), "    "),
        "routes:", "  - " + emit(merged(route, args.extra_route_yaml), "    ").lstrip(),
        "buffer:", emit(merged(buffer, args.extra_buffer_yaml), "  "),
        "logging:", emit(logging, "  "),
    ]
    if top:
        parts.append(emit(top, ""))
    return "\n".join(parts) + "\n"


class Instance:
    def __init__(self, name, proc, port, admin, log_path):
        self.name, self.proc, self.port, self.admin, self.log_path = name, proc, port, admin, log_path

    def log_tail(self, n=15):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""


async def start_instance(args, sc, name, handler_port, workdir, schema):
    for attempt in range(3):
        port, admin = pick_port(), pick_port()
        if port == admin or handler_port in (port, admin):
            continue
        cfg = os.path.join(workdir, f"proxy-{name}.yaml")
        with open(cfg, "w") as f:
            f.write(config_yaml(args, sc, port, admin, handler_port, workdir, schema, name))
        env = dict(os.environ)
        env[TOKEN_ENV] = TOKEN
        env[DB_ENV] = args.pg_url
        log_path = os.path.join(workdir, f"proxy-{name}.log")
        proc = spawn([args.bin, "run", "--config", cfg], env, log_path)
        inst = Instance(name, proc, port, admin, log_path)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                status, body = http_get(admin, "/readyz", timeout=1)
                ready = json.loads(body)
                buf = ready.get("buffer") or {}
                if buf.get("pending") is not None:
                    return inst
            except (OSError, ValueError):
                pass
            await asyncio.sleep(0.05)
        tail = inst.log_tail()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if "in use" in tail.lower() or "eaddrinuse" in tail.lower():
            log(f"  {name}: a port was taken meanwhile, retrying on new ports")
            continue
        raise BenchError(f"instance {name} did not become ready (exit {proc.returncode}); log {log_path}:\n{tail}")
    raise PortLost(f"instance {name}: ports kept being taken")


# ---------------------------------------------------------------------------------------------
# One scenario run
# ---------------------------------------------------------------------------------------------

async def run_scenario(args, n, rnd, root, pg):
    sc = SCENARIOS[n]
    for attempt in range(3):
        workdir = os.path.join(root, f"s{n}-r{rnd}-a{attempt}")
        os.makedirs(workdir)
        try:
            budget = (args.long_outage if sc["outage"] == "long" else args.short_outage) \
                + args.bound + args.settle + 120
            return await asyncio.wait_for(_run(args, n, sc, rnd, workdir, pg), budget)
        except PortLost as e:
            log(f"  {e}; retrying the scenario on new ports")
        except asyncio.TimeoutError:
            raise BenchError(f"scenario {n} exceeded its time budget")
    raise BenchError(f"scenario {n}: ports kept being lost")


async def _run(args, n, sc, rnd, workdir, pg):
    outage = args.long_outage if sc["outage"] == "long" else args.short_outage
    schema = None
    if sc["backend"] == "postgres":
        schema = f"ringbench_{os.getpid()}_{n}_{rnd}_{random.randint(0, 1 << 24):x}"
    handler = Handler(pick_port())
    instances = []
    notes = []
    try:
        await handler.up()
        if schema:
            pg.query(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        for name in "AB"[:sc["instances"]]:
            instances.append(await start_instance(args, sc, name, handler.port, workdir, schema))
        a = instances[0]
        live_target = instances[1] if sc["event"] else a

        # Warm-up with the handler up: the config, signing and forwarding work.
        warm = [notification("warm") for _ in range(10)]
        res = await send_all(a.port, warm, 4)
        bad = [c for (_, _, c) in res.values() if c != "forwarded"]
        if bad:
            raise BenchError(f"warm-up: {len(bad)} of 10 not forwarded ({bad[:3]}); log {a.log_path}:\n{a.log_tail()}")
        for mid, _ in warm:
            handler.seen.pop(mid, None)

        # The outage: N notifications, each must be answered `buffered`.
        await handler.down()
        batch = [notification() for _ in range(args.messages)]
        ids = [mid for mid, _ in batch]
        t = time.monotonic()
        sent = await send_all(a.port, batch, args.concurrency)
        send_s = time.monotonic() - t
        classes = {}
        for (_, _, c) in sent.values():
            classes[c] = classes.get(c, 0) + 1
        buffered = classes.get("buffered", 0)
        if buffered != args.messages:
            notes.append(f"answers while down: {classes}")
        t_last_buffered = max((ta for (_, ta, c) in sent.values() if c == "buffered"), default=time.monotonic())
        early = sum(1 for mid in ids if mid in handler.seen)
        if early:
            notes.append(f"{early} reached the handler while it was down?")
        log(f"  sent {args.messages} in {send_s:.2f} s: {classes}; handler back in {outage:g} s")

        # What each instance did during the outage (circuit, lease takeovers), read just before t=0.
        await asyncio.sleep(max(0.0, t_last_buffered + outage - 0.3 - time.monotonic()))
        metrics_before = {i.name: scrape(i.admin) for i in instances}
        await asyncio.sleep(max(0.0, t_last_buffered + outage - time.monotonic()))
        t_up = await handler.up()
        t0 = t_up
        if sc["event"] == "kill":
            a.proc.send_signal(signal.SIGKILL)
            t0 = time.monotonic()
        elif sc["event"] == "stop":
            a.proc.send_signal(signal.SIGSTOP)
            t0 = time.monotonic()

        live = {}

        async def live_notification():
            await asyncio.sleep(max(0.0, t0 + 1.0 - time.monotonic()))
            mid, raw = notification("live")
            live["id"] = mid
            r = await send_all(live_target.port, [(mid, raw)], 1)
            live["sent"], live["answered"], live["class"] = r[mid]

        live_task = asyncio.create_task(live_notification())

        deadline = t0 + args.bound
        while time.monotonic() < deadline:
            if all(mid in handler.seen for mid in ids) and live_task.done() \
                    and live.get("id") in handler.seen:
                break
            await asyncio.sleep(0.02)
        await live_task
        t_end = time.monotonic()

        if sc["event"] == "stop":
            a.proc.send_signal(signal.SIGCONT)
            notes.append("A continued (SIGCONT) after the last delivery; then watched "
                         f"{args.settle:g} s for copies")
        # Copies delivered late (a lease taken over, a frozen instance waking up) count as twice.
        await asyncio.sleep(args.settle)

        metrics = {i.name: scrape(i.admin) for i in instances if i.proc.poll() is None}
        pg_counts = None
        if schema:
            try:
                pending = pg.query(f"SELECT count(*) FROM {schema}.pending")[0][0]
                dead = pg.query(f"SELECT count(*) FROM {schema}.dead_letter")[0][0]
                pg_counts = {"pending": int(pending), "dead_letter": int(dead)}
            except BenchError as e:
                pg_counts = {"error": str(e)}
    finally:
        exits = {}
        for i in instances:
            exits[i.name] = await stop_cleanly(i.proc)
        await handler.down()
        if schema:
            try:
                pg.query(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            except (BenchError, OSError) as e:
                log(f"  could not drop schema {schema}: {e}")

    # Results, all relative to t0.
    firsts = {mid: handler.seen[mid][0] for mid in ids if mid in handler.seen}
    in_bound = {mid: ts for mid, ts in firsts.items() if ts <= deadline}
    deliveries = sorted(in_bound.values())
    twice = sum(1 for mid in ids if len(handler.seen.get(mid, ())) > 1)
    copies = sum(len(handler.seen.get(mid, ())) - 1 for mid in ids if len(handler.seen.get(mid, ())) > 1)
    ring = sum(1 for mid, ts in in_bound.items() if ts - sent[mid][0] <= args.ring_window)
    gaps = [b - a for a, b in zip([t0] + deliveries, deliveries)]
    per_second = {}
    for ts in deliveries:
        k = int(ts - t0) if ts >= t0 else -1
        per_second[k] = per_second.get(k, 0) + 1
    # Of the lost: how many the proxies moved to the dead-letter table (their TTL passed).
    if pg_counts and "dead_letter" in pg_counts:
        dead = pg_counts["dead_letter"]
    else:
        dead = sum(v for mt in metrics.values() if mt for k, v in mt.items()
                   if k.startswith("dead_lettered_total"))
    live_out = {"class": live.get("class")}
    if live.get("id") in handler.seen:
        live_out["delivered_s"] = round(handler.seen[live["id"]][0] - t0, 3)
    result = {
        "scenario": n, "round": rnd, "title": sc["title"], "outage_s": outage,
        "sent": args.messages, "answered": classes, "send_s": round(send_s, 3),
        "first_s": round(deliveries[0] - t0, 3) if deliveries else None,
        "last_s": round(deliveries[-1] - t0, 3) if deliveries else None,
        "delivered": len(in_bound), "lost": args.messages - len(in_bound), "dead_lettered": dead,
        "delivered_twice": twice, "extra_copies": copies,
        "ring_window_share": round(ring / args.messages, 4),
        "longest_silence_s": round(max(gaps), 3) if gaps else None,
        "deliveries_per_second": {str(k): v for k, v in sorted(per_second.items())},
        "live_at_1s": live_out, "live_target": live_target.name,
        "observed_s": round(t_end - t0, 3), "metrics_before_t0": metrics_before, "metrics": metrics, "pg": pg_counts,
        "exits": {k: str(v) for k, v in exits.items()}, "notes": notes, "workdir": workdir,
    }
    return result


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def fmt_s(v):
    return "–" if v is None else f"{v:.1f} s"


def spread(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt_s(med)
    return f"{fmt_s(med)} ({min(vals):.1f}–{max(vals):.1f})"


def lost_cell(rs):
    lost = sum(r["lost"] for r in rs)
    dead = sum(r.get("dead_lettered", 0) for r in rs)
    return f"{lost} ({dead} dead-lettered)" if lost or dead else "0"


def live_cell(kind, delivered, rounds):
    """`forwarded`, or `buffered ×2 (reached the handler at 6.7–6.9 s)`."""
    text = kind + (f" ×{len(delivered)}" if rounds > 1 else "")
    if kind == "forwarded":
        return text
    ts = [t for t in delivered if t is not None]
    if not ts:
        return text + " (never delivered)"
    lo, hi = f"{min(ts):.1f}", f"{max(ts):.1f}"
    at = lo if lo == hi else f"{lo}–{hi}"
    return f"{text} (at {at} s)"


def summarize(results, args):
    rows = []
    by = {}
    for r in results:
        by.setdefault(r["scenario"], []).append(r)
    for n in sorted(by):
        rs = by[n]
        lives = {}
        for r in rs:
            c = r["live_at_1s"]["class"] or "none"
            lives.setdefault(c, []).append(r["live_at_1s"].get("delivered_s"))
        shares = [r["ring_window_share"] * 100 for r in rs]
        rows.append({
            "scenario": n, "title": SCENARIOS[n]["title"], "rounds": len(rs),
            "first": spread([r["first_s"] for r in rs]),
            "last": spread([r["last_s"] for r in rs]),
            "delivered": " / ".join(str(r["delivered"]) for r in rs),
            "lost": lost_cell(rs),
            "twice": sum(r["delivered_twice"] for r in rs),
            "ring": (f"{min(shares):.0f} %" if min(shares) == max(shares)
                     else f"{min(shares):.0f}–{max(shares):.0f} %"),
            "silence": spread([r["longest_silence_s"] for r in rs]),
            "live": ", ".join(live_cell(k, v, len(rs)) for k, v in lives.items()),
        })
    head = ["#", "scenario", "rounds", "first delivered", "last delivered",
            f"delivered (of {args.messages})", "lost", "twice",
            f"within {args.ring_window:g} s of arrival", "longest silence", "live @ +1 s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(str(x) for x in (
            r["scenario"], r["title"], r["rounds"], r["first"], r["last"], r["delivered"],
            r["lost"], r["twice"], r["ring"], r["silence"], r["live"])) + " |")
    return rows, "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See benches/ring_window/README.md.")
    p.add_argument("--bin", default=os.environ.get("BIN"), help="release binary (default $BIN)")
    p.add_argument("--scenario", default="1,2,3,4,5,6,7", help="comma-separated subset, e.g. 1,6")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--messages", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=32, help="connections used to send the batch")
    p.add_argument("--short-outage", type=float, default=3.0, help="seconds after the last buffered")
    p.add_argument("--long-outage", type=float, default=15.0)
    p.add_argument("--bound", type=float, default=90.0,
                   help="seconds after t=0 after which an undelivered message counts as lost")
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds watched for late copies after the last delivery")
    p.add_argument("--ring-window", type=float, default=30.0)
    p.add_argument("--ttl", default="60s", help="routes[].buffer_ttl")
    p.add_argument("--lease", default=os.environ.get("LEASE"),
                   help="buffer.lease for PostgreSQL (default $LEASE; emitted only when given)")
    p.add_argument("--response-timeout", default="2s",
                   help="upstreams.handler.response_timeout (2s lets a lease of 7s validate)")
    p.add_argument("--pg-url", default=os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432/test"))
    p.add_argument("--log-level", default="info", help="logging.level of the proxies")
    for section in ("server", "upstream", "route", "buffer"):
        p.add_argument(f"--extra-{section}-yaml", action="append", metavar="YAML",
                       help=f"block-style `key: value` lines merged into the {section} section "
                            "(replacing a key the script emits); repeatable; @FILE reads a file")
    p.add_argument("--extra-yaml", action="append", metavar="YAML",
                   help="top-level sections appended to the config (e.g. 'dedupe: { ttl: 10m }')")
    p.add_argument("--json", metavar="PATH", help="write every round's results as JSON ('-': stdout)")
    p.add_argument("--keep", action="store_true", help="keep configs and proxy logs (else deleted)")
    p.add_argument("--skip-selftest", action="store_true")
    p.add_argument("--print-config", type=int, metavar="N",
                   help="print the config of scenario N's instance A and exit")
    args = p.parse_args(argv)
    try:
        args.scenarios = [int(x) for x in args.scenario.split(",") if x.strip()]
    except ValueError:
        p.error("--scenario: comma-separated numbers")
    if any(n not in SCENARIOS for n in args.scenarios):
        p.error(f"--scenario: choose from {sorted(SCENARIOS)}")
    if args.print_config is None:
        if not args.bin:
            p.error("give the binary: BIN=path or --bin path")
        args.bin = os.path.abspath(args.bin)
        if not os.access(args.bin, os.X_OK):
            p.error(f"{args.bin} is not an executable")
    return args


async def main_async(args):
    check_signing()
    started = time.monotonic()
    root = tempfile.mkdtemp(prefix="ring-window-")
    report = {"bin": args.bin, "command": " ".join(sys.argv), "lease": args.lease,
              "response_timeout": args.response_timeout, "ttl": args.ttl, "results": [],
              "errors": []}
    try:
        version = subprocess.run([args.bin, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout.strip()
    except Exception:
        version = "?"
    report["version"] = version
    log(f"binary {args.bin} ({version}); work dir {root}")
    if not args.skip_selftest:
        st = await handler_selftest(root)
        report["handler_selftest"] = st
        ok = st["requests_per_s"] >= 2000 and st["refused_while_down"]
        log(f"handler self-test: {st['requests_per_s']} requests/s over 16 keep-alive connections "
            f"(needs >= 2,000: {'ok' if st['requests_per_s'] >= 2000 else 'TOO SLOW'}); "
            f"connects refused while down: {st['refused_while_down']}")
        if not ok:
            raise BenchError("the mock handler failed its self-test")
    pg = None
    if any(SCENARIOS[n]["backend"] == "postgres" for n in args.scenarios):
        pg = Pg(args.pg_url)
        try:
            pg.query("SELECT 1")
        except (OSError, BenchError) as e:
            raise BenchError(f"PostgreSQL at {pg.host}:{pg.port} is not usable ({e}); "
                             "run only redb scenarios with --scenario 1,2,3")
    for rnd in range(1, args.rounds + 1):
        for n in args.scenarios:
            log(f"scenario {n} ({SCENARIOS[n]['title']}), round {rnd}/{args.rounds}")
            t = time.monotonic()
            try:
                r = await run_scenario(args, n, rnd, root, pg)
            except BenchError as e:
                log(f"  FAILED: {e}")
                report["errors"].append({"scenario": n, "round": rnd, "error": str(e)})
                continue
            r["wall_s"] = round(time.monotonic() - t, 1)
            report["results"].append(r)
            log(f"  first {fmt_s(r['first_s'])}, last {fmt_s(r['last_s'])}, delivered "
                f"{r['delivered']}/{r['sent']}, lost {r['lost']} (dead-lettered {r['dead_lettered']}), twice {r['delivered_twice']}, "
                f"ring {r['ring_window_share'] * 100:.0f} %, longest silence "
                f"{fmt_s(r['longest_silence_s'])}, live @+1s {r['live_at_1s']}; "
                f"{r['wall_s']} s")
            for name, mt in (r["metrics_before_t0"] or {}).items():
                keys = [k for k in (mt or {}) if k.startswith(("circuit_state", "buffer_lease", "redeliveries"))]
                log(f"  {name} just before t=0: " + ", ".join(f"{k}={mt[k]}" for k in keys))
            for name, mt in (r["metrics"] or {}).items():
                keys = [k for k in mt if k.startswith(("redeliveries", "buffer_lease", "requests_total"))]
                log(f"  {name}: " + ", ".join(f"{k}={mt[k]}" for k in keys))
            for note in r["notes"]:
                log(f"  note: {note}")
    rows, table = summarize(report["results"], args)
    report["summary"] = rows
    report["wall_s"] = round(time.monotonic() - started, 1)
    return report, table, root


def main(argv):
    args = parse_args(argv)
    if args.print_config is not None:
        sc = SCENARIOS[args.print_config]
        print(config_yaml(args, sc, 8080, 9090, 9000, "/tmp/ring-window",
                          "ringbench_example" if sc["backend"] == "postgres" else None, "A"), end="")
        return 0

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # Also when started in the background of a script, where SIGINT is inherited ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    root = None
    try:
        report, table, root = asyncio.run(main_async(args))
    except KeyboardInterrupt:
        log("interrupted: every process started is stopped")
        return 130
    except BenchError as e:
        log(f"error: {e}")
        return 1
    finally:
        kill_all()
    print()
    print(f"binary: {report['bin']} ({report['version']}); lease: {args.lease or 'not set'}; "
          f"response_timeout: {args.response_timeout}; buffer_ttl: {args.ttl}; "
          f"{args.messages} notifications; t=0: handler accepts again (6, 7: A killed/frozen)")
    if "handler_selftest" in report:
        print(f"mock handler: {report['handler_selftest']['requests_per_s']} requests/s (self-test)")
    print(table)
    for e in report["errors"]:
        print(f"scenario {e['scenario']} round {e['round']} FAILED: {e['error']}")
    print(f"total wall time: {report['wall_s']:.0f} s")
    if args.json:
        text = json.dumps(report, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    if not args.keep and root and not report["errors"]:
        import shutil
        shutil.rmtree(root, ignore_errors=True)
    elif root:
        log(f"configs and proxy logs kept in {root}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--_loadgen":
        asyncio.run(loadgen(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
