#!/usr/bin/env python3
"""Stands in for the NLB: forwards TCP connections on 127.0.0.1:FROM to 127.0.0.1:TO.

``forward.py FROM TO`` runs until killed; prints ``READY`` once listening. Kafka's admin client
(the agent's rolling restart) dials the endpoint the broker advertises, i.e. the claimed NLB port.
"""

import socket
import sys
import threading


def pipe(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def main() -> None:
    src, dst = int(sys.argv[1]), int(sys.argv[2])
    srv = socket.create_server(("127.0.0.1", src))
    print("READY", flush=True)
    while True:
        client, _ = srv.accept()
        try:
            server = socket.create_connection(("127.0.0.1", dst), timeout=5)
            server.settimeout(None)
        except OSError:
            client.close()
            continue
        threading.Thread(target=pipe, args=(client, server), daemon=True).start()
        threading.Thread(target=pipe, args=(server, client), daemon=True).start()


if __name__ == "__main__":
    main()
