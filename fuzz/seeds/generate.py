#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target (fuzz/seeds/<target>/) from the test fixtures.

Seeds are small valid (and a few nearly valid) inputs; the fuzzer mutates from them. Rerun after
the fixtures change: `python3 fuzz/seeds/generate.py`. Formats are described at the top of each
target in fuzz/fuzz_targets/.
"""

import hashlib
import json
import pathlib
import shutil
import urllib.parse

SEEDS = pathlib.Path(__file__).resolve().parent
ROOT = SEEDS.parent.parent


def write(target, name, data):
    path = SEEDS / target / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def reset(target):
    shutil.rmtree(SEEDS / target, ignore_errors=True)
    (SEEDS / target).mkdir(parents=True)


SAMPLE = {
    "twi_account_sid": "AC0123456789abcdef0123456789abcdef",
    "twi_bridge_token": "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.c2lnbmF0dXJl",
    "twi_call_sid": "CA0123456789abcdef0123456789abcdef",
    "twi_from": "client:alice",
    "twi_message_id": "WB0123456789abcdef0123456789abcdef",
    "twi_message_type": "twilio.voice.call",
    "twi_to": "client:bob",
}


def signature_and_json():
    vectors = json.loads((ROOT / "tests/fixtures/signature-vectors.json").read_text())["vectors"]
    reset("signature")
    reset("json_schema")
    bodies = {}
    for v in vectors:
        if v["kind"] == "form":
            body = urllib.parse.urlencode([tuple(p) for p in v.get("params", [])])
        else:
            body = v.get("body", "")
            bodies[hashlib.sha256(body.encode()).hexdigest()[:12]] = body
        settings = v["headers"].get("X-Twilio-Webhooks-Signature-Settings", "")
        fields = [v["kind"], v["url"], v["secret"], v["signature"], settings, body]
        write("signature", v["name"], "\0".join(fields))
    mobile = dict(SAMPLE, twi_params="customer=42&tier=gold",
                  twi_stir_status="TN-Validation-Passed-A", twi_answer_timeout="30")
    bodies["sample"] = json.dumps(SAMPLE)
    bodies["mobile"] = json.dumps(mobile)
    bodies["duplicate_key"] = json.dumps(SAMPLE)[:-1] + ', "twi_account_sid": "AC' + "f" * 32 + '"}'
    bodies["wrong_type"] = json.dumps(dict(SAMPLE, twi_call_sid=12))
    bodies["nested"] = json.dumps(dict(SAMPLE, twi_x={"a": [1, 2.5e3, None, True, "\u00e9"]}))
    for name, body in bodies.items():
        write("json_schema", name, body)


WIRE = [
    b"HTTP/1.1 404 Not Found\r\nX-Handler: v1\r\nContent-Length: 5\r\n\r\nnope!",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
    b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\nuntil close",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /n?bodySHA256=ab HTTP/1.1\r\nHost: voice.example.com\r\nX-Twilio-Signature: abc=\r\n"
    b"connection: keep-alive, X-Drop\r\nX-Drop: 1\r\nContent-Length: 2\r\nX-Keep:  spaced value \r\n\r\n{}",
    b"POST /n HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nabc",
]


def wire():
    reset("wire")
    for i, bytes_ in enumerate(WIRE):
        # First byte: how the answer is cut into reads (see the target).
        write("wire", f"case{i}", bytes([7 + i]) + b"\0" + bytes_)
    # Found by the 10M run: an answer with 100 header lines (the reader's most), delimited by
    # the close, is sent on with Content-Length (and Connection) added.
    many = b"HTTP/1.1 404 Not Found\r\n" + b"".join(
        b"X-H%d: v\r\n" % n for n in range(100)
    ) + b"\r\nabc"
    write("wire", "answer-with-100-headers", bytes([7]) + b"\0" + many)


def config():
    reset("config")
    example = (ROOT / "conf/twilio-notify-proxy.yaml").read_text()
    write("config", "example", example)
    minimal = """listeners:
  - address: 127.0.0.1:8080
admin:
  address: 127.0.0.1:9090
secrets:
  auth_token: { env: TWILIO_AUTH_TOKEN }
upstreams:
  handler:
    peers: [127.0.0.1:9000]
routes:
  - path: /notify
    public_url: https://voice.example.com/notify
    upstream: handler
    body: json
    schema: schemas/client-notification.schema.json
"""
    write("config", "minimal", minimal)
    write("config", "buffered", minimal
          + "    on_exhausted: buffer\n    buffered_status: 202\n    buffer_ttl: 30s\n"
          + "buffer: { path: data/b.redb, max_messages: 10, redelivery_backoff: "
          + "{ initial: 1s, max: 584542046090y, jitter: 1.0 } }\n"
          + "dedupe: { key: message_id, ttl: 1m, capacity: 10 }\n")
    write("config", "form_report", minimal.replace("body: json\n    schema: schemas/client-notification.schema.json\n",
                                                  "body: form\n    schema_mode: report\n")
          + "    retry: { max_attempts: 5, deadline: 9s, backoff: { initial: 1ms, max: 10s, jitter: 0 }, "
          + "on_status: [500, 599] }\n"
          + "trusted_proxies: [10.0.0.0/8, '::1']\nallowed_accounts: [AC0123456789abcdef0123456789abcdef]\n"
          + "logging: { level: 'warn,access=info', format: json, access_log: false }\n")
    write("config", "shared_keys", minimal.replace(
        "  auth_token: { env: TWILIO_AUTH_TOKEN }\n",
        "  auth_token: { env: TWILIO_AUTH_TOKEN }\n  secondary_auth_token: { env: TWILIO_AUTH_TOKEN }\n"
        "  accounts:\n    AC00000000000000000000000000000001: { env: TWILIO_AUTH_TOKEN }\n"
        "  shared_keys:\n    k1: { file: schemas/client-notification.schema.json }\n")
          .replace("https://voice.example.com/notify", "http://[::1]:8443/notify"))
    write("config", "no_public_url", minimal.replace("    public_url: https://voice.example.com/notify\n", "")
          + "server: { threads: 1, work_stealing: true, grace_period: 0s, graceful_shutdown_timeout: 1s }\n")
    write("config", "twilio_errors", minimal
          + "  - kind: twilio_errors\n    name: twilio-errors\n    path: /twilio/errors\n"
          + "    allowed_hosts: [voice.example.com]\n"
          + "twilio_errors:\n  remember: 5m\n  max_calls: 1000\n")


if __name__ == "__main__":
    signature_and_json()
    wire()
    config()
