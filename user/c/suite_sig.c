/* suite_sig.c: signals: the SA_SIGINFO frame, alternate stacks, handler
 * flags, masks, kill/tgkill, siglongjmp, and default actions seen by wait4. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "suite.h"

#define PAGE 4096UL

static sigjmp_buf jump;
static volatile sig_atomic_t hits;
static volatile int got_signo, got_code, got_pid, got_errno;
static void *volatile got_addr;
static void *volatile got_stack;
static volatile int got_masked_self, got_masked_other, got_onstack;

static void record(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    int dummy;
    hits++;
    got_signo = si->si_signo;
    got_code = si->si_code;
    got_addr = si->si_addr;
    got_pid = si->si_pid;
    got_stack = &dummy;
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    got_masked_self = sigismember(&cur, sig);
    got_masked_other = sigismember(&cur, SIGUSR2);
    stack_t ss;
    sigaltstack(NULL, &ss);
    got_onstack = (ss.ss_flags & SS_ONSTACK) != 0;
}

static void record_and_jump(int sig, siginfo_t *si, void *uc)
{
    record(sig, si, uc);
    siglongjmp(jump, 1);
}

static int install(int sig, void (*fn)(int, siginfo_t *, void *), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    return sigaction(sig, &sa, NULL);
}

static void reset(int sig)
{
    signal(sig, SIG_DFL);
    hits = 0;
    got_signo = got_code = got_pid = 0;
    got_addr = NULL;
}

/* Touches `addr` (read or write) under a SIGSEGV handler that jumps back;
 * returns 1 when a signal came. */
static int touch(volatile char *addr, int write)
{
    hits = 0;
    if (sigsetjmp(jump, 1) == 0) {
        if (write)
            *addr = 1;
        else
            (void)*addr;
        return 0;
    }
    return 1;
}

static void segv_maperr(void)
{
    T_BEGIN("sigsegv_maperr_si_addr");
    CHECK_SYS(install(SIGSEGV, record_and_jump, 0));
    /* Below Linux's mmap_min_addr: never mapped. */
    CHECK(touch((volatile char *)0x1008, 0), "SIGSEGV from a read of an unmapped address");
    CHECK_EQ(got_signo, SIGSEGV);
    CHECK_EQ(got_code, SEGV_MAPERR);
    CHECK_EQ((uintptr_t)got_addr, 0x1008);
    CHECK(touch((volatile char *)0, 1), "SIGSEGV from a write through NULL");
    CHECK_EQ(got_code, SEGV_MAPERR);
    CHECK_EQ((uintptr_t)got_addr, 0);
    /* siglongjmp restored the mask: SIGSEGV is not blocked any more. */
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    CHECK(!sigismember(&cur, SIGSEGV), "SIGSEGV unblocked after siglongjmp out of its handler");
    char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "a mapping");
    munmap(p, PAGE);
    CHECK(touch(p + 5, 0), "SIGSEGV from a read of an unmapped page");
    CHECK_EQ(got_code, SEGV_MAPERR);
    CHECK_EQ((uintptr_t)got_addr, (uintptr_t)(p + 5));
    reset(SIGSEGV);
    t_pass();
}

static void segv_accerr(void)
{
    T_BEGIN("sigsegv_accerr_guard_page");
    CHECK_SYS(install(SIGSEGV, record_and_jump, 0));
    char *p = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "a 3-page mapping");
    CHECK_SYS(mprotect(p + PAGE, PAGE, PROT_NONE)); /* a guard page in the middle */
    CHECK_SYS(mprotect(p + 2 * PAGE, PAGE, PROT_READ));
    CHECK(!touch(p, 1), "no signal for a writable page");
    CHECK(touch(p + PAGE + 16, 0), "SIGSEGV from a read of the guard page");
    CHECK_EQ(got_code, SEGV_ACCERR);
    CHECK_EQ((uintptr_t)got_addr, (uintptr_t)(p + PAGE + 16));
    CHECK(!touch(p + 2 * PAGE, 0), "no signal for a read of a read-only page");
    CHECK(touch(p + 2 * PAGE + 8, 1), "SIGSEGV from a write to a read-only page");
    CHECK_EQ(got_code, SEGV_ACCERR);
    CHECK_EQ((uintptr_t)got_addr, (uintptr_t)(p + 2 * PAGE + 8));
    munmap(p, 3 * PAGE);
    reset(SIGSEGV);
    t_pass();
}

/* The fault resumes at this label with RAX taken from the handler's ucontext. */
extern char fault_resume[];
static void resume_handler(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    record(sig, si, ucv);
    uc->uc_mcontext.gregs[REG_RIP] = (greg_t)(uintptr_t)fault_resume;
    uc->uc_mcontext.gregs[REG_RAX] = 0x1234abcd;
}

__attribute__((noinline)) static long fault_and_resume(void)
{
    long v;
    __asm__ volatile("xor %%eax, %%eax\n\t"
                     "movl $1, (%%rax)\n\t"
                     "movq $0, %%rax\n\t" /* skipped by the handler */
                     ".globl fault_resume\n"
                     "fault_resume:\n\t"
                     : "=a"(v)
                     :
                     : "memory");
    return v;
}

static void sigreturn_restores_context(void)
{
    T_BEGIN("rt_sigreturn_ucontext");
    CHECK_SYS(install(SIGSEGV, resume_handler, 0));
    volatile double x = 1.5;
    long v = fault_and_resume();
    CHECK_EQ(hits, 1);
    CHECK_EQ(got_code, SEGV_MAPERR);
    CHECK_EQ(v, 0x1234abcd); /* registers come back from the (edited) ucontext */
    CHECK(x * 2 == 3.0, "floating point state intact after the handler");
    reset(SIGSEGV);
    t_pass();
}

static void altstack(void)
{
    T_BEGIN("sigaltstack_sa_onstack");
    static char stack[64 * 1024];
    stack_t ss = {.ss_sp = stack, .ss_size = sizeof stack, .ss_flags = 0}, old;
    CHECK_SYS(sigaltstack(&ss, NULL));
    CHECK_SYS(sigaltstack(NULL, &old));
    CHECK(old.ss_sp == stack && old.ss_size == sizeof stack && old.ss_flags == 0, "the alternate stack reads back");
    CHECK_SYS(install(SIGUSR1, record, SA_ONSTACK));
    got_onstack = 0;
    CHECK_SYS(raise(SIGUSR1));
    CHECK_EQ(hits, 1);
    CHECK((char *)got_stack >= stack && (char *)got_stack < stack + sizeof stack, "the handler ran on the alternate stack");
    CHECK_EQ(got_onstack, 1);
    /* Without SA_ONSTACK the handler runs on the normal stack. */
    CHECK_SYS(install(SIGUSR1, record, 0));
    hits = 0;
    CHECK_SYS(raise(SIGUSR1));
    CHECK_EQ(hits, 1);
    CHECK(!((char *)got_stack >= stack && (char *)got_stack < stack + sizeof stack), "the handler ran on the main stack");
    stack_t small = {.ss_sp = stack, .ss_size = 512, .ss_flags = 0};
    CHECK_ERRNO(sigaltstack(&small, NULL), ENOMEM);
    stack_t badflags = {.ss_sp = stack, .ss_size = sizeof stack, .ss_flags = 0x1234};
    CHECK_ERRNO(sigaltstack(&badflags, NULL), EINVAL);
    stack_t off = {.ss_flags = SS_DISABLE};
    CHECK_SYS(sigaltstack(&off, NULL));
    CHECK_SYS(sigaltstack(NULL, &old));
    CHECK_EQ(old.ss_flags, SS_DISABLE);
    reset(SIGUSR1);
    t_pass();
}

static void stack_overflow_on_altstack(void)
{
    T_BEGIN("stack_overflow_altstack");
    static const char *const args[] = {"stackoverflow", NULL};
    int status = run_child(args);
    CHECK(status >= 0 && WIFEXITED(status), "the child exited from its SIGSEGV handler");
    CHECK_EQ(WEXITSTATUS(status), 42);
    t_pass();
}

static void resethand_nodefer(void)
{
    T_BEGIN("sa_resethand_sa_nodefer_mask");
    struct sigaction sa, old;
    /* Default: the signal is blocked in its own handler, sa_mask too. */
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = record;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR2);
    CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));
    hits = 0;
    CHECK_SYS(raise(SIGUSR1));
    CHECK_EQ(hits, 1);
    CHECK_EQ(got_masked_self, 1);
    CHECK_EQ(got_masked_other, 1);
    /* SA_NODEFER: not blocked in its handler. */
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));
    CHECK_SYS(raise(SIGUSR1));
    CHECK_EQ(hits, 2);
    CHECK_EQ(got_masked_self, 0);
    CHECK_EQ(got_masked_other, 0);
    /* SA_RESETHAND: one delivery, then the default action is back. */
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
    CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));
    CHECK_SYS(raise(SIGUSR1));
    CHECK_EQ(hits, 3);
    CHECK_SYS(sigaction(SIGUSR1, NULL, &old));
    CHECK(old.sa_handler == SIG_DFL, "SIG_DFL after an SA_RESETHAND delivery");
    /* After the mask is restored, the process mask is as before. */
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    CHECK(!sigismember(&cur, SIGUSR1) && !sigismember(&cur, SIGUSR2), "the mask is restored after the handler");
    reset(SIGUSR1);
    t_pass();
}

static void masks(void)
{
    T_BEGIN("rt_sigprocmask");
    CHECK_SYS(install(SIGUSR1, record, 0));
    sigset_t set, old, cur;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGKILL); /* cannot be blocked: silently left out */
    hits = 0;
    CHECK_SYS(sigprocmask(SIG_BLOCK, &set, &old));
    CHECK_SYS(raise(SIGUSR1));
    CHECK_EQ(hits, 0); /* pending, not delivered */
    sigprocmask(SIG_BLOCK, NULL, &cur);
    CHECK(sigismember(&cur, SIGUSR1), "SIGUSR1 blocked");
    CHECK(!sigismember(&cur, SIGKILL), "SIGKILL never blocked");
    CHECK_SYS(sigprocmask(SIG_SETMASK, &old, NULL));
    CHECK_EQ(hits, 1); /* delivered on unblock, once */
    CHECK_ERRNO(sigprocmask(99, &set, NULL), EINVAL);
    CHECK_NEG(RAW4(SYS_rt_sigprocmask, SIG_BLOCK, &set, NULL, 4), EINVAL); /* bad sigsetsize */
    /* Ignored: nothing happens. */
    signal(SIGUSR1, SIG_IGN);
    hits = 0;
    CHECK_SYS(raise(SIGUSR1));
    CHECK_EQ(hits, 0);
    reset(SIGUSR1);
    t_pass();
}

static void sigaction_errors(void)
{
    T_BEGIN("rt_sigaction_einval");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    CHECK_ERRNO(sigaction(SIGKILL, &sa, NULL), EINVAL);
    CHECK_ERRNO(sigaction(SIGSTOP, &sa, NULL), EINVAL);
    CHECK_NEG(RAW4(SYS_rt_sigaction, 0, &sa, NULL, 8), EINVAL);
    CHECK_NEG(RAW4(SYS_rt_sigaction, 65, &sa, NULL, 8), EINVAL);
    CHECK_NEG(RAW4(SYS_rt_sigaction, SIGUSR1, NULL, NULL, 4), EINVAL); /* bad sigsetsize */
    t_pass();
}

static void kill_and_tgkill(void)
{
    T_BEGIN("kill_tgkill_siginfo");
    CHECK_SYS(install(SIGUSR1, record, 0));
    CHECK_SYS(install(SIGUSR2, record, 0));
    hits = 0;
    CHECK_SYS(kill(getpid(), SIGUSR1));
    CHECK_EQ(hits, 1);
    CHECK_EQ(got_signo, SIGUSR1);
    CHECK_EQ(got_code, SI_USER);
    CHECK_EQ(got_pid, getpid());
    CHECK_EQ(RAW3(SYS_tgkill, getpid(), RAW0(SYS_gettid), SIGUSR2), 0);
    CHECK_EQ(hits, 2);
    CHECK_EQ(got_signo, SIGUSR2);
    CHECK_EQ(got_code, SI_TKILL);
    CHECK_EQ(got_pid, getpid());
    reset(SIGUSR1);
    reset(SIGUSR2);
    t_pass();
}

/* A spawned child that ends with `sig` through its default action. */
static void default_action(const char *name, const char *mode, int sig)
{
    T_BEGIN(name);
    const char *args[] = {mode, NULL};
    int status = run_child(args);
    CHECK(status >= 0, "wait4 of the spawned child");
    CHECK(WIFSIGNALED(status), "the child was killed by a signal");
    CHECK_EQ(WTERMSIG(status), sig);
    t_pass();
}

static void kill_child(const char *name, int sig)
{
    T_BEGIN(name);
    static const char *const args[] = {"sleep", "10000", NULL};
    pid_t pid = spawn_child(args, NULL);
    CHECK(pid > 0, "posix_spawn");
    CHECK_SYS(kill(pid, sig));
    int status;
    CHECK_EQ(wait4(pid, &status, 0, NULL), pid);
    CHECK(WIFSIGNALED(status), "the child was killed by a signal");
    CHECK_EQ(WTERMSIG(status), sig);
    t_pass();
}

static volatile sig_atomic_t chld_hits;
static volatile int chld_code, chld_pid, chld_status;

static void record_chld(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    chld_hits++;
    chld_code = si->si_code;
    chld_pid = si->si_pid;
    chld_status = si->si_status;
}

/* A read of a pipe interrupted by a handled signal sent by a child: with
 * SA_RESTART it goes on and returns the byte the child writes later;
 * without, it fails with EINTR. */
static void read_interrupted(const char *name, int flags)
{
    T_BEGIN(name);
    CHECK_SYS(install(SIGUSR1, record, flags));
    int p[2];
    CHECK_SYS(pipe(p));
    char sigbuf[8], fdbuf[8];
    snprintf(sigbuf, sizeof sigbuf, "%d", SIGUSR1);
    snprintf(fdbuf, sizeof fdbuf, "%d", p[1]);
    const char *args[] = {"signal_then_write", sigbuf, fdbuf, "200", NULL};
    hits = 0;
    pid_t pid = spawn_child(args, NULL);
    CHECK(pid > 0, "posix_spawn");
    char c = 0;
    ssize_t r = read(p[0], &c, 1);
    int e = errno;
    if (flags & SA_RESTART) {
        CHECK_EQ(r, 1);
        CHECK_EQ(c, 'x');
    } else {
        errno = e;
        CHECK_EQ(r, -1);
        CHECK_EQ(e, EINTR);
        CHECK_EQ(read(p[0], &c, 1), 1); /* the child's byte comes later */
    }
    CHECK_EQ(hits, 1);
    CHECK_EQ(got_signo, SIGUSR1);
    CHECK_EQ(got_code, SI_USER);
    CHECK_EQ(got_pid, pid);
    int status;
    CHECK_EQ(wait4(pid, &status, 0, NULL), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child signalled and wrote");
    close(p[0]);
    close(p[1]);
    reset(SIGUSR1);
    t_pass();
}

static void sigchld(void)
{
    T_BEGIN("sigchld_handler_siginfo");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = record_chld;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    CHECK_SYS(sigaction(SIGCHLD, &sa, NULL));
    chld_hits = 0;
    static const char *const args[] = {"exit", "5", NULL};
    pid_t pid = spawn_child(args, NULL);
    CHECK(pid > 0, "posix_spawn");
    int status;
    CHECK_EQ(wait4(pid, &status, 0, NULL), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 5, "exit 5");
    CHECK_EQ(chld_hits, 1);
    CHECK_EQ(chld_code, CLD_EXITED);
    CHECK_EQ(chld_pid, pid);
    CHECK_EQ(chld_status, 5);
    signal(SIGCHLD, SIG_DFL);
    t_pass();
}

static void sigchld_ignored(void)
{
    T_BEGIN("sigchld_sig_ign_reaps");
    /* SIGCHLD ignored: children are reaped when they end, and wait4
     * reports ECHILD once none is left. */
    CHECK(signal(SIGCHLD, SIG_IGN) != SIG_ERR, "signal(SIGCHLD, SIG_IGN)");
    static const char *const args[] = {"exit", "3", NULL};
    pid_t pid = spawn_child(args, NULL);
    CHECK(pid > 0, "posix_spawn");
    int status;
    CHECK_ERRNO(wait4(-1, &status, 0, NULL), ECHILD);
    signal(SIGCHLD, SIG_DFL);
    t_pass();
}

static void suspend_and_pause(void)
{
    T_BEGIN("sigsuspend_pause");
    CHECK_SYS(install(SIGUSR1, record, 0));
    sigset_t block, empty, cur;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigemptyset(&empty);
    CHECK_SYS(sigprocmask(SIG_BLOCK, &block, NULL));
    char sigbuf[8];
    snprintf(sigbuf, sizeof sigbuf, "%d", SIGUSR1);
    const char *args[] = {"signal_parent", sigbuf, "100", NULL};
    hits = 0;
    pid_t pid = spawn_child(args, NULL);
    CHECK(pid > 0, "posix_spawn");
    /* SIGUSR1 stays blocked until sigsuspend opens the mask. */
    CHECK_ERRNO(sigsuspend(&empty), EINTR);
    CHECK_EQ(hits, 1);
    CHECK_EQ(got_masked_self, 1); /* blocked in its handler */
    sigprocmask(SIG_BLOCK, NULL, &cur);
    CHECK(sigismember(&cur, SIGUSR1), "sigsuspend restored the mask");
    int status;
    CHECK_EQ(wait4(pid, &status, 0, NULL), pid);
    CHECK_SYS(sigprocmask(SIG_UNBLOCK, &block, NULL));
    pid = spawn_child(args, NULL);
    CHECK(pid > 0, "posix_spawn");
    CHECK_ERRNO(pause(), EINTR);
    CHECK_EQ(hits, 2);
    CHECK_EQ(wait4(pid, &status, 0, NULL), pid);
    reset(SIGUSR1);
    t_pass();
}

static void timedwait(void)
{
    T_BEGIN("rt_sigtimedwait_rt_sigpending");
    CHECK_SYS(install(SIGUSR2, record, 0));
    sigset_t set, old, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    CHECK_SYS(sigprocmask(SIG_BLOCK, &set, &old));
    hits = 0;
    CHECK_SYS(raise(SIGUSR2));
    CHECK_SYS(sigpending(&pend));
    CHECK(sigismember(&pend, SIGUSR2), "SIGUSR2 pending");
    siginfo_t si;
    struct timespec zero = {0, 0}, short_ = {0, 20 * 1000 * 1000};
    CHECK_EQ(sigtimedwait(&set, &si, &zero), SIGUSR2);
    CHECK_EQ(si.si_signo, SIGUSR2);
    CHECK_EQ(si.si_code, SI_TKILL);
    CHECK_EQ(si.si_pid, getpid());
    CHECK_EQ(hits, 0); /* taken, not handled */
    CHECK_SYS(sigpending(&pend));
    CHECK(!sigismember(&pend, SIGUSR2), "no longer pending");
    uint64_t t0 = now_ns();
    CHECK_ERRNO(sigtimedwait(&set, &si, &short_), EAGAIN);
    CHECK(now_ns() - t0 >= 15 * 1000 * 1000, "waited for the timeout");
    CHECK_SYS(sigprocmask(SIG_SETMASK, &old, NULL));
    CHECK_EQ(hits, 0);
    reset(SIGUSR2);
    t_pass();
}

static void realtime_queue(void)
{
    T_BEGIN("realtime_signals_queue");
    int rt = SIGRTMIN + 1;
    CHECK_SYS(install(rt, record, 0));
    CHECK_SYS(install(SIGUSR1, record, 0));
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, rt);
    sigaddset(&set, SIGUSR1);
    CHECK_SYS(sigprocmask(SIG_BLOCK, &set, &old));
    hits = 0;
    for (int i = 0; i < 3; i++) {
        CHECK_SYS(kill(getpid(), rt));
        CHECK_SYS(kill(getpid(), SIGUSR1));
    }
    CHECK_EQ(hits, 0);
    CHECK_SYS(sigprocmask(SIG_SETMASK, &old, NULL));
    /* Three real-time deliveries, one SIGUSR1 (standard signals merge). */
    CHECK_EQ(hits, 4);
    reset(rt);
    reset(SIGUSR1);
    t_pass();
}

static volatile unsigned handler_mxcsr;

static unsigned get_mxcsr(void)
{
    unsigned v;
    __asm__ volatile("stmxcsr %0" : "=m"(v));
    return v;
}

static void set_mxcsr(unsigned v)
{
    __asm__ volatile("ldmxcsr %0" : : "m"(v));
}

static void fpu_handler(int sig)
{
    (void)sig;
    hits++;
    handler_mxcsr = get_mxcsr();
    set_mxcsr(0x1f80 | 0x2000); /* round down: must not leak out */
}

static void block_usr2_on_return(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    record(sig, si, ucv);
    sigaddset(&uc->uc_sigmask, SIGUSR2);
}

static void fpu_and_mask_restored(void)
{
    T_BEGIN("sigreturn_restores_mxcsr_and_uc_sigmask");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fpu_handler;
    sigemptyset(&sa.sa_mask);
    CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));
    unsigned before = get_mxcsr();
    set_mxcsr(0x1f80 | 0x6000); /* round toward zero */
    hits = 0;
    raise(SIGUSR1);
    unsigned after = get_mxcsr();
    set_mxcsr(before);
    CHECK_EQ(hits, 1);
    CHECK_EQ(handler_mxcsr & 0xffbf, 0x1f80); /* the handler starts with the initial state */
    CHECK_EQ(after & 0xffbf, 0x1f80 | 0x6000); /* the interrupted state came back */
    /* A handler that edits uc_sigmask changes the mask it returns to. */
    CHECK_SYS(install(SIGUSR1, block_usr2_on_return, 0));
    CHECK_SYS(raise(SIGUSR1));
    sigset_t cur, none;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    CHECK(sigismember(&cur, SIGUSR2), "uc_sigmask edited by the handler");
    sigemptyset(&none);
    CHECK_SYS(sigprocmask(SIG_SETMASK, &none, NULL));
    reset(SIGUSR1);
    t_pass();
}

/* A child blocked in the kernel (pipe read, pause) ends when a signal
 * comes: a handled one makes the read fail with EINTR, a fatal one kills. */
static void sleeping_child(const char *name, const char *mode, int sig, int want_exit)
{
    T_BEGIN(name);
    const char *args[] = {mode, NULL};
    pid_t pid = spawn_child(args, NULL);
    CHECK(pid > 0, "posix_spawn");
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    CHECK_SYS(kill(pid, sig));
    int status;
    CHECK_EQ(wait4(pid, &status, 0, NULL), pid);
    if (want_exit >= 0) {
        CHECK(WIFEXITED(status), "the child exited");
        CHECK_EQ(WEXITSTATUS(status), want_exit);
    } else {
        CHECK(WIFSIGNALED(status), "the child was killed by a signal");
        CHECK_EQ(WTERMSIG(status), sig);
    }
    t_pass();
}

static void sigpipe(void)
{
    T_BEGIN("sigpipe_default_and_ignored");
    static const char *const args[] = {"sigpipe", NULL};
    int status = run_child(args);
    CHECK(status >= 0 && WIFSIGNALED(status), "the child was killed by a signal");
    CHECK_EQ(WTERMSIG(status), SIGPIPE);
    CHECK(signal(SIGPIPE, SIG_IGN) != SIG_ERR, "ignore SIGPIPE");
    int p[2];
    CHECK_SYS(pipe(p));
    close(p[0]);
    CHECK_ERRNO(write(p[1], "x", 1), EPIPE);
    close(p[1]);
    signal(SIGPIPE, SIG_DFL);
    t_pass();
}

/* The instruction addresses the trap cases fault at. */
extern char ud2_at[], div_at[], int3_after[];

__attribute__((noinline)) static void do_ud2(void)
{
    __asm__ volatile(".globl ud2_at\nud2_at:\n\tud2");
}

__attribute__((noinline)) static void do_div0(void)
{
    __asm__ volatile("xor %%ecx, %%ecx\n\tmov $1, %%eax\n\tcltd\n\t"
                     ".globl div_at\ndiv_at:\n\tidiv %%ecx" ::: "eax", "ecx", "edx");
}

__attribute__((noinline)) static void do_int3(void)
{
    __asm__ volatile("int3\n.globl int3_after\nint3_after:\n\tnop");
}

__attribute__((noinline)) static void do_cli(void)
{
    __asm__ volatile("cli");
}

/* Runs `fn` under a handler that jumps back; 1 if a signal came. */
static int trap(void (*fn)(void))
{
    hits = 0;
    if (sigsetjmp(jump, 1) == 0) {
        fn();
        return 0;
    }
    return 1;
}

static void trap_siginfo(void)
{
    T_BEGIN("cpu_exceptions_siginfo");
    CHECK_SYS(install(SIGILL, record_and_jump, 0));
    CHECK_SYS(install(SIGFPE, record_and_jump, 0));
    CHECK_SYS(install(SIGSEGV, record_and_jump, 0));
    CHECK_SYS(install(SIGTRAP, record, 0));
    CHECK(trap(do_ud2), "SIGILL from ud2");
    CHECK_EQ(got_signo, SIGILL);
    CHECK_EQ(got_code, ILL_ILLOPN);
    CHECK_EQ((uintptr_t)got_addr, (uintptr_t)ud2_at);
    CHECK(trap(do_div0), "SIGFPE from a division by zero");
    CHECK_EQ(got_code, FPE_INTDIV);
    CHECK_EQ((uintptr_t)got_addr, (uintptr_t)div_at);
    /* #GP (a privileged instruction): SIGSEGV with SI_KERNEL, no address. */
    CHECK(trap(do_cli), "SIGSEGV from cli");
    CHECK_EQ(got_code, SI_KERNEL);
    CHECK_EQ((uintptr_t)got_addr, 0);
    /* int3 is a trap: the handler returns after it, and execution goes on. */
    hits = 0;
    do_int3();
    CHECK_EQ(hits, 1);
    CHECK_EQ(got_signo, SIGTRAP);
    CHECK_EQ(got_code, SI_KERNEL);
    reset(SIGILL);
    reset(SIGFPE);
    reset(SIGSEGV);
    reset(SIGTRAP);
    t_pass();
}

static void bad_stack(void)
{
    T_BEGIN("unwritable_frame_kills_with_sigsegv");
    static const char *const args[] = {"badstack", NULL};
    int status = run_child(args);
    CHECK(status >= 0 && WIFSIGNALED(status), "the child was killed by a signal");
    CHECK_EQ(WTERMSIG(status), SIGSEGV);
    t_pass();
}

void run_sig(void)
{
    segv_maperr();
    segv_accerr();
    sigreturn_restores_context();
    altstack();
    stack_overflow_on_altstack();
    resethand_nodefer();
    masks();
    sigaction_errors();
    kill_and_tgkill();
    default_action("default_sigsegv", "segv", SIGSEGV);
    default_action("default_sigbus", "bus", SIGBUS);
    default_action("default_sigill", "ill", SIGILL);
    default_action("default_sigfpe", "fpe", SIGFPE);
    default_action("default_sigabrt", "abrt", SIGABRT);
    default_action("default_sigusr1", "usr1", SIGUSR1);
    default_action("fatal_signal_while_blocked", "segv_blocked", SIGSEGV);
    default_action("fatal_signal_in_its_handler", "segv_in_handler", SIGSEGV);
    default_action("fatal_signal_ignored", "segv_ignored", SIGSEGV);
    kill_child("kill_child_sigterm", SIGTERM);
    kill_child("kill_child_sigkill", SIGKILL);
    read_interrupted("sa_restart_read_restarts", SA_RESTART);
    read_interrupted("read_without_sa_restart_eintr", 0);
    sigchld();
    sigchld_ignored();
    suspend_and_pause();
    timedwait();
    realtime_queue();
    fpu_and_mask_restored();
    sleeping_child("pipe_read_eintr_on_handled_signal", "pipe_wait", SIGUSR1, 4);
    sleeping_child("pipe_read_killed_by_sigkill", "pipe_wait", SIGKILL, -1);
    sleeping_child("pause_killed_by_sigterm", "pause", SIGTERM, -1);
    sigpipe();
    trap_siginfo();
    bad_stack();
}
