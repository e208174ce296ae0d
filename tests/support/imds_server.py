#!/usr/bin/env python3
"""An EC2 instance metadata service (IMDSv2 only) for many simulated hosts.

Purpose
-------
kplink-agent reads its identity from IMDSv2 through the aws-config Rust IMDS
client. Tests point that client at this server with
``AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:PORT``. One process
simulates many hosts. Each host has its own ``ThreadingHTTPServer`` on its own
port (port 0 is bound, so the OS picks it), running in its own thread. A
separate control port manages the hosts.

The metadata protocol (per host)
--------------------------------
* ``PUT /latest/api/token`` needs the header
  ``X-aws-ec2-metadata-token-ttl-seconds: N`` with N in 1..21600. A missing or
  invalid header gives 400. A request that carries ``X-Forwarded-For`` gives
  403, as on real EC2. The reply is 200: the body is a random token, and the
  header ``X-aws-ec2-metadata-token-ttl-seconds: N`` is echoed (aws-config
  rejects a token response without it).
* Every GET needs a valid, unexpired token in ``X-aws-ec2-metadata-token``.
  Without one the answer is 401. IMDSv1 is never served.
* Paths (GET, ``text/plain``)::

    /latest/meta-data/instance-id
    /latest/meta-data/placement/region
    /latest/meta-data/placement/availability-zone
    /latest/meta-data/placement/availability-zone-id
    /latest/meta-data/local-ipv4
    /latest/meta-data/mac
    /latest/meta-data/network/interfaces/macs/            (listing)
    /latest/meta-data/network/interfaces/macs/<mac>/vpc-id
    /latest/meta-data/network/interfaces/macs/<mac>/subnet-id
    /latest/dynamic/instance-identity/document           (JSON)
    /latest/meta-data/tags/instance                      (newline-separated keys)
    /latest/meta-data/tags/instance/<key>                (URL-decoded; may contain ':')
    /latest/meta-data/autoscaling/target-lifecycle-state (when set)
    /latest/meta-data/spot/instance-action               (when set; JSON)
    /latest/meta-data/                                   (listing)

  If a host's ``tags_in_metadata`` is false, every ``tags/instance...`` path
  answers 404. That is what EC2 does when instance tags are not enabled in
  the instance metadata. An unknown path or tag key also answers 404. Any
  method other than GET/PUT gets 405.
* Instance lifecycle: ``autoscaling/target-lifecycle-state`` answers the
  host's ``target_lifecycle_state`` (e.g. ``InService``, ``Terminated``,
  ``Warmed:Stopped``) and ``spot/instance-action`` its
  ``spot_instance_action``: an object is served as JSON (EC2's form,
  ``{"action": "terminate", "time": "2024-05-01T12:00:00Z"}``), a string as
  is (to serve a malformed notice). Both default to null, which answers 404
  as EC2 does outside an Auto Scaling group and before any Spot interruption.
* Per-host fault modes (``mode``):

  ``ok``            normal behaviour (default)
  ``down``          the host's HTTP server is stopped, open keep-alive
                    connections are shut down, and the port is closed
                    (connect fails with ECONNREFUSED). Any other mode
                    restarts the server on the same port.
  ``token_401``     ``PUT /latest/api/token`` answers 401 every time
  ``get_401``       tokens are issued, but every GET answers 401
  ``500``           every request answers 500
  ``slow``          each response waits ``slow_ms``. With
                    ``slow_phase="body"`` (default) the status line and headers
                    are sent first and the wait comes before the body; with
                    ``slow_phase="headers"`` nothing is sent until the wait ends.
  ``oversized``     ``instance-id`` answers a 2 MiB body
  ``non_utf8``      ``instance-id`` answers the bytes ``b'\\xff\\xfe\\x00i-bad'``
  ``no_ttl_header`` token responses lack the TTL header (the token stays valid)

* Every request to a host is counted by path, including rejected ones.

Control API (JSON, on its own port; its URL is printed first)
--------------------------------------------------------------
``POST /hosts``
    ``{"name": "host-1", "instance_id": "i-...", "region": "us-east-1",
    "az": "us-east-1b", "az_id": "use1-az1", "private_ip": "10.0.1.10",
    "mac": "0e:...", "vpc_id": "vpc-...", "subnet_id": "subnet-...",
    "tags": {"kafka:broker-id": "1"}, "tags_in_metadata": true}``.
    Starts the host's server and returns ``{"name": ..., "endpoint":
    "http://127.0.0.1:PORT"}`` (201). Posting a name that already exists
    updates that host's identity and keeps its port (200). Optional fields:
    ``account_id``, ``instance_type``, ``image_id``, ``mode``, ``slow_ms``,
    ``slow_phase``, ``target_lifecycle_state``, ``spot_instance_action``.
``GET /hosts``
    All hosts.
``GET /hosts/<name>``
    The host's state (identity, mode, endpoint).
``PATCH /hosts/<name>``
    Any subset of the fields above, for example ``{"mode": "slow",
    "slow_ms": 2000}`` or ``{"target_lifecycle_state": "Terminated"}``
    (null makes the item answer 404 again).
``GET /hosts/<name>/requests``
    ``{"count": n, "by_path": {"/latest/api/token": 1, ...}}``
``DELETE /hosts/<name>/requests``
    Resets the counters.
``DELETE /hosts/<name>``
    Stops the host and forgets it.
``GET /health``
    ``{"ok": true}``

CLI
---
``imds_server.py [--control-port 0] [--ready-file PATH] [--quiet]``

The first stdout line is ``READY http://127.0.0.1:CONTROLPORT`` (flushed).
The same URL is written to ``--ready-file`` if given. The server runs until
SIGTERM or SIGINT, then stops every host and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

MODES = ("ok", "down", "token_401", "get_401", "500", "slow", "oversized", "non_utf8", "no_ttl_header")
IDENTITY_FIELDS = (
    "instance_id",
    "region",
    "az",
    "az_id",
    "private_ip",
    "mac",
    "vpc_id",
    "subnet_id",
    "account_id",
    "instance_type",
    "image_id",
)
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
MAX_TTL = 21600
OVERSIZED_BYTES = 2 * 1024 * 1024
NON_UTF8_BODY = b"\xff\xfe\x00i-bad"
MAX_BODY = 1024 * 1024  # control API request bodies
QUIET = False


def _log(msg: str) -> None:
    if not QUIET:
        print(msg, file=sys.stderr, flush=True)


class Host:
    """The identity, mode, tokens and counters of one simulated host."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.identity: dict[str, Any] = {
            "instance_id": "i-" + secrets.token_hex(9)[:17],
            "region": "us-east-1",
            "az": "us-east-1a",
            "az_id": "use1-az6",
            "private_ip": "10.0.1.10",
            "mac": "0e:00:00:00:00:01",
            "vpc_id": "vpc-00000000",
            "subnet_id": "subnet-00000000",
            "account_id": "123456789012",
            "instance_type": "t3.large",
            "image_id": "ami-00000000",
        }
        self.tags: dict[str, str] = {}
        self.tags_in_metadata = True
        self.target_lifecycle_state: str | None = None
        self.spot_instance_action: str | None = None  # the body as served
        self.mode = "ok"
        self.slow_ms = 2000
        self.slow_phase = "body"
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.by_path: dict[str, int] = {}
        self.count = 0
        self.port = 0
        self.server: HostHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()  # wakes sleeping "slow" handlers on shutdown

    # -- state updates (caller validates) ---------------------------------
    def apply(self, fields: dict[str, Any]) -> None:
        with self.lock:
            for key in IDENTITY_FIELDS:
                if key in fields and fields[key] is not None:
                    self.identity[key] = str(fields[key])
            if "tags" in fields:
                self.tags = {str(k): str(v) for k, v in (fields["tags"] or {}).items()}
            if "tags_in_metadata" in fields:
                self.tags_in_metadata = bool(fields["tags_in_metadata"])
            if "target_lifecycle_state" in fields:
                state = fields["target_lifecycle_state"]
                self.target_lifecycle_state = None if state is None else str(state)
            if "spot_instance_action" in fields:
                action = fields["spot_instance_action"]
                if action is None or isinstance(action, str):
                    self.spot_instance_action = action
                else:
                    self.spot_instance_action = json.dumps(action)
            if "slow_ms" in fields:
                self.slow_ms = int(fields["slow_ms"])
            if "slow_phase" in fields:
                self.slow_phase = str(fields["slow_phase"])

    def record(self, path: str) -> None:
        with self.lock:
            self.count += 1
            self.by_path[path] = self.by_path.get(path, 0) + 1

    def issue_token(self, ttl: int) -> str:
        token = secrets.token_urlsafe(42)
        now = time.monotonic()
        with self.lock:
            # prune expired tokens so the dict stays bounded
            for tok in [t for t, exp in self.tokens.items() if exp <= now]:
                del self.tokens[tok]
            self.tokens[token] = now + ttl
        return token

    def token_valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self.lock:
            exp = self.tokens.get(token)
        return exp is not None and exp > time.monotonic()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def describe(self) -> dict[str, Any]:
        with self.lock:
            return {
                "name": self.name,
                "endpoint": self.endpoint,
                "port": self.port,
                "mode": self.mode,
                "slow_ms": self.slow_ms,
                "slow_phase": self.slow_phase,
                "running": self.server is not None,
                "tags": dict(self.tags),
                "tags_in_metadata": self.tags_in_metadata,
                "target_lifecycle_state": self.target_lifecycle_state,
                "spot_instance_action": self.spot_instance_action,
                **self.identity,
            }

    # -- metadata content -----------------------------------------------
    def lookup(self, path: str) -> tuple[int, bytes]:
        """The answer to a GET (after the token check): (status, body)."""
        with self.lock:
            ident = dict(self.identity)
            tags = dict(self.tags)
            tags_enabled = self.tags_in_metadata
            target_state = self.target_lifecycle_state
            spot_action = self.spot_instance_action
            mode = self.mode
        mac = ident["mac"]
        md = "/latest/meta-data/"
        if path == md + "instance-id":
            if mode == "oversized":
                return 200, b"i-" + b"0" * (OVERSIZED_BYTES - 2)
            if mode == "non_utf8":
                return 200, NON_UTF8_BODY
            return 200, ident["instance_id"].encode()
        simple = {
            md + "placement/region": ident["region"],
            md + "placement/availability-zone": ident["az"],
            md + "placement/availability-zone-id": ident["az_id"],
            md + "local-ipv4": ident["private_ip"],
            md + "mac": mac,
            md + "instance-type": ident["instance_type"],
            md + "ami-id": ident["image_id"],
            md + "network/interfaces/macs/": mac + "/",
            md + "network/interfaces/macs": mac + "/",
            md + f"network/interfaces/macs/{mac}/vpc-id": ident["vpc_id"],
            md + f"network/interfaces/macs/{mac}/subnet-id": ident["subnet_id"],
            md + f"network/interfaces/macs/{mac}/local-ipv4s": ident["private_ip"],
            md + f"network/interfaces/macs/{mac}/mac": mac,
            md + "placement/": "availability-zone\navailability-zone-id\nregion",
        }
        if path in simple:
            return 200, simple[path].encode()
        lifecycle = {
            md + "autoscaling/target-lifecycle-state": target_state,
            md + "spot/instance-action": spot_action,
        }
        if path in lifecycle:
            value = lifecycle[path]
            return (404, b"") if value is None else (200, value.encode())
        if path in (md + "autoscaling/", md + "autoscaling"):
            return (404, b"") if target_state is None else (200, b"target-lifecycle-state")
        if path in (md + "spot/", md + "spot"):
            return (404, b"") if spot_action is None else (200, b"instance-action")
        if path in (md, md.rstrip("/")):
            entries = ["ami-id", "instance-id", "instance-type", "local-ipv4", "mac", "network/", "placement/"]
            if target_state is not None:
                entries.append("autoscaling/")
            if spot_action is not None:
                entries.append("spot/")
            if tags_enabled:
                entries.append("tags/")
            return 200, "\n".join(sorted(entries)).encode()
        if path == "/latest/dynamic/instance-identity/document":
            doc = {
                "accountId": ident["account_id"],
                "architecture": "x86_64",
                "availabilityZone": ident["az"],
                "billingProducts": None,
                "devpayProductCodes": None,
                "marketplaceProductCodes": None,
                "imageId": ident["image_id"],
                "instanceId": ident["instance_id"],
                "instanceType": ident["instance_type"],
                "kernelId": None,
                "pendingTime": "2024-01-01T00:00:00Z",
                "privateIp": ident["private_ip"],
                "ramdiskId": None,
                "region": ident["region"],
                "version": "2017-09-30",
            }
            return 200, json.dumps(doc, indent=2).encode()
        tags_root = md + "tags/instance"
        if path in (md + "tags", md + "tags/"):
            return (200, b"instance") if tags_enabled else (404, b"")
        if path == tags_root or path.startswith(tags_root + "/"):
            if not tags_enabled:
                return 404, b""
            rest = path[len(tags_root) :]
            if rest in ("", "/"):
                return 200, "\n".join(sorted(tags)).encode()
            key = rest[1:]
            if key in tags:
                return 200, tags[key].encode()
            return 404, b""
        return 404, b""


class HostHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its Host and tracks open connections."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], host: Host) -> None:
        self.host = host
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, MetadataHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self.conns_lock:
            self.conns.add(request)
        try:
            super().finish_request(request, client_address)
        finally:
            with self.conns_lock:
                self.conns.discard(request)

    def close_all_connections(self) -> None:
        with self.conns_lock:
            conns = list(self.conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


_NOT_FOUND_HTML = b"""<?xml version="1.0" encoding="iso-8859-1"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
         "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
 <head>
  <title>404 - Not Found</title>
 </head>
 <body>
  <h1>404 - Not Found</h1>
 </body>
</html>
"""


class MetadataHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "EC2ws"

    def version_string(self) -> str:
        return self.server_version
    server: HostHTTPServer

    def log_message(self, fmt: str, *args: Any) -> None:
        _log(f"[imds {self.server.host.name}] " + (fmt % args))

    def _drain(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit():
            remaining = min(int(length), MAX_BODY)
            if remaining:
                self.rfile.read(remaining)

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        host = self.server.host
        with host.lock:
            slow = host.mode == "slow"
            slow_ms, phase = host.slow_ms, host.slow_phase
        if not body and status in (404,):
            body = _NOT_FOUND_HTML
        if slow and phase == "headers":
            host.stopping.wait(slow_ms / 1000.0)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if status == 200 else "text/html")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if slow and phase != "headers":
            self.wfile.flush()
            host.stopping.wait(slow_ms / 1000.0)
        if body:
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    def _path(self) -> str:
        """The request path, percent-decoded (so counters and tag keys use ':' not '%3A')."""
        return unquote(urlsplit(self.path).path)

    def do_PUT(self) -> None:
        host = self.server.host
        path = self._path()
        host.record(path)
        self._drain()
        mode = host.mode
        if mode == "500":
            return self._send(500)
        if path != "/latest/api/token":
            return self._send(405 if path.startswith("/latest/") else 404)
        if self.headers.get("X-Forwarded-For"):
            return self._send(403)
        if mode == "token_401":
            return self._send(401)
        raw = (self.headers.get(TTL_HEADER) or "").strip()
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_TTL:
            return self._send(400)
        ttl = int(raw)
        token = host.issue_token(ttl)
        headers = {} if mode == "no_ttl_header" else {TTL_HEADER: str(ttl)}
        self._send(200, token.encode(), headers)

    def do_GET(self) -> None:
        host = self.server.host
        path = self._path()
        host.record(path)
        mode = host.mode
        if mode == "500":
            return self._send(500)
        if path == "/latest/api/token":
            return self._send(405)
        if mode == "get_401" or not host.token_valid(self.headers.get(TOKEN_HEADER)):
            return self._send(401)
        status, body = host.lookup(path)
        self._send(status, body)

    def _not_allowed(self) -> None:
        self.server.host.record(self._path())
        self._drain()
        self._send(500 if self.server.host.mode == "500" else 405)

    do_POST = do_DELETE = do_PATCH = _not_allowed  # type: ignore[assignment]


# --------------------------------------------------------------------------
# Registry of hosts + control API
# --------------------------------------------------------------------------


class ImdsRegistry:
    """The hosts and their servers. Also usable in-process from Python tests."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.hosts: dict[str, Host] = {}

    @staticmethod
    def validate(fields: dict[str, Any]) -> None:
        if not isinstance(fields, dict):
            raise ValueError("body must be a JSON object")
        if "mode" in fields and fields["mode"] not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}")
        if "slow_ms" in fields:
            ms = fields["slow_ms"]
            if not isinstance(ms, int) or isinstance(ms, bool) or not 0 <= ms <= 600_000:
                raise ValueError("slow_ms must be an integer in [0, 600000]")
        if "slow_phase" in fields and fields["slow_phase"] not in ("body", "headers"):
            raise ValueError("slow_phase must be 'body' or 'headers'")
        if "tags" in fields and not isinstance(fields["tags"] or {}, dict):
            raise ValueError("tags must be an object")
        if "target_lifecycle_state" in fields and not isinstance(fields["target_lifecycle_state"], (str, type(None))):
            raise ValueError("target_lifecycle_state must be a string or null")
        if "spot_instance_action" in fields and not isinstance(fields["spot_instance_action"], (str, dict, type(None))):
            raise ValueError("spot_instance_action must be an object, a string or null")
        for key in IDENTITY_FIELDS:
            if key in fields and fields[key] is not None and not isinstance(fields[key], (str, int)):
                raise ValueError(f"{key} must be a string")

    def _start(self, host: Host) -> None:
        server = HostHTTPServer(("127.0.0.1", host.port), host)
        host.port = server.server_address[1]
        host.stopping.clear()
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=f"imds-{host.name}", daemon=True)
        with host.lock:
            host.server, host.thread = server, thread
        thread.start()

    def _stop(self, host: Host) -> None:
        with host.lock:
            server, thread = host.server, host.thread
            host.server = host.thread = None
        if server is None:
            return
        host.stopping.set()
        server.shutdown()
        server.server_close()
        server.close_all_connections()
        if thread is not None:
            thread.join(timeout=5)

    def _set_mode(self, host: Host, mode: str) -> None:
        with host.lock:
            host.mode = mode
            running = host.server is not None
        if mode == "down" and running:
            self._stop(host)
        elif mode != "down" and not running:
            self._start(host)

    def upsert(self, fields: dict[str, Any]) -> tuple[Host, bool]:
        self.validate(fields)
        name = fields.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError("name (string without '/') is required")
        with self.lock:
            host = self.hosts.get(name)
            created = host is None
            if created:
                host = Host(name)
                host.apply(fields)
                host.mode = fields.get("mode", "ok")
                if host.mode != "down":
                    self._start(host)
                else:
                    # reserve a port number so the endpoint is stable
                    with socket.socket() as s:
                        s.bind(("127.0.0.1", 0))
                        host.port = s.getsockname()[1]
                self.hosts[name] = host
            else:
                host.apply(fields)
                if "mode" in fields:
                    self._set_mode(host, fields["mode"])
        return host, created

    def patch(self, name: str, fields: dict[str, Any]) -> Host:
        self.validate(fields)
        with self.lock:
            host = self.hosts.get(name)
            if host is None:
                raise KeyError(name)
            host.apply(fields)
            if "mode" in fields:
                self._set_mode(host, fields["mode"])
        return host

    def delete(self, name: str) -> None:
        with self.lock:
            host = self.hosts.pop(name, None)
        if host is None:
            raise KeyError(name)
        self._stop(host)

    def get(self, name: str) -> Host:
        with self.lock:
            host = self.hosts.get(name)
        if host is None:
            raise KeyError(name)
        return host

    def stop_all(self) -> None:
        with self.lock:
            hosts = list(self.hosts.values())
        # Stop the hosts in parallel: each shutdown waits up to one poll interval.
        threads = [threading.Thread(target=self._stop, args=(h,), daemon=True) for h in hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)


class ControlHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "ControlServer"

    def log_message(self, fmt: str, *args: Any) -> None:
        _log("[control] " + (fmt % args))

    def _json(self, status: int, obj: Any) -> None:
        body = json.dumps(obj, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> Any:
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit() or int(length) > MAX_BODY:
            raise ValueError("missing or too large Content-Length")
        raw = self.rfile.read(int(length)) if int(length) else b""
        return json.loads(raw or b"{}")

    def _route(self) -> tuple[str | None, str | None]:
        parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/") if p]
        if not parts or parts[0] != "hosts":
            return None, None
        if len(parts) == 1:
            return "hosts", None
        if len(parts) == 2:
            return "host", parts[1]
        if len(parts) == 3 and parts[2] == "requests":
            return "requests", parts[1]
        return None, None

    def _handle(self, method: str) -> None:
        reg = self.server.registry
        if urlsplit(self.path).path.rstrip("/") == "/health":
            return self._json(200, {"ok": True})
        kind, name = self._route()
        try:
            if kind == "hosts" and method == "GET":
                with reg.lock:
                    hosts = list(reg.hosts.values())
                return self._json(200, {"hosts": [h.describe() for h in hosts]})
            if kind == "hosts" and method == "POST":
                host, created = reg.upsert(self._body())
                return self._json(201 if created else 200, {"name": host.name, "endpoint": host.endpoint, "created": created})
            if kind == "host" and name is not None:
                if method == "GET":
                    return self._json(200, reg.get(name).describe())
                if method == "PATCH":
                    host = reg.patch(name, self._body())
                    return self._json(200, host.describe())
                if method == "DELETE":
                    reg.delete(name)
                    return self._json(200, {"ok": True})
            if kind == "requests" and name is not None:
                host = reg.get(name)
                if method == "GET":
                    with host.lock:
                        return self._json(200, {"count": host.count, "by_path": dict(host.by_path)})
                if method == "DELETE":
                    with host.lock:
                        host.count, host.by_path = 0, {}
                    return self._json(200, {"ok": True})
            if kind is None:
                return self._json(404, {"error": "unknown path"})
            return self._json(405, {"error": "method not allowed"})
        except KeyError as exc:
            return self._json(404, {"error": f"no such host {exc}"})
        except (ValueError, TypeError) as exc:
            return self._json(400, {"error": str(exc)})
        except OSError as exc:
            return self._json(500, {"error": f"could not (re)start host server: {exc}"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


class ControlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], registry: ImdsRegistry) -> None:
        self.registry = registry
        super().__init__(addr, ControlHandler)


def main(argv: list[str] | None = None) -> int:
    global QUIET
    parser = argparse.ArgumentParser(
        description="IMDSv2 test server: one metadata endpoint per simulated host plus a JSON control API.",
        epilog="The first stdout line is 'READY http://127.0.0.1:CONTROLPORT'. See the module docstring for the protocol.",
    )
    parser.add_argument("--control-port", type=int, default=0, help="control API port; 0 = pick a free port (default)")
    parser.add_argument("--ready-file", help="also write the control URL to this file once ready")
    parser.add_argument("--quiet", action="store_true", help="do not log each request to stderr")
    args = parser.parse_args(argv)
    QUIET = args.quiet

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    signal.signal(signal.SIGINT, lambda s, f: stop.set())

    registry = ImdsRegistry()
    control = ControlServer(("127.0.0.1", args.control_port), registry)
    url = f"http://127.0.0.1:{control.server_address[1]}"
    thread = threading.Thread(target=control.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    print(f"READY {url}", flush=True)
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(url + "\n")
        os.replace(tmp, args.ready_file)

    while not stop.wait(0.2):
        pass
    control.shutdown()
    control.server_close()
    registry.stop_all()
    thread.join(timeout=5)
    try:
        print("STOPPED", flush=True)
    except (BrokenPipeError, OSError):
        pass  # the parent may have closed our stdout after reading READY
    return 0


if __name__ == "__main__":
    sys.exit(main())
