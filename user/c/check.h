/*
 * check.h: the tiny test framework shared by the programs in user/c.
 *
 * Output, one line per case:
 *   ok NAME
 *   FAIL NAME: expected X, got Y (errno E): EXPRESSION at FILE:LINE
 *   skip NAME: reason
 * and a last line
 *   summary: P passed, F failed, S skipped
 * The program exits 0 iff F == 0. A FAIL line ends with the source line and
 * the expression that failed.
 *
 * A case is a function that calls t_begin("name"), then CHECK_* macros; the
 * first failing check prints the FAIL line and returns from the function, and
 * t_pass() at its end prints the ok line. Nothing here needs more than the
 * system calls the rest of the program tests.
 */
#ifndef FSDAX_CHECK_H
#define FSDAX_CHECK_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Options every program with cases understands. */
struct t_options {
    int require_dax;     /* --require-dax: DAX-only cases fail instead of skipping */
    int require_reflink; /* --require-reflink: likewise for FICLONE and friends */
    const char *only;    /* --only SUBSTRING: run only cases whose name contains it */
};
extern struct t_options t_opts;

/* Starts a case; returns 0 when --only filters it out (the caller returns). */
int t_begin(const char *name);
void t_pass(void);
void t_fail(const char *file, int line, const char *expected, const char *got_fmt, ...)
    __attribute__((format(printf, 4, 5)));
void t_skip(const char *reason);
/* A case the file system or machine cannot do: skip, or FAIL when `required`. */
void t_unsupported(int required, const char *reason);
int t_summary(void); /* prints the summary line, returns the exit status */

/* "EFAULT", "ENOENT", ... ("E123" for an unknown number). */
const char *errno_name(int e);

#define T_BEGIN(name)                                                                              \
    do {                                                                                           \
        if (!t_begin(name))                                                                        \
            return;                                                                                \
    } while (0)

/* `expr` must succeed (return >= 0); its value lands in `var` when given. */
#define CHECK_SYS(expr)                                                                            \
    ({                                                                                             \
        errno = 0;                                                                                 \
        long _r = (long)(expr);                                                                    \
        if (_r < 0) {                                                                              \
            t_fail(__FILE__, __LINE__, "success", "%ld (errno %s): %s", _r, errno_name(errno),     \
                   #expr);                                                                         \
            return;                                                                                \
        }                                                                                          \
        _r;                                                                                        \
    })

/* `expr` must fail with -1 and errno `err`. */
#define CHECK_ERRNO(expr, err)                                                                     \
    do {                                                                                           \
        errno = 0;                                                                                 \
        long _r = (long)(expr);                                                                    \
        int _e = errno;                                                                            \
        if (_r != -1 || _e != (err)) {                                                             \
            t_fail(__FILE__, __LINE__, "-1 (" #err ")", "%ld (errno %s): %s", _r, errno_name(_e),  \
                   #expr);                                                                         \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Raw system calls return -errno instead of setting errno. */
#define CHECK_NEG(expr, err)                                                                       \
    do {                                                                                           \
        long _r = (long)(expr);                                                                    \
        if (_r != -(err)) {                                                                        \
            t_fail(__FILE__, __LINE__, "-" #err, "%ld (errno %s): %s", _r,                         \
                   _r < 0 ? errno_name((int)-_r) : "0", #expr);                                    \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(got, want)                                                                        \
    do {                                                                                           \
        long long _g = (long long)(got), _w = (long long)(want);                                   \
        if (_g != _w) {                                                                            \
            char _exp[96];                                                                         \
            snprintf(_exp, sizeof _exp, "%lld", _w);                                               \
            t_fail(__FILE__, __LINE__, _exp, "%lld (errno %s): %s", _g, errno_name(errno),         \
                   #got " == " #want);                                                             \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK(cond, what)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            t_fail(__FILE__, __LINE__, what, "false (errno %s): %s", errno_name(errno), #cond);    \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Raw system call without libc's errno translation (returns -errno). */
long raw_syscall6(long n, long a, long b, long c, long d, long e, long f);
#define RAW0(n) raw_syscall6(n, 0, 0, 0, 0, 0, 0)
#define RAW1(n, a) raw_syscall6(n, (long)(a), 0, 0, 0, 0, 0)
#define RAW2(n, a, b) raw_syscall6(n, (long)(a), (long)(b), 0, 0, 0, 0)
#define RAW3(n, a, b, c) raw_syscall6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define RAW4(n, a, b, c, d) raw_syscall6(n, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define RAW5(n, a, b, c, d, e) raw_syscall6(n, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

/* Nanoseconds on CLOCK_MONOTONIC. */
uint64_t now_ns(void);

/*
 * A buffer whose last byte is the last byte of a mapped page, followed by an
 * unmapped (PROT_NONE) page: `page_end(n)` returns a pointer n bytes before
 * the hole. The mapping is made once and kept.
 */
char *page_end(size_t n);
/* The first byte of the hole after page_end's page. */
char *hole_start(void);

#endif
