#!/usr/bin/env python3
"""Traffic for the lab demo: echo servers on the server side, one probe per call on the
internet side. A probe exits 0 when the exchange completed and 1 when it did not."""
import argparse
import os
import socket
import struct
import sys
import threading
import time


def serve(addrs, tcp_ports, udp_ports):
    def tcp(addr, port):
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(64)
        while True:
            c, _ = s.accept()
            try:
                c.settimeout(2)
                c.sendall(c.recv(256))
            except OSError:
                pass
            c.close()

    def udp(addr, port):
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind((addr, port))
        while True:
            data, peer = s.recvfrom(2048)
            s.sendto(data, peer)

    for addr in addrs:
        for p in tcp_ports:
            threading.Thread(target=tcp, args=(addr, p), daemon=True).start()
        for p in udp_ports:
            threading.Thread(target=udp, args=(addr, p), daemon=True).start()
    while True:
        time.sleep(3600)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def probe(src, dst, proto, port, timeout):
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    payload = b"ebpfsentinel lab probe"
    try:
        if proto == "tcp":
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.bind((src, 0))
            s.connect((dst, port))
            s.sendall(payload)
            return s.recv(256) == payload
        if proto == "udp":
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.settimeout(timeout)
            s.bind((src, 0))
            s.sendto(payload, (dst, port))
            return s.recvfrom(256)[0] == payload
        # ICMP echo over a raw socket
        ident = os.getpid() & 0xFFFF
        if family == socket.AF_INET:
            s = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            msg = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + payload
            msg = msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]
        else:
            s = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            msg = struct.pack("!BBHHH", 128, 0, 0, ident, 1) + payload
        s.settimeout(timeout)
        s.bind((src, 0))
        s.sendto(msg, (dst, 0))
        deadline = time.time() + timeout
        while time.time() < deadline:
            data = s.recv(2048)
            icmp = data[(data[0] & 0x0F) * 4:] if family == socket.AF_INET else data
            want = 0 if family == socket.AF_INET else 129
            if icmp[0] == want and struct.unpack("!H", icmp[4:6])[0] == ident:
                return True
        return False
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("serve")
    sv.add_argument("--addr", action="append", required=True)
    sv.add_argument("--tcp", type=int, action="append", default=[])
    sv.add_argument("--udp", type=int, action="append", default=[])
    pr = sub.add_parser("probe")
    pr.add_argument("--src", required=True)
    pr.add_argument("--dst", required=True)
    pr.add_argument("--proto", choices=["tcp", "udp", "icmp"], required=True)
    pr.add_argument("--port", type=int, default=0)
    pr.add_argument("--timeout", type=float, default=1.5)
    a = ap.parse_args()
    if a.cmd == "serve":
        serve(a.addr, a.tcp, a.udp)
    sys.exit(0 if probe(a.src, a.dst, a.proto, a.port, a.timeout) else 1)


if __name__ == "__main__":
    main()
