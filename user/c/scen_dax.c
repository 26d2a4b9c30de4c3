/*
 * scen_dax: the DAX scenarios, run the same way on fsdax and on Linux
 * XFS-DAX. Each prints JSON result lines (scen.h) and, for the crash
 * scenario, the @@CRASH request to the host.
 *
 *   scen_dax [--size SIZE] [--rounds N] [--device PATH] SCENARIO[,SCENARIO...] DIR
 *   scen_dax --list
 *
 * SIZE is the size of the large files (default 256M; reflink_cow uses a
 * quarter of it, at least 2 MiB), N the rounds of truncate_race (default
 * 1000), PATH the raw device of raw_device (default /dev/pmem0).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "scen.h"
#include "uapi.h"

static uint64_t size = 256UL << 20;
static long rounds = 1000;
static const char *device = "/dev/pmem0";
static const char *dir;

/* Time and fault counters at a point. */
struct mark {
    uint64_t t;
    long minflt, majflt;
};

static struct mark mark(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (struct mark){now_ns(), ru.ru_minflt, ru.ru_majflt};
}

/* Adds secs, faults, minflt and majflt since m. */
static void jl_since(struct jl *j, struct mark m, const char *secs_key)
{
    struct mark e = mark();
    jl_num(j, secs_key, (double)(e.t - m.t) / 1e9);
    jl_int(j, "faults", (e.minflt - m.minflt) + (e.majflt - m.majflt));
    jl_int(j, "minflt", e.minflt - m.minflt);
    jl_int(j, "majflt", e.majflt - m.majflt);
}

/* Writes `len` bytes of `byte` with 2 MiB pwrites, then fsync. */
static void fill_fast(int fd, uint64_t len, unsigned char byte)
{
    static unsigned char *buf;
    if (!buf) {
        buf = malloc(HUGE);
        if (!buf)
            die("malloc");
    }
    memset(buf, byte, HUGE);
    for (uint64_t off = 0; off < len; off += HUGE) {
        size_t n = len - off < HUGE ? (size_t)(len - off) : HUGE;
        if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
            die("pwrite %llu bytes at %llu", (unsigned long long)n, (unsigned long long)off);
    }
    if (fsync(fd) != 0)
        die("fsync");
}

static void jl_phys(struct jl *j, const char *key, uint64_t phys)
{
    if (phys)
        jl_hex(j, key, phys);
    else
        jl_null(j, key);
}

static void jl_tristate(struct jl *j, const char *key, int v)
{
    if (v < 0)
        jl_null(j, key);
    else
        jl_bool(j, key, v);
}

/* How many 2 MiB pieces of the mapping sit on 2 MiB-aligned, physically contiguous memory
 * (necessary for a 2 MiB page; pagemap cannot tell the page size itself). -1: unknown. */
static long aligned_chunks(const unsigned char *p, uint64_t len)
{
    long n = 0;
    for (uint64_t off = 0; off + HUGE <= len; off += HUGE) {
        uint64_t a = virt_to_phys(p + off), b = virt_to_phys(p + off + HUGE - PAGE);
        if (!a || !b)
            return -1;
        if (a % HUGE == 0 && b == a + HUGE - PAGE)
            n++;
    }
    return n;
}

/* ---- first_touch ---- */

static void first_touch_case(const char *case_name, int sparse)
{
    const char *path = in_dir(dir, "first_touch.dat");
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0)
        die("create %s", path);
    if (sparse) {
        if (ftruncate(fd, (off_t)size) != 0)
            die("ftruncate");
    } else {
        fill_fast(fd, size, 0x5a);
    }
    unsigned char *p = mmap_aligned(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap %llu bytes", (unsigned long long)size);
    uint64_t pages = size / PAGE;
    struct jl j;
    jl_start(&j, case_name);
    jl_int(&j, "size", (long long)size);
    jl_int(&j, "pages", (long long)pages);
    struct mark m = mark();
    for (uint64_t i = 0; i < pages; i++)
        p[i * PAGE] = (unsigned char)(i | 1);
    jl_since(&j, m, "secs");
    uint64_t phys = virt_to_phys(p);
    jl_phys(&j, "phys0", phys);
    jl_tristate(&j, "phys_in_pmem", phys ? phys_in_pmem(phys) : -1);
    long chunks = aligned_chunks(p, size);
    if (chunks >= 0)
        jl_int(&j, "aligned_2m_chunks", chunks);
    else
        jl_null(&j, "aligned_2m_chunks");
    jl_int(&j, "chunks", (long long)(size / HUGE));
    jl_end(&j);
    munmap(p, size);
    close(fd);
    unlink(path);
}

static void scen_first_touch(void)
{
    first_touch_case("written", 0);
    first_touch_case("sparse", 1);
}

/* Free bytes of DIR's file system once blocks of deleted files are back (some file
 * systems free them in the background): sync, then read until two reads agree. */
static uint64_t settled_free(struct statvfs *sv)
{
    uint64_t last = UINT64_MAX;
    for (int i = 0; i < 30; i++) {
        sync();
        if (statvfs(dir, sv) != 0)
            die("statvfs %s", dir);
        uint64_t now = (uint64_t)sv->f_bavail * sv->f_frsize;
        if (now == last)
            return now;
        last = now;
        sleep_ms(100);
    }
    return last;
}

/* Fills the file system with 64 KiB files and deletes every other one, so that free space
 * is cut into 64 KiB holes, then runs the first-touch cases on it. */
static void scen_first_touch_aged(void)
{
    struct statvfs sv;
    uint64_t free_before = settled_free(&sv);
    const uint64_t fsize = 64 << 10;
    uint64_t want = free_before > size / 2 + (96UL << 20) ? free_before - size / 2 - (32UL << 20) : 0;
    uint64_t files = want / fsize;
    if (files > 4 * size / fsize)
        files = 4 * size / fsize;
    if (files > 20000)
        files = 20000;
    char adir[1024];
    snprintf(adir, sizeof adir, "%s", in_dir(dir, "aged"));
    if (mkdir(adir, 0755) != 0 && errno != EEXIST)
        die("mkdir %s", adir);
    static unsigned char buf[64 << 10];
    memset(buf, 0xa7, sizeof buf);
    char name[64];
    uint64_t t0 = now_ns();
    uint64_t made = 0;
    for (; made < files; made++) {
        snprintf(name, sizeof name, "aged/f%05llu", (unsigned long long)made);
        int fd = open(in_dir(dir, name), O_CREAT | O_TRUNC | O_WRONLY, 0644);
        if (fd < 0)
            break;
        ssize_t w = pwrite(fd, buf, fsize, 0);
        close(fd);
        if (w != (ssize_t)fsize)
            break;
    }
    uint64_t deleted = 0;
    for (uint64_t i = 0; i < made; i += 2) {
        snprintf(name, sizeof name, "aged/f%05llu", (unsigned long long)i);
        if (unlink(in_dir(dir, name)) == 0)
            deleted++;
    }
    uint64_t free_after = settled_free(&sv);
    struct jl j;
    jl_start(&j, "aging");
    jl_int(&j, "files_written", (long long)made);
    jl_int(&j, "file_size", (long long)fsize);
    jl_int(&j, "files_deleted", (long long)deleted);
    jl_int(&j, "free_before", (long long)free_before);
    jl_int(&j, "free_after", (long long)free_after);
    jl_num(&j, "secs", (double)(now_ns() - t0) / 1e9);
    jl_end(&j);
    first_touch_case("aged_written", 0);
    first_touch_case("aged_sparse", 1);
    for (uint64_t i = 1; i < made; i += 2) {
        snprintf(name, sizeof name, "aged/f%05llu", (unsigned long long)i);
        unlink(in_dir(dir, name));
    }
    rmdir(adir);
}

/* ---- hole_read ---- */

static int all_zero(const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static void scen_hole_read(void)
{
    const uint64_t len = 8 << 20, data_at = 4 << 20;
    const char *path = in_dir(dir, "hole.dat");
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)len) != 0)
        die("create %s", path);
    unsigned char page[PAGE];
    for (size_t i = 0; i < PAGE; i++)
        page[i] = pattern(7, data_at + i);
    if (pwrite(fd, page, PAGE, (off_t)data_at) != (ssize_t)PAGE || fsync(fd) != 0)
        die("pwrite");
    long long b0 = file_blocks(fd);
    static unsigned char buf[1 << 20];
    memset(buf, 0xee, sizeof buf);
    ssize_t r = pread(fd, buf, sizeof buf, 0);
    int pread_zero = r == (ssize_t)sizeof buf && all_zero(buf, sizeof buf);
    r = pread(fd, buf, PAGE, (off_t)data_at);
    int data_ok = r == (ssize_t)PAGE && memcmp(buf, page, PAGE) == 0;
    long long b1 = file_blocks(fd);
    /* A writable shared mapping, read only: a read fault on a hole must not allocate. */
    unsigned char *p = mmap_aligned(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap");
    int map_zero = 1;
    struct mark m = mark();
    for (uint64_t off = 0; off < data_at; off += PAGE)
        if (!all_zero(p + off, PAGE))
            map_zero = 0;
    struct mark e = mark();
    uint64_t z0 = virt_to_phys(p), z1 = virt_to_phys(p + HUGE);
    int map_data_ok = memcmp(p + data_at, page, PAGE) == 0;
    long long b2 = file_blocks(fd);
    struct jl j;
    jl_start(&j, "hole");
    jl_int(&j, "file_size", (long long)len);
    jl_int(&j, "blocks_before", b0);
    jl_int(&j, "blocks_after_pread", b1);
    jl_int(&j, "blocks_after_mmap_read", b2);
    jl_int(&j, "read_faults", (e.minflt - m.minflt) + (e.majflt - m.majflt));
    jl_phys(&j, "hole_phys0", z0);
    jl_phys(&j, "hole_phys_2m", z1);
    jl_tristate(&j, "hole_phys_in_pmem", z0 ? phys_in_pmem(z0) : -1);
    jl_obj_begin(&j, "checks");
    jl_bool(&j, "pread_of_hole_is_zero", pread_zero);
    jl_bool(&j, "pread_of_data_is_data", data_ok);
    jl_bool(&j, "pread_allocates_nothing", b1 == b0);
    jl_bool(&j, "mmap_read_of_hole_is_zero", map_zero);
    jl_bool(&j, "mmap_read_of_data_is_data", map_data_ok);
    jl_bool(&j, "mmap_read_allocates_nothing", b2 == b0);
    jl_obj_end(&j);
    jl_end(&j);
    munmap(p, len);
    close(fd);
    unlink(path);
}

/* ---- coherence ---- */

struct coh_ctl {
    int ready;
    int seq;     /* command number */
    int ack;     /* the peer's last done command */
    int op;      /* 1: read byte at off from the mapping into got; 2: store val at off; 3: quit */
    uint64_t off;
    int val, got;
};

static void coh_peer(const char *ctl_path, const char *file)
{
    struct coh_ctl *c = ctl_open(ctl_path, PAGE);
    int fd = open(file, O_RDWR);
    if (fd < 0)
        die("open %s", file);
    volatile unsigned char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap");
    __atomic_store_n(&c->ready, 1, __ATOMIC_RELEASE);
    int done = 0;
    uint64_t deadline = now_ns() + 120ULL * 1000000000ULL;
    while (now_ns() < deadline) {
        int s = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
        if (s == done) {
            sleep_ms(1);
            continue;
        }
        if (c->op == 1)
            c->got = p[c->off];
        else if (c->op == 2)
            p[c->off] = (unsigned char)c->val;
        done = s;
        __atomic_store_n(&c->ack, s, __ATOMIC_RELEASE);
        if (c->op == 3)
            exit(0);
    }
    exit(1);
}

/* Runs one command in the peer; returns 0 when it answered. */
static int coh_command(struct coh_ctl *c, int op, uint64_t off, int val)
{
    c->op = op;
    c->off = off;
    c->val = val;
    int s = c->seq + 1;
    __atomic_store_n(&c->seq, s, __ATOMIC_RELEASE);
    for (int i = 0; i < 20000; i++) {
        if (__atomic_load_n(&c->ack, __ATOMIC_ACQUIRE) == s)
            return 0;
        sleep_ms(1);
    }
    return -1;
}

static void scen_coherence(void)
{
    const uint64_t len = 1 << 20;
    const char *path = in_dir(dir, "coherence.dat"), *ctl_path = in_dir(dir, "coherence.ctl");
    int fd = make_file(path, len, 1);
    if (fd < 0)
        die("create %s", path);
    volatile unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap");
    static const uint64_t offs[] = {0, 4095, 4096, (512 << 10) + 17, (1 << 20) - 1};
    const int n = (int)(sizeof offs / sizeof offs[0]);
    int store_to_pread = 0, pwrite_to_map = 0, store_to_peer = 0, peer_to_pread = 0, peer_to_map = 0;
    for (int i = 0; i < n; i++) {
        unsigned char v = (unsigned char)~pattern(1, offs[i]), got = 0;
        p[offs[i]] = v;
        if (pread(fd, &got, 1, (off_t)offs[i]) == 1 && got == v)
            store_to_pread++;
        unsigned char w = (unsigned char)(pattern(1, offs[i]) ^ 0x5a);
        if (pwrite(fd, &w, 1, (off_t)offs[i]) == 1 && p[offs[i]] == w)
            pwrite_to_map++;
    }
    struct coh_ctl *c = ctl_create(ctl_path, PAGE);
    char *args[] = {"--role", "coh-peer", (char *)ctl_path, (char *)path, NULL};
    pid_t pid = spawn_self(args);
    for (int i = 0; i < 20000 && !__atomic_load_n(&c->ready, __ATOMIC_ACQUIRE); i++)
        sleep_ms(1);
    int peer_ok = __atomic_load_n(&c->ready, __ATOMIC_ACQUIRE);
    for (int i = 0; peer_ok && i < n; i++) {
        unsigned char v = (unsigned char)(0x11 + i * 7);
        p[offs[i]] = v;
        if (coh_command(c, 1, offs[i], 0) != 0) {
            peer_ok = 0;
            break;
        }
        if (c->got == v)
            store_to_peer++;
        unsigned char u = (unsigned char)(0x91 + i * 5), got = 0;
        if (coh_command(c, 2, offs[i], u) != 0) {
            peer_ok = 0;
            break;
        }
        if (p[offs[i]] == u)
            peer_to_map++;
        if (pread(fd, &got, 1, (off_t)offs[i]) == 1 && got == u)
            peer_to_pread++;
    }
    if (peer_ok)
        coh_command(c, 3, 0, 0);
    int status = wait_status(pid);
    struct jl j;
    jl_start(&j, "one_file_two_paths");
    jl_int(&j, "offsets", n);
    jl_int(&j, "peer_status", status);
    jl_obj_begin(&j, "checks");
    jl_bool(&j, "mmap_store_visible_to_pread", store_to_pread == n);
    jl_bool(&j, "pwrite_visible_through_mapping", pwrite_to_map == n);
    jl_bool(&j, "store_visible_to_other_process_mapping", peer_ok && store_to_peer == n);
    jl_bool(&j, "other_process_store_visible_to_mapping", peer_ok && peer_to_map == n);
    jl_bool(&j, "other_process_store_visible_to_pread", peer_ok && peer_to_pread == n);
    jl_obj_end(&j);
    jl_end(&j);
    munmap((void *)p, len);
    munmap(c, PAGE);
    close(fd);
    unlink(path);
    unlink(ctl_path);
}

/* ---- reflink_cow ---- */

static void scen_reflink_cow(void)
{
    uint64_t len = size / 4 < HUGE ? HUGE : size / 4;
    const char *src_path = in_dir(dir, "reflink.src"), *dst_path = in_dir(dir, "reflink.dst");
    int src = make_file(src_path, len, 3);
    if (src < 0)
        die("create %s", src_path);
    int dst = open(dst_path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (dst < 0)
        die("create %s", dst_path);
    struct jl j;
    uint64_t t0 = now_ns();
    if (ioctl(dst, FICLONE, src) != 0) {
        char why[96];
        snprintf(why, sizeof why, "FICLONE: %s", errno_name(errno));
        scen_skipped("clone_then_store_every_page", why);
        close(src);
        close(dst);
        unlink(src_path);
        unlink(dst_path);
        return;
    }
    if (fsync(dst) != 0)
        die("fsync");
    double ficlone_secs = (double)(now_ns() - t0) / 1e9;
    long long shared_before = extent_flags_at(dst, 0);
    unsigned char *p = mmap_aligned(len, PROT_READ | PROT_WRITE, MAP_SHARED, dst, 0);
    if (p == MAP_FAILED)
        die("mmap");
    uint64_t pages = len / PAGE;
    jl_start(&j, "clone_then_store_every_page");
    jl_int(&j, "size", (long long)len);
    jl_int(&j, "pages", (long long)pages);
    jl_num(&j, "ficlone_secs", ficlone_secs);
    struct mark m = mark();
    for (uint64_t i = 0; i < pages; i++)
        *(volatile uint64_t *)(p + i * PAGE) = 0xc0ffee0000000000ULL ^ i;
    jl_since(&j, m, "cow_secs");
    munmap(p, len);
    int original = file_has_pattern(src, 0, len, 3);
    uint64_t bad = 0;
    static unsigned char buf[PAGE];
    for (uint64_t i = 0; i < pages; i++) {
        if (pread(dst, buf, PAGE, (off_t)(i * PAGE)) != (ssize_t)PAGE) {
            bad++;
            continue;
        }
        uint64_t head;
        memcpy(&head, buf, 8);
        int ok = head == (0xc0ffee0000000000ULL ^ i);
        for (uint64_t k = 8; ok && k < PAGE; k++)
            ok = buf[k] == pattern(3, i * PAGE + k);
        bad += !ok;
    }
    long long src_flags = extent_flags_at(src, 0);
    jl_int(&j, "clone_pages_wrong", (long long)bad);
    jl_tristate(&j, "clone_shared_before_stores",
                shared_before < -1 ? -1 : shared_before >= 0 && (shared_before & FIEMAP_EXTENT_SHARED));
    jl_tristate(&j, "source_still_shared_after", src_flags < -1 ? -1 : src_flags >= 0 && (src_flags & FIEMAP_EXTENT_SHARED));
    jl_obj_begin(&j, "checks");
    jl_bool(&j, "original_unchanged", original == 1);
    jl_bool(&j, "clone_has_new_bytes_and_old_rest", bad == 0);
    jl_obj_end(&j);
    jl_end(&j);
    close(src);
    close(dst);
    unlink(src_path);
    unlink(dst_path);
}

/* ---- map_sync_write / map_sync_verify ---- */

#define MS_LEN (2UL << 20)
#define MS_PAGES 8
#define MS_BYTES 64

static uint64_t ms_off(int k)
{
    return (uint64_t)k * (MS_LEN / MS_PAGES) + 100;
}

/* Creates `name`, sizes it with ftruncate (durably), maps it with `flags` and stores 64
 * pattern bytes into 8 pages; returns 0 or the errno of mmap. */
static int ms_write(const char *name, int flags, unsigned seed)
{
    const char *path = in_dir(dir, name);
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0 || ftruncate(fd, MS_LEN) != 0 || fsync(fd) != 0)
        die("create %s", path);
    unsigned char *p = mmap(NULL, MS_LEN, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (p == MAP_FAILED)
        return errno;
    for (int k = 0; k < MS_PAGES; k++)
        for (int i = 0; i < MS_BYTES; i++)
            p[ms_off(k) + (uint64_t)i] = pattern(seed, ms_off(k) + (uint64_t)i);
    return 0;
}

static void scen_map_sync_write(void)
{
    /* The MAP_SYNC file first: its write faults make everything logged before them durable,
     * so the control file (plain MAP_SHARED, no msync) is created after them. */
    int sync_err = ms_write("map_sync.sync", MAP_SHARED_VALIDATE | MAP_SYNC, 11);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    int plain_err = ms_write("map_sync.plain", MAP_SHARED, 12);
    struct jl j;
    jl_start(&j, "write");
    jl_str(&j, "map_sync_mmap", sync_err ? errno_name(sync_err) : "ok");
    jl_str(&j, "plain_mmap", plain_err ? errno_name(plain_err) : "ok");
    jl_int(&j, "pages", MS_PAGES);
    jl_end(&j);
    note("stores done; asking the host to stop the machine now");
    scen_crash();
}

static void ms_verify(const char *case_name, const char *name, unsigned seed, int must_survive)
{
    const char *path = in_dir(dir, name);
    struct jl j;
    jl_start(&j, case_name);
    int fd = open(path, O_RDONLY);
    int allocated = 0, intact = 0;
    if (fd < 0) {
        jl_str(&j, "file", errno_name(errno));
    } else {
        struct stat st;
        fstat(fd, &st);
        jl_str(&j, "file", "present");
        jl_int(&j, "size", (long long)st.st_size);
        for (int k = 0; k < MS_PAGES; k++) {
            long long f = extent_flags_at(fd, ms_off(k));
            if (f >= 0 && !(f & FIEMAP_EXTENT_UNWRITTEN))
                allocated++;
            unsigned char b[MS_BYTES];
            if (pread(fd, b, MS_BYTES, (off_t)ms_off(k)) == MS_BYTES) {
                int ok = 1;
                for (int i = 0; i < MS_BYTES; i++)
                    ok &= b[i] == pattern(seed, ms_off(k) + (uint64_t)i);
                intact += ok;
            }
        }
        close(fd);
    }
    jl_int(&j, "pages_written", MS_PAGES);
    jl_int(&j, "pages_allocated", allocated);
    jl_int(&j, "pages_intact", intact);
    if (must_survive) {
        jl_obj_begin(&j, "checks");
        jl_bool(&j, "map_sync_stores_survive_the_crash", fd >= 0 && allocated == MS_PAGES && intact == MS_PAGES);
        jl_obj_end(&j);
    }
    jl_end(&j);
}

static void scen_map_sync_verify(void)
{
    ms_verify("map_sync", "map_sync.sync", 11, 1);
    ms_verify("plain_shared_no_msync", "map_sync.plain", 12, 0);
}

/* ---- truncate_race ---- */

#define TR_LEN (256UL << 10)
#define TR_KEEP PAGE

enum { TR_WRITTEN = 1, TR_TRUNCATED = 2, TR_ZEROED = 3 };

struct tr_ctl {
    int ready, stop;
    int seq; /* odd while the parent changes the file */
    int state, round;
    long reads, classified, sigbus_beyond_eof, read_beyond_eof, stale_beyond_eof, stale_zeroed, sigbus_inside,
        wrong_written;
};

static unsigned char tr_byte(int round)
{
    return (unsigned char)(round % 250 + 1);
}

static void tr_racer(const char *ctl_path, const char *file)
{
    struct tr_ctl *c = ctl_open(ctl_path, PAGE);
    int fd = open(file, O_RDONLY);
    if (fd < 0)
        die("open %s", file);
    const volatile unsigned char *p = mmap(NULL, TR_LEN, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap");
    sig_record_into(NULL);
    long reads = 0, classified = 0, sig_eof = 0, read_eof = 0, stale_eof = 0, stale_zero = 0, sig_in = 0, wrong = 0;
    __atomic_store_n(&c->ready, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        for (uint64_t pg = 1; pg < TR_LEN / PAGE; pg++) {
            int s0 = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
            int state = c->state, round = c->round;
            unsigned char v = 0;
            int bus = probe_read(p + pg * PAGE + 8, &v);
            int s1 = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
            reads++;
            if (s0 != s1 || (s0 & 1))
                continue; /* the file changed during the read: nothing to expect */
            classified++;
            if (state == TR_TRUNCATED) {
                if (bus) {
                    sig_eof++;
                } else {
                    read_eof++;
                    stale_eof += v != 0;
                }
            } else if (state == TR_ZEROED) {
                if (bus)
                    sig_in++;
                else
                    stale_zero += v != 0;
            } else if (state == TR_WRITTEN) {
                if (bus)
                    sig_in++;
                else
                    wrong += v != tr_byte(round);
            }
        }
    }
    c->reads = reads;
    c->classified = classified;
    c->sigbus_beyond_eof = sig_eof;
    c->read_beyond_eof = read_eof;
    c->stale_beyond_eof = stale_eof;
    c->stale_zeroed = stale_zero;
    c->sigbus_inside = sig_in;
    c->wrong_written = wrong;
    __atomic_store_n(&c->ready, 2, __ATOMIC_RELEASE);
    exit(0);
}

static void tr_set(struct tr_ctl *c, int state, int round)
{
    c->state = state;
    c->round = round;
    __atomic_add_fetch(&c->seq, 1, __ATOMIC_RELEASE); /* even: stable */
}

static void scen_truncate_race(void)
{
    const char *path = in_dir(dir, "truncate_race.dat"), *ctl_path = in_dir(dir, "truncate_race.ctl");
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0 || ftruncate(fd, TR_LEN) != 0)
        die("create %s", path);
    struct tr_ctl *c = ctl_create(ctl_path, PAGE);
    tr_set(c, TR_ZEROED, 0);
    __atomic_add_fetch(&c->seq, 1, __ATOMIC_RELEASE);
    char *args[] = {"--role", "trunc-racer", (char *)ctl_path, (char *)path, NULL};
    pid_t pid = spawn_self(args);
    for (int i = 0; i < 20000 && !__atomic_load_n(&c->ready, __ATOMIC_ACQUIRE); i++)
        sleep_ms(1);
    static unsigned char buf[TR_LEN];
    long pread_beyond_eof = 0, pread_stale = 0, io_errors = 0;
    uint64_t t0 = now_ns();
    for (long r = 1; r <= rounds; r++) {
        memset(buf, tr_byte((int)r), TR_LEN);
        __atomic_add_fetch(&c->seq, 1, __ATOMIC_RELEASE);
        if (pwrite(fd, buf, TR_LEN, 0) != (ssize_t)TR_LEN)
            io_errors++;
        tr_set(c, TR_WRITTEN, (int)r);
        sched_yield();

        __atomic_add_fetch(&c->seq, 1, __ATOMIC_RELEASE);
        if (ftruncate(fd, TR_KEEP) != 0)
            io_errors++;
        tr_set(c, TR_TRUNCATED, (int)r);
        ssize_t n = pread(fd, buf, TR_LEN - TR_KEEP, TR_KEEP);
        if (n != 0)
            pread_beyond_eof++;
        sched_yield();

        __atomic_add_fetch(&c->seq, 1, __ATOMIC_RELEASE);
        if (ftruncate(fd, TR_LEN) != 0)
            io_errors++;
        tr_set(c, TR_ZEROED, (int)r);
        n = pread(fd, buf, TR_LEN - TR_KEEP, TR_KEEP);
        if (n != (ssize_t)(TR_LEN - TR_KEEP) || !all_zero(buf, TR_LEN - TR_KEEP))
            pread_stale++;
        sched_yield();
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    __atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
    int status = wait_status(pid);
    struct jl j;
    jl_start(&j, "truncate_while_faulting");
    jl_int(&j, "rounds", rounds);
    jl_num(&j, "secs", secs);
    jl_int(&j, "racer_status", status);
    jl_int(&j, "racer_reads", c->reads);
    jl_int(&j, "racer_reads_in_a_known_state", c->classified);
    jl_int(&j, "sigbus_beyond_eof", c->sigbus_beyond_eof);
    jl_int(&j, "reads_beyond_eof_that_succeeded", c->read_beyond_eof);
    jl_int(&j, "stale_bytes_beyond_eof", c->stale_beyond_eof);
    jl_int(&j, "stale_bytes_after_extend", c->stale_zeroed);
    jl_int(&j, "sigbus_inside_eof", c->sigbus_inside);
    jl_int(&j, "wrong_bytes_in_written_range", c->wrong_written);
    jl_int(&j, "pread_beyond_eof_nonempty", pread_beyond_eof);
    jl_int(&j, "pread_stale_after_extend", pread_stale);
    jl_int(&j, "io_errors", io_errors);
    jl_obj_begin(&j, "checks");
    jl_bool(&j, "racer_ran", status == 0 && c->classified > 0);
    jl_bool(&j, "no_stale_data_through_pread", pread_beyond_eof == 0 && pread_stale == 0);
    jl_bool(&j, "no_stale_data_through_the_mapping", c->stale_beyond_eof == 0 && c->stale_zeroed == 0);
    jl_bool(&j, "sigbus_beyond_eof_after_truncate", c->read_beyond_eof == 0);
    jl_obj_end(&j);
    jl_end(&j);
    munmap(c, PAGE);
    close(fd);
    unlink(path);
    unlink(ctl_path);
}

/* ---- freeze ---- */

#define FZ_MAPPED (4UL << 20)
#define FZ_SPARSE (256UL << 20)

struct fz_ctl {
    int ready_mapped, ready_new, ready_write, ready_victims;
    int stop;
};

/* Stores a counter into already-faulted pages (mode "mapped"), or into one new 2 MiB block
 * after another of a sparse file (mode "new"), keeping its progress at offset 0 of its file; or
 * (mode "write") writes the counter with pwrite() at offset 0, over and over. Modes
 * "mapped-victim" and "write-victim" do the same and are killed while frozen. */
static void fz_storer(const char *ctl_path, const char *file, const char *mode)
{
    struct fz_ctl *c = ctl_open(ctl_path, PAGE);
    int fd = open(file, O_RDWR);
    if (fd < 0)
        die("open %s", file);
    int victim = strstr(mode, "-victim") != NULL;
    if (strncmp(mode, "write", 5) == 0) {
        uint64_t n = 0;
        if (victim)
            __atomic_fetch_add(&c->ready_victims, 1, __ATOMIC_ACQ_REL);
        else
            __atomic_store_n(&c->ready_write, 1, __ATOMIC_RELEASE);
        while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
            n++;
            if (pwrite(fd, &n, 8, 0) != 8)
                die("pwrite");
            sleep_ms(1);
        }
        exit(0);
    }
    int mapped = strncmp(mode, "mapped", 6) == 0;
    uint64_t len = mapped ? FZ_MAPPED : FZ_SPARSE;
    volatile uint64_t *p = mmap_aligned(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap");
    uint64_t pages = len / PAGE;
    if (mapped)
        for (uint64_t i = 0; i < pages; i++)
            p[i * PAGE / 8 + 1] = 0; /* fault every page writable */
    p[0] = 0;
    if (victim)
        __atomic_fetch_add(&c->ready_victims, 1, __ATOMIC_ACQ_REL);
    else
        __atomic_store_n(mapped ? &c->ready_mapped : &c->ready_new, 1, __ATOMIC_RELEASE);
    uint64_t n = 0;
    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        n++;
        if (mapped) {
            p[(n % pages) * PAGE / 8 + 1] = n;
            p[0] = n;
        } else if (n < len / HUGE) {
            /* a write fault on a hole in a new 2 MiB block: allocation; paced so that the file
             * does not fill before the freeze */
            p[n * HUGE / 8 + 1] = n;
            p[0] = n;
            sleep_ms(10);
        } else {
            sleep_ms(1); /* the file is full */
        }
    }
    exit(0);
}

static uint64_t fz_progress(int fd)
{
    uint64_t v = 0;
    if (pread(fd, &v, 8, 0) != 8)
        return UINT64_MAX;
    return v;
}

static void scen_freeze(void)
{
    const char *ctl_path = in_dir(dir, "freeze.ctl"), *mapped_path = in_dir(dir, "freeze.mapped"),
               *new_path = in_dir(dir, "freeze.new"), *written_path = in_dir(dir, "freeze.written"),
               *vm_path = in_dir(dir, "freeze.victim-mapped"), *vw_path = in_dir(dir, "freeze.victim-written");
    int mfd = open(mapped_path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    int nfd = open(new_path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    int wfd = open(written_path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    int vmfd = open(vm_path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    int vwfd = open(vw_path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (mfd < 0 || nfd < 0 || wfd < 0 || vmfd < 0 || vwfd < 0 || ftruncate(nfd, FZ_SPARSE) != 0)
        die("create the files");
    fill_fast(mfd, FZ_MAPPED, 0);
    fill_fast(vmfd, FZ_MAPPED, 0);
    struct fz_ctl *c = ctl_create(ctl_path, PAGE);
    char *a1[] = {"--role", "freeze-storer", (char *)ctl_path, (char *)mapped_path, "mapped", NULL};
    char *a2[] = {"--role", "freeze-storer", (char *)ctl_path, (char *)new_path, "new", NULL};
    char *a3[] = {"--role", "freeze-storer", (char *)ctl_path, (char *)written_path, "write", NULL};
    char *a4[] = {"--role", "freeze-storer", (char *)ctl_path, (char *)vm_path, "mapped-victim", NULL};
    char *a5[] = {"--role", "freeze-storer", (char *)ctl_path, (char *)vw_path, "write-victim", NULL};
    pid_t p1 = spawn_self(a1), p2 = spawn_self(a2), p3 = spawn_self(a3), p4 = spawn_self(a4), p5 = spawn_self(a5);
    for (int i = 0; i < 20000; i++) {
        if (__atomic_load_n(&c->ready_mapped, __ATOMIC_ACQUIRE) && __atomic_load_n(&c->ready_new, __ATOMIC_ACQUIRE) &&
            __atomic_load_n(&c->ready_write, __ATOMIC_ACQUIRE) && __atomic_load_n(&c->ready_victims, __ATOMIC_ACQUIRE) == 2)
            break;
        sleep_ms(1);
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0)
        die("open %s", dir);
    /* progress over the 300 ms before the freeze (the storers run meanwhile) */
    uint64_t m0 = fz_progress(mfd), n0 = fz_progress(nfd), w0 = fz_progress(wfd);
    sleep_ms(300);
    uint64_t t0 = now_ns();
    int frozen = ioctl(dfd, FIFREEZE, 0) == 0;
    int freeze_err = frozen ? 0 : errno;
    double freeze_secs = (double)(now_ns() - t0) / 1e9;
    uint64_t m1 = fz_progress(mfd), n1 = fz_progress(nfd), w1 = fz_progress(wfd);
    sleep_ms(1000);
    uint64_t m2 = fz_progress(mfd), n2 = fz_progress(nfd), w2 = fz_progress(wfd);
    /* two more storers, now waiting on the freeze (a write fault, a pwrite), are killed: do they
     * die while it lasts? */
    kill(p4, SIGKILL);
    kill(p5, SIGKILL);
    int s4 = -1, s5 = -1;
    uint64_t tk = now_ns();
    for (int i = 0; i < 2000 && (s4 < 0 || s5 < 0); i++) {
        int st;
        if (s4 < 0 && waitpid(p4, &st, WNOHANG) == p4)
            s4 = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
        if (s5 < 0 && waitpid(p5, &st, WNOHANG) == p5)
            s5 = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
        if (s4 < 0 || s5 < 0)
            sleep_ms(1);
    }
    double kill_secs = (double)(now_ns() - tk) / 1e9;
    int victims_died_while_frozen = s4 >= 0 && s5 >= 0;
    int thawed = frozen && ioctl(dfd, FITHAW, 0) == 0;
    sleep_ms(300);
    uint64_t m3 = fz_progress(mfd), n3 = fz_progress(nfd), w3 = fz_progress(wfd);
    __atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
    int s1 = wait_status(p1), s2 = wait_status(p2), s3 = wait_status(p3);
    if (s4 < 0)
        s4 = wait_status(p4);
    if (s5 < 0)
        s5 = wait_status(p5);
    if (!frozen) {
        char why[96];
        snprintf(why, sizeof why, "FIFREEZE: %s", errno_name(freeze_err));
        scen_skipped("stores_while_frozen", why);
    } else {
        struct jl j;
        jl_start(&j, "stores_while_frozen");
        jl_num(&j, "freeze_secs", freeze_secs);
        jl_int(&j, "mapped_stores_before_freeze_300ms", (long long)(m1 - m0));
        jl_int(&j, "mapped_stores_while_frozen_1s", (long long)(m2 - m1));
        jl_int(&j, "mapped_stores_after_thaw_300ms", (long long)(m3 - m2));
        jl_int(&j, "new_page_stores_before_freeze_300ms", (long long)(n1 - n0));
        jl_int(&j, "new_page_stores_while_frozen_1s", (long long)(n2 - n1));
        jl_int(&j, "new_page_stores_after_thaw_300ms", (long long)(n3 - n2));
        jl_int(&j, "pwrites_before_freeze_300ms", (long long)(w1 - w0));
        jl_int(&j, "pwrites_while_frozen_1s", (long long)(w2 - w1));
        jl_int(&j, "pwrites_after_thaw_300ms", (long long)(w3 - w2));
        jl_bool(&j, "stores_to_mapped_pages_stopped", m2 == m1);
        jl_bool(&j, "pwrite_waited", w2 == w1);
        jl_bool(&j, "write_faults_waited", n2 - n1 <= 1);
        jl_bool(&j, "sparse_file_full_before_freeze", n1 + 1 >= FZ_SPARSE / HUGE);
        jl_bool(&j, "thawed", thawed);
        jl_int(&j, "storer_status_mapped", s1);
        jl_int(&j, "storer_status_new", s2);
        jl_int(&j, "storer_status_write", s3);
        jl_bool(&j, "killed_waiters_died_while_frozen", victims_died_while_frozen);
        jl_num(&j, "killed_waiters_secs", kill_secs);
        jl_int(&j, "killed_status_fault", s4);
        jl_int(&j, "killed_status_pwrite", s5);
        jl_end(&j);
    }
    if (frozen && !thawed)
        ioctl(dfd, FITHAW, 0);
    close(dfd);
    munmap(c, PAGE);
    close(mfd);
    close(nfd);
    close(wfd);
    close(vmfd);
    close(vwfd);
    unlink(vm_path);
    unlink(vw_path);
    unlink(mapped_path);
    unlink(new_path);
    unlink(written_path);
    unlink(ctl_path);
}

/* ---- raw_device ---- */

static void scen_raw_device(void)
{
    struct jl j;
    jl_start(&j, "map_the_device");
    jl_str(&j, "device", device);
    DIR *d = opendir("/dev");
    jl_arr_begin(&j, "device_dax");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (strncmp(e->d_name, "dax", 3) == 0)
                jl_str(&j, NULL, e->d_name);
        closedir(d);
    }
    jl_arr_end(&j);
    int fd = open(device, O_RDONLY);
    if (fd < 0) {
        jl_str(&j, "open", errno_name(errno));
        jl_end(&j);
        return;
    }
    uint64_t dev_size = 0;
    if (ioctl(fd, BLKGETSIZE64, &dev_size) != 0) {
        off_t end = lseek(fd, 0, SEEK_END);
        dev_size = end > 0 ? (uint64_t)end : 0;
    }
    uint64_t len = dev_size && dev_size < size ? dev_size / HUGE * HUGE : size;
    jl_int(&j, "device_size", (long long)dev_size);
    jl_int(&j, "size", (long long)len);
    /* the kernel picks the address: a device DAX mapping gets one that allows its largest pages */
    unsigned char *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        jl_str(&j, "mmap", errno_name(errno));
        jl_end(&j);
        close(fd);
        return;
    }
    jl_str(&j, "mmap", "ok");
    volatile unsigned char sink = 0;
    struct mark m = mark();
    for (uint64_t off = 0; off < len; off += PAGE)
        sink ^= p[off];
    jl_since(&j, m, "secs");
    (void)sink;
    uint64_t phys = virt_to_phys(p);
    jl_phys(&j, "phys0", phys);
    jl_tristate(&j, "phys_in_pmem", phys ? phys_in_pmem(phys) : -1);
    jl_end(&j);
    munmap(p, len);
    close(fd);
}

/* Stores through a shared writable mapping of the raw device and pwrite/pread on it see each
 * other at once; the page used (in the middle of the device) gets its old bytes back after. */
static void scen_raw_device_rw(void)
{
    struct jl j;
    jl_start(&j, "write_the_device");
    jl_str(&j, "device", device);
    int fd = open(device, O_RDWR);
    if (fd < 0) {
        jl_str(&j, "open", errno_name(errno));
        jl_end(&j);
        return;
    }
    struct stat st;
    int stat_ok = fstat(fd, &st) == 0;
    uint64_t dev_size = 0;
    if (ioctl(fd, BLKGETSIZE64, &dev_size) != 0)
        dev_size = 0;
    jl_int(&j, "device_size", (long long)dev_size);
    jl_str(&j, "fstat_type", !stat_ok ? "error" : S_ISBLK(st.st_mode) ? "block" : S_ISCHR(st.st_mode) ? "char" : "other");
    jl_int(&j, "fstat_size", stat_ok ? (long long)st.st_size : -1);
    uint64_t off = dev_size / 2 / HUGE * HUGE;
    unsigned char *p = dev_size >= 2 * HUGE ? mmap_aligned(HUGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off)
                                            : MAP_FAILED;
    if (p == MAP_FAILED) {
        jl_str(&j, "mmap", errno_name(errno));
        jl_end(&j);
        close(fd);
        return;
    }
    jl_str(&j, "mmap", "ok");
    void *priv = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
    if (priv == MAP_FAILED)
        jl_str(&j, "private_mmap", errno_name(errno));
    else {
        jl_str(&j, "private_mmap", "ok");
        munmap(priv, PAGE);
    }
    static unsigned char saved[PAGE], buf[PAGE], pat[PAGE];
    int saved_ok = pread(fd, saved, PAGE, (off_t)off) == (ssize_t)PAGE;
    for (size_t i = 0; i < PAGE; i++)
        p[i] = (unsigned char)(i * 7 + 1);
    int store_seen = pread(fd, buf, PAGE, (off_t)off) == (ssize_t)PAGE;
    for (size_t i = 0; store_seen && i < PAGE; i++)
        if (buf[i] != (unsigned char)(i * 7 + 1))
            store_seen = 0;
    for (size_t i = 0; i < PAGE; i++)
        pat[i] = (unsigned char)(i * 13 + 5);
    int pwrite_seen = pwrite(fd, pat, PAGE, (off_t)off) == (ssize_t)PAGE && memcmp((void *)p, pat, PAGE) == 0;
    int restored = saved_ok && pwrite(fd, saved, PAGE, (off_t)off) == (ssize_t)PAGE;
    /* read(2) at the file offset after lseek, and past the end */
    int seek_ok = lseek(fd, (off_t)off, SEEK_SET) == (off_t)off && read(fd, buf, PAGE) == (ssize_t)PAGE &&
                  memcmp(buf, saved, PAGE) == 0;
    int end_read = (int)pread(fd, buf, PAGE, (off_t)dev_size);
    int fsync_ok = fsync(fd) == 0;
    struct stat pst;
    int path_stat_block = stat(device, &pst) == 0 && S_ISBLK(pst.st_mode) && (uint64_t)pst.st_size == dev_size;
    jl_hex(&j, "offset", off);
    jl_obj_begin(&j, "checks");
    jl_bool(&j, "store_visible_to_pread", store_seen);
    jl_bool(&j, "pwrite_visible_in_mapping", pwrite_seen);
    jl_bool(&j, "old_bytes_restored", restored && seek_ok);
    jl_bool(&j, "pread_at_end_is_0", end_read == 0);
    jl_bool(&j, "fsync_ok", fsync_ok);
    jl_bool(&j, "stat_by_path_is_the_block_device", path_stat_block);
    jl_obj_end(&j);
    jl_end(&j);
    munmap(p, HUGE);
    close(fd);
}

/* ---- main ---- */

static const struct {
    const char *name;
    void (*run)(void);
    const char *what;
} scenarios[] = {
    {"first_touch", scen_first_touch, "one store per page of a SIZE file (written, sparse): faults, time"},
    {"first_touch_aged", scen_first_touch_aged, "the same after filling the fs with 64 KiB files and deleting half"},
    {"hole_read", scen_hole_read, "pread and mmap reads of holes: zeros, no allocation"},
    {"coherence", scen_coherence, "mmap stores vs pread/pwrite, in one and in two processes"},
    {"reflink_cow", scen_reflink_cow, "FICLONE a SIZE/4 file, store into every page of the clone"},
    {"map_sync_write", scen_map_sync_write, "MAP_SYNC stores into a truncated-up file, then @@CRASH"},
    {"map_sync_verify", scen_map_sync_verify, "after the crash: are the MAP_SYNC stores there"},
    {"truncate_race", scen_truncate_race, "truncate while another process faults the range, ROUNDS rounds"},
    {"freeze", scen_freeze, "FIFREEZE while processes store through mappings"},
    {"raw_device", scen_raw_device, "mmap SIZE of the raw device (PATH) and read every page"},
    {"raw_device_rw", scen_raw_device_rw, "stores through a mapping of the raw device vs pread/pwrite"},
};
#define NSCEN (sizeof scenarios / sizeof scenarios[0])

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
    if (end == s || *end || v < HUGE || v % HUGE) {
        fprintf(stderr, "scen_dax: --size %s: give a multiple of 2 MiB, e.g. 8M or 256M\n", s);
        exit(2);
    }
    return v;
}

static int usage(void)
{
    fprintf(stderr, "usage: scen_dax [--size SIZE] [--rounds N] [--device PATH] SCENARIO[,SCENARIO...] DIR\n"
                    "       scen_dax --list\n");
    return 2;
}

int main(int argc, char **argv)
{
    scen_self = argv[0];
    if (argc >= 3 && strcmp(argv[1], "--role") == 0) {
        scen_set("role", argv[2]);
        if (strcmp(argv[2], "coh-peer") == 0 && argc == 5)
            coh_peer(argv[3], argv[4]);
        if (strcmp(argv[2], "trunc-racer") == 0 && argc == 5)
            tr_racer(argv[3], argv[4]);
        if (strcmp(argv[2], "freeze-storer") == 0 && argc == 6)
            fz_storer(argv[3], argv[4], argv[5]);
        return usage();
    }
    const char *list = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            for (unsigned k = 0; k < NSCEN; k++)
                printf("%-18s %s\n", scenarios[k].name, scenarios[k].what);
            return 0;
        } else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
            size = parse_size(argv[++i]);
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            rounds = atol(argv[++i]);
            if (rounds < 1)
                return usage();
        } else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            device = argv[++i];
        } else if (argv[i][0] != '-' && !list) {
            list = argv[i];
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            return usage();
        }
    }
    if (!list || !dir)
        return usage();
    /* Check every name before running anything. */
    char names[512];
    snprintf(names, sizeof names, "%s", list);
    for (char *save = NULL, *n = strtok_r(names, ",", &save); n; n = strtok_r(NULL, ",", &save)) {
        unsigned k = 0;
        while (k < NSCEN && strcmp(scenarios[k].name, n) != 0)
            k++;
        if (k == NSCEN) {
            fprintf(stderr, "scen_dax: no scenario %s (see --list)\n", n);
            return 2;
        }
    }
    snprintf(names, sizeof names, "%s", list);
    for (char *save = NULL, *n = strtok_r(names, ",", &save); n; n = strtok_r(NULL, ",", &save))
        for (unsigned k = 0; k < NSCEN; k++)
            if (strcmp(scenarios[k].name, n) == 0) {
                scen_set(scenarios[k].name, NULL);
                note("running on %s", system_name());
                scenarios[k].run();
            }
    return 0;
}
