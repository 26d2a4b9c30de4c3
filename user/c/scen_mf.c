/*
 * scen_mf: the memory-failure scenarios, run the same way on fsdax and on
 * Linux XFS-DAX. Poison comes from madvise(MADV_HWPOISON) or from a machine
 * check the host injects when asked (@@INJECT, scen.h). Every process
 * records every SIGBUS (si_code, si_addr as a page of its own mapping,
 * si_addr_lsb, time from the poison request) and what it can still read
 * afterwards, and prints one JSON line.
 *
 *   scen_mf [--device PATH] SCENARIO[,SCENARIO...] DIR
 *   scen_mf --list
 *
 * The xfstests layouts (two processes: "reader" maps the test file
 * read-only and keeps touching every page; "poisoner" maps the poison file
 * and poisons page 4, or pages 4 and 5):
 *   xfs550  the poison file is the test file (64 pages)
 *   xfs551  the poison file is a reflink copy of the test file (64 pages)
 *   xfs552  16 pages, the even pages of the poison file shared with the test file,
 *           so page 4 is shared and page 5 is not
 * each with _madvise, _ar (action-required machine check while the
 * poisoner spins on the page; the reader sleeps, its mapping intact, while
 * the check is on its way, so the poisoner consumes it) or _ao
 * (action-optional machine check), in
 * four cases: late_1, late_2, early_1, early_2 (PR_MCE_KILL_LATE or
 * _EARLY in both processes; 1 or 2 pages).
 *   dax_poison       ndctl's dax-poison: a 2 MiB-aligned MAP_SHARED_VALIDATE|
 *                    MAP_POPULATE|MAP_SYNC mapping of 4 MiB, poison at 1 MiB,
 *                    then punch the page, pwrite, fsync, read back (cases madvise, ar)
 *   recovery         poison (ar on page 5 of one file, ao on page 9 of another),
 *                    pread, a whole-page pwrite of page 5 (recovery write), read again
 *   recovery_verify  after a reboot: pread and map those pages before any machine check
 *   raw_poison       /dev/pmem0 (scen_mf --device PATH raw_poison DIR; on fsdax with the file
 *                    system unmounted) mapped twice with 2 MiB pages: MADV_HWPOISON in one;
 *                    AR, the page unmapped in both, both leaves split
 *   madvise_untouched MADV_HWPOISON of a page mapped but never touched (Linux faults it in
 *                    first), then pread, a read through the mapping, a second MADV_HWPOISON
 *   sigbus_selftest  the SIGBUS recording itself, with a plain BUS_ADRERR (no poison)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "scen.h"
#include "uapi.h"

static const char *dir;

/* Time the poisoner spins after the host acknowledged a request (loads of 8 bytes). */
#define SPIN_AFTER_ACK (1ULL << 24)
/* How long to wait for the host to acknowledge a request. */
#define ACK_TIMEOUT_MS 60000

enum method { M_MADVISE, M_AR, M_AO };
enum layout { L_SAME, L_REFLINK, L_PARTIAL, L_NDCTL, L_RECOVERY };

static const char *method_name(int m)
{
    return m == M_MADVISE ? "madvise" : m == M_AR ? "ar" : "ao";
}

/* What the processes of one case share (a file in DIR mapped by each). */
struct mf_ctl {
    int ready_reader, ready_poisoner;
    int stop;          /* the coordinator to the reader: finish */
    int done;          /* the poisoner finished poisoning */
    int npoison;
    int request[4];    /* the poisoner asks the coordinator to have page k poisoned */
    int go[4];         /* the coordinator: the host acknowledged (or gave up on) request k */
    int acked[4];      /* the host really acknowledged */
    uint64_t phys[4];  /* the physical address of each page to poison */
    uint64_t t_req[4]; /* when each poison was requested (the @@INJECT line, or madvise) */
    uint64_t t_done[4]; /* when it was done for sure (the host's @@GO, or madvise returned) */
    int inject_kind;   /* M_AR or M_AO */
};

/* One case: a layout, a method, a kill mode and 1 or 2 pages. */
struct mf_case {
    const char *name;
    int layout, method, early, npoison;
    int pages;   /* pages of each file */
    int first;   /* first poisoned page */
    const char *file; /* name of the poison file in DIR (NULL: a fresh name per case) */
    int pause_fd; /* the reader: a pipe it sleeps on while a machine check is on its way (-1: none) */
};

static int layout_pages(int layout)
{
    return layout == L_PARTIAL ? 16 : layout == L_NDCTL ? 1024 : 64;
}

/* The pattern seed of page `pg` of the test file (0) or the poison file (1). */
static unsigned seed_of(int layout, int file, int pg)
{
    if (file == 0)
        return 1;
    if (layout == L_PARTIAL)
        return pg % 2 == 0 ? 1 : 2;
    if (layout == L_NDCTL || layout == L_RECOVERY)
        return 5;
    return 1;
}

/* Whether page pg of the test file is the same block as page pg of the poison file. */
static int shared_page(int layout, int pg)
{
    return layout == L_SAME || layout == L_REFLINK || (layout == L_PARTIAL && pg % 2 == 0);
}

static void set_kill_mode(int early)
{
    prctl(PR_MCE_KILL, PR_MCE_KILL_SET, early ? PR_MCE_KILL_EARLY : PR_MCE_KILL_LATE, 0, 0);
}

static void jl_kill_mode(struct jl *j)
{
    int m = prctl(PR_MCE_KILL_GET, 0, 0, 0, 0);
    jl_str(j, "mce_kill", m == PR_MCE_KILL_EARLY ? "early" : m == PR_MCE_KILL_LATE ? "late" : m < 0 ? errno_name(errno) : "default");
}

/* Reads byte 100 of page pg through a mapping into *v: NULL, or "SIGBUS <code>" if the read
 * got SIGBUS. */
static const char *read_byte(const unsigned char *p, uint64_t pg, const struct sig_log *log, unsigned char *v)
{
    int before = __atomic_load_n(&log->n, __ATOMIC_ACQUIRE);
    if (!probe_read(p + pg * PAGE + 100, v))
        return NULL;
    static char b[4][40];
    static int k;
    char *s = b[k++ % 4];
    int n = __atomic_load_n(&log->n, __ATOMIC_ACQUIRE);
    snprintf(s, 40, "SIGBUS %s", bus_code_name(n > before ? log->rec[n - 1].code : log->last_code));
    return s;
}

/* "ok", "wrong" (read, but not the file's bytes) or "SIGBUS <code>" for a read through the mapping. */
static const char *probe_page(const unsigned char *p, uint64_t pg, unsigned seed, const struct sig_log *log)
{
    unsigned char v = 0;
    const char *bus = read_byte(p, pg, log, &v);
    if (bus)
        return bus;
    return v == pattern(seed, pg * PAGE + 100) ? "ok" : "wrong";
}

/* "ok", "wrong" or the errno name of a 4 KiB pread of page pg. */
static const char *pread_page(int fd, uint64_t pg, unsigned seed)
{
    static unsigned char buf[PAGE];
    ssize_t n = pread(fd, buf, PAGE, (off_t)(pg * PAGE));
    if (n < 0)
        return errno_name(errno);
    if (n != (ssize_t)PAGE)
        return "short";
    for (uint64_t i = 0; i < PAGE; i++)
        if (buf[i] != pattern(seed, pg * PAGE + i))
            return "wrong";
    return "ok";
}

static int is_poisoned(const struct mf_ctl *c, int first, int pg)
{
    return pg >= first && pg < first + c->npoison;
}

/* The pages of the mapping other than `skip` (the poisoned ones): all still readable with
 * the right bytes, through the mapping and through pread? Adds others_ok and others_bad. */
static void jl_others(struct jl *j, const unsigned char *p, int fd, int pages, int layout, int file,
                      const struct mf_ctl *c, int first, int only_shared, const struct sig_log *log)
{
    int bad_map = 0, bad_pread = 0, n = 0;
    for (int pg = 0; pg < pages; pg++) {
        if (is_poisoned(c, first, pg) && (!only_shared || shared_page(layout, pg)))
            continue;
        n++;
        unsigned seed = seed_of(layout, file, pg);
        bad_map += strcmp(probe_page(p, (uint64_t)pg, seed, log), "ok") != 0;
        bad_pread += strcmp(pread_page(fd, (uint64_t)pg, seed), "ok") != 0;
    }
    jl_int(j, "other_pages", n);
    jl_int(j, "other_pages_bad_through_mapping", bad_map);
    jl_int(j, "other_pages_bad_through_pread", bad_pread);
}

/* ---- the reader: maps the test file read-only and keeps touching every page ---- */

static void reader(const char *ctl_path, const char *file, const struct mf_case *k)
{
    struct mf_ctl *c = ctl_open(ctl_path, PAGE);
    static struct sig_log log;
    sig_record_into(&log);
    set_kill_mode(k->early);
    int fd = open(file, O_RDONLY);
    if (fd < 0)
        die("open %s", file);
    size_t len = (size_t)k->pages * PAGE;
    const unsigned char *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap");
    for (int pg = 0; pg < k->pages; pg++)
        probe_page(p, (uint64_t)pg, seed_of(k->layout, 0, pg), &log);
    uint64_t phys[4];
    for (int i = 0; i < 4; i++)
        phys[i] = virt_to_phys(p + (uint64_t)(k->first + i) * PAGE);
    __atomic_store_n(&c->ready_reader, 1, __ATOMIC_RELEASE);
    /* Reads of the poisoned pages after each was poisoned: ok, SIGBUS. */
    long ok_after[4] = {0}, bus_after[4] = {0};
    int paused = 0, pause_fd = k->pause_fd; /* injections the reader slept through, on this pipe */
    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        /* An injected machine check arrives wherever the CPU is, so while one is on its way
         * the reader sleeps in the kernel (its mapping stays): the spinning poisoner is the
         * one that consumes it. One byte on the pipe per injection wakes it again. */
        while (pause_fd >= 0 && paused < k->npoison && __atomic_load_n(&c->request[paused], __ATOMIC_ACQUIRE)) {
            char b;
            ssize_t n = read(pause_fd, &b, 1);
            if (n == 1)
                paused++;
            else if (n < 0 && errno == EINTR)
                continue; /* an action-optional notice */
            else
                pause_fd = -1; /* the coordinator is gone */
        }
        for (int pg = 0; pg < k->pages; pg++) {
            const char *r = probe_page(p, (uint64_t)pg, seed_of(k->layout, 0, pg), &log);
            int i = pg - k->first;
            if (i >= 0 && i < k->npoison && c->t_done[i] && now_ns() > c->t_done[i]) {
                ok_after[i] += strcmp(r, "ok") == 0;
                bus_after[i] += strncmp(r, "SIGBUS", 6) == 0;
            }
        }
        sleep_ms(10);
    }
    struct poison_set ps = {.base = p, .len = len, .n = 0};
    for (int i = 0; i < k->npoison; i++)
        if (shared_page(k->layout, k->first + i)) {
            ps.page[ps.n] = k->first + i;
            ps.t_ns[ps.n++] = c->t_req[i];
        }
    struct jl j;
    jl_start(&j, k->name);
    jl_kill_mode(&j);
    jl_signals(&j, &log, 0, &ps);
    jl_arr_begin(&j, "poisoned");
    for (int i = 0; i < k->npoison; i++) {
        int pg = k->first + i;
        jl_obj_begin(&j, NULL);
        jl_int(&j, "page", pg);
        jl_bool(&j, "shared", shared_page(k->layout, pg));
        if (phys[i] && c->phys[i])
            jl_bool(&j, "same_frame", phys[i] == c->phys[i]);
        else
            jl_null(&j, "same_frame");
        jl_int(&j, "reads_ok_after", ok_after[i]);
        jl_int(&j, "reads_sigbus_after", bus_after[i]);
        jl_str(&j, "read_at_end", probe_page(p, (uint64_t)pg, seed_of(k->layout, 0, pg), &log));
        jl_str(&j, "pread_at_end", pread_page(fd, (uint64_t)pg, seed_of(k->layout, 0, pg)));
        jl_obj_end(&j);
    }
    jl_arr_end(&j);
    jl_others(&j, p, fd, k->pages, k->layout, 0, c, k->first, 1, &log);
    jl_end(&j);
    exit(0);
}

/* ---- the poisoner ---- */

/* Asks the coordinator to have page i poisoned by the host and spins: on the page itself
 * (action required: this process consumes the poison) or on another page (action optional). */
static void request_and_spin(struct mf_ctl *c, int i, const unsigned char *page, const unsigned char *elsewhere)
{
    c->phys[i] = virt_to_phys(page);
    __atomic_store_n(&c->request[i], 1, __ATOMIC_RELEASE);
    spin_read(c->inject_kind == M_AR ? page : elsewhere, &c->go[i], SPIN_AFTER_ACK);
}

/* The ndctl dax-poison steps after the poison: punch the page, pwrite it, fsync, read it back. */
static void ndctl_after(struct jl *j, int fd, unsigned char *p, uint64_t pg, struct sig_log *log)
{
    jl_obj_begin(j, "after");
    int rc = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(pg * PAGE), PAGE);
    jl_str(j, "punch_hole", rc == 0 ? "ok" : errno_name(errno));
    static unsigned char buf[PAGE];
    for (uint64_t i = 0; i < PAGE; i++)
        buf[i] = pattern(9, pg * PAGE + i);
    ssize_t w = pwrite(fd, buf, PAGE, (off_t)(pg * PAGE));
    jl_str(j, "pwrite", w == (ssize_t)PAGE ? "ok" : w < 0 ? errno_name(errno) : "short");
    jl_str(j, "fsync", fsync(fd) == 0 ? "ok" : errno_name(errno));
    jl_str(j, "read_back_through_mapping", probe_page(p, pg, 9, log));
    jl_str(j, "read_back_through_pread", pread_page(fd, pg, 9));
    jl_obj_end(j);
}

/* The recovery steps: pread the page, rewrite the whole page, pread again, map it again. */
static void recovery_after(struct jl *j, int fd, unsigned char *p, uint64_t pg, struct sig_log *log, int rewrite)
{
    jl_obj_begin(j, "after");
    jl_str(j, "pread", pread_page(fd, pg, 5));
    jl_str(j, "pread_neighbour_before", pread_page(fd, pg - 1, 5));
    jl_str(j, "pread_neighbour_after", pread_page(fd, pg + 1, 5));
    jl_str(j, "read_through_mapping", probe_page(p, pg, 5, log));
    if (rewrite) {
        static unsigned char buf[PAGE];
        for (uint64_t i = 0; i < PAGE; i++)
            buf[i] = pattern(6, pg * PAGE + i);
        ssize_t w = pwrite(fd, buf, PAGE, (off_t)(pg * PAGE));
        jl_str(j, "recovery_pwrite", w == (ssize_t)PAGE ? "ok" : w < 0 ? errno_name(errno) : "short");
        jl_str(j, "fsync", fsync(fd) == 0 ? "ok" : errno_name(errno));
        jl_str(j, "pread_after_rewrite", pread_page(fd, pg, 6));
        jl_str(j, "read_through_old_mapping", probe_page(p, pg, 6, log));
        unsigned char *q = mmap(NULL, 16 * PAGE, PROT_READ, MAP_SHARED, fd, 0);
        if (q == MAP_FAILED) {
            jl_str(j, "read_through_new_mapping", errno_name(errno));
        } else {
            jl_str(j, "read_through_new_mapping", probe_page(q, pg, 6, log));
            munmap(q, 16 * PAGE);
        }
    }
    jl_obj_end(j);
}

static void poisoner(const char *ctl_path, const char *file, const struct mf_case *k)
{
    struct mf_ctl *c = ctl_open(ctl_path, PAGE);
    static struct sig_log log;
    sig_record_into(&log);
    set_kill_mode(k->early);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    sched_setaffinity(0, sizeof one, &one); /* the CPU the @@INJECT line names; best effort */
    int ndctl = k->layout == L_NDCTL;
    int writable = ndctl || k->layout == L_RECOVERY;
    int fd = open(file, writable ? O_RDWR : O_RDONLY);
    if (fd < 0)
        die("open %s", file);
    size_t len = (size_t)k->pages * PAGE;
    int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
    int flags = ndctl ? MAP_SHARED_VALIDATE | MAP_POPULATE | MAP_SYNC : MAP_SHARED;
    uint64_t t_map = now_ns();
    unsigned char *p = ndctl ? mmap_aligned(len, prot, flags, fd, 0) : mmap(NULL, len, prot, flags, fd, 0);
    double map_secs = (double)(now_ns() - t_map) / 1e9;
    if (p == MAP_FAILED) {
        char why[96];
        snprintf(why, sizeof why, "mmap: %s", errno_name(errno));
        scen_skipped(k->name, why);
        __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
        __atomic_store_n(&c->ready_poisoner, 1, __ATOMIC_RELEASE);
        exit(0);
    }
    for (int pg = 0; pg < k->pages; pg++)
        probe_page(p, (uint64_t)pg, seed_of(k->layout, 1, pg), &log);
    __atomic_store_n(&c->ready_poisoner, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&c->ready_reader, __ATOMIC_ACQUIRE))
        sleep_ms(1);
    sleep_ms(50);
    const unsigned char *first = p + (uint64_t)k->first * PAGE;
    /* A page that is never poisoned, for the action-optional spin. */
    const unsigned char *elsewhere = p + (uint64_t)(k->first > 0 ? 0 : k->pages - 1) * PAGE;
    int madvise_rc = 0, madvise_err = 0;
    if (k->method == M_MADVISE) {
        for (int i = 0; i < k->npoison; i++)
            c->phys[i] = virt_to_phys(first + (uint64_t)i * PAGE);
        uint64_t t = now_ns();
        for (int i = 0; i < k->npoison; i++)
            c->t_req[i] = t;
        madvise_rc = madvise_poison((void *)first, (size_t)k->npoison * PAGE, &madvise_err);
        t = now_ns();
        for (int i = 0; i < k->npoison; i++)
            c->t_done[i] = t;
    } else {
        for (int i = 0; i < k->npoison; i++)
            request_and_spin(c, i, first + (uint64_t)i * PAGE, elsewhere);
    }
    sleep_ms(500); /* late notices */
    struct poison_set ps = {.base = p, .len = len, .n = k->npoison};
    for (int i = 0; i < k->npoison; i++) {
        ps.page[i] = k->first + i;
        ps.t_ns[i] = c->t_req[i];
    }
    struct jl j;
    jl_start(&j, k->name);
    jl_str(&j, "method", method_name(k->method));
    jl_kill_mode(&j);
    if (ndctl) {
        jl_num(&j, "map_populate_secs", map_secs);
        uint64_t a = virt_to_phys(p), b = virt_to_phys(p + HUGE - PAGE);
        if (a && b)
            jl_bool(&j, "first_2m_physically_aligned_and_contiguous", a % HUGE == 0 && b == a + HUGE - PAGE);
        else
            jl_null(&j, "first_2m_physically_aligned_and_contiguous");
    }
    if (k->method == M_MADVISE)
        jl_str(&j, "madvise", madvise_rc == 0 ? "ok" : madvise_rc == 1 ? "interrupted by SIGBUS" : errno_name(madvise_err));
    else {
        jl_arr_begin(&j, "acked");
        for (int i = 0; i < k->npoison; i++)
            jl_bool(&j, NULL, c->acked[i]);
        jl_arr_end(&j);
    }
    if (ndctl) {
        /* Before anything touches them again: the neighbours of the poisoned page still
         * mapped (a 2 MiB page split, not dropped), the poisoned page itself not. */
        const unsigned char *x = p + (uint64_t)k->first * PAGE;
        uint64_t before = virt_to_phys(x - PAGE), after = virt_to_phys(x + PAGE), at = virt_to_phys(x);
        jl_bool(&j, "neighbours_still_mapped", before != 0 && after != 0);
        jl_bool(&j, "poisoned_page_unmapped", at == 0);
    }
    jl_signals(&j, &log, 0, &ps);
    jl_arr_begin(&j, "poisoned");
    for (int i = 0; i < k->npoison; i++) {
        int pg = k->first + i;
        jl_obj_begin(&j, NULL);
        jl_int(&j, "page", pg);
        jl_hex(&j, "phys", c->phys[i]);
        if (k->layout != L_NDCTL && k->layout != L_RECOVERY)
            jl_bool(&j, "shared", shared_page(k->layout, pg));
        jl_str(&j, "read_at_end", probe_page(p, (uint64_t)pg, seed_of(k->layout, 1, pg), &log));
        if (k->layout != L_RECOVERY)
            jl_str(&j, "pread_at_end", pread_page(fd, (uint64_t)pg, seed_of(k->layout, 1, pg)));
        jl_obj_end(&j);
    }
    jl_arr_end(&j);
    if (k->layout == L_NDCTL)
        ndctl_after(&j, fd, p, (uint64_t)k->first, &log);
    else if (k->layout == L_RECOVERY)
        recovery_after(&j, fd, p, (uint64_t)k->first, &log, k->method == M_AR);
    else
        jl_others(&j, p, fd, k->pages, k->layout, 1, c, k->first, 0, &log);
    jl_end(&j);
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
    exit(0);
}

/* ---- the coordinator ---- */

static void case_args(const struct mf_case *k, char *buf, size_t n)
{
    snprintf(buf, n, "%s:%d:%d:%d:%d:%d:%d:%d", k->name, k->layout, k->method, k->early, k->npoison, k->pages, k->first,
             k->pause_fd);
}

static int parse_case(const char *s, struct mf_case *k)
{
    static char name[64];
    const char *colon = strchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof name)
        return -1;
    memcpy(name, s, (size_t)(colon - s));
    name[colon - s] = 0;
    k->name = name;
    return sscanf(colon + 1, "%d:%d:%d:%d:%d:%d:%d", &k->layout, &k->method, &k->early, &k->npoison, &k->pages,
                  &k->first, &k->pause_fd) == 7
               ? 0
               : -1;
}

/* Makes the test file and the poison file of the layout; returns 0, or the errno of the
 * reflink that the file system refused. */
static int make_layout(const struct mf_case *k, const char *test, const char *poison)
{
    uint64_t len = (uint64_t)k->pages * PAGE;
    if (k->layout == L_NDCTL || k->layout == L_RECOVERY) {
        int fd = make_file(poison, len, 5);
        if (fd < 0)
            die("create %s", poison);
        close(fd);
        return 0;
    }
    int t = make_file(test, len, 1);
    if (t < 0)
        die("create %s", test);
    int rc = 0;
    if (k->layout == L_REFLINK) {
        int p = open(poison, O_CREAT | O_TRUNC | O_RDWR, 0644);
        if (p < 0)
            die("create %s", poison);
        if (ioctl(p, FICLONE, t) != 0)
            rc = errno;
        fsync(p);
        close(p);
    } else if (k->layout == L_PARTIAL) {
        int p = make_file(poison, len, 2);
        if (p < 0)
            die("create %s", poison);
        for (int pg = 0; pg < k->pages && !rc; pg += 2) {
            struct file_clone_range r = {.src_fd = t, .src_offset = (uint64_t)pg * PAGE, .src_length = PAGE,
                                         .dest_offset = (uint64_t)pg * PAGE};
            if (ioctl(p, FICLONERANGE, &r) != 0)
                rc = errno;
        }
        fsync(p);
        close(p);
    }
    close(t);
    return rc;
}

static void run_case(const struct mf_case *k)
{
    char test[512], poison[512], ctl_path[512], arg[160];
    /* Fresh names per case, and the files stay: a poisoned block of an earlier case must
     * not come back as a free block of a later one. */
    static int serial;
    serial++;
    snprintf(test, sizeof test, "%s/mf.%s.%d.test", dir, scen_scenario(), serial);
    if (k->file)
        snprintf(poison, sizeof poison, "%s", in_dir(dir, k->file));
    else if (k->layout == L_SAME)
        snprintf(poison, sizeof poison, "%s", test);
    else
        snprintf(poison, sizeof poison, "%s/mf.%s.%d.poison", dir, scen_scenario(), serial);
    snprintf(ctl_path, sizeof ctl_path, "%s", in_dir(dir, "mf.ctl"));
    int rc = make_layout(k, test, poison);
    if (rc) {
        char why[96];
        snprintf(why, sizeof why, "%s: %s", k->layout == L_REFLINK ? "FICLONE" : "FICLONERANGE", errno_name(rc));
        scen_skipped(k->name, why);
        return;
    }
    struct mf_ctl *c = ctl_create(ctl_path, PAGE);
    c->npoison = k->npoison;
    c->inject_kind = k->method;
    int has_reader = k->layout != L_NDCTL && k->layout != L_RECOVERY;
    /* Action-required injections: the reader sleeps on this pipe while each is on its way
     * (its read end is inherited; the write end stays here, so it sees EOF if we go). */
    int pause[2] = {-1, -1};
    struct mf_case kr = *k;
    kr.pause_fd = -1;
    if (has_reader && k->method == M_AR) {
        if (pipe(pause) != 0 || fcntl(pause[1], F_SETFD, FD_CLOEXEC) != 0)
            die("pipe");
        kr.pause_fd = pause[0];
    }
    case_args(&kr, arg, sizeof arg);
    pid_t r = -1;
    if (has_reader) {
        char *ra[] = {"--role", "reader", ctl_path, test, arg, NULL};
        r = spawn_self(ra);
    } else {
        c->ready_reader = 1;
    }
    char *pa[] = {"--role", "poisoner", ctl_path, poison, arg, NULL};
    pid_t p = spawn_self(pa);
    note("%s: %s, %d page(s), %s kill", k->name, method_name(k->method), k->npoison, k->early ? "early" : "late");
    /* Carry out the poisoner's requests until it is done or gone. */
    int served = 0, status_p = -1;
    uint64_t deadline = now_ns() + 300ULL * 1000000000ULL;
    while (now_ns() < deadline) {
        if (__atomic_load_n(&c->done, __ATOMIC_ACQUIRE))
            break;
        if (served < k->npoison && __atomic_load_n(&c->request[served], __ATOMIC_ACQUIRE)) {
            uint64_t t;
            unsigned id = scen_inject(k->method == M_AR ? "ar" : "ao", c->phys[served], &t);
            c->t_req[served] = t;
            c->acked[served] = scen_wait_go(id, ACK_TIMEOUT_MS);
            c->t_done[served] = now_ns();
            __atomic_store_n(&c->go[served], 1, __ATOMIC_RELEASE);
            if (pause[1] >= 0 && write(pause[1], "g", 1) != 1)
                die("write to the reader's pipe");
            served++;
            continue;
        }
        int st;
        if (waitpid(p, &st, WNOHANG) == p) {
            status_p = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            p = -1;
            break;
        }
        sleep_ms(5);
    }
    sleep_ms(200);
    __atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
    if (pause[1] >= 0) {
        close(pause[0]);
        close(pause[1]); /* a reader still waiting for an injection that never came sees EOF */
    }
    int status_r = has_reader ? wait_status(r) : 0;
    if (p > 0)
        status_p = wait_status(p);
    struct jl j;
    jl_start(&j, k->name);
    jl_str(&j, "method", method_name(k->method));
    jl_str(&j, "kill", k->early ? "early" : "late");
    jl_int(&j, "pages_poisoned", k->npoison);
    jl_int(&j, "reader_status", has_reader ? status_r : -1);
    jl_int(&j, "poisoner_status", status_p);
    jl_obj_begin(&j, "checks");
    jl_bool(&j, "processes_ended", (status_r == 0 || status_r >= 128) && status_p >= 0);
    jl_obj_end(&j);
    jl_end(&j);
    munmap(c, PAGE);
    unlink(ctl_path);
}

/* The four cases of a layout and method. */
static void run_layout(int layout, int method)
{
    char names[4][32];
    for (int e = 0; e < 2; e++)
        for (int n = 1; n <= 2; n++) {
            struct mf_case k = {.layout = layout, .method = method, .early = e, .npoison = n,
                                .pages = layout_pages(layout), .first = 4, .pause_fd = -1};
            snprintf(names[e * 2 + n - 1], sizeof names[0], "%s_%d", e ? "early" : "late", n);
            k.name = names[e * 2 + n - 1];
            run_case(&k);
        }
}

#define LAYOUT_SCEN(fn, layout, method)                                                                            \
    static void fn(void)                                                                                           \
    {                                                                                                              \
        run_layout(layout, method);                                                                                \
    }
LAYOUT_SCEN(s550m, L_SAME, M_MADVISE)
LAYOUT_SCEN(s550r, L_SAME, M_AR)
LAYOUT_SCEN(s550o, L_SAME, M_AO)
LAYOUT_SCEN(s551m, L_REFLINK, M_MADVISE)
LAYOUT_SCEN(s551r, L_REFLINK, M_AR)
LAYOUT_SCEN(s551o, L_REFLINK, M_AO)
LAYOUT_SCEN(s552m, L_PARTIAL, M_MADVISE)
LAYOUT_SCEN(s552r, L_PARTIAL, M_AR)
LAYOUT_SCEN(s552o, L_PARTIAL, M_AO)

static void scen_dax_poison(void)
{
    /* align = 2 MiB; a mapping of 2 * align; the poison at align / 2 (page 256). */
    struct mf_case m = {"madvise", L_NDCTL, M_MADVISE, 0, 1, 1024, 256, NULL, -1};
    struct mf_case a = {"ar", L_NDCTL, M_AR, 0, 1, 1024, 256, NULL, -1};
    run_case(&m);
    run_case(&a);
}

static void scen_recovery(void)
{
    /* Their files stay for recovery_verify after the reboot. */
    struct mf_case a = {"ar", L_RECOVERY, M_AR, 0, 1, 16, 5, "recovery.ar", -1};
    struct mf_case o = {"ao", L_RECOVERY, M_AO, 0, 1, 16, 9, "recovery.ao", -1};
    run_case(&a);
    run_case(&o);
    sync();
}

static void verify_page(const char *case_name, const char *file, uint64_t pg, unsigned seed_if_rewritten)
{
    struct jl j;
    static struct sig_log log;
    sig_record_into(&log);
    jl_start(&j, case_name);
    jl_int(&j, "page", (long long)pg);
    int fd = open(in_dir(dir, file), O_RDONLY);
    if (fd < 0) {
        jl_str(&j, "file", errno_name(errno));
        jl_end(&j);
        return;
    }
    /* pread first: before any access could raise a machine check. */
    const char *first = pread_page(fd, pg, 5);
    if (seed_if_rewritten && strcmp(first, "wrong") == 0)
        first = strcmp(pread_page(fd, pg, seed_if_rewritten), "ok") == 0 ? "ok (rewritten bytes)" : "wrong";
    const unsigned char *p = mmap(NULL, 16 * PAGE, PROT_READ, MAP_SHARED, fd, 0);
    struct poison_set ps = {.base = p == MAP_FAILED ? NULL : p, .len = 16 * PAGE, .n = 1, .page = {(int)pg}};
    jl_obj_begin(&j, "after");
    jl_str(&j, "first_pread", first);
    jl_str(&j, "pread_neighbour", pread_page(fd, pg - 1, 5));
    if (p == MAP_FAILED) {
        jl_str(&j, "read_through_mapping", errno_name(errno));
    } else {
        const char *r = probe_page(p, pg, 5, &log);
        if (seed_if_rewritten && strcmp(r, "wrong") == 0)
            r = strcmp(probe_page(p, pg, seed_if_rewritten, &log), "ok") == 0 ? "ok (rewritten bytes)" : "wrong";
        jl_str(&j, "read_through_mapping", r);
    }
    jl_obj_end(&j);
    jl_signals(&j, &log, 0, &ps);
    jl_end(&j);
    close(fd);
}

static void scen_recovery_verify(void)
{
    verify_page("ar_page_after_reboot", "recovery.ar", 5, 6);
    verify_page("ao_page_after_reboot", "recovery.ao", 9, 0);
}

/* A new file of `pages` pattern pages (seed) in DIR, mapped shared read-only; its descriptor in *fd. */
static unsigned char *new_mapped_file(const char *name, uint64_t pages, unsigned seed, int *fd)
{
    const char *path = in_dir(dir, name);
    *fd = make_file(path, pages * PAGE, seed);
    if (*fd < 0)
        die("create %s", path);
    unsigned char *p = mmap(NULL, pages * PAGE, PROT_READ, MAP_SHARED, *fd, 0);
    if (p == MAP_FAILED)
        die("mmap %s", path);
    return p;
}

/* MADV_HWPOISON of a page the caller mapped but never touched: Linux takes the page with
 * get_user_pages (faulting it in), so it is poisoned like a touched one: SIGBUS BUS_MCEERR_AR
 * at the caller's address of it, lsb 12. Then pread of it and its neighbours, a read through
 * the mapping, and a second MADV_HWPOISON of the now poisoned page. */
static void scen_madvise_untouched(void)
{
    static struct sig_log log;
    sig_record_into(&log);
    int fd;
    unsigned char *p = new_mapped_file("untouched.dat", 16, 5, &fd);
    struct poison_set ps = {.base = p, .len = 16 * PAGE, .n = 1, .page = {3}};
    uint64_t present_before = virt_to_phys(p + 3 * PAGE);
    int err = 0;
    ps.t_ns[0] = now_ns();
    int rc = madvise_poison(p + 3 * PAGE, PAGE, &err);
    struct jl j;
    jl_start(&j, "madvise_untouched");
    jl_bool(&j, "present_before", present_before != 0);
    jl_str(&j, "madvise", rc == 0 ? "ok" : rc == 1 ? "interrupted by SIGBUS" : errno_name(err));
    jl_obj_begin(&j, "after");
    jl_str(&j, "pread", pread_page(fd, 3, 5));
    jl_str(&j, "pread_neighbour_before", pread_page(fd, 2, 5));
    jl_str(&j, "pread_neighbour_after", pread_page(fd, 4, 5));
    jl_str(&j, "read_through_mapping", probe_page(p, 3, 5, &log));
    int n = log.n;
    rc = madvise_poison(p + 3 * PAGE, PAGE, &err);
    jl_str(&j, "second_madvise", rc == 0 ? "ok" : rc == 1 ? "interrupted by SIGBUS" : errno_name(err));
    jl_int(&j, "signals_from_second_madvise", log.n - n);
    jl_obj_end(&j);
    jl_signals(&j, &log, 0, &ps);
    jl_end(&j);
    munmap(p, 16 * PAGE);
    close(fd);
}

/* ---- raw_poison: the raw device mapped by two processes ---- */

static const char *device = "/dev/pmem0";

/* "ok" (some bytes read) or "SIGBUS <code>" for a read of page pg through a mapping. */
static const char *read_page(const unsigned char *p, uint64_t pg, const struct sig_log *log)
{
    unsigned char v = 0;
    const char *bus = read_byte(p, pg, log, &v);
    return bus ? bus : "ok";
}

/* Page tables of the mapping around page pg: the neighbours present, pg itself not. */
static void jl_split(struct jl *j, const unsigned char *p, uint64_t pg)
{
    uint64_t before = virt_to_phys(p + (pg - 1) * PAGE), after = virt_to_phys(p + (pg + 1) * PAGE);
    jl_bool(j, "neighbours_still_mapped", before != 0 && after != 0);
    jl_bool(j, "poisoned_page_unmapped", virt_to_phys(p + pg * PAGE) == 0);
}

/* Pages of the raw mapping, and the poisoned one (1 MiB + 12 KiB into it). */
#define RAW_LEN (2 * HUGE)
#define RAW_PAGE (256 + 3)

static const unsigned char *map_raw(int fd, uint64_t off)
{
    const unsigned char *p = mmap(NULL, RAW_LEN, PROT_READ, MAP_SHARED, fd, (off_t)off);
    if (p == MAP_FAILED)
        return NULL;
    for (uint64_t pg = 0; pg < RAW_LEN / PAGE; pg++)
        (void)*(volatile const unsigned char *)(p + pg * PAGE);
    return p;
}

/* MADV_HWPOISON of a page of /dev/pmem0 that this process maps twice, each time with a 2 MiB
 * leaf (a second process cannot start while the file system is unmounted: its program lives
 * there): BUS_MCEERR_AR at the first mapping's address, lsb 12; both leaves are split, the page
 * unmapped in both, a read of it through either is AR, a pread of the device there EIO and
 * beside it fine. */
static void scen_raw_poison(void)
{
    static struct sig_log log;
    sig_record_into(&log);
    struct jl j;
    jl_start(&j, "raw_poison");
    int fd = open(device, O_RDONLY);
    uint64_t dev_size = 0;
    if (fd < 0 || ioctl(fd, BLKGETSIZE64, &dev_size) != 0) {
        jl_str(&j, "open", errno_name(errno));
        jl_end(&j);
        return;
    }
    /* The middle of the device: a fresh file system keeps its blocks at the start and the end. */
    uint64_t off = (dev_size / 2) & ~(HUGE - 1);
    const unsigned char *p = map_raw(fd, off), *q = map_raw(fd, off);
    if (!p || !q) {
        jl_str(&j, "mmap", errno_name(errno));
        jl_end(&j);
        return;
    }
    uint64_t a = virt_to_phys(p), z = virt_to_phys(p + HUGE - PAGE), b = virt_to_phys(q);
    jl_bool(&j, "first_2m_physically_aligned_and_contiguous", a && a % HUGE == 0 && z == a + HUGE - PAGE);
    jl_bool(&j, "second_mapping_same_frames", b && b == a);
    struct poison_set ps = {.base = p, .len = RAW_LEN, .n = 1, .page = {RAW_PAGE}};
    int err = 0;
    ps.t_ns[0] = now_ns();
    int rc = madvise_poison((void *)(p + RAW_PAGE * PAGE), PAGE, &err);
    jl_str(&j, "madvise", rc == 0 ? "ok" : rc == 1 ? "interrupted by SIGBUS" : errno_name(err));
    int n_after_madvise = log.n;
    const unsigned char *maps[2] = {p, q};
    const char *names[2] = {"first_mapping", "second_mapping"};
    for (int m = 0; m < 2; m++) {
        jl_obj_begin(&j, names[m]);
        jl_split(&j, maps[m], RAW_PAGE);
        jl_str(&j, "read_at_end", read_page(maps[m], RAW_PAGE, &log));
        jl_str(&j, "read_neighbour", read_page(maps[m], RAW_PAGE + 1, &log));
        jl_obj_end(&j);
    }
    jl_int(&j, "signals_after_madvise", log.n - n_after_madvise);
    static unsigned char buf[PAGE];
    ssize_t n = pread(fd, buf, PAGE, (off_t)(off + RAW_PAGE * PAGE));
    jl_str(&j, "pread", n < 0 ? errno_name(errno) : n == (ssize_t)PAGE ? "ok" : "short");
    n = pread(fd, buf, PAGE, (off_t)(off + (RAW_PAGE - 1) * PAGE));
    jl_str(&j, "pread_neighbour", n < 0 ? errno_name(errno) : n == (ssize_t)PAGE ? "ok" : "short");
    /* Only the madvise's signal: the reads' signals are at the second mapping's address too. */
    struct sig_log first = log;
    first.n = n_after_madvise;
    jl_signals(&j, &first, 0, &ps);
    jl_end(&j);
    munmap((void *)p, RAW_LEN);
    munmap((void *)q, RAW_LEN);
    close(fd);
}

static void scen_sigbus_selftest(void)
{
    /* A 2-page mapping of a file cut to 1 page: page 1 is beyond EOF (BUS_ADRERR). */
    static struct sig_log log;
    sig_record_into(&log);
    int fd;
    unsigned char *p = new_mapped_file("selftest.dat", 2, 1, &fd);
    if (ftruncate(fd, PAGE) != 0)
        die("ftruncate");
    struct poison_set ps = {.base = p, .len = 2 * PAGE, .n = 1, .page = {1}};
    ps.t_ns[0] = now_ns();
    const char *r0 = probe_page(p, 0, 1, &log);
    const char *r1 = probe_page(p, 1, 1, &log);
    uint64_t t;
    unsigned id = scen_inject("ao", virt_to_phys(p), &t);
    int acked = scen_wait_go(id, 0);
    struct jl j;
    jl_start(&j, "beyond_eof");
    jl_str(&j, "read_page0", r0);
    jl_str(&j, "read_page1", r1);
    jl_bool(&j, "acked", acked);
    jl_signals(&j, &log, 0, &ps);
    jl_end(&j);
    munmap(p, 2 * PAGE);
    close(fd);
    unlink(in_dir(dir, "selftest.dat"));
}

static const struct {
    const char *name;
    void (*run)(void);
    const char *what;
} scenarios[] = {
    {"xfs550_madvise", s550m, "xfs/550 layout (same file), MADV_HWPOISON"},
    {"xfs550_ar", s550r, "xfs/550 layout, action-required machine check on the spinning poisoner"},
    {"xfs550_ao", s550o, "xfs/550 layout, action-optional machine check"},
    {"xfs551_madvise", s551m, "xfs/551 layout (reflink copy), MADV_HWPOISON"},
    {"xfs551_ar", s551r, "xfs/551 layout, action-required machine check"},
    {"xfs551_ao", s551o, "xfs/551 layout, action-optional machine check"},
    {"xfs552_madvise", s552m, "xfs/552 layout (even pages shared), MADV_HWPOISON"},
    {"xfs552_ar", s552r, "xfs/552 layout, action-required machine check"},
    {"xfs552_ao", s552o, "xfs/552 layout, action-optional machine check"},
    {"dax_poison", scen_dax_poison, "ndctl dax-poison: MAP_SYNC|MAP_POPULATE 4 MiB, poison at 1 MiB, punch, rewrite"},
    {"recovery", scen_recovery, "poison, pread, whole-page pwrite (recovery write), map again"},
    {"recovery_verify", scen_recovery_verify, "after a reboot: pread and map the poisoned pages"},
    {"raw_poison", scen_raw_poison, "MADV_HWPOISON in /dev/pmem0 mapped twice with 2 MiB pages"},
    {"madvise_untouched", scen_madvise_untouched, "MADV_HWPOISON of a mapped page never touched (faulted in, then poisoned)"},
    {"sigbus_selftest", scen_sigbus_selftest, "SIGBUS recording with a plain BUS_ADRERR (no poison)"},
};
#define NSCEN (sizeof scenarios / sizeof scenarios[0])

static int usage(void)
{
    fprintf(stderr, "usage: scen_mf [--device PATH] SCENARIO[,SCENARIO...] DIR\n       scen_mf --list\n");
    return 2;
}

int main(int argc, char **argv)
{
    scen_self = argv[0];
    if (argc == 6 && strcmp(argv[1], "--role") == 0) {
        struct mf_case k;
        if (parse_case(argv[5], &k) != 0)
            return usage();
        scen_set(getenv("SCEN_NAME") ? getenv("SCEN_NAME") : "mf", argv[2]);
        if (strcmp(argv[2], "reader") == 0)
            reader(argv[3], argv[4], &k);
        if (strcmp(argv[2], "poisoner") == 0)
            poisoner(argv[3], argv[4], &k);
        return usage();
    }
    if (argc >= 3 && strcmp(argv[1], "--device") == 0) {
        device = argv[2];
        argv[2] = argv[0];
        argv += 2;
        argc -= 2;
    }
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (unsigned k = 0; k < NSCEN; k++)
            printf("%-16s %s\n", scenarios[k].name, scenarios[k].what);
        return 0;
    }
    if (argc != 3 || argv[1][0] == '-')
        return usage();
    const char *list = argv[1];
    dir = argv[2];
    char names[512];
    snprintf(names, sizeof names, "%s", list);
    for (char *save = NULL, *n = strtok_r(names, ",", &save); n; n = strtok_r(NULL, ",", &save)) {
        unsigned k = 0;
        while (k < NSCEN && strcmp(scenarios[k].name, n) != 0)
            k++;
        if (k == NSCEN) {
            fprintf(stderr, "scen_mf: no scenario %s (see --list)\n", n);
            return 2;
        }
    }
    snprintf(names, sizeof names, "%s", list);
    for (char *save = NULL, *n = strtok_r(names, ",", &save); n; n = strtok_r(NULL, ",", &save))
        for (unsigned k = 0; k < NSCEN; k++)
            if (strcmp(scenarios[k].name, n) == 0) {
                scen_set(scenarios[k].name, NULL);
                setenv("SCEN_NAME", scenarios[k].name, 1); /* the spawned processes name their lines the same */
                note("running on %s", system_name());
                scenarios[k].run();
            }
    return 0;
}
