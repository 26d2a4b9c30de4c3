/* scen.c: the helpers of scen.h. */
#define _GNU_SOURCE
#include "scen.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "uapi.h"

extern char **environ;

const char *scen_self = "scen";
static const char *cur_scenario = "?";
static const char *cur_proc;

void scen_set(const char *scenario, const char *proc)
{
    cur_scenario = scenario;
    cur_proc = proc;
}

const char *scen_scenario(void)
{
    return cur_scenario;
}

/* ---- result lines ---- */

static void put(struct jl *j, const char *s, size_t len)
{
    if (j->n + len + 4 >= sizeof j->buf)
        len = sizeof j->buf - 4 - j->n; /* truncated: the line ends and stays one line */
    memcpy(j->buf + j->n, s, len);
    j->n += len;
}

static void puts_(struct jl *j, const char *s)
{
    put(j, s, strlen(s));
}

static void put_string(struct jl *j, const char *s)
{
    puts_(j, "\"");
    for (; *s; s++) {
        char esc[8];
        if (*s == '"' || *s == '\\') {
            esc[0] = '\\';
            esc[1] = *s;
            put(j, esc, 2);
        } else if ((unsigned char)*s < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", (unsigned char)*s);
            puts_(j, esc);
        } else {
            put(j, s, 1);
        }
    }
    puts_(j, "\"");
}

static void key(struct jl *j, const char *k)
{
    if (!j->first[j->depth])
        puts_(j, ",");
    j->first[j->depth] = 0;
    if (k) {
        put_string(j, k);
        puts_(j, ":");
    }
}

void jl_start(struct jl *j, const char *case_name)
{
    j->n = 0;
    j->depth = 0;
    j->first[0] = 1;
    puts_(j, "{");
    jl_str(j, "scenario", cur_scenario);
    jl_str(j, "case", case_name);
    if (cur_proc)
        jl_str(j, "proc", cur_proc);
}

void jl_str(struct jl *j, const char *k, const char *v)
{
    key(j, k);
    put_string(j, v);
}

void jl_int(struct jl *j, const char *k, long long v)
{
    char b[32];
    key(j, k);
    snprintf(b, sizeof b, "%lld", v);
    puts_(j, b);
}

void jl_num(struct jl *j, const char *k, double v)
{
    char b[48];
    key(j, k);
    snprintf(b, sizeof b, "%.6g", v);
    puts_(j, b);
}

void jl_bool(struct jl *j, const char *k, int v)
{
    key(j, k);
    puts_(j, v ? "true" : "false");
}

void jl_hex(struct jl *j, const char *k, uint64_t v)
{
    char b[32];
    snprintf(b, sizeof b, "0x%llx", (unsigned long long)v);
    jl_str(j, k, b);
}

void jl_null(struct jl *j, const char *k)
{
    key(j, k);
    puts_(j, "null");
}

static void open_(struct jl *j, const char *k, const char *bracket)
{
    key(j, k);
    puts_(j, bracket);
    if (j->depth + 1 < (int)(sizeof j->first / sizeof j->first[0]))
        j->depth++;
    j->first[j->depth] = 1;
}

void jl_obj_begin(struct jl *j, const char *k)
{
    open_(j, k, "{");
}

void jl_obj_end(struct jl *j)
{
    puts_(j, "}");
    if (j->depth > 0)
        j->depth--;
}

void jl_arr_begin(struct jl *j, const char *k)
{
    open_(j, k, "[");
}

void jl_arr_end(struct jl *j)
{
    puts_(j, "]");
    if (j->depth > 0)
        j->depth--;
}

void jl_end(struct jl *j)
{
    while (j->depth > 0)
        jl_obj_end(j); /* a forgotten end still gives valid JSON for objects */
    memcpy(j->buf + j->n, "}\n", 2);
    j->n += 2;
    size_t off = 0;
    while (off < j->n) {
        ssize_t w = write(1, j->buf + off, j->n - off);
        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            break;
        }
        off += (size_t)w;
    }
}

void scen_skipped(const char *case_name, const char *why)
{
    struct jl j;
    jl_start(&j, case_name);
    jl_str(&j, "skipped", why);
    jl_end(&j);
    note("%s: skipped: %s", case_name, why);
}

const char *system_name(void)
{
    static char name[160];
    if (!name[0]) {
        struct utsname u;
        if (uname(&u) == 0)
            snprintf(name, sizeof name, "%s %s", u.sysname, u.release);
        else
            snprintf(name, sizeof name, "unknown");
    }
    return name;
}

void note(const char *fmt, ...)
{
    char b[512];
    va_list ap;
    int n = snprintf(b, sizeof b, "%s %s%s%s: ", scen_self, cur_scenario, cur_proc ? " " : "", cur_proc ? cur_proc : "");
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof b)
        n += vsnprintf(b + n, sizeof b - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof b - 1)
        n = (int)sizeof b - 2;
    b[n++] = '\n';
    ssize_t w = write(2, b, (size_t)n);
    (void)w;
}

void die(const char *fmt, ...)
{
    char b[384];
    int e = errno;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    note("cannot set up: %s (errno %s)", b, errno_name(e));
    exit(2);
}

/* ---- host protocol ---- */

static unsigned next_request;

static void write_line(const char *s)
{
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t w = write(1, s + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

static unsigned new_id(void)
{
    return (unsigned)getpid() * 100u + (++next_request % 100u);
}

unsigned scen_inject(const char *kind, uint64_t phys, uint64_t *t_ns)
{
    char line[160];
    unsigned id = new_id();
    snprintf(line, sizeof line, "@@INJECT id=%u kind=%s phys=0x%llx cpu=0\n", id, kind, (unsigned long long)phys);
    if (t_ns)
        *t_ns = now_ns();
    write_line(line);
    return id;
}

int scen_wait_go(unsigned id, int timeout_ms)
{
    char want[48], buf[512];
    size_t have = 0;
    snprintf(want, sizeof want, "@@GO id=%u", id);
    uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ULL;
    for (;;) {
        uint64_t now = now_ns();
        if (now >= deadline)
            return 0;
        struct pollfd p = {.fd = 0, .events = POLLIN};
        int r = poll(&p, 1, (int)((deadline - now) / 1000000ULL) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        ssize_t n = read(0, buf + have, sizeof buf - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0; /* no console input (EOF): nobody will answer */
        have += (size_t)n;
        buf[have] = 0;
        if (strstr(buf, want)) {
            char *after = strstr(buf, want) + strlen(want);
            if (*after == 0 || *after == '\n' || *after == '\r' || *after == ' ')
                return 1;
        }
        char *nl = strrchr(buf, '\n');
        if (nl) { /* keep only the unfinished line */
            have = strlen(nl + 1);
            memmove(buf, nl + 1, have + 1);
        } else if (have >= sizeof buf - 1) {
            have = 0;
        }
    }
}

void scen_crash(void)
{
    char line[64];
    snprintf(line, sizeof line, "@@CRASH id=%u\n", new_id());
    write_line(line);
    for (;;)
        pause();
}

/* ---- SIGBUS recording ---- */

static struct sig_log *g_log;
static sigjmp_buf g_jmp;
static volatile sig_atomic_t g_armed, g_spinning;
static volatile uint64_t g_spin_tsc;

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

/* TSC ticks per microsecond, measured once against CLOCK_MONOTONIC. */
static double tsc_per_us(void)
{
    static double rate;
    if (rate == 0) {
        uint64_t t0 = now_ns(), c0 = rdtsc();
        sleep_ms(20);
        uint64_t t1 = now_ns(), c1 = rdtsc();
        rate = t1 > t0 && c1 > c0 ? (double)(c1 - c0) / ((double)(t1 - t0) / 1e3) : -1;
    }
    return rate;
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    uint64_t tsc = rdtsc(), t = now_ns();
    struct sig_log *l = g_log;
    if (l) {
        int k = __atomic_load_n(&l->n, __ATOMIC_RELAXED);
        l->last_code = si->si_code;
        if (k < SIG_MAX) {
            l->rec[k].signo = sig;
            l->rec[k].code = si->si_code;
            l->rec[k].addr = (uint64_t)(uintptr_t)si->si_addr;
            l->rec[k].lsb = si->si_code == BUS_MCEERR_AR || si->si_code == BUS_MCEERR_AO ? si->si_addr_lsb : 0;
            l->rec[k].t_ns = t;
            l->rec[k].tsc = tsc;
            l->rec[k].in_spin = g_spinning;
            l->rec[k].spin_tsc = g_spin_tsc;
            __atomic_store_n(&l->n, k + 1, __ATOMIC_RELEASE);
        } else {
            __atomic_fetch_add(&l->missed, 1, __ATOMIC_RELAXED);
        }
    }
    if (si->si_code == BUS_MCEERR_AO)
        return; /* a notice: the interrupted code goes on */
    if (g_armed) {
        g_armed = 0;
        siglongjmp(g_jmp, 1);
    }
    /* A synchronous SIGBUS outside a probe cannot go on at the faulting instruction. */
    static const char msg[] = "scen: SIGBUS outside a probe; exiting with status 70\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(70);
}

void sig_record_into(struct sig_log *log)
{
    /* The TSC rate is measured here, at the process's start (a 20 ms sleep): never
     * between asking for a machine check and spinning, where the check would land
     * outside the spin. */
    tsc_per_us();
    g_log = log;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, NULL) != 0)
        die("sigaction(SIGBUS)");
}

int probe_read(const volatile unsigned char *p, unsigned char *out)
{
    if (sigsetjmp(g_jmp, 1))
        return 1;
    g_armed = 1;
    unsigned char v = *p;
    g_armed = 0;
    *out = v;
    return 0;
}

int probe_write(volatile unsigned char *p, unsigned char v)
{
    if (sigsetjmp(g_jmp, 1))
        return 1;
    g_armed = 1;
    *p = v;
    g_armed = 0;
    return 0;
}

int madvise_poison(void *addr, size_t len, int *err)
{
    *err = 0;
    if (sigsetjmp(g_jmp, 1))
        return 1;
    g_armed = 1;
    int rc = madvise(addr, len, MADV_HWPOISON);
    int e = errno;
    g_armed = 0;
    if (rc != 0) {
        *err = e;
        return -1;
    }
    return 0;
}

static volatile uint64_t spin_sink;

static __attribute__((noinline)) void spin_loop(const volatile uint64_t *q, const volatile int *stop, uint64_t extra)
{
    uint64_t sum = 0;
    for (;;) {
        g_spin_tsc = rdtsc();
        for (int i = 0; i < 1024; i++)
            sum += *q;
        if (__atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
            if (extra < 1024)
                break;
            extra -= 1024;
        }
    }
    spin_sink = sum;
}

int spin_read(const volatile unsigned char *p, const volatile int *stop, uint64_t extra)
{
    const volatile uint64_t *q = (const volatile uint64_t *)(uintptr_t)((uintptr_t)p & ~7UL);
    tsc_per_us(); /* calibrated before, not while, spinning */
    if (sigsetjmp(g_jmp, 1)) {
        g_spinning = 0;
        return 1;
    }
    g_armed = 1;
    g_spinning = 1;
    spin_loop(q, stop, extra);
    g_spinning = 0;
    g_armed = 0;
    return 0;
}

const char *bus_code_name(int code)
{
    switch (code) {
    case BUS_ADRALN:
        return "BUS_ADRALN";
    case BUS_ADRERR:
        return "BUS_ADRERR";
    case BUS_OBJERR:
        return "BUS_OBJERR";
    case BUS_MCEERR_AR:
        return "BUS_MCEERR_AR";
    case BUS_MCEERR_AO:
        return "BUS_MCEERR_AO";
    case SI_USER:
        return "SI_USER";
    case SI_KERNEL:
        return "SI_KERNEL";
    default:
        return "other";
    }
}

void jl_signals(struct jl *j, const struct sig_log *log, int from, const struct poison_set *ps)
{
    int n = __atomic_load_n(&log->n, __ATOMIC_ACQUIRE);
    jl_arr_begin(j, "signals");
    for (int k = from; k < n; k++) {
        const struct sig_rec *r = &log->rec[k];
        jl_obj_begin(j, NULL);
        jl_str(j, "code", bus_code_name(r->code));
        jl_int(j, "si_code", r->code);
        uintptr_t base = ps ? (uintptr_t)ps->base : 0;
        long page = -1;
        if (ps && r->addr >= base && r->addr < base + ps->len)
            page = (long)((r->addr - base) / PAGE);
        if (page >= 0)
            jl_int(j, "page", page);
        else
            jl_null(j, "page");
        jl_hex(j, "addr", r->addr);
        int poisoned = -1;
        for (int i = 0; ps && i < ps->n; i++)
            if (ps->page[i] == page)
                poisoned = i;
        jl_bool(j, "addr_ok", poisoned >= 0 && r->addr == base + (uint64_t)page * PAGE);
        jl_int(j, "lsb", r->lsb);
        /* Time from the request of the page it names, else from the latest request before it. */
        uint64_t t0 = poisoned >= 0 ? ps->t_ns[poisoned] : 0;
        for (int i = 0; ps && !t0 && i < ps->n; i++)
            if (ps->t_ns[i] && ps->t_ns[i] <= r->t_ns && ps->t_ns[i] > t0)
                t0 = ps->t_ns[i];
        if (t0 && r->t_ns >= t0)
            jl_num(j, "us", (double)(r->t_ns - t0) / 1e3);
        else
            jl_null(j, "us");
        /* Only an action-required signal comes straight from the machine check that interrupted
         * the spin; after any other, the spin went on and its last sample says nothing. */
        if (r->code == BUS_MCEERR_AR && r->in_spin && r->spin_tsc && r->tsc > r->spin_tsc && tsc_per_us() > 0)
            jl_num(j, "mc_us", (double)(r->tsc - r->spin_tsc) / tsc_per_us());
        jl_obj_end(j);
    }
    jl_arr_end(j);
    if (log->missed)
        jl_int(j, "signals_missed", log->missed);
}

/* ---- addresses ---- */

uint64_t virt_to_phys(const void *p)
{
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0)
        return 0;
    uint64_t e = 0;
    uintptr_t va = (uintptr_t)p;
    ssize_t n = pread(fd, &e, 8, (off_t)(va / PAGE * 8));
    close(fd);
    if (n != 8 || !(e >> 63))
        return 0;
    uint64_t pfn = e & ((1ULL << 55) - 1);
    return pfn ? pfn * PAGE + (va % PAGE) : 0;
}

int phys_in_pmem(uint64_t phys)
{
    FILE *f = fopen("/proc/iomem", "r");
    if (!f)
        return -1;
    char line[256];
    int seen_nonzero = 0, in = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long s, e;
        if (sscanf(line, " %llx-%llx", &s, &e) != 2)
            continue;
        if (e)
            seen_nonzero = 1;
        if (strstr(line, "Persistent Memory") && phys >= s && phys <= e)
            in = 1;
    }
    fclose(f);
    return seen_nonzero ? in : -1;
}

void *mmap_aligned(size_t len, int prot, int flags, int fd, off_t off)
{
    unsigned char *area = mmap(NULL, len + HUGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (area == MAP_FAILED)
        return MAP_FAILED;
    unsigned char *aligned = (unsigned char *)(((uintptr_t)area + HUGE - 1) & ~(HUGE - 1));
    void *p = mmap(aligned, len, prot, flags | MAP_FIXED, fd, off);
    int e = errno;
    if (aligned > area)
        munmap(area, (size_t)(aligned - area));
    munmap(aligned + len, (size_t)(area + len + HUGE - (aligned + len)));
    if (p == MAP_FAILED)
        errno = e;
    return p;
}

/* ---- files ---- */

const char *in_dir(const char *dir, const char *name)
{
    static char bufs[8][1024];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

static void fill_pattern(unsigned char *b, uint64_t off, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = pattern(seed, off + i);
}

int make_file(const char *path, uint64_t len, unsigned seed)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0)
        return -1;
    static unsigned char buf[1 << 20];
    for (uint64_t off = 0; off < len; off += sizeof buf) {
        size_t n = len - off < sizeof buf ? (size_t)(len - off) : sizeof buf;
        fill_pattern(buf, off, n, seed);
        if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
            int e = errno;
            close(fd);
            errno = e ? e : EIO;
            return -1;
        }
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int file_has_pattern(int fd, uint64_t off, uint64_t len, unsigned seed)
{
    static unsigned char buf[1 << 20];
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done < sizeof buf ? (size_t)(len - done) : sizeof buf;
        ssize_t r = pread(fd, buf, n, (off_t)(off + done));
        if (r < 0)
            return -errno;
        if (r == 0)
            return 0;
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != pattern(seed, off + done + (uint64_t)i))
                return 0;
        done += (uint64_t)r;
    }
    return 1;
}

long long file_blocks(int fd)
{
    struct statx stx;
    memset(&stx, 0, sizeof stx);
    if (syscall(SYS_statx, fd, "", AT_EMPTY_PATH, STATX_BLOCKS, &stx) == 0 && (stx.stx_mask & STATX_BLOCKS))
        return (long long)stx.stx_blocks;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    return (long long)st.st_blocks;
}

long long extent_flags_at(int fd, uint64_t off)
{
    union {
        struct fiemap fm;
        unsigned char b[sizeof(struct fiemap) + sizeof(struct fiemap_extent)];
    } u;
    memset(&u, 0, sizeof u);
    u.fm.fm_start = off;
    u.fm.fm_length = 1;
    u.fm.fm_flags = FIEMAP_FLAG_SYNC;
    u.fm.fm_extent_count = 1;
    if (ioctl(fd, FS_IOC_FIEMAP, &u.fm) != 0)
        return -2;
    if (u.fm.fm_mapped_extents == 0)
        return -1;
    const struct fiemap_extent *e = &u.fm.fm_extents[0];
    if (off < e->fe_logical || off >= e->fe_logical + e->fe_length)
        return -1;
    return e->fe_flags;
}

/* ---- processes ---- */

pid_t spawn_self(char *const args[])
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)scen_self;
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid;
    int err = strchr(scen_self, '/') ? posix_spawn(&pid, scen_self, NULL, NULL, argv, environ)
                                     : posix_spawnp(&pid, scen_self, NULL, NULL, argv, environ);
    if (err) {
        errno = err;
        die("posix_spawn %s", scen_self);
    }
    return pid;
}

int wait_status(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void *ctl_map(int fd, size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

void *ctl_create(const char *path, size_t len)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0)
        die("create %s", path);
    static const unsigned char zero[4096];
    for (size_t off = 0; off < len; off += sizeof zero)
        if (pwrite(fd, zero, sizeof zero, (off_t)off) != (ssize_t)sizeof zero)
            die("pwrite %s", path);
    void *p = ctl_map(fd, len);
    if (!p)
        die("mmap %s", path);
    return p;
}

void *ctl_open(const char *path, size_t len)
{
    int fd = open(path, O_RDWR);
    if (fd < 0)
        die("open %s", path);
    void *p = ctl_map(fd, len);
    if (!p)
        die("mmap %s", path);
    return p;
}
