"""The hardware limit of a round trip between two processes: a C busy-spin ping-pong.

Compiled at run time with the platform compiler (`cc`, or $CC) into a temporary directory.
Two processes (fork) share one anonymous shared page; the client copies a 64-byte request in
and flips a state word, the server spins on it, copies the request to the reply area and flips
it back. Both sides spin with a pause instruction, never sleep: this is the floor under any
shared-memory RPC, Python or not. The C program times every round trip itself.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from typing import Any

SOURCE = r"""
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define relax() _mm_pause()
#else
#define relax() __asm__ __volatile__("" ::: "memory")
#endif

struct page {
    _Alignas(64) volatile uint64_t state;     /* 0 idle, 1 request, 2 reply, 3 stop */
    _Alignas(64) char request[64];
    _Alignas(64) char reply[64];
};

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000;
    struct page *p = mmap(NULL, sizeof *p, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 1;
    pid_t pid = fork();
    if (pid == 0) {
        for (;;) {
            uint64_t s;
            while ((s = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE)) != 1 && s != 3) relax();
            if (s == 3) _exit(0);
            memcpy(p->reply, p->request, 64);
            __atomic_store_n(&p->state, 2, __ATOMIC_RELEASE);
        }
    }
    uint64_t *lat = malloc(sizeof(uint64_t) * n);
    char msg[64], back[64];
    memset(msg, 'x', sizeof msg);
    for (long i = 0; i < n / 10 + 1000; i++) {    /* warm-up */
        memcpy(p->request, msg, 64);
        __atomic_store_n(&p->state, 1, __ATOMIC_RELEASE);
        while (__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) != 2) relax();
    }
    uint64_t start = now_ns();
    for (long i = 0; i < n; i++) {
        uint64_t t0 = now_ns();
        memcpy(p->request, msg, 64);
        __atomic_store_n(&p->state, 1, __ATOMIC_RELEASE);
        while (__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) != 2) relax();
        memcpy(back, p->reply, 64);
        lat[i] = now_ns() - t0;
    }
    uint64_t total = now_ns() - start;
    __atomic_store_n(&p->state, 3, __ATOMIC_RELEASE);
    waitpid(pid, NULL, 0);
    qsort(lat, n, sizeof *lat, cmp);
    printf("{\"p50_ns\": %llu, \"p99_ns\": %llu, \"calls_per_s\": %.0f, \"samples\": %ld, \"ok\": %d}\n",
           (unsigned long long)lat[n / 2], (unsigned long long)lat[(long)(n * 0.99)],
           n / (total / 1e9), n, memcmp(msg, back, 64) == 0);
    return 0;
}
"""


class CompilerMissing(Exception):
    pass


def build(directory: str) -> str:
    """Compile the ping-pong; the executable's path."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise CompilerMissing("no C compiler (cc, gcc, clang or $CC)")
    src = os.path.join(directory, "pingpong.c")
    exe = os.path.join(directory, "pingpong")
    with open(src, "w") as f:
        f.write(SOURCE)
    done = subprocess.run([cc, "-O2", "-o", exe, src], capture_output=True, text=True)
    if done.returncode:
        raise CompilerMissing(f"{cc} failed: {done.stderr.strip()[:300]}")
    return exe


def measure(round_trips: int = 200_000, timeout_s: float = 60.0) -> dict[str, Any]:
    """{p50_ns, p99_ns, calls_per_s, samples} of the C ping-pong."""
    with tempfile.TemporaryDirectory(prefix="ssvcbench_c_") as tmp:
        exe = build(tmp)
        out = subprocess.run([exe, str(round_trips)], capture_output=True, text=True, timeout=timeout_s)
    if out.returncode:
        raise RuntimeError(f"ping-pong exited with {out.returncode}: {out.stderr.strip()[:300]}")
    result = json.loads(out.stdout)
    if not result.pop("ok"):
        raise AssertionError("the C ping-pong echoed wrong bytes")
    return result


if __name__ == "__main__":
    print(measure())
