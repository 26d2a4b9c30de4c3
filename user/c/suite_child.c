/*
 * suite_child.c: what the suite's spawned children do (`suite --child MODE`).
 * Each mode ends in a way the parent checks through wait4/waitid.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "suite.h"

static void die_segv_handler(int sig)
{
    (void)sig;
    /* A fault inside the handler of the same (blocked) signal: fatal. */
    *(volatile int *)0 = 2;
}

static void overflow_handler(int sig, siginfo_t *si, void *uc)
{
    (void)si;
    (void)uc;
    static const char msg[] = "child: stack overflow caught on the alternate stack\n";
    write(2, msg, sizeof msg - 1);
    _exit(sig == SIGSEGV ? 42 : 43);
}

static void note_signal(int sig)
{
    (void)sig;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

#pragma GCC diagnostic ignored "-Winfinite-recursion"
static int recurse(volatile char *prev, int depth)
{
    volatile char frame[1024];
    frame[0] = (char)depth;
    frame[1023] = prev ? prev[0] : 0;
    return recurse(frame, depth + 1) + frame[512];
}

void child_main(int argc, char **argv)
{
    const char *mode = argv[0];
    if (strcmp(mode, "exit") == 0 && argc == 2)
        _exit(atoi(argv[1]));
    if (strcmp(mode, "exit_group") == 0 && argc == 2)
        exit(atoi(argv[1]));
    if (strcmp(mode, "sleep") == 0 && argc == 2) {
        struct timespec ts = {atoi(argv[1]) / 1000, (atoi(argv[1]) % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        _exit(0);
    }
    if (strcmp(mode, "segv") == 0)
        *(volatile int *)0 = 1;
    if (strcmp(mode, "bus") == 0)
        raise(SIGBUS);
    if (strcmp(mode, "ill") == 0)
        __asm__ volatile("ud2");
    if (strcmp(mode, "fpe") == 0)
        __asm__ volatile("xor %%ecx, %%ecx\n\tmov $1, %%eax\n\tcltd\n\tidiv %%ecx" ::: "eax", "ecx", "edx");
    if (strcmp(mode, "abrt") == 0)
        abort();
    if (strcmp(mode, "usr1") == 0)
        raise(SIGUSR1);
    if (strcmp(mode, "segv_blocked") == 0) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGSEGV);
        sigprocmask(SIG_BLOCK, &set, NULL);
        *(volatile int *)0 = 1;
    }
    if (strcmp(mode, "segv_ignored") == 0) {
        /* A fault cannot be ignored: SIG_IGN is overridden, the fault kills. */
        signal(SIGSEGV, SIG_IGN);
        *(volatile int *)0 = 1;
    }
    if (strcmp(mode, "segv_in_handler") == 0) {
        signal(SIGSEGV, die_segv_handler);
        *(volatile int *)0 = 1;
    }
    if (strcmp(mode, "stackoverflow") == 0) {
        static char altstack[64 * 1024];
        stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
        sigaltstack(&ss, NULL);
        struct sigaction sa = {0};
        sa.sa_sigaction = overflow_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigaction(SIGSEGV, &sa, NULL);
        recurse(NULL, 0);
    }
    if (strcmp(mode, "signal_parent") == 0 && argc == 3) {
        /* After DELAY ms, send SIG to the parent. */
        sleep_ms(atoi(argv[2]));
        _exit(kill(getppid(), atoi(argv[1])) == 0 ? 0 : 1);
    }
    if (strcmp(mode, "signal_then_write") == 0 && argc == 4) {
        /* After DELAY ms send SIG to the parent, after DELAY more write one
         * byte to the inherited descriptor FD. */
        sleep_ms(atoi(argv[3]));
        if (kill(getppid(), atoi(argv[1])) != 0)
            _exit(1);
        sleep_ms(atoi(argv[3]));
        _exit(write(atoi(argv[2]), "x", 1) == 1 ? 0 : 2);
    }
    if (strcmp(mode, "pipe_wait") == 0) {
        /* Reads a pipe nobody writes: only a signal ends the read. SIGUSR1
         * has a handler without SA_RESTART: EINTR, exit 4. */
        int p[2];
        if (pipe(p) != 0)
            _exit(1);
        struct sigaction sa = {0};
        sa.sa_handler = note_signal;
        sigaction(SIGUSR1, &sa, NULL);
        char c;
        ssize_t r = read(p[0], &c, 1);
        _exit(r == -1 && errno == EINTR ? 4 : 5);
    }
    if (strcmp(mode, "badstack") == 0) {
        /* Handlers for SIGUSR1 and SIGSEGV, then SIGUSR1 with the stack
         * pointer in unmapped low memory: neither frame can be written, so
         * the process dies of SIGSEGV (Linux's force_sigsegv). */
        signal(SIGUSR1, note_signal);
        signal(SIGSEGV, note_signal);
        long tid = syscall(SYS_gettid);
        __asm__ volatile("mov %0, %%rdi\n\t"
                         "mov $0x2000, %%rsp\n\t"
                         "mov %1, %%eax\n\t"
                         "mov %2, %%esi\n\t"
                         "syscall\n\t"
                         "ud2"
                         :
                         : "r"(tid), "i"(SYS_tkill), "i"(SIGUSR1)
                         : "rdi", "rsi", "rax", "rcx", "r11", "memory");
        _exit(8);
    }
    if (strcmp(mode, "pause") == 0) {
        pause();
        _exit(7);
    }
    if (strcmp(mode, "sigpipe") == 0) {
        /* A write to a pipe without readers: SIGPIPE (default: death). */
        int p[2];
        if (pipe(p) != 0)
            _exit(1);
        close(p[0]);
        write(p[1], "x", 1);
        _exit(6);
    }
    if (strcmp(mode, "fds") == 0 && argc == 3) {
        /* argv[1] must be closed (it was O_CLOEXEC), argv[2] open. */
        int closed = fcntl(atoi(argv[1]), F_GETFD) == -1 && errno == EBADF;
        int open_ = fcntl(atoi(argv[2]), F_GETFD) >= 0;
        _exit(closed && open_ ? 0 : 1);
    }
    if (strcmp(mode, "env") == 0 && argc == 3) {
        const char *v = getenv(argv[1]);
        _exit(v && strcmp(v, argv[2]) == 0 ? 0 : 1);
    }
    fprintf(stderr, "suite --child: unknown mode %s (or wrong arguments)\n", mode);
    _exit(100);
}
