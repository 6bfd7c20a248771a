#!/usr/bin/env python3
"""TCP echo for the tunnel lab (tests/netns_tunnels.rs).

  tunnel_echo.py serve ADDR PORT        echo every connection back, forever
  tunnel_echo.py send ADDR PORT BYTES   send BYTES random bytes in 1000-byte
                                        writes, wait for each echo; exit 0
                                        when all came back
"""
import os
import socket
import sys


def serve(addr, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(8)
    while True:
        c, _ = s.accept()
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
        c.close()


def send(addr, port, total):
    c = socket.create_connection((addr, port), timeout=30)
    got = 0
    for sent in range(1000, total + 1000, 1000):
        c.sendall(os.urandom(1000))
        while got < sent:
            d = c.recv(65536)
            if not d:
                sys.exit(f"connection closed after {got} bytes")
            got += len(d)
    print(f"echoed {got}")


if __name__ == "__main__":
    mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "serve":
        serve(addr, port)
    else:
        send(addr, port, int(sys.argv[4]))
