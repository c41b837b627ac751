#!/usr/bin/env python3
"""RSS per idle connection: opens N connections to a server, each sending a partial request head
(then going quiet), and reports the server's RSS growth per connection.

Usage: idle_rss.py PID HOST:PORT [N]   (PID: the process whose RSS is read; default N = 2000)
The caller starts and stops the server; this only connects, waits, reads /proc and closes.
"""
import socket
import sys
import time

PARTIAL = (
    b"POST /twilio/client-notify?bodySHA256=0123 HTTP/1.1\r\n"
    b"Host: voice.example.com\r\nContent-Type: application/json\r\n"
    b"X-Twilio-Signature: abcdefghijklmnopqrstuvwxyz0123456789ABC=\r\n"
)


def rss_kib(pid):
    total = 0
    # The server may be a master and workers (nginx): count the process and its children.
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    for p in pids:
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def main():
    pid = int(sys.argv[1])
    host, port = sys.argv[2].rsplit(":", 1)
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    # A few connections first, so one-time allocations (thread stacks, pools) are not counted.
    warm = [socket.create_connection((host, int(port))) for _ in range(20)]
    for s in warm:
        s.sendall(PARTIAL)
    time.sleep(1.0)
    before = rss_kib(pid)
    conns = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)))
        s.sendall(PARTIAL)
        conns.append(s)
    time.sleep(2.0)
    after = rss_kib(pid)
    print(f"connections={n} rss_before_kib={before} rss_after_kib={after} "
          f"per_connection_kib={(after - before) / n:.1f}")
    for s in conns + warm:
        s.close()


main()
