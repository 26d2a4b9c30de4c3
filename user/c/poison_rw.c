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
 * Prints check.h lines; exits 0 iff every check passed. On Linux, the
 * poison comes from MADV_HWPOISON or a real error; on fsdax from `mf`.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "check.h"
#include "uapi.h"

#define BLOCK 4096

static unsigned char byte_at(size_t i)
{
    return (unsigned char)(i * 7 + (i >> 12) + 1);
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
    struct {
        struct fiemap fm;
        struct fiemap_extent e[4];
    } req;
    memset(&req, 0, sizeof req);
    req.fm.fm_start = BLOCK;
    req.fm.fm_length = BLOCK;
    req.fm.fm_extent_count = 4;
    CHECK_SYS(ioctl(fd, FS_IOC_FIEMAP, &req));
    CHECK(req.fm.fm_mapped_extents >= 1, "block 1 is mapped");
    struct fiemap_extent *e = &req.e[0];
    CHECK(e->fe_logical <= BLOCK && e->fe_logical + e->fe_length > BLOCK, "the extent covers block 1");
    printf("poison_rw: block 1 at device offset 0x%llx\n",
           (unsigned long long)(e->fe_physical + (BLOCK - e->fe_logical)));
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
    memset(buf, 0, sizeof buf);
    CHECK_EQ(pread(fd, buf, sizeof buf, 0), sizeof buf);
    for (size_t i = 0; i < sizeof buf; i++)
        CHECK_EQ(buf[i], byte_at(i));
    close(fd);
    t_pass();
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "prepare") != 0 && strcmp(argv[1], "check") != 0)) {
        fprintf(stderr, "usage: poison_rw prepare|check FILE\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[1], "prepare") == 0)
        prepare(argv[2]);
    else
        check(argv[2]);
    return t_summary();
}
