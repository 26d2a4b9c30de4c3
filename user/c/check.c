/* check.c: the test framework of check.h. */
#define _GNU_SOURCE
#include "check.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct t_options t_opts;

static const char *current;
static int passed, failed, skipped;

int t_begin(const char *name)
{
    if (t_opts.only && !strstr(name, t_opts.only))
        return 0;
    current = name;
    return 1;
}

void t_pass(void)
{
    printf("ok %s\n", current);
    fflush(stdout);
    passed++;
}

void t_fail(const char *file, int line, const char *expected, const char *got_fmt, ...)
{
    va_list ap;
    printf("FAIL %s: expected %s, got ", current, expected);
    va_start(ap, got_fmt);
    vprintf(got_fmt, ap);
    va_end(ap);
    printf(" at %s:%d\n", file, line);
    fflush(stdout);
    failed++;
}

void t_skip(const char *reason)
{
    printf("skip %s: %s\n", current, reason);
    fflush(stdout);
    skipped++;
}

void t_unsupported(int required, const char *reason)
{
    if (required) {
        printf("FAIL %s: expected support (required by option), got: %s\n", current, reason);
        fflush(stdout);
        failed++;
    } else {
        t_skip(reason);
    }
}

int t_summary(void)
{
    printf("summary: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
    fflush(stdout);
    return failed == 0 ? 0 : 1;
}

const char *errno_name(int e)
{
    static const struct {
        int e;
        const char *name;
    } names[] = {
        {0, "0"},
        {EPERM, "EPERM"},
        {ENOENT, "ENOENT"},
        {ESRCH, "ESRCH"},
        {EINTR, "EINTR"},
        {EIO, "EIO"},
        {ENXIO, "ENXIO"},
        {E2BIG, "E2BIG"},
        {ENOEXEC, "ENOEXEC"},
        {EBADF, "EBADF"},
        {ECHILD, "ECHILD"},
        {EAGAIN, "EAGAIN"},
        {ENOMEM, "ENOMEM"},
        {EACCES, "EACCES"},
        {EFAULT, "EFAULT"},
        {EBUSY, "EBUSY"},
        {EEXIST, "EEXIST"},
        {EXDEV, "EXDEV"},
        {ENODEV, "ENODEV"},
        {ENOTDIR, "ENOTDIR"},
        {EISDIR, "EISDIR"},
        {EINVAL, "EINVAL"},
        {ENFILE, "ENFILE"},
        {EMFILE, "EMFILE"},
        {ENOTTY, "ENOTTY"},
        {EFBIG, "EFBIG"},
        {ENOSPC, "ENOSPC"},
        {ESPIPE, "ESPIPE"},
        {EROFS, "EROFS"},
        {EPIPE, "EPIPE"},
        {ERANGE, "ERANGE"},
        {ENAMETOOLONG, "ENAMETOOLONG"},
        {ENOSYS, "ENOSYS"},
        {ENOTEMPTY, "ENOTEMPTY"},
        {ELOOP, "ELOOP"},
        {EOPNOTSUPP, "EOPNOTSUPP"},
        {EOVERFLOW, "EOVERFLOW"},
        {ETXTBSY, "ETXTBSY"},
        {EHWPOISON, "EHWPOISON"},
        {EBADR, "EBADR"},
    };
    static char buf[16];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].e == e)
            return names[i].name;
    snprintf(buf, sizeof buf, "E%d", e);
    return buf;
}

long raw_syscall6(long n, long a, long b, long c, long d, long e, long f)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static char *guard_base;

static void make_guard(void)
{
    if (guard_base)
        return;
    /* Two pages: the first readable and writable, the second inaccessible. */
    char *p = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || mprotect(p + 4096, 4096, PROT_NONE) != 0) {
        perror("check: guard page");
        _exit(3);
    }
    memset(p, 'x', 4096);
    guard_base = p;
}

char *page_end(size_t n)
{
    make_guard();
    return guard_base + 4096 - n;
}

char *hole_start(void)
{
    make_guard();
    return guard_base + 4096;
}
