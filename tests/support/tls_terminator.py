#!/usr/bin/env python3
"""A broker's TLS listener, in front of a plaintext tansu, for tests/e2e_privatelink.rs.

tansu 0.6 cannot serve TLS (its CLI refuses ``--cert`` with ``--key``), so the TLS end-to-end test
puts this forwarder where the NLB's target is: it terminates TLS with the keystore a broker's
``server.properties`` names and forwards the plaintext to tansu.

``tls_terminator.py --properties PATH --listener-name PRIVATELINK --host H --backend HOST:PORT
--log FILE``

Read from ``server.properties`` (never computed by the test), as Apache Kafka reads them:

- the port: the ``listeners`` entry named ``--listener-name`` (``PRIVATELINK://:9094`` → 9094),
  where the NLB's target group sends the connections; it listens on ``--host`` at that port;
- the protocol: that name's entry in ``listener.security.protocol.map`` must be ``SSL`` (anything
  else: refused, this is no TLS listener);
- the keystore: ``listener.name.<name>.ssl.keystore.*`` first, then the broker-wide
  ``ssl.keystore.*``. Only the PEM file keystore of KIP-651 is served, with Kafka's own rules
  (``DefaultSslEngineFactory.createKeystore`` and ``PemStore`` in apache/kafka's clients module):
  ``ssl.keystore.type=PEM``, ``ssl.keystore.location`` a file holding the certificate chain (leaf
  first) and exactly one PKCS#8 private key (``BEGIN PRIVATE KEY``; an encrypted one needs
  ``ssl.key.password``, which this forwarder does not take), and no ``ssl.keystore.password``
  (Kafka refuses one with PEM). A file Kafka would refuse is refused here too.

The keystore is read once at start, like Kafka reads it at start-up (a changed file needs a
restart). TLS 1.2 and 1.3 (Kafka's default ``ssl.enabled.protocols``), no client certificate
(``ssl.client.auth=none``). Each connection is appended to ``--log`` as one JSON line:
``{"t_ms", "listen", "client", "sni", "tls_version", "backend", "result"}``, ``result`` being
``tls`` (handshake done, forwarded to ``--backend``) or ``handshake failed: <OpenSSL's error>``
(a client that rejects the certificate says why in its alert: ``unknown ca`` for a certificate
from a CA it does not trust, ``bad certificate`` for a name mismatch) or
``backend refused: ...``. ``sni`` is the server name the client asked for in its ClientHello.

The first stdout line is ``READY {"listen", "backend", "keystore"}`` (``ERROR <why>`` when it
cannot start). Python 3.11 stdlib only (``asyncio`` streams with ``start_tls``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tansu import listener_port_for, parse_properties  # noqa: E402 - sibling support script

HANDSHAKE_TIMEOUT_S = 10.0


class Refused(Exception):
    pass


def listener_setting(props: dict[str, str], listener: str, key: str) -> str | None:
    """A listener-prefixed setting (``listener.name.<name>.<key>``) wins over the broker-wide one."""
    for k in (f"listener.name.{listener.lower()}.{key}", key):
        value = props.get(k, "").strip()
        if value:
            return value
    return None


def keystore_of(properties: Path, listener: str) -> tuple[int, Path]:
    """The listener's port and its PEM keystore file, or Refused (see the module docstring)."""
    props = parse_properties(properties.read_text())
    protocol = None
    for entry in props.get("listener.security.protocol.map", "").split(","):
        name, sep, proto = entry.strip().partition(":")
        if sep and name.strip().upper() == listener.upper():
            protocol = proto.strip().upper()
    if protocol != "SSL":
        raise Refused(f"{properties}: listener {listener} maps to {protocol or 'nothing'}, not SSL")
    store_type = (listener_setting(props, listener, "ssl.keystore.type") or "JKS").upper()
    location = listener_setting(props, listener, "ssl.keystore.location")
    if store_type != "PEM" or location is None:
        raise Refused(
            f"{properties}: only a PEM keystore file is served (ssl.keystore.type=PEM and "
            f"ssl.keystore.location), found type {store_type}, location {location}"
        )
    if listener_setting(props, listener, "ssl.keystore.password") is not None:
        raise Refused(f"{properties}: Kafka refuses ssl.keystore.password with a PEM keystore")
    if listener_setting(props, listener, "ssl.key.password") is not None:
        raise Refused(f"{properties}: encrypted PEM keys (ssl.key.password) are not served here")
    text = Path(location).read_text()
    keys = re.findall(r"-----BEGIN ([A-Z ]*PRIVATE KEY)-----", text)
    if keys != ["PRIVATE KEY"]:
        raise Refused(f"{location}: want exactly one unencrypted PKCS#8 private key, found {keys}")
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise Refused(f"{location}: no certificate")
    return listener_port_for(properties, listener), Path(location)


class Terminator:
    def __init__(self, keystore: Path, backend: tuple[str, int], listen: str, log: str) -> None:
        # What Kafka loaded at start-up: a private copy (0600, next to the log, which the test
        # removes), so later changes to the file do not count.
        fd, copy = tempfile.mkstemp(prefix="keystore-", suffix=".pem", dir=Path(log).parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(keystore.read_text())
        self.keystore = copy
        self.context(lambda _name: None)  # loads (and so checks) the key and chain once
        self.backend = backend
        self.listen = listen
        self.log_path = log

    def context(self, on_sni: Any) -> ssl.SSLContext:
        """A server context per connection, so that the SNI callback knows its connection."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.keystore)
        ctx.sni_callback = lambda _obj, name, _ctx: on_sni(name)
        return ctx

    def write(self, entry: dict[str, Any]) -> None:
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        entry: dict[str, Any] = {
            "t_ms": time.time_ns() // 1_000_000,
            "listen": self.listen,
            "client": f"{peer[0]}:{peer[1]}",
            "sni": None,
        }
        ctx = self.context(lambda name: entry.__setitem__("sni", name))
        try:
            await writer.start_tls(ctx, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S)
        except (ssl.SSLError, OSError, asyncio.TimeoutError, ConnectionError) as err:
            entry["result"] = f"handshake failed: {err}"
            self.write(entry)
            writer.transport.abort()
            return
        entry["tls_version"] = writer.get_extra_info("ssl_object").version()
        entry["backend"] = f"{self.backend[0]}:{self.backend[1]}"
        try:
            b_reader, b_writer = await asyncio.open_connection(*self.backend)
        except OSError as err:
            entry["result"] = f"backend refused: {err}"
            self.write(entry)
            writer.transport.abort()
            return
        entry["result"] = "tls"
        self.write(entry)
        await asyncio.gather(pump(reader, b_writer), pump(b_reader, writer), return_exceptions=True)
        for w in (writer, b_writer):
            w.close()


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        # A TLS transport cannot half-close: the first side to end ends the connection.
        writer.close()


async def serve(terminator: Terminator, host: str, port: int) -> None:
    server = await asyncio.start_server(terminator.handle, host, port)
    print(
        "READY "
        + json.dumps(
            {
                "listen": terminator.listen,
                "backend": f"{terminator.backend[0]}:{terminator.backend[1]}",
                "keystore": str(terminator.keystore),
            }
        ),
        flush=True,
    )
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--properties", type=Path, required=True, help="the broker's server.properties")
    parser.add_argument("--listener-name", default="PRIVATELINK")
    parser.add_argument("--host", required=True, help="address to listen on (the broker host's)")
    parser.add_argument("--backend", required=True, help="HOST:PORT of the plaintext broker (tansu)")
    parser.add_argument("--log", required=True)
    args = parser.parse_args(argv)
    host, _, port = args.backend.rpartition(":")
    try:
        listen_port, keystore = keystore_of(args.properties, args.listener_name)
        terminator = Terminator(keystore, (host, int(port)), f"{args.host}:{listen_port}", args.log)
    except (Refused, OSError, ssl.SSLError, ValueError) as err:
        print(f"ERROR {type(err).__name__}: {err}", flush=True)
        return 1
    asyncio.run(serve(terminator, args.host, listen_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
