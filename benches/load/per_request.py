#!/usr/bin/env python3
"""Instructions and heap allocations per request of the real proxy binary, under callgrind.

Unlike requests/s or CPU time, these counts do not depend on a quiet machine: the same binary and
the same requests give the same numbers within a fraction of a percent whatever else runs.

Starts the bench's nginx "handler" (upstream.nginx.conf.tmpl) and the proxy with the bench config
(proxy.yaml.tmpl: full validation, dedupe by a fresh idempotency token per request) under
`valgrind --tool=callgrind`, sends WARMUP signed notifications over CONNECTIONS keep-alive
connections, zeroes the counters (`callgrind_control -z`), sends REQUESTS more, dumps the counters
(`callgrind_control -d`), and prints per request:

  * instructions (Ir) of the whole process (all threads);
  * heap allocations: calls of mimalloc's `mi_malloc_aligned` / `mi_zalloc_aligned` (Rust's
    `alloc`) and `mi_realloc_aligned` (Rust's `realloc`), the entry points of the `mimalloc`
    crate's global allocator;
  * with --top K, the K functions with the most inclusive and self instructions per request, and
    the callers of the allocator with their allocations per request (where the allocations go).

  * clock reads: calls of std's `Timespec::now` (every `Instant::now`, the proxy's, tokio's and
    Pingora's), which callgrind counts at a few instructions each but which cost ~30 ns each here
    (vDSO `clock_gettime`).

valgrind does not offer the CPU's SHA extensions, so SHA-1 and SHA-256 run their portable code under
callgrind: the instructions inside `checks::check_request` are not what runs natively (criterion's
`cargo bench --bench hot_path -- check_request` measures that), hence the count outside it.

Every answer must be 200 from the handler; the proxy's `forwarded_2xx` counter must have grown by
WARMUP + REQUESTS (read after the dump, so the scrape is not counted).

With --twilio-errors the config also has a `kind: twilio_errors` route, so every answer is
remembered for reconciling Twilio's 13807s (what that costs a request).

Usage: benches/load/per_request.py [--bin target/release/twilio-notify-proxy] [--requests 20000]
       [--warmup 2000] [--connections 32] [--top 25] [--callers REGEX] [--tree REGEX] [--keep]
       [--twilio-errors]
       benches/load/per_request.py --file <kept callgrind.out.N> --requests N --top 25
"""

import argparse
import asyncio
import base64
import collections
import glob
import hashlib
import hmac
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
TOKEN = "bench-auth-token-0123456789abcdef"
PUBLIC_URL = "https://voice.example.com/twilio/client-notify"
BODY = (
    b'{"twi_account_sid":"AC0123456789abcdef0123456789abcdef","twi_bridge_token":'
    b'"eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.c2lnbmF0dXJl","twi_call_sid":'
    b'"CA0123456789abcdef0123456789abcdef","twi_from":"client:alice","twi_message_id":'
    b'"WB0123456789abcdef0123456789abcdef","twi_message_type":"twilio.voice.call",'
    b'"twi_to":"client:bob"}'
)
ALLOC = ("mi_malloc_aligned", "mi_zalloc_aligned")
REALLOC = ("mi_realloc_aligned",)


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def render(template, out, **values):
    text = open(os.path.join(HERE, template)).read()
    for k, v in values.items():
        text = text.replace("@%s@" % k, str(v))
    if re.search(r"@[A-Z_]+@", text):
        sys.exit("unfilled placeholder in %s" % out)
    with open(out, "w") as f:
        f.write(text)


def signed_target():
    url = PUBLIC_URL + "?bodySHA256=" + hashlib.sha256(BODY).hexdigest()
    sig = base64.b64encode(hmac.new(TOKEN.encode(), url.encode(), hashlib.sha1).digest())
    return url[len("https://voice.example.com"):], sig.decode()


async def send(port, target, signature, count, connections, prefix):
    """`count` requests over `connections` keep-alive connections; each answer must be 200."""
    next_id = iter(range(count))

    async def one_connection():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in next_id:
            head = (
                "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                "X-Twilio-Signature: %s\r\nI-Twilio-Idempotency-Token: %s-%d\r\n"
                "Content-Length: %d\r\n\r\n" % (target, port, signature, prefix, i, len(BODY))
            )
            writer.write(head.encode() + BODY)
            status_line = await reader.readline()
            length = None
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length or 0)
            if not status_line.startswith(b"HTTP/1.1 200"):
                raise SystemExit("unexpected answer: %r %r" % (status_line, body[:200]))
        writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))


def wait_until(what, check, within):
    end = time.time() + within
    while time.time() < end:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit("timed out waiting for " + what)


def http_ok(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status == 200


def forwarded_2xx(admin_port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin_port, timeout=30) as r:
        text = r.read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith("notify_proxy_requests_total{") and 'outcome="forwarded_2xx"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def parse_callgrind(path):
    """Totals, self and inclusive Ir per function, and calls into the allocator by caller."""
    names = {}
    self_ir = collections.Counter()
    incl_ir = collections.Counter()
    pair_calls = collections.Counter()
    calls = collections.Counter()
    total = 0
    fn = None
    cfn = None
    pending_call = None
    positions = ["line"]

    def name_of(spec):
        m = re.match(r"\((\d+)\)(?: (.*))?", spec)
        if not m:
            return spec
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), spec)

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if line.startswith("positions:"):
                positions = line.split()[1:]
                continue
            if line.startswith("fn="):
                fn = name_of(line[3:])
                continue
            if line.startswith("cfn="):
                cfn = name_of(line[4:])
                continue
            if line.startswith("calls="):
                pending_call = int(line[6:].split()[0])
                continue
            if line.startswith("totals:") or line.startswith("summary:"):
                total = max(total, int(line.split()[1]))
                continue
            if line[0].isdigit() or line[0] in "+-*":
                parts = line.split()
                if len(parts) <= len(positions):
                    continue
                ir = int(parts[len(positions)])
                if pending_call is not None:
                    incl_ir[(fn, cfn)] += ir
                    calls[cfn] += pending_call
                    pair_calls[(fn, cfn)] += pending_call
                    pending_call = None
                else:
                    self_ir[fn] += ir
                continue
    inclusive = collections.Counter(self_ir)
    for (caller, callee), ir in incl_ir.items():
        if caller != callee:
            inclusive[caller] += ir
    return total, self_ir, inclusive, calls, pair_calls, incl_ir


def print_tree(fn, cost, calls, n, pair_calls, pair_ir, depth, seen, floor):
    """`fn` and, below it, what its callees cost when called from it (not from elsewhere)."""
    print("  %s%8.0f  %5.2fx  %s" % ("  " * depth, cost / n, calls / n, fn[:120]))
    if depth >= 4 or fn in seen:
        return
    callees = [(k[1], c) for k, c in pair_calls.items() if k[0] == fn and k[1] != fn]
    for callee, c in sorted(callees, key=lambda kc: -pair_ir[(fn, kc[0])]):
        if pair_ir[(fn, callee)] / n >= floor:
            print_tree(callee, pair_ir[(fn, callee)], c, n, pair_calls, pair_ir, depth + 1, seen | {fn}, floor)


def report(path, n, top, callers, trees=()):
    total, self_ir, inclusive, calls, pair_calls, pair_ir = parse_callgrind(path)
    allocs = sum(calls[f] for f in ALLOC)
    reallocs = sum(calls[f] for f in REALLOC)
    checks = inclusive["twilio_notify_proxy::checks::check_request"]
    print("instructions per request: %.0f (%.0f outside checks::check_request, %.0f in it)"
          % (total / n, (total - checks) / n, checks / n))
    print("allocations per request: %.2f (+ %.2f reallocations)" % (allocs / n, reallocs / n))
    print("clock reads per request: %.2f (Timespec::now)" % (calls["<std::sys::pal::unix::time::Timespec>::now"] / n))
    if top:
        print("\ntop functions, inclusive Ir per request:")
        for f, ir in inclusive.most_common(top):
            print("  %9.0f  %s" % (ir / n, f[:150]))
        print("\ntop functions, self Ir per request:")
        for f, ir in self_ir.most_common(top):
            print("  %9.0f  %s" % (ir / n, f[:150]))
        print("\nallocations per request, by caller:")
        by_caller = collections.Counter({k: c for k, c in pair_calls.items() if k[1] in ALLOC + REALLOC})
        for (caller, callee), c in by_caller.most_common(top):
            if c / n >= 0.05:
                print("  %6.2f  %s -> %s" % (c / n, caller[:140], callee))
    for pattern in trees or []:
        for fn in [f for f in inclusive if re.search(pattern, f)][:3]:
            print("\ncall tree of %s: instructions and calls per request, each callee as called"
                  " from its parent (>= 100 instructions shown)" % fn)
            print_tree(fn, inclusive[fn], n, n, pair_calls, pair_ir, 0, frozenset(), 100)
    for pattern in callers or []:
        print("\ncallers of /%s/: calls and inclusive Ir per request" % pattern)
        rows = [(k, c) for k, c in pair_calls.items() if re.search(pattern, k[1])]
        for (caller, callee), c in sorted(rows, key=lambda r: -r[1]):
            if c / n >= 0.05:
                print("  %6.2f %8.0f  %s -> %s" % (c / n, pair_ir[(caller, callee)] / n, caller[:120], callee[:80]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(REPO, "target/release/twilio-notify-proxy"))
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--warmup", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--top", type=int, default=0)
    ap.add_argument("--callers", action="append", metavar="REGEX",
                    help="also list the callers of the functions matching REGEX (repeatable)")
    ap.add_argument("--tree", action="append", metavar="REGEX",
                    help="also print the call tree under the functions matching REGEX (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (callgrind output)")
    ap.add_argument("--twilio-errors", action="store_true",
                    help="add a twilio_errors route: every answer is then remembered for reconciling")
    ap.add_argument("--file", help="report on a kept callgrind output (with --requests) instead of running")
    args = ap.parse_args()
    if args.file:
        report(args.file, args.requests, args.top, args.callers, args.tree)
        return
    for tool in ("valgrind", "callgrind_control", "nginx"):
        if not shutil.which(tool):
            sys.exit("required tool not found: " + tool)

    tmp = tempfile.mkdtemp(prefix="notify-proxy-per-request.")
    up_port, proxy_port, admin_port = free_ports(3)
    procs = []
    try:
        up_dir = os.path.join(tmp, "upstream")
        os.makedirs(up_dir)
        user = ""
        if os.getuid() == 0:
            import grp
            import pwd
            user = "user %s %s;" % (pwd.getpwuid(0).pw_name, grp.getgrgid(0).gr_name)
        render("upstream.nginx.conf.tmpl", os.path.join(up_dir, "nginx.conf"),
               PREFIX=up_dir, PORT=up_port, USER_DIRECTIVE=user)
        procs.append(subprocess.Popen(
            ["nginx", "-p", up_dir, "-c", os.path.join(up_dir, "nginx.conf"), "-e", os.path.join(up_dir, "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        cfg = os.path.join(tmp, "proxy.yaml")
        render("proxy.yaml.tmpl", cfg, PROXY_PORT=proxy_port, ADMIN_PORT=admin_port, UP_PORT=up_port,
               PUBLIC_URL=PUBLIC_URL, SCHEMA=os.path.join(REPO, "conf/schemas/client-notification.schema.json"),
               ACCESS_LOG="false")
        if args.twilio_errors:
            with open(cfg, "a") as f:
                f.write("  - kind: twilio_errors\n    name: twilio-errors\n"
                        "    public_url: https://voice.example.com/twilio/errors\n")
        out = os.path.join(tmp, "callgrind.out")
        env = dict(os.environ, TWILIO_AUTH_TOKEN=TOKEN)
        proxy = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, args.bin, "run", "--config", cfg],
            env=env, stdout=open(os.path.join(tmp, "proxy.log"), "w"), stderr=subprocess.STDOUT)
        procs.append(proxy)
        wait_until("the proxy's /healthz", lambda: http_ok("http://127.0.0.1:%d/healthz" % admin_port), 120)
        target, signature = signed_target()
        prefix = "count-%d" % os.getpid()
        asyncio.run(send(proxy_port, target, signature, args.warmup, args.connections, prefix + "-w"))
        subprocess.run(["callgrind_control", "-z", str(proxy.pid)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.time()
        asyncio.run(send(proxy_port, target, signature, args.requests, args.connections, prefix))
        took = time.time() - started
        before = set(glob.glob(out + "*"))
        subprocess.run(["callgrind_control", "-d", str(proxy.pid)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dumps = sorted(set(glob.glob(out + "*")) - before) or sorted(glob.glob(out + ".*"))
        forwarded = forwarded_2xx(admin_port)
        if forwarded != args.warmup + args.requests:
            sys.exit("forwarded_2xx is %d, expected %d" % (forwarded, args.warmup + args.requests))
        print("binary: %s" % args.bin)
        print("requests: %d measured after %d warm-up, %d connections, %.1f s under callgrind"
              % (args.requests, args.warmup, args.connections, took))
        report(dumps[-1], args.requests, args.top, args.callers, args.tree)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if args.keep:
            print("temp dir kept: " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
