/*
 * poison_rw: read() and write() of a file over a poisoned block. Someone
 * else (the console's `mf`, a machine check) poisons the file's second
 * block between the two steps:
 *
 *   poison_rw prepare FILE   write 3 blocks of pattern bytes, fsync, print
 *                            "poison_rw: block 1 at device offset 0x..."
 *                            (from FS_IOC_FIEMAP)
 *   poison_rw check FILE     pread of the 3 blocks stops short before block 1;
 *                            pread of block 1 fails with EIO; block 2 still
 *                            reads; a whole-block pwrite of block 1 (a
 *                            recovery write) clears the poison, after which
 *                            the whole file reads back
 *
 *   poison_rw eio FILE       block 1 fails with EIO, blocks 0 and 2 read
 *                            (after a machine check, or after a reboot,
 *                            before any machine check)
 *   poison_rw zero FILE      block 1 fails with EIO; fallocate(ZERO_RANGE)
 *                            of the whole block clears it: it reads zeros
 *   poison_rw punch FILE     block 1 fails with EIO; punching it leaves a
 *                            hole (zeros) and does not return the bad block
 *                            to free space (statfs); a new whole-block
 *                            pwrite lands on another block (FIEMAP)
 *   poison_rw readloop FILE  write 2 MiB of pattern bytes, print the device
 *                            offset of the block in the middle ("poison_rw:
 *                            readloop block 256 at device offset 0x..."),
 *                            then pread all 2 MiB again and again until a
 *                            read comes back short (a machine check stopped
 *                            the kernel's copy there): the bytes before are
 *                            right, a pread at the poison fails with EIO
 *   poison_rw busy FILE MIB removal|sigterm
 *                            faults, writes and reads FILE round after round:
 *                            map MIB MiB of it shared and store into every
 *                            page (write faults; a first mapping stays), read
 *                            the pages back through the mapping, unmap; a
 *                            1 MiB pwrite; a pread of it, compared. Each
 *                            round's bytes differ, every read is checked.
 *                            removal: until a call fails or a fault gets
 *                            SIGBUS (the device went away); passes if it
 *                            ended with EIO/ENXIO, an mmap error or SIGBUS,
 *                            got at most one SIGBUS BUS_MCEERR_AO (at an
 *                            address of its mappings), every read before
 *                            was right, and a pread after is EIO/ENXIO.
 *                            sigterm: until SIGTERM; passes if every round
 *                            was right (metadata going bad meanwhile).
 *   poison_rw rawmap DEVICE MIB
 *                            open the raw device (retrying while it is busy:
 *                            the file system that holds this program is to
 *                            be unmounted first), map its first MIB MiB
 *                            read-only and read every page round after
 *                            round until a read gets SIGBUS (the device went
 *                            away); passes if it got one SIGBUS
 *                            BUS_MCEERR_AO at an address of the mapping
 *                            first, and then pread and mmap of the device
 *                            fail with ENXIO
 *
 * Prints check.h lines; exits 0 iff every check passed. On Linux, the
 * poison comes from MADV_HWPOISON or a real error; on fsdax from `mf` or
 * a machine check the host injects.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "check.h"
#include "uapi.h"

#define BLOCK 4096

static unsigned char byte_at(size_t i)
{
    return (unsigned char)(i * 7 + (i >> 12) + 1);
}

static long long block_of(int fd, off_t at)
{
    struct {
        struct fiemap fm;
        struct fiemap_extent e[4];
    } req;
    memset(&req, 0, sizeof req);
    req.fm.fm_start = at;
    req.fm.fm_length = BLOCK;
    req.fm.fm_extent_count = 4;
    if (ioctl(fd, FS_IOC_FIEMAP, &req) != 0 || req.fm.fm_mapped_extents < 1)
        return -1;
    struct fiemap_extent *e = &req.e[0];
    if (e->fe_logical > (unsigned long long)at || e->fe_logical + e->fe_length <= (unsigned long long)at)
        return -1;
    return (long long)(e->fe_physical + (at - e->fe_logical));
}

/* Reads the 3 blocks back: -1 if every byte is the pattern (block 1 zeros
 * when `block1_zero`), -2 for a short read, else the first wrong byte. */
static long first_wrong(int fd, int block1_zero)
{
    static unsigned char buf[3 * BLOCK];
    if (pread(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf)
        return -2;
    for (size_t i = 0; i < sizeof buf; i++)
        if (buf[i] != (block1_zero && i >= BLOCK && i < 2 * BLOCK ? 0 : byte_at(i)))
            return (long)i;
    return -1;
}

static void prepare(const char *path)
{
    T_BEGIN("poison_rw_prepare");
    static unsigned char buf[3 * BLOCK];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = byte_at(i);
    int fd = CHECK_SYS(open(path, O_CREAT | O_TRUNC | O_RDWR, 0644));
    CHECK_EQ(pwrite(fd, buf, sizeof buf, 0), sizeof buf);
    CHECK_SYS(fsync(fd));
    long long at = block_of(fd, BLOCK);
    CHECK(at >= 0, "FIEMAP names block 1's device offset");
    printf("poison_rw: block 1 at device offset 0x%llx\n", at);
    close(fd);
    t_pass();
}

static void check(const char *path)
{
    T_BEGIN("poison_rw_check");
    static unsigned char buf[3 * BLOCK];
    int fd = CHECK_SYS(open(path, O_RDWR));
    /* A read over the poisoned block stops before it... */
    CHECK_EQ(pread(fd, buf, sizeof buf, 0), BLOCK);
    for (size_t i = 0; i < BLOCK; i++)
        CHECK_EQ(buf[i], byte_at(i));
    /* ...and a read that starts in it fails with EIO. */
    CHECK_ERRNO(pread(fd, buf, BLOCK, BLOCK), EIO);
    CHECK_ERRNO(pread(fd, buf, 100, BLOCK + 200), EIO);
    /* The blocks after it are fine. */
    CHECK_EQ(pread(fd, buf, BLOCK, 2 * BLOCK), BLOCK);
    for (size_t i = 0; i < BLOCK; i++)
        CHECK_EQ(buf[i], byte_at(2 * BLOCK + i));
    /* A write into part of the poisoned block cannot clear it. */
    CHECK_ERRNO(pwrite(fd, "x", 1, BLOCK + 10), EIO);
    /* A whole-block write clears it (a recovery write). */
    for (size_t i = 0; i < BLOCK; i++)
        buf[i] = byte_at(BLOCK + i);
    CHECK_EQ(pwrite(fd, buf, BLOCK, BLOCK), BLOCK);
    CHECK_EQ(first_wrong(fd, 0), -1);
    close(fd);
    t_pass();
}

/* Block 1 is poisoned, its neighbours are intact. */
static int expect_poisoned(int fd)
{
    static unsigned char buf[BLOCK];
    errno = 0;
    if (pread(fd, buf, BLOCK, BLOCK) != -1 || errno != EIO) {
        t_fail(__FILE__, __LINE__, "-1 (EIO)", "errno %d: pread of block 1", errno);
        return 0;
    }
    for (int b = 0; b <= 2; b += 2) {
        if (pread(fd, buf, BLOCK, (off_t)b * BLOCK) != BLOCK) {
            t_fail(__FILE__, __LINE__, "a whole block", "errno %d: pread of block %d", errno, b);
            return 0;
        }
        for (size_t i = 0; i < BLOCK; i++)
            if (buf[i] != byte_at((size_t)b * BLOCK + i)) {
                t_fail(__FILE__, __LINE__, "the pattern", "byte %zu of block %d differs", i, b);
                return 0;
            }
    }
    return 1;
}

static void eio(const char *path)
{
    T_BEGIN("poison_rw_eio");
    int fd = CHECK_SYS(open(path, O_RDONLY));
    if (!expect_poisoned(fd))
        return;
    close(fd);
    t_pass();
}

static void zero(const char *path)
{
    T_BEGIN("poison_rw_zero");
    int fd = CHECK_SYS(open(path, O_RDWR));
    if (!expect_poisoned(fd))
        return;
    /* Zeroing part of the block cannot clear it. */
    CHECK_ERRNO(fallocate(fd, FALLOC_FL_ZERO_RANGE, BLOCK + 100, 200), EIO);
    CHECK_SYS(fallocate(fd, FALLOC_FL_ZERO_RANGE, BLOCK, BLOCK));
    CHECK_EQ(first_wrong(fd, 1), -1);
    close(fd);
    t_pass();
}

static void punch(const char *path)
{
    T_BEGIN("poison_rw_punch");
    static unsigned char buf[3 * BLOCK];
    int fd = CHECK_SYS(open(path, O_RDWR));
    if (!expect_poisoned(fd))
        return;
    long long bad = block_of(fd, BLOCK);
    CHECK(bad >= 0, "FIEMAP names block 1's device offset");
    struct statfs before, after;
    CHECK_SYS(fstatfs(fd, &before));
    CHECK_SYS(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, BLOCK, BLOCK));
    CHECK_SYS(fstatfs(fd, &after));
    /* The bad block left the file and did not become free space. */
    CHECK_EQ(after.f_bfree, before.f_bfree);
    CHECK_EQ(block_of(fd, BLOCK), -1);
    CHECK_EQ(first_wrong(fd, 1), -1);
    /* A new block, never the bad one. */
    for (size_t i = 0; i < BLOCK; i++)
        buf[i] = byte_at(BLOCK + i);
    CHECK_EQ(pwrite(fd, buf, BLOCK, BLOCK), BLOCK);
    CHECK_SYS(fsync(fd));
    long long now = block_of(fd, BLOCK);
    CHECK(now >= 0 && now != bad, "block 1 is on another device block");
    CHECK_EQ(first_wrong(fd, 0), -1);
    printf("poison_rw: bad block 0x%llx stays out of use; block 1 now at 0x%llx\n", bad, now);
    close(fd);
    t_pass();
}

static void readloop(const char *path)
{
    T_BEGIN("poison_rw_readloop");
    enum { SIZE = 2 << 20 };
    static unsigned char buf[SIZE];
    for (size_t i = 0; i < SIZE; i++)
        buf[i] = byte_at(i);
    int fd = CHECK_SYS(open(path, O_CREAT | O_TRUNC | O_RDWR, 0644));
    CHECK_EQ(pwrite(fd, buf, SIZE, 0), SIZE);
    CHECK_SYS(fsync(fd));
    long long mid = block_of(fd, SIZE / 2);
    CHECK(mid >= 0, "FIEMAP names the middle block");
    printf("poison_rw: readloop block 256 at device offset 0x%llx\n", mid);
    long n = 0;
    ssize_t r;
    for (;;) {
        r = pread(fd, buf, SIZE, 0);
        if (r != SIZE)
            break;
        n++;
    }
    printf("poison_rw: readloop stopped after %ld full reads: %zd bytes (errno %s)\n", n, r, errno_name(errno));
    CHECK(r >= 0 && r < SIZE, "a short count, not an error");
    for (ssize_t i = 0; i < r; i++)
        CHECK_EQ(buf[i], byte_at((size_t)i));
    CHECK_ERRNO(pread(fd, buf, 4096, r), EIO);
    close(fd);
    t_pass();
}

static sigjmp_buf busy_env;
static volatile int busy_ao, busy_ao_lsb, busy_code;
static volatile uintptr_t busy_ao_addr;
static volatile sig_atomic_t busy_term;

static void busy_bus(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)ctx;
    if (si->si_code == BUS_MCEERR_AO) {
        busy_ao++;
        busy_ao_addr = (uintptr_t)si->si_addr;
        busy_ao_lsb = si->si_addr_lsb;
        return;
    }
    busy_code = si->si_code;
    siglongjmp(busy_env, 1);
}

static void busy_sigterm(int sig)
{
    (void)sig;
    busy_term = 1;
}

static unsigned char busy_byte(long round, size_t i)
{
    return (unsigned char)(round * 7 + (long)(i >> 12) + (long)(i & 0xff));
}

/* The removal's notice may arrive after the fault or call that ended the loop (the
 * mappings go before the notices are sent): wait for it up to 2 s. */
static void wait_for_notice(void)
{
    for (int i = 0; i < 200 && !busy_ao; i++)
        usleep(10 * 1000);
}

static void busy(const char *path, long mib, int until_removal)
{
    T_BEGIN("poison_rw_busy");
    CHECK(mib >= 1, "MIB >= 1");
    size_t len = (size_t)mib << 20;
    static unsigned char buf[1 << 20];
    int fd = CHECK_SYS(open(path, O_CREAT | O_TRUNC | O_RDWR, 0644));
    CHECK_SYS(ftruncate(fd, (off_t)len));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = busy_bus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    CHECK_SYS(sigaction(SIGBUS, &sa, NULL));
    struct sigaction st;
    memset(&st, 0, sizeof st);
    st.sa_handler = busy_sigterm;
    st.sa_flags = SA_RESTART;
    CHECK_SYS(sigaction(SIGTERM, &st, NULL));
    /* A mapping that stays (its pages are the device's until it goes away). */
    volatile unsigned char *keep = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(keep != MAP_FAILED, "mmap");
    for (size_t i = 0; i < len; i += BLOCK)
        keep[i] = (unsigned char)(i >> 12);
    /* Changed after sigsetjmp and read after siglongjmp: volatile themselves. */
    static volatile unsigned char *volatile q;
    static volatile uintptr_t q_lo = UINTPTR_MAX, q_hi = 0;
    static volatile long rounds, wrong;
    static volatile int map_errno, io_errno;
    static const char *volatile failed_call = "";
    if (sigsetjmp(busy_env, 1) == 0) {
        while (!busy_term) {
            long r = rounds;
            q = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (q == MAP_FAILED) {
                map_errno = errno;
                break;
            }
            if ((uintptr_t)q < q_lo)
                q_lo = (uintptr_t)q;
            if ((uintptr_t)q + len > q_hi)
                q_hi = (uintptr_t)q + len;
            for (size_t i = 0; i < len; i += BLOCK)
                q[i + 8] = busy_byte(r, i);
            for (size_t i = 0; i < len; i += BLOCK)
                wrong += q[i + 8] != busy_byte(r, i);
            munmap((void *)q, len);
            off_t at = (off_t)(r % mib) << 20;
            for (size_t i = 0; i < sizeof buf; i++)
                buf[i] = busy_byte(r + 1, i);
            ssize_t w = pwrite(fd, buf, sizeof buf, at);
            if (w != (ssize_t)sizeof buf) {
                io_errno = w < 0 ? errno : 0;
                failed_call = "pwrite";
                break;
            }
            memset(buf, 0, sizeof buf);
            ssize_t n = pread(fd, buf, sizeof buf, at);
            if (n != (ssize_t)sizeof buf) {
                io_errno = n < 0 ? errno : 0;
                failed_call = "pread";
                break;
            }
            for (size_t i = 0; i < sizeof buf; i++)
                wrong += buf[i] != busy_byte(r + 1, i);
            if (++rounds == 1)
                printf("poison_rw: busy faulting, writing and reading %s\n", path);
        }
    }
    if (until_removal)
        wait_for_notice();
    uintptr_t k = (uintptr_t)keep;
    int own = (busy_ao_addr >= k && busy_ao_addr < k + len) || (busy_ao_addr >= q_lo && busy_ao_addr < q_hi);
    const char *how = busy_term ? "SIGTERM"
                      : map_errno ? errno_name(map_errno)
                      : busy_code == BUS_MCEERR_AR ? "SIGBUS BUS_MCEERR_AR"
                      : busy_code == BUS_ADRERR ? "SIGBUS BUS_ADRERR"
                      : busy_code ? "SIGBUS (another code)"
                      : io_errno ? errno_name(io_errno)
                                 : "a short count";
    printf("poison_rw: busy stopped after %ld rounds: %s%s%s; %ld wrong bytes; %d SIGBUS BUS_MCEERR_AO (lsb %d, %s)\n",
           rounds, how, *failed_call ? " from " : "", failed_call, wrong, busy_ao, busy_ao_lsb,
           busy_ao ? (own ? "its own address" : "a foreign address") : "-");
    CHECK(wrong == 0, "every byte read back was the one written");
    if (until_removal) {
        CHECK(!busy_term, "ended by the removal, not by SIGTERM");
        CHECK(map_errno || busy_code || io_errno == EIO || io_errno == ENXIO,
              "the loop ended with SIGBUS, an mmap error, EIO or ENXIO");
        CHECK(busy_ao <= 1, "at most one BUS_MCEERR_AO");
        CHECK(!busy_ao || own, "the AO names an address of its mappings");
        CHECK(!busy_ao || busy_ao_lsb == 12 || busy_ao_lsb == 21, "the AO's lsb is a page's");
        errno = 0;
        CHECK(pread(fd, buf, 4096, 0) == -1 && (errno == EIO || errno == ENXIO), "a pread after fails with EIO or ENXIO");
    } else {
        CHECK(busy_term && rounds > 0, "ran until SIGTERM");
        CHECK(busy_ao == 0 && busy_code == 0, "no SIGBUS");
    }
    close(fd);
    t_pass();
}

static void rawmap(const char *path, long mib)
{
    T_BEGIN("poison_rw_rawmap");
    CHECK(mib >= 1, "MIB >= 1");
    size_t len = (size_t)mib << 20;
    int fd = -1;
    for (int i = 0; i < 600 && fd < 0; i++) {
        fd = open(path, O_RDONLY);
        if (fd < 0 && errno == EBUSY)
            usleep(100 * 1000);
        else
            break;
    }
    CHECK(fd >= 0, "the raw device opens once the file system is unmounted");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = busy_bus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    CHECK_SYS(sigaction(SIGBUS, &sa, NULL));
    static volatile const unsigned char *volatile p;
    p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED, "mmap of the raw device");
    static volatile long rounds;
    static volatile unsigned sum;
    if (sigsetjmp(busy_env, 1) == 0) {
        for (;;) {
            for (size_t i = 0; i < len; i += BLOCK)
                sum += p[i];
            if (++rounds == 1)
                printf("poison_rw: rawmap mapped %s\n", path);
        }
    }
    wait_for_notice();
    uintptr_t k = (uintptr_t)p;
    int own = busy_ao_addr >= k && busy_ao_addr < k + len;
    static unsigned char buf[BLOCK];
    errno = 0;
    ssize_t r = pread(fd, buf, sizeof buf, 0);
    int pread_errno = r < 0 ? errno : 0;
    void *again = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    int mmap_errno = again == MAP_FAILED ? errno : 0;
    printf("poison_rw: rawmap stopped after %ld rounds: %s; %d SIGBUS BUS_MCEERR_AO (lsb %d, %s); then pread %s, mmap %s\n",
           rounds,
           busy_code == BUS_MCEERR_AR ? "SIGBUS BUS_MCEERR_AR"
           : busy_code == BUS_ADRERR ? "SIGBUS BUS_ADRERR"
                                     : "SIGBUS (another code)",
           busy_ao, busy_ao_lsb, busy_ao ? (own ? "its own address" : "a foreign address") : "-",
           r < 0 ? errno_name(pread_errno) : "ok", again == MAP_FAILED ? errno_name(mmap_errno) : "ok");
    CHECK(busy_ao == 1 && own, "one BUS_MCEERR_AO at an address of the mapping");
    CHECK(busy_code == BUS_ADRERR, "then SIGBUS BUS_ADRERR at the next touch");
    CHECK(pread_errno == ENXIO, "pread of the removed device: ENXIO");
    CHECK(mmap_errno == ENXIO, "mmap of the removed device: ENXIO");
    close(fd);
    t_pass();
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "prepare") == 0)
        prepare(argv[2]);
    else if (argc == 3 && strcmp(argv[1], "check") == 0)
        check(argv[2]);
    else if (argc == 3 && strcmp(argv[1], "eio") == 0)
        eio(argv[2]);
    else if (argc == 3 && strcmp(argv[1], "zero") == 0)
        zero(argv[2]);
    else if (argc == 3 && strcmp(argv[1], "punch") == 0)
        punch(argv[2]);
    else if (argc == 3 && strcmp(argv[1], "readloop") == 0)
        readloop(argv[2]);
    else if (argc == 4 && strcmp(argv[1], "rawmap") == 0)
        rawmap(argv[2], atol(argv[3]));
    else if (argc == 5 && strcmp(argv[1], "busy") == 0 &&
             (strcmp(argv[4], "removal") == 0 || strcmp(argv[4], "sigterm") == 0))
        busy(argv[2], atol(argv[3]), strcmp(argv[4], "removal") == 0);
    else {
        fprintf(stderr, "usage: poison_rw prepare|check|eio|zero|punch|readloop FILE | poison_rw busy FILE MIB removal|sigterm | poison_rw rawmap DEVICE MIB\n");
        return 2;
    }
    return t_summary();
}
