#!/usr/bin/env python3
"""Where a process's CPU goes, by part: reads `perf script -F ip,sym` on stdin (a recording
made with call graphs, e.g. `perf record --call-graph dwarf,16384 -F 999 -p PID`) and
attributes each sample to one part of the request path.

A sample whose stack passes through a system call counts for that call (the kernel's work,
including the loopback delivery a send does for its receiver). Any other sample counts for
the first frame, from the leaf up, that belongs to a known part: an allocation made by the
tonic decoder counts for "tonic_decode", not for "malloc". See BENCHMARKS.md.

    perf script -i perf.data -F ip,sym | bench/perf-categories.py
"""

import collections
import re
import sys

SYSCALLS = [
    ("sys_writev", r"__x64_sys_writev|do_writev"),
    ("sys_write", r"__x64_sys_write\b|ksys_write"),
    ("sys_recv", r"__x64_sys_recvfrom|__sys_recvfrom|sys_read"),
    ("sys_epoll", r"epoll_wait|do_epoll"),
    ("sys_futex", r"__x64_sys_futex|do_futex"),
    ("sys_getrandom", r"getrandom"),
    ("sys_other", r"entry_SYSCALL"),
]
PARTS = [
    ("store", r"cache_server::store::|cache_server::crypto"),
    ("validate", r"cache_server::validate"),
    ("audit", r"cache_server::audit|Context::commit|audit_answer"),
    ("authorize", r"Context::authorize|Throttle"),
    ("metrics", r"metrics::|metrics_exporter|telemetry"),
    ("guid", r"cache_server::guid"),
    ("service", r"cache_server::service"),
    ("tonic_decode", r"tonic::codec::decode|Streaming<T>::new|ProstDecoder|prost::"),
    ("tonic_encode", r"tonic::codec::encode|EncodeBody|ProstEncoder"),
    ("rustls", r"rustls::|ring::|ring_core"),
    ("hpack", r"hpack"),
    ("h2", r"h2::"),
    ("hyper", r"hyper::|hyper_util"),
    ("tonic_axum_tower", r"tonic::|axum|tower::|tower_http"),
    ("tokio", r"tokio::|mio::"),
]
SYSCALLS = [(name, re.compile(p)) for name, p in SYSCALLS]
PARTS = [(name, re.compile(p)) for name, p in PARTS]


def part_of(frames):
    for table in (SYSCALLS, PARTS):
        for frame in frames:
            for name, pattern in table:
                if pattern.search(frame):
                    return name
    return "other"


def main():
    counts = collections.Counter()
    frames = []
    for line in sys.stdin:
        if not line.strip():
            if frames:
                counts[part_of(frames)] += 1
            frames = []
        elif line[0] in " \t":
            fields = line.split(None, 1)
            if len(fields) == 2:
                frames.append(fields[1].strip())
    if frames:
        counts[part_of(frames)] += 1
    total = sum(counts.values()) or 1
    for name, n in counts.most_common():
        print(f"{100 * n / total:6.2f}% {name}")


if __name__ == "__main__":
    main()
