"""Prints N distinct free TCP ports on 127.0.0.1, one per line.

All N sockets are bound at once so the ports differ; they are released on
exit, and the caller binds them soon after (a small race, fine for a benchmark).
"""
import socket
import sys

count = int(sys.argv[1]) if len(sys.argv) > 1 else 1
socks = []
for _ in range(count):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
