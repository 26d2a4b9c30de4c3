/*
 * bench: the file-system and memory benchmarks run on fsdax and on Linux
 * XFS-DAX side by side. One JSON line per measurement on stdout:
 *
 *   {"bench":"append_4k","system":"Linux 6.1.0-...","size":268435456,
 *    "ops":65536,"bytes":268435456,"secs":25.1,"ops_per_s":2611.2,
 *    "bytes_per_s":10695475.0,"minflt":0,"majflt":0,"primary":"ops_per_s"}
 *
 * `primary` names the figure a comparison uses: ops_per_s and bytes_per_s
 * are better when higher, secs when lower. A measurement the system cannot
 * make (FICLONE refused, a file that cannot be mapped) prints
 * {"bench":NAME,"system":...,"skipped":"reason"} instead.
 *
 *   bench [--size SIZE] [--files N] [--only NAME[,NAME...]] [--list] DIR
 *
 * SIZE (default 8M, suffixes K/M/G) is the file size of every file
 * benchmark; N (default 10000 * SIZE / 256M, within 100..10000) the number of
 * files for create_close. Progress goes to stderr.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "uapi.h"

#define K4 4096UL
#define M2 (2UL << 20)

static uint64_t size = 8UL << 20;
static long files;
static const char *dir;
static const char *only;
static char system_name[160];
static unsigned char *block; /* 2 MiB of pattern bytes */

/* The figures of one measurement. */
struct result {
    uint64_t ops, bytes;
    double secs;
    long minflt, majflt;
    int faults; /* print minflt/majflt */
};

static int selected(const char *name)
{
    if (!only)
        return 1;
    size_t n = strlen(name);
    for (const char *p = only; (p = strstr(p, name)); p += n)
        if ((p == only || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
            return 1;
    return 0;
}

static void emit(const char *name, const struct result *r, const char *primary)
{
    double secs = r->secs > 0 ? r->secs : 1e-9;
    printf("{\"bench\":\"%s\",\"system\":\"%s\",\"size\":%llu,\"ops\":%llu,\"bytes\":%llu,\"secs\":%.6f,"
           "\"ops_per_s\":%.1f,\"bytes_per_s\":%.1f",
           name, system_name, (unsigned long long)size, (unsigned long long)r->ops, (unsigned long long)r->bytes,
           r->secs, (double)r->ops / secs, (double)r->bytes / secs);
    if (r->faults)
        printf(",\"minflt\":%ld,\"majflt\":%ld", r->minflt, r->majflt);
    printf(",\"primary\":\"%s\"}\n", primary);
    fflush(stdout);
    fprintf(stderr, "bench: %-22s %10.3f s\n", name, r->secs);
}

static void skipped(const char *name, const char *why)
{
    printf("{\"bench\":\"%s\",\"system\":\"%s\",\"size\":%llu,\"skipped\":\"%s\"}\n", name, system_name,
           (unsigned long long)size, why);
    fflush(stdout);
    fprintf(stderr, "bench: %-22s skipped: %s\n", name, why);
}

static void die(const char *what)
{
    fprintf(stderr, "bench: %s: %s (errno %s)\n", what, strerror(errno), errno_name(errno));
    exit(1);
}

/* Starts a measurement: the time and fault counters. */
struct clock_mark {
    uint64_t t;
    long minflt, majflt;
};

static struct clock_mark mark(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (struct clock_mark){now_ns(), ru.ru_minflt, ru.ru_majflt};
}

static void finish(struct result *r, struct clock_mark m)
{
    struct clock_mark e = mark();
    r->secs = (double)(e.t - m.t) / 1e9;
    r->minflt = e.minflt - m.minflt;
    r->majflt = e.majflt - m.majflt;
}

static const char *path(const char *name)
{
    static char bufs[4][4096];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int create(const char *name)
{
    int fd = open(path(name), O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0)
        die(path(name));
    return fd;
}

/* Writes `size` bytes into fd with 2 MiB pwrites (setup, not measured). */
static void fill_file(int fd)
{
    for (uint64_t off = 0; off < size; off += M2) {
        size_t n = size - off < M2 ? size - off : M2;
        if (pwrite(fd, block, n, off) != (ssize_t)n)
            die("pwrite (setup)");
    }
    if (fsync(fd) != 0)
        die("fsync (setup)");
}

/* Why the last map_aligned failed: "mmap of a file: ENODEV (...)". */
static char map_failure[160];

/* A MAP_SHARED mapping of fd at a 2 MiB-aligned address, so that 2 MiB
 * pages can be used; NULL (and map_failure says why) if the system cannot
 * map the file. */
static unsigned char *map_aligned(int fd, int prot)
{
    unsigned char *area = mmap(NULL, size + M2, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (area == MAP_FAILED)
        die("mmap (reserve)");
    unsigned char *aligned = (unsigned char *)(((uintptr_t)area + M2 - 1) & ~(M2 - 1));
    unsigned char *p = mmap(aligned, size, prot, MAP_SHARED | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
        snprintf(map_failure, sizeof map_failure, "mmap of a file: %s (errno %s)", strerror(errno),
                 errno_name(errno));
        munmap(area, size + M2);
        return NULL;
    }
    if (aligned > area)
        munmap(area, aligned - area);
    munmap(aligned + size, area + size + M2 - (aligned + size));
    return p;
}

/* The selected ones of `names`, skipped because the file could not be mapped. */
static void skipped_unmapped(const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (selected(names[i]))
            skipped(names[i], map_failure);
}

static void bench_memcpy(void)
{
    uint64_t buf = size < (64UL << 20) ? size : (64UL << 20);
    unsigned char *a = mmap(NULL, buf, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *b = mmap(NULL, buf, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED || b == MAP_FAILED)
        die("mmap (memcpy buffers)");
    memset(a, 0x5a, buf);
    memset(b, 0xa5, buf);
    int passes = (int)((4 * size + buf - 1) / buf);
    struct result r = {.ops = (uint64_t)passes, .bytes = (uint64_t)passes * buf};
    struct clock_mark m = mark();
    for (int i = 0; i < passes; i++)
        memcpy(i & 1 ? a : b, i & 1 ? b : a, buf);
    finish(&r, m);
    emit("memcpy", &r, "bytes_per_s");
    munmap(a, buf);
    munmap(b, buf);
}

static void bench_getpid(void)
{
    uint64_t n = size / 1024 < 20000 ? 20000 : size / 1024;
    struct result r = {.ops = n};
    struct clock_mark m = mark();
    for (uint64_t i = 0; i < n; i++)
        RAW0(SYS_getpid);
    finish(&r, m);
    emit("getpid", &r, "ops_per_s");
}

static volatile sig_atomic_t signal_hits;

static void count_signal(int sig)
{
    (void)sig;
    signal_hits++;
}

/* Signal round trips: tkill to itself, the handler runs (the kernel writes
 * its frame), rt_sigreturn takes the frame back. */
static void bench_signal(void)
{
    uint64_t n = size / 16384 < 5000 ? 5000 : size / 16384;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = count_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0)
        die("sigaction");
    long tid = RAW0(SYS_gettid);
    signal_hits = 0;
    struct result r = {.ops = n};
    struct clock_mark m = mark();
    for (uint64_t i = 0; i < n; i++)
        RAW2(SYS_tkill, tid, SIGUSR1);
    finish(&r, m);
    if ((uint64_t)signal_hits != n)
        die("signal: the handler did not run once per signal");
    signal(SIGUSR1, SIG_DFL);
    emit("signal", &r, "ops_per_s");
}

/* append_4k, overwrite_4k, pread_4k and randwrite_fsync_4k on one file. */
static void bench_4k(void)
{
    int fd = create("b4k");
    uint64_t n = size / K4;
    struct result r = {.ops = n, .bytes = n * K4};
    struct clock_mark m;
    if (selected("append_4k")) {
        m = mark();
        for (uint64_t i = 0; i < n; i++)
            if (pwrite(fd, block + (i % 512) * K4, K4, i * K4) != (ssize_t)K4)
                die("pwrite (append_4k)");
        finish(&r, m);
        emit("append_4k", &r, "ops_per_s");
    } else {
        fill_file(fd);
    }
    if (selected("overwrite_4k")) {
        m = mark();
        for (uint64_t i = 0; i < n; i++)
            if (pwrite(fd, block + ((i + 7) % 512) * K4, K4, i * K4) != (ssize_t)K4)
                die("pwrite (overwrite_4k)");
        finish(&r, m);
        emit("overwrite_4k", &r, "ops_per_s");
    }
    if (selected("pread_4k")) {
        static unsigned char buf[K4];
        m = mark();
        for (uint64_t i = 0; i < n; i++)
            if (pread(fd, buf, K4, i * K4) != (ssize_t)K4)
                die("pread (pread_4k)");
        finish(&r, m);
        emit("pread_4k", &r, "ops_per_s");
    }
    if (selected("randwrite_fsync_4k")) {
        uint64_t ops = n / 16 < 64 ? 64 : n / 16;
        struct result rr = {.ops = ops, .bytes = ops * K4};
        m = mark();
        for (uint64_t i = 0; i < ops; i++) {
            if (pwrite(fd, block + (i % 512) * K4, K4, (next_random() % n) * K4) != (ssize_t)K4)
                die("pwrite (randwrite_fsync_4k)");
            if (fsync(fd) != 0)
                die("fsync (randwrite_fsync_4k)");
        }
        finish(&rr, m);
        emit("randwrite_fsync_4k", &rr, "ops_per_s");
    }
    close(fd);
    unlink(path("b4k"));
}

/* write_2m (new file), overwrite_2m, read_2m, first_touch_written, mmap_randwrite_4k + msync. */
static void bench_2m_and_mmap(void)
{
    int fd = create("b2m");
    uint64_t n = size / M2 ? size / M2 : 1;
    struct result r = {.ops = n, .bytes = n * M2};
    struct clock_mark m;
    m = mark();
    for (uint64_t i = 0; i < n; i++)
        if (pwrite(fd, block, M2, i * M2) != (ssize_t)M2)
            die("pwrite (write_2m)");
    finish(&r, m);
    if (selected("write_2m"))
        emit("write_2m", &r, "bytes_per_s");
    if (selected("overwrite_2m")) {
        m = mark();
        for (uint64_t i = 0; i < n; i++)
            if (pwrite(fd, block, M2, i * M2) != (ssize_t)M2)
                die("pwrite (overwrite_2m)");
        finish(&r, m);
        emit("overwrite_2m", &r, "bytes_per_s");
    }
    if (selected("read_2m")) {
        unsigned char *buf = malloc(M2);
        memset(buf, 0, M2);
        m = mark();
        for (uint64_t i = 0; i < n; i++)
            if (pread(fd, buf, M2, i * M2) != (ssize_t)M2)
                die("pread (read_2m)");
        finish(&r, m);
        emit("read_2m", &r, "bytes_per_s");
        free(buf);
    }
    if (fsync(fd) != 0)
        die("fsync");
    if (selected("first_touch_written") || selected("mmap_randwrite_4k") || selected("msync")) {
        unsigned char *p = map_aligned(fd, PROT_READ | PROT_WRITE);
        if (!p) {
            static const char *const names[] = {"first_touch_written", "mmap_randwrite_4k", "msync"};
            skipped_unmapped(names, 3);
            close(fd);
            unlink(path("b2m"));
            return;
        }
        uint64_t pages = n * M2 / K4;
        struct result t = {.ops = pages, .bytes = pages * K4, .faults = 1};
        m = mark();
        for (uint64_t i = 0; i < pages; i++)
            p[i * K4] = (unsigned char)i;
        finish(&t, m);
        if (selected("first_touch_written"))
            emit("first_touch_written", &t, "secs");
        /* Pre-faulted now: random 4 KiB stores, then msync. */
        uint64_t ops = pages < 65536 ? pages : 65536;
        struct result w = {.ops = ops, .bytes = ops * K4, .faults = 1};
        m = mark();
        for (uint64_t i = 0; i < ops; i++)
            memcpy(p + (next_random() % pages) * K4, block + (i % 512) * K4, K4);
        finish(&w, m);
        if (selected("mmap_randwrite_4k"))
            emit("mmap_randwrite_4k", &w, "ops_per_s");
        struct result s = {.ops = 1, .bytes = n * M2};
        m = mark();
        if (msync(p, n * M2, MS_SYNC) != 0)
            die("msync");
        finish(&s, m);
        if (selected("msync"))
            emit("msync", &s, "secs");
        munmap(p, n * M2);
    }
    close(fd);
    unlink(path("b2m"));
}

static void bench_first_touch_sparse(void)
{
    int fd = create("sparse");
    if (ftruncate(fd, (off_t)size) != 0)
        die("ftruncate (first_touch_sparse)");
    unsigned char *p = map_aligned(fd, PROT_READ | PROT_WRITE);
    if (!p) {
        static const char *const names[] = {"first_touch_sparse"};
        skipped_unmapped(names, 1);
        close(fd);
        unlink(path("sparse"));
        return;
    }
    uint64_t pages = size / K4;
    struct result t = {.ops = pages, .bytes = pages * K4, .faults = 1};
    struct clock_mark m = mark();
    for (uint64_t i = 0; i < pages; i++)
        p[i * K4] = (unsigned char)(i | 1);
    finish(&t, m);
    emit("first_touch_sparse", &t, "secs");
    munmap(p, size);
    close(fd);
    unlink(path("sparse"));
}

static void bench_create_close(void)
{
    char name[64];
    if (mkdir(path("many"), 0755) != 0)
        die("mkdir (create_close)");
    struct result r = {.ops = (uint64_t)files};
    struct clock_mark m = mark();
    for (long i = 0; i < files; i++) {
        snprintf(name, sizeof name, "many/f%06ld", i);
        int fd = open(path(name), O_CREAT | O_EXCL | O_WRONLY, 0644);
        if (fd < 0)
            die("open (create_close)");
        close(fd);
    }
    finish(&r, m);
    if (selected("create_close"))
        emit("create_close", &r, "ops_per_s");
    m = mark();
    for (long i = 0; i < files; i++) {
        snprintf(name, sizeof name, "many/f%06ld", i);
        if (unlink(path(name)) != 0)
            die("unlink (unlink)");
    }
    finish(&r, m);
    if (selected("unlink"))
        emit("unlink", &r, "ops_per_s");
    rmdir(path("many"));
}

/* ficlone, cow_pwrite_first, cow_mmap: reflink a SIZE file and unshare it. */
static void bench_reflink(void)
{
    int src = create("rl.src");
    fill_file(src);
    int dst = create("rl.dst");
    struct result r = {.ops = 1, .bytes = size};
    struct clock_mark m = mark();
    if (ioctl(dst, FICLONE, src) != 0) {
        char why[128];
        snprintf(why, sizeof why, "FICLONE: %s (errno %s)", strerror(errno), errno_name(errno));
        static const char *const names[] = {"ficlone", "cow_pwrite_first", "cow_mmap"};
        for (int i = 0; i < 3; i++)
            if (selected(names[i]))
                skipped(names[i], why);
        close(src);
        close(dst);
        unlink(path("rl.src"));
        unlink(path("rl.dst"));
        return;
    }
    if (fsync(dst) != 0)
        die("fsync (ficlone)");
    finish(&r, m);
    if (selected("ficlone"))
        emit("ficlone", &r, "secs");
    struct result c = {.ops = 1, .bytes = K4};
    m = mark();
    if (pwrite(dst, block + K4, K4, 0) != (ssize_t)K4)
        die("pwrite (cow_pwrite_first)");
    finish(&c, m);
    if (selected("cow_pwrite_first"))
        emit("cow_pwrite_first", &c, "secs");
    if (selected("cow_mmap")) {
        unsigned char *p = map_aligned(dst, PROT_READ | PROT_WRITE);
        if (!p) {
            static const char *const names[] = {"cow_mmap"};
            skipped_unmapped(names, 1);
            goto out;
        }
        uint64_t pages = size / K4;
        struct result w = {.ops = pages, .bytes = size, .faults = 1};
        m = mark();
        for (uint64_t i = 1; i < pages; i++)
            p[i * K4] = (unsigned char)(i + 3);
        finish(&w, m);
        emit("cow_mmap", &w, "secs");
        /* The source must be unchanged. */
        unsigned char check[K4];
        if (pread(src, check, K4, K4) != (ssize_t)K4 || memcmp(check, block + K4, K4) != 0) {
            fprintf(stderr, "bench: cow_mmap changed the source file\n");
            exit(1);
        }
        munmap(p, size);
    }
out:
    close(src);
    close(dst);
    unlink(path("rl.src"));
    unlink(path("rl.dst"));
}

static const char *const all_benches[] = {
    "memcpy", "getpid", "append_4k", "overwrite_4k", "pread_4k", "randwrite_fsync_4k", "write_2m",
    "overwrite_2m", "read_2m", "first_touch_written", "mmap_randwrite_4k", "msync", "first_touch_sparse",
    "create_close", "unlink", "ficlone", "cow_pwrite_first", "cow_mmap", "signal",
};

static int any_selected(const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (selected(names[i]))
            return 1;
    return 0;
}

static uint64_t parse_size(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: break;
    }
    if (end == s || (*end && strcmp(end, "iB") && strcmp(end, "B")) || v < M2 || v % M2) {
        fprintf(stderr, "bench: --size %s: give a multiple of 2 MiB, e.g. 8M or 256M\n", s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            size = parse_size(argv[++i]);
        else if (strcmp(argv[i], "--files") == 0 && i + 1 < argc)
            files = atol(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--list") == 0) {
            for (unsigned j = 0; j < sizeof all_benches / sizeof all_benches[0]; j++)
                printf("%s\n", all_benches[j]);
            return 0;
        } else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else {
            fprintf(stderr, "usage: bench [--size SIZE] [--files N] [--only NAME[,NAME...]] [--list] DIR\n");
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "usage: bench [--size SIZE] [--files N] [--only NAME[,NAME...]] [--list] DIR\n");
        return 2;
    }
    if (files <= 0) {
        files = (long)(10000 * (size >> 20) / 256);
        files = files < 100 ? 100 : files > 10000 ? 10000 : files;
    }
    struct utsname u;
    if (uname(&u) != 0)
        die("uname");
    snprintf(system_name, sizeof system_name, "%s %s", u.sysname, u.release);
    block = malloc(M2);
    for (size_t i = 0; i < M2; i++)
        block[i] = (unsigned char)(i * 31 + (i >> 12));
    if (selected("memcpy"))
        bench_memcpy();
    if (selected("getpid"))
        bench_getpid();
    if (any_selected(all_benches + 2, 4))
        bench_4k();
    if (any_selected(all_benches + 6, 6))
        bench_2m_and_mmap();
    if (selected("first_touch_sparse"))
        bench_first_touch_sparse();
    if (any_selected(all_benches + 13, 2))
        bench_create_close();
    if (any_selected(all_benches + 15, 3))
        bench_reflink();
    if (selected("signal"))
        bench_signal();
    return 0;
}
