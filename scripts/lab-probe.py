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
                data = c.recv(256)
                # a load-balanced client asks which backend answered
                c.sendall(addr.encode() if data == b"whoami" else data)
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


def dns_query(name, ident):
    labels = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", 1, 1)


def flood(src, dst, port, count, rate, timeout):
    """UDP datagrams at `rate` per second; prints how many of `count` came back."""
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.setblocking(False)
    received = 0
    start = time.time()
    for i in range(count):
        s.sendto(b"flood %d" % i, (dst, port))
        while time.time() < start + (i + 1) / rate:
            try:
                s.recv(256)
                received += 1
            except BlockingIOError:
                time.sleep(0.0005)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            s.recv(256)
            received += 1
        except BlockingIOError:
            time.sleep(0.01)
    print("%d/%d" % (received, count))
    return received == count


def syn_flood(src, dst, port, count, rate):
    """Raw SYNs from `src`; prints how many SYN-ACKs came back (SYN cookies from XDP)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    s.bind((src, 0))
    s.setblocking(False)
    saddr, daddr = socket.inet_aton(src), socket.inet_aton(dst)
    synacks = 0
    start = time.time()
    for i in range(count):
        sport = 20000 + i % 40000
        hdr = struct.pack("!HHIIBBHHH", sport, port, 1000 + i, 0, 5 << 4, 0x02, 64240, 0, 0)
        pseudo = saddr + daddr + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(hdr))
        hdr = hdr[:16] + struct.pack("!H", checksum(pseudo + hdr)) + hdr[18:]
        s.sendto(hdr, (dst, 0))
        while time.time() < start + (i + 1) / rate:
            try:
                data = s.recv(2048)
                tcp = data[(data[0] & 0x0F) * 4:]
                if data[12:16] == daddr and tcp[13] & 0x12 == 0x12:
                    synacks += 1
            except BlockingIOError:
                time.sleep(0.0002)
    print("%d SYN-ACKs for %d SYNs" % (synacks, count))
    return synacks > 0


def spread(src, dst, port, count, timeout):
    """`count` TCP connections asking the backend's address; prints the answers by address."""
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    answers = {}
    for _ in range(count):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.bind((src, 0))
            s.connect((dst, port))
            s.sendall(b"whoami")
            who = s.recv(256).decode() or "no answer"
        except OSError:
            who = "failed"
        answers[who] = answers.get(who, 0) + 1
        s.close()
    print(" ".join("%s:%d" % kv for kv in sorted(answers.items())))
    return "failed" not in answers and "no answer" not in answers


def probe(src, dst, proto, port, timeout, payload=b"ebpfsentinel lab probe", name=None):
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    if name is not None:
        payload = dns_query(name, os.getpid() & 0xFFFF)
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
    pr.add_argument("--payload", help="what a TCP or UDP probe sends (and expects echoed)")
    pr.add_argument("--dns-name", help="send a DNS query for this name (UDP)")
    fl = sub.add_parser("flood")
    fl.add_argument("--src", required=True)
    fl.add_argument("--dst", required=True)
    fl.add_argument("--proto", choices=["udp", "syn"], required=True)
    fl.add_argument("--port", type=int, required=True)
    fl.add_argument("--count", type=int, default=1000)
    fl.add_argument("--rate", type=float, default=1000)
    sp = sub.add_parser("spread")
    sp.add_argument("--src", required=True)
    sp.add_argument("--dst", required=True)
    sp.add_argument("--port", type=int, required=True)
    sp.add_argument("--count", type=int, default=20)
    a = ap.parse_args()
    if a.cmd == "spread":
        sys.exit(0 if spread(a.src, a.dst, a.port, a.count, 1.5) else 1)
    if a.cmd == "serve":
        serve(a.addr, a.tcp, a.udp)
    if a.cmd == "flood":
        if a.proto == "udp":
            ok = flood(a.src, a.dst, a.port, a.count, a.rate, 1.0)
        else:
            ok = syn_flood(a.src, a.dst, a.port, a.count, a.rate)
        sys.exit(0 if ok else 1)
    payload = a.payload.encode() if a.payload else b"ebpfsentinel lab probe"
    sys.exit(0 if probe(a.src, a.dst, a.proto, a.port, a.timeout, payload, a.dns_name) else 1)


if __name__ == "__main__":
    main()
