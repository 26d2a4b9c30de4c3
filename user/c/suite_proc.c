/* suite_proc.c: process system calls (identity, time, spawn and wait, prctl). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "suite.h"

/* A pid far above any pid_max, so it names no process. */
#define NO_SUCH_PID 0x3ffffff0

static void getpid_gettid(void)
{
    T_BEGIN("getpid_gettid");
    pid_t pid = getpid();
    CHECK(pid > 0, "a positive pid");
    CHECK_EQ(RAW0(SYS_getpid), pid);
    CHECK_EQ(RAW0(SYS_gettid), pid); /* one thread: tid == pid */
    CHECK_EQ(RAW0(SYS_getppid) > 0, 1);
    t_pass();
}

static void set_tid_address_returns_tid(void)
{
    T_BEGIN("set_tid_address");
    static int tid_word;
    CHECK_EQ(RAW1(SYS_set_tid_address, &tid_word), RAW0(SYS_gettid));
    t_pass();
}

static void uname_fields(void)
{
    T_BEGIN("uname");
    struct utsname u;
    CHECK_SYS(uname(&u));
    CHECK(u.sysname[0] != 0, "a system name");
    CHECK(u.release[0] != 0, "a release");
    CHECK(strcmp(u.machine, "x86_64") == 0, "machine x86_64");
    t_pass();
}

static void clock_gettime_clocks(void)
{
    T_BEGIN("clock_gettime");
    struct timespec a, b, r;
    CHECK_SYS(clock_gettime(CLOCK_MONOTONIC, &a));
    CHECK_SYS(clock_gettime(CLOCK_MONOTONIC, &b));
    CHECK(b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec >= a.tv_nsec), "monotonic time does not go back");
    CHECK(a.tv_nsec >= 0 && a.tv_nsec < 1000000000, "tv_nsec in [0, 1e9)");
    CHECK_SYS(clock_gettime(CLOCK_REALTIME, &r));
    CHECK(r.tv_sec > 1577836800, "wall-clock time after 2020-01-01");
    CHECK_SYS(clock_gettime(CLOCK_BOOTTIME, &r));
    CHECK_SYS(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &r));
    CHECK_NEG(RAW2(SYS_clock_gettime, 999, &r), EINVAL);
    t_pass();
}

static void nanosleep_sleeps(void)
{
    T_BEGIN("nanosleep");
    uint64_t t0 = now_ns();
    struct timespec ts = {0, 20 * 1000000L};
    CHECK_SYS(nanosleep(&ts, NULL));
    uint64_t dt = now_ns() - t0;
    CHECK(dt >= 20000000ULL, "at least the 20 ms asked for");
    CHECK(dt < 5000000000ULL, "less than 5 s for a 20 ms sleep");
    struct timespec bad = {0, 1000000000L};
    CHECK_ERRNO(nanosleep(&bad, NULL), EINVAL);
    struct timespec neg = {-1, 0};
    CHECK_ERRNO(nanosleep(&neg, NULL), EINVAL);
    t_pass();
}

static void getrusage_counts_faults(void)
{
    T_BEGIN("getrusage_minflt");
    enum { PAGES = 64 };
    struct rusage r0, r1;
    char *p = mmap(NULL, PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "an anonymous mapping");
    CHECK_SYS(getrusage(RUSAGE_SELF, &r0));
    for (int i = 0; i < PAGES; i++)
        p[i * 4096] = 1;
    CHECK_SYS(getrusage(RUSAGE_SELF, &r1));
    long delta = r1.ru_minflt - r0.ru_minflt;
    CHECK(delta >= 1, "first touches of fresh pages counted in ru_minflt");
    CHECK(delta <= PAGES + 16, "no more faults than pages touched (+16)");
    CHECK(r1.ru_majflt >= 0, "a major-fault count");
    CHECK_SYS(getrusage(RUSAGE_CHILDREN, &r1));
    CHECK_ERRNO(getrusage(99, &r1), EINVAL);
    munmap(p, PAGES * 4096);
    t_pass();
}

static void sched_yield_returns(void)
{
    T_BEGIN("sched_yield");
    CHECK_EQ(RAW0(SYS_sched_yield), 0);
    t_pass();
}

static void getrandom_bytes(void)
{
    T_BEGIN("getrandom");
    unsigned char a[64], b[64], zero[64] = {0};
    CHECK_EQ(getrandom(a, sizeof a, 0), 64);
    CHECK_EQ(getrandom(b, sizeof b, GRND_NONBLOCK), 64);
    CHECK(memcmp(a, zero, sizeof a) != 0, "random bytes, not zeros");
    CHECK(memcmp(a, b, sizeof a) != 0, "two calls give different bytes");
    CHECK_ERRNO(getrandom(a, sizeof a, 0xff00), EINVAL);
    t_pass();
}

static void prctl_mce_kill(void)
{
    T_BEGIN("prctl_mce_kill");
    CHECK_EQ(prctl(PR_MCE_KILL_GET, 0, 0, 0, 0), PR_MCE_KILL_DEFAULT);
    CHECK_SYS(prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0));
    CHECK_EQ(prctl(PR_MCE_KILL_GET, 0, 0, 0, 0), PR_MCE_KILL_EARLY);
    CHECK_SYS(prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_LATE, 0, 0));
    CHECK_EQ(prctl(PR_MCE_KILL_GET, 0, 0, 0, 0), PR_MCE_KILL_LATE);
    CHECK_SYS(prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_DEFAULT, 0, 0));
    CHECK_EQ(prctl(PR_MCE_KILL_GET, 0, 0, 0, 0), PR_MCE_KILL_DEFAULT);
    CHECK_SYS(prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0));
    CHECK_SYS(prctl(PR_MCE_KILL, PR_MCE_KILL_CLEAR, 0, 0, 0));
    CHECK_EQ(prctl(PR_MCE_KILL_GET, 0, 0, 0, 0), PR_MCE_KILL_DEFAULT);
    CHECK_ERRNO(prctl(PR_MCE_KILL, PR_MCE_KILL_SET, 5, 0, 0), EINVAL);
    CHECK_ERRNO(prctl(PR_MCE_KILL, 7, 0, 0, 0), EINVAL);
    CHECK_ERRNO(prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 1, 0), EINVAL);
    CHECK_ERRNO(prctl(PR_MCE_KILL_GET, 1, 0, 0, 0), EINVAL);
    CHECK_ERRNO(prctl(0x7fff0000, 0, 0, 0, 0), EINVAL);
    t_pass();
}

static void spawn_wait4_exit_status(void)
{
    T_BEGIN("posix_spawn_wait4");
    static const char *const args[] = {"exit", "7", NULL};
    pid_t pid = spawn_child(args, NULL);
    CHECK(pid > 0, "posix_spawn of the suite itself");
    int status = 0;
    struct rusage ru;
    CHECK_EQ(wait4(pid, &status, 0, &ru), pid);
    CHECK(WIFEXITED(status), "the child exited");
    CHECK_EQ(WEXITSTATUS(status), 7);
    static const char *const args2[] = {"exit_group", "255", NULL};
    status = run_child(args2);
    CHECK(WIFEXITED(status), "the child exited through exit_group");
    CHECK_EQ(WEXITSTATUS(status), 255);
    t_pass();
}

static void waitid_exited(void)
{
    T_BEGIN("waitid");
    static const char *const args[] = {"exit", "3", NULL};
    pid_t pid = spawn_child(args, NULL);
    CHECK(pid > 0, "posix_spawn");
    siginfo_t si;
    memset(&si, 0, sizeof si);
    CHECK_SYS(waitid(P_PID, pid, &si, WEXITED));
    CHECK_EQ(si.si_signo, SIGCHLD);
    CHECK_EQ(si.si_code, CLD_EXITED);
    CHECK_EQ(si.si_pid, pid);
    CHECK_EQ(si.si_status, 3);
    CHECK_ERRNO(waitid(P_PID, pid, &si, 0), EINVAL); /* no WEXITED/WSTOPPED/WCONTINUED */
    t_pass();
}

static void wait4_wnohang(void)
{
    T_BEGIN("wait4_wnohang");
    static const char *const args[] = {"sleep", "300", NULL};
    pid_t pid = spawn_child(args, NULL);
    CHECK(pid > 0, "posix_spawn");
    int status = -1;
    CHECK_EQ(wait4(pid, &status, WNOHANG, NULL), 0);
    CHECK_EQ(wait4(-1, &status, 0, NULL), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the sleeping child exited 0");
    t_pass();
}

static void wait_errors(void)
{
    T_BEGIN("wait_echild_einval");
    int status;
    siginfo_t si;
    CHECK_ERRNO(wait4(-1, &status, 0, NULL), ECHILD);
    CHECK_ERRNO(wait4(NO_SUCH_PID, &status, WNOHANG, NULL), ECHILD);
    CHECK_ERRNO(waitid(P_ALL, 0, &si, WEXITED | WNOHANG), ECHILD);
    CHECK_ERRNO(wait4(-1, &status, 0x100, NULL), EINVAL);
    t_pass();
}

static void kill_errors(void)
{
    T_BEGIN("kill_esrch_einval");
    CHECK_SYS(kill(getpid(), 0));
    CHECK_ERRNO(kill(NO_SUCH_PID, 0), ESRCH);
    CHECK_NEG(RAW3(SYS_tgkill, getpid(), NO_SUCH_PID, 0), ESRCH);
    CHECK_ERRNO(kill(getpid(), 1000), EINVAL);
    CHECK_NEG(RAW3(SYS_tgkill, getpid(), RAW0(SYS_gettid), 1000), EINVAL);
    CHECK_NEG(RAW3(SYS_tgkill, 0, RAW0(SYS_gettid), 0), EINVAL);
    t_pass();
}

static void spawn_missing_program(void)
{
    T_BEGIN("posix_spawn_enoent");
    pid_t pid;
    char *const argv[] = {"missing", NULL};
    int err = posix_spawn(&pid, path_in("no-such-program"), NULL, NULL, argv, NULL);
    CHECK_EQ(err, ENOENT);
    t_pass();
}

static void cloexec_across_exec(void)
{
    T_BEGIN("o_cloexec_exec");
    int a = CHECK_SYS(open(path_in("cloexec.a"), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
    int b = CHECK_SYS(open(path_in("cloexec.b"), O_CREAT | O_RDWR, 0644));
    char sa[16], sb[16];
    snprintf(sa, sizeof sa, "%d", a);
    snprintf(sb, sizeof sb, "%d", b);
    const char *args[] = {"fds", sa, sb, NULL};
    int status = run_child(args);
    close(a);
    close(b);
    unlink(path_in("cloexec.a"));
    unlink(path_in("cloexec.b"));
    CHECK(status >= 0 && WIFEXITED(status), "the child exited");
    CHECK_EQ(WEXITSTATUS(status), 0); /* O_CLOEXEC fd closed, the other inherited */
    t_pass();
}

static void spawn_env(void)
{
    T_BEGIN("posix_spawn_envp");
    static const char *const args[] = {"env", "FSDAX_SUITE", "value with spaces", NULL};
    char *envp[] = {"FSDAX_SUITE=value with spaces", "OTHER=1", NULL};
    pid_t pid = spawn_child(args, envp);
    CHECK(pid > 0, "posix_spawn");
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child saw its environment");
    t_pass();
}

void run_proc(void)
{
    getpid_gettid();
    set_tid_address_returns_tid();
    uname_fields();
    clock_gettime_clocks();
    nanosleep_sleeps();
    getrusage_counts_faults();
    sched_yield_returns();
    getrandom_bytes();
    prctl_mce_kill();
    spawn_wait4_exit_status();
    waitid_exited();
    wait4_wnohang();
    wait_errors();
    kill_errors();
    spawn_missing_program();
    cloexec_across_exec();
    spawn_env();
}
