#!/usr/bin/env python3
"""Hostile and measuring clients for scripts/load.sh (stdlib only).

  load_clients.py hold HOST PORT IDLE SLOW SECONDS
      keeps IDLE connections that never send a byte and SLOW connections that trickle an
      endless request header one byte a second open for SECONDS; the server closes them after
      its header timeout, and each one closed is opened again at once (as an attacker would).
      Prints how many were held at the end and how many reconnects it took.
  load_clients.py sample HOST PORT PATH SECONDS INTERVAL
      GETs PATH every INTERVAL seconds (a new connection each time, as a scraper's first
      request) for SECONDS; prints n, p50, p90, p99 and max latency in milliseconds and the
      count of non-200 answers.
"""
import socket
import sys
import time


def connect(host, port):
    s = socket.create_connection((host, port), timeout=5)
    s.setblocking(False)
    return s


def closed(s):
    try:
        return s.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def hold(host, port, idle, slow, seconds):
    conns = [("idle", connect(host, port)) for _ in range(idle)]
    for _ in range(slow):
        s = connect(host, port)
        s.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        conns.append(("slow", s))
    reconnects = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for i, (kind, s) in enumerate(conns):
            if closed(s):
                s.close()
                try:
                    s = connect(host, port)
                    if kind == "slow":
                        s.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                except OSError:
                    continue
                conns[i] = (kind, s)
                reconnects += 1
            elif kind == "slow":
                try:
                    s.send(b"a")
                except OSError:
                    pass
        time.sleep(1)
    held = sum(1 for _, s in conns if not closed(s))
    print(f"held {held} of {idle + slow} connections ({idle} idle, {slow} slow) at the end; "
          f"{reconnects} reconnects after server-side timeouts")


def get(host, port, path):
    s = socket.create_connection((host, port), timeout=30)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.split(b" ", 2)[1] if data.startswith(b"HTTP/1.1 ") else b"000"


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def sample(host, port, path, seconds, interval):
    latencies, bad = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        try:
            status = get(host, port, path)
        except OSError:
            status = b"err"
        latencies.append((time.perf_counter() - started) * 1000)
        if status != b"200":
            bad += 1
        time.sleep(max(0.0, interval - (time.perf_counter() - started)))
    latencies.sort()
    print(f"{path}: n={len(latencies)} p50={percentile(latencies, 0.5):.2f}ms "
          f"p90={percentile(latencies, 0.9):.2f}ms p99={percentile(latencies, 0.99):.2f}ms "
          f"max={latencies[-1]:.2f}ms non-200={bad}")


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "hold" and len(sys.argv) == 7:
        host, port, idle, slow, seconds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
        hold(host, port, idle, slow, seconds)
    elif mode == "sample" and len(sys.argv) == 7:
        host, port, path, seconds, interval = sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]), float(sys.argv[6])
        sample(host, port, path, seconds, interval)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
