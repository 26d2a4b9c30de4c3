/* suite_fs.c: files and directories on DIR (open flags, I/O, stat, sync,
 * truncate and fallocate, names, getdents64, cwd, fcntl, dup, ioctls, poll). */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>

#include "suite.h"

static void fill(unsigned char *buf, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)((i * 131 + seed * 7 + (i >> 12)) & 0xff);
}

static int all_zero(const unsigned char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (buf[i])
            return 0;
    return 1;
}

static off_t file_size(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? st.st_size : -1;
}

static long long file_blocks(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? (long long)st.st_blocks : -1;
}

/* A new file DIR/name holding n pattern bytes; returns an O_RDWR fd. */
static int make_file(const char *name, size_t n, unsigned seed)
{
    int fd = open(path_in(name), O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0)
        return -1;
    unsigned char *buf = malloc(n ? n : 1);
    fill(buf, n, seed);
    ssize_t w = n ? pwrite(fd, buf, n, 0) : 0;
    free(buf);
    if (w != (ssize_t)n) {
        close(fd);
        return -1;
    }
    return fd;
}

static void open_creat_excl(void)
{
    T_BEGIN("open_o_creat_o_excl");
    const char *p = path_in("excl");
    unlink(p);
    int fd = CHECK_SYS(open(p, O_CREAT | O_EXCL | O_RDWR, 0600));
    struct stat st;
    CHECK_SYS(fstat(fd, &st));
    CHECK(S_ISREG(st.st_mode), "a regular file");
    CHECK_EQ(st.st_size, 0);
    close(fd);
    CHECK_ERRNO(open(p, O_CREAT | O_EXCL | O_RDWR, 0600), EEXIST);
    CHECK_ERRNO(mkdir(p, 0755), EEXIST);
    /* O_CREAT without O_EXCL opens the existing file. */
    fd = CHECK_SYS(open(p, O_CREAT | O_RDWR, 0600));
    close(fd);
    CHECK_SYS(unlink(p));
    t_pass();
}

static void open_enoent(void)
{
    T_BEGIN("open_enoent");
    CHECK_ERRNO(open(path_in("missing"), O_RDONLY), ENOENT);
    CHECK_ERRNO(open(path_in("missing-dir/file"), O_CREAT | O_RDWR, 0644), ENOENT);
    CHECK_ERRNO(open("", O_RDONLY), ENOENT);
    CHECK_ERRNO(unlink(path_in("missing")), ENOENT);
    CHECK_ERRNO(rmdir(path_in("missing")), ENOENT);
    struct stat st;
    CHECK_ERRNO(stat(path_in("missing"), &st), ENOENT);
    t_pass();
}

static void open_trunc(void)
{
    T_BEGIN("open_o_trunc");
    int fd = CHECK_SYS(make_file("trunc", 10000, 1));
    close(fd);
    fd = CHECK_SYS(open(path_in("trunc"), O_RDWR | O_TRUNC));
    CHECK_EQ(file_size(fd), 0);
    char c;
    CHECK_EQ(read(fd, &c, 1), 0);
    close(fd);
    CHECK_SYS(unlink(path_in("trunc")));
    t_pass();
}

static void open_append(void)
{
    T_BEGIN("open_o_append");
    int fd = CHECK_SYS(make_file("append", 100, 2));
    close(fd);
    fd = CHECK_SYS(open(path_in("append"), O_WRONLY | O_APPEND));
    CHECK_SYS(lseek(fd, 0, SEEK_SET));
    CHECK_EQ(write(fd, "abc", 3), 3);
    CHECK_EQ(file_size(fd), 103);
    CHECK_EQ(lseek(fd, 0, SEEK_CUR), 103);
    /* Linux: pwrite on an O_APPEND file appends too, whatever the offset. */
    CHECK_EQ(pwrite(fd, "de", 2, 0), 2);
    CHECK_EQ(file_size(fd), 105);
    close(fd);
    fd = CHECK_SYS(open(path_in("append"), O_RDONLY));
    char tail[5];
    CHECK_EQ(pread(fd, tail, 5, 100), 5);
    CHECK(memcmp(tail, "abcde", 5) == 0, "appended bytes at the end");
    close(fd);
    CHECK_SYS(unlink(path_in("append")));
    t_pass();
}

static void open_directory_flag(void)
{
    T_BEGIN("open_o_directory_enotdir");
    int fd = CHECK_SYS(open(suite_dir, O_RDONLY | O_DIRECTORY));
    close(fd);
    fd = CHECK_SYS(make_file("notdir", 10, 3));
    close(fd);
    CHECK_ERRNO(open(path_in("notdir"), O_RDONLY | O_DIRECTORY), ENOTDIR);
    /* A path through a file. */
    CHECK_ERRNO(open(path_in("notdir/x"), O_RDONLY), ENOTDIR);
    CHECK_ERRNO(open(path_in("notdir/x"), O_CREAT | O_RDWR, 0644), ENOTDIR);
    CHECK_ERRNO(mkdir(path_in("notdir/x"), 0755), ENOTDIR);
    struct stat st;
    CHECK_ERRNO(stat(path_in("notdir/"), &st), ENOTDIR);
    CHECK_ERRNO(rmdir(path_in("notdir")), ENOTDIR);
    CHECK_ERRNO(chdir(path_in("notdir")), ENOTDIR);
    CHECK_SYS(unlink(path_in("notdir")));
    t_pass();
}

static void open_eisdir(void)
{
    T_BEGIN("open_eisdir");
    CHECK_ERRNO(open(suite_dir, O_WRONLY), EISDIR);
    CHECK_ERRNO(open(suite_dir, O_RDWR), EISDIR);
    CHECK_SYS(mkdir(path_in("isdir"), 0755));
    CHECK_ERRNO(unlink(path_in("isdir")), EISDIR);
    int fd = CHECK_SYS(open(suite_dir, O_RDONLY | O_DIRECTORY));
    char c;
    CHECK_ERRNO(read(fd, &c, 1), EISDIR);
    close(fd);
    CHECK_SYS(rmdir(path_in("isdir")));
    t_pass();
}

static void open_cloexec_flag(void)
{
    T_BEGIN("open_o_cloexec_fcntl");
    int a = CHECK_SYS(open(path_in("cx"), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
    int b = CHECK_SYS(open(path_in("cx"), O_RDWR));
    CHECK_EQ(fcntl(a, F_GETFD), FD_CLOEXEC);
    CHECK_EQ(fcntl(b, F_GETFD), 0);
    CHECK_SYS(fcntl(b, F_SETFD, FD_CLOEXEC));
    CHECK_EQ(fcntl(b, F_GETFD), FD_CLOEXEC);
    CHECK_SYS(fcntl(b, F_SETFD, 0));
    CHECK_EQ(fcntl(b, F_GETFD), 0);
    CHECK_EQ(fcntl(a, F_GETFL) & O_ACCMODE, O_RDWR);
    close(a);
    a = CHECK_SYS(open(path_in("cx"), O_WRONLY | O_APPEND));
    CHECK_EQ(fcntl(a, F_GETFL) & (O_ACCMODE | O_APPEND), O_WRONLY | O_APPEND);
    CHECK_ERRNO(fcntl(a, 9999), EINVAL);
    CHECK_ERRNO(fcntl(-1, F_GETFD), EBADF);
    close(a);
    close(b);
    CHECK_SYS(unlink(path_in("cx")));
    t_pass();
}

static void ebadf_everywhere(void)
{
    T_BEGIN("ebadf");
    int fd = CHECK_SYS(make_file("ebadf", 100, 4));
    int ro = CHECK_SYS(open(path_in("ebadf"), O_RDONLY));
    int wo = CHECK_SYS(open(path_in("ebadf"), O_WRONLY));
    char buf[16];
    struct stat st;
    CHECK_ERRNO(write(ro, "x", 1), EBADF);
    CHECK_ERRNO(pwrite(ro, "x", 1, 0), EBADF);
    CHECK_ERRNO(read(wo, buf, 1), EBADF);
    CHECK_ERRNO(pread(wo, buf, 1, 0), EBADF);
    CHECK_ERRNO(fallocate(ro, 0, 0, 4096), EBADF);
    close(ro);
    close(wo);
    close(fd);
    int bad = fd; /* closed now */
    CHECK_ERRNO(read(bad, buf, 1), EBADF);
    CHECK_ERRNO(write(bad, buf, 1), EBADF);
    CHECK_ERRNO(close(bad), EBADF);
    CHECK_ERRNO(fstat(bad, &st), EBADF);
    CHECK_ERRNO(lseek(bad, 0, SEEK_SET), EBADF);
    CHECK_ERRNO(fsync(bad), EBADF);
    CHECK_ERRNO(fdatasync(bad), EBADF);
    CHECK_ERRNO(ftruncate(bad, 0), EBADF);
    CHECK_ERRNO(dup(bad), EBADF);
    CHECK_ERRNO(ioctl(bad, TCGETS, buf), EBADF);
    CHECK_NEG(RAW3(SYS_getdents64, bad, buf, sizeof buf), EBADF);
    CHECK_ERRNO(read(-1, buf, 1), EBADF);
    CHECK_ERRNO(read(1 << 20, buf, 1), EBADF);
    CHECK_SYS(unlink(path_in("ebadf")));
    t_pass();
}

static void read_write_lseek(void)
{
    T_BEGIN("read_write_lseek");
    enum { N = 10000 };
    static unsigned char out[N], in[N];
    fill(out, N, 5);
    int fd = CHECK_SYS(open(path_in("rw"), O_CREAT | O_TRUNC | O_RDWR, 0644));
    CHECK_EQ(write(fd, out, N), N);
    CHECK_EQ(lseek(fd, 0, SEEK_CUR), N);
    CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
    CHECK_EQ(read(fd, in, N), N);
    CHECK(memcmp(in, out, N) == 0, "the bytes written read back");
    CHECK_EQ(read(fd, in, N), 0); /* EOF */
    CHECK_EQ(lseek(fd, -100, SEEK_END), N - 100);
    CHECK_EQ(read(fd, in, N), 100);
    CHECK_EQ(lseek(fd, -50, SEEK_CUR), N - 50);
    CHECK_EQ(lseek(fd, 1 << 20, SEEK_SET), 1 << 20); /* past EOF is fine */
    CHECK_ERRNO(lseek(fd, -1, SEEK_SET), EINVAL);
    CHECK_ERRNO(lseek(fd, 0, 99), EINVAL);
    CHECK_ERRNO(lseek(fd, -(N + 1), SEEK_END), EINVAL);
    close(fd);
    CHECK_SYS(unlink(path_in("rw")));
    t_pass();
}

static void pread_pwrite(void)
{
    T_BEGIN("pread_pwrite");
    unsigned char a[4096], b[4096];
    fill(a, sizeof a, 6);
    int fd = CHECK_SYS(open(path_in("prw"), O_CREAT | O_TRUNC | O_RDWR, 0644));
    CHECK_EQ(pwrite(fd, a, sizeof a, 3 * 4096 + 100), sizeof a);
    CHECK_EQ(lseek(fd, 0, SEEK_CUR), 0); /* the offset did not move */
    CHECK_EQ(file_size(fd), 4 * 4096 + 100);
    CHECK_EQ(pread(fd, b, sizeof b, 3 * 4096 + 100), sizeof b);
    CHECK(memcmp(a, b, sizeof a) == 0, "pread returns what pwrite wrote");
    CHECK_EQ(pread(fd, b, sizeof b, 0), sizeof b); /* a hole reads as zeros */
    CHECK(all_zero(b, sizeof b), "zeros in the hole before the data");
    CHECK_EQ(pread(fd, b, sizeof b, 4 * 4096), 100); /* short at EOF */
    CHECK_EQ(pread(fd, b, sizeof b, 1 << 20), 0);
    CHECK_ERRNO(pread(fd, b, 1, -1), EINVAL);
    CHECK_ERRNO(pwrite(fd, b, 1, -1), EINVAL);
    close(fd);
    CHECK_SYS(unlink(path_in("prw")));
    t_pass();
}

static void readv_writev(void)
{
    T_BEGIN("readv_writev");
    char a[] = "first-", b[] = "second-", c[] = "third";
    struct iovec w[3] = {{a, 6}, {b, 7}, {c, 5}};
    int fd = CHECK_SYS(open(path_in("iov"), O_CREAT | O_TRUNC | O_RDWR, 0644));
    CHECK_EQ(writev(fd, w, 3), 18);
    CHECK_SYS(lseek(fd, 0, SEEK_SET));
    char x[4], y[10], z[10];
    struct iovec r[3] = {{x, 4}, {y, 10}, {z, 10}};
    CHECK_EQ(readv(fd, r, 3), 18);
    CHECK(memcmp(x, "firs", 4) == 0 && memcmp(y, "t-second-t", 10) == 0 && memcmp(z, "hird", 4) == 0,
          "bytes scattered over the iovecs in order");
    struct iovec zero = {x, 0};
    CHECK_EQ(writev(fd, &zero, 1), 0);
    CHECK_ERRNO(writev(fd, w, -1), EINVAL);
    CHECK_ERRNO(readv(fd, r, 1025), EINVAL);
    close(fd);
    CHECK_SYS(unlink(path_in("iov")));
    t_pass();
}

static void stat_family(void)
{
    T_BEGIN("fstat_stat_newfstatat");
    int fd = CHECK_SYS(make_file("st", 12345, 7));
    struct stat a, b, c, d;
    CHECK_SYS(fstat(fd, &a));
    CHECK(S_ISREG(a.st_mode), "S_ISREG");
    CHECK_EQ(a.st_size, 12345);
    CHECK_EQ(a.st_nlink, 1);
    CHECK(a.st_blksize > 0, "a block size");
    CHECK(a.st_blocks * 512 >= 12288, "st_blocks cover the data");
    CHECK_SYS(stat(path_in("st"), &b));
    CHECK_EQ(b.st_ino, a.st_ino);
    CHECK_EQ(b.st_dev, a.st_dev);
    int dfd = CHECK_SYS(open(suite_dir, O_RDONLY | O_DIRECTORY));
    CHECK_SYS(fstatat(dfd, "st", &c, 0));
    CHECK_EQ(c.st_ino, a.st_ino);
    CHECK_SYS(fstatat(fd, "", &d, AT_EMPTY_PATH));
    CHECK_EQ(d.st_ino, a.st_ino);
    CHECK_SYS(fstatat(dfd, "st", &d, AT_SYMLINK_NOFOLLOW));
    CHECK_ERRNO(fstatat(dfd, "st", &d, 0x1), EINVAL);
    CHECK_ERRNO(fstatat(dfd, "", &d, 0), ENOENT);
    CHECK_SYS(fstat(dfd, &d));
    CHECK(S_ISDIR(d.st_mode), "S_ISDIR for the directory");
    CHECK(a.st_mtime > 1577836800, "a modification time after 2020");
    close(dfd);
    close(fd);
    CHECK_SYS(unlink(path_in("st")));
    t_pass();
}

static long do_statx(int dfd, const char *path, int flags, unsigned mask, struct statx *sx)
{
    errno = 0;
    long r = RAW5(SYS_statx, dfd, path, flags, mask, sx);
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

static void statx_basic(void)
{
    T_BEGIN("statx");
    int fd = CHECK_SYS(make_file("sx", 5000, 8));
    struct stat st;
    struct statx sx;
    CHECK_SYS(fstat(fd, &st));
    memset(&sx, 0xff, sizeof sx);
    CHECK_SYS(do_statx(AT_FDCWD, path_in("sx"), 0, STATX_BASIC_STATS, &sx));
    CHECK_EQ(sx.stx_mask & STATX_BASIC_STATS, STATX_BASIC_STATS);
    CHECK_EQ(sx.stx_size, 5000);
    CHECK_EQ(sx.stx_ino, st.st_ino);
    CHECK_EQ(sx.stx_nlink, 1);
    CHECK(S_ISREG(sx.stx_mode), "S_ISREG");
    CHECK_EQ(sx.stx_blocks, st.st_blocks);
    CHECK_SYS(do_statx(fd, "", AT_EMPTY_PATH, STATX_SIZE, &sx));
    CHECK_EQ(sx.stx_size, 5000);
    CHECK_ERRNO(do_statx(AT_FDCWD, path_in("sx"), 0, STATX__RESERVED, &sx), EINVAL);
    CHECK_ERRNO(do_statx(AT_FDCWD, path_in("sx"), AT_STATX_FORCE_SYNC | AT_STATX_DONT_SYNC, STATX_SIZE, &sx), EINVAL);
    CHECK_ERRNO(do_statx(AT_FDCWD, path_in("sx"), 0x40000000, STATX_SIZE, &sx), EINVAL);
    CHECK_ERRNO(do_statx(AT_FDCWD, path_in("missing"), 0, STATX_SIZE, &sx), ENOENT);
    close(fd);
    CHECK_SYS(unlink(path_in("sx")));
    t_pass();
}

static void statx_dax(void)
{
    T_BEGIN("statx_attr_dax");
    int fd = CHECK_SYS(make_file("dax", 4096, 9));
    struct statx sx;
    CHECK_SYS(do_statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx));
    close(fd);
    unlink(path_in("dax"));
    if (!(sx.stx_attributes & STATX_ATTR_DAX)) {
        t_unsupported(t_opts.require_dax, "the file system under DIR is not DAX (no STATX_ATTR_DAX)");
        return;
    }
    CHECK(sx.stx_attributes_mask & STATX_ATTR_DAX, "STATX_ATTR_DAX in stx_attributes_mask");
    t_pass();
}

static void fsync_fdatasync(void)
{
    T_BEGIN("fsync_fdatasync");
    int fd = CHECK_SYS(make_file("sync", 8192, 10));
    CHECK_SYS(fsync(fd));
    CHECK_SYS(fdatasync(fd));
    int dfd = CHECK_SYS(open(suite_dir, O_RDONLY | O_DIRECTORY));
    CHECK_SYS(fsync(dfd));
    close(dfd);
    close(fd);
    CHECK_SYS(unlink(path_in("sync")));
    t_pass();
}

static void ftruncate_sizes(void)
{
    T_BEGIN("ftruncate");
    unsigned char buf[8192];
    int fd = CHECK_SYS(make_file("ft", 8192, 11));
    CHECK_SYS(ftruncate(fd, 100000));
    CHECK_EQ(file_size(fd), 100000);
    CHECK_EQ(pread(fd, buf, sizeof buf, 50000), sizeof buf);
    CHECK(all_zero(buf, sizeof buf), "zeros after growing");
    CHECK_SYS(ftruncate(fd, 1000));
    CHECK_EQ(file_size(fd), 1000);
    CHECK_SYS(ftruncate(fd, 8192)); /* bytes past the old EOF come back as zeros */
    CHECK_EQ(pread(fd, buf, sizeof buf, 0), 8192);
    CHECK(all_zero(buf + 1000, 8192 - 1000), "zeros after shrink and grow");
    unsigned char want[1000];
    fill(want, sizeof want, 11);
    CHECK(memcmp(buf, want, 1000) == 0, "the kept bytes unchanged");
    CHECK_ERRNO(ftruncate(fd, -1), EINVAL);
    int ro = CHECK_SYS(open(path_in("ft"), O_RDONLY));
    CHECK_ERRNO(ftruncate(ro, 0), EINVAL);
    close(ro);
    int dfd = CHECK_SYS(open(suite_dir, O_RDONLY | O_DIRECTORY));
    CHECK_ERRNO(ftruncate(dfd, 0), EINVAL);
    close(dfd);
    close(fd);
    CHECK_SYS(unlink(path_in("ft")));
    t_pass();
}

static void fallocate_modes(void)
{
    T_BEGIN("fallocate_modes");
    enum { MB = 1 << 20 };
    static unsigned char buf[MB];
    int fd = CHECK_SYS(open(path_in("fa"), O_CREAT | O_TRUNC | O_RDWR, 0644));
    /* mode 0: allocates and extends */
    CHECK_SYS(fallocate(fd, 0, 0, MB));
    CHECK_EQ(file_size(fd), MB);
    CHECK(file_blocks(fd) >= MB / 512, "blocks allocated for the whole MiB");
    CHECK_EQ(pread(fd, buf, MB, 0), MB);
    CHECK(all_zero(buf, MB), "preallocated space reads as zeros");
    /* KEEP_SIZE: allocates beyond EOF, size unchanged */
    CHECK_SYS(fallocate(fd, FALLOC_FL_KEEP_SIZE, MB, MB));
    CHECK_EQ(file_size(fd), MB);
    CHECK(file_blocks(fd) >= 2 * MB / 512, "blocks allocated beyond EOF");
    /* PUNCH_HOLE|KEEP_SIZE over written data: zeros, fewer blocks */
    fill(buf, MB, 12);
    CHECK_EQ(pwrite(fd, buf, MB, 0), MB);
    long long before = file_blocks(fd);
    CHECK_SYS(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 64 * 1024, 256 * 1024));
    CHECK_EQ(file_size(fd), MB);
    CHECK(file_blocks(fd) <= before - 256 * 1024 / 512, "the punched blocks freed");
    CHECK_EQ(pread(fd, buf, MB, 0), MB);
    CHECK(all_zero(buf + 64 * 1024, 256 * 1024), "zeros in the hole");
    unsigned char want[4096];
    fill(want, sizeof want, 12);
    CHECK(memcmp(buf, want, 4096) == 0, "data before the hole unchanged");
    /* ZERO_RANGE: zeros, size unchanged inside EOF */
    CHECK_SYS(fallocate(fd, FALLOC_FL_ZERO_RANGE, 512 * 1024, 4096 + 100));
    CHECK_EQ(file_size(fd), MB);
    CHECK_EQ(pread(fd, buf, 8192, 512 * 1024), 8192);
    CHECK(all_zero(buf, 4096 + 100), "zeros in the zeroed range");
    CHECK(!all_zero(buf + 4096 + 100, 100), "data after the zeroed range kept");
    /* ZERO_RANGE past EOF extends the file */
    CHECK_SYS(fallocate(fd, FALLOC_FL_ZERO_RANGE, MB, 4096));
    CHECK_EQ(file_size(fd), MB + 4096);
    /* errors */
    CHECK_ERRNO(fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096), EOPNOTSUPP);
    CHECK_ERRNO(fallocate(fd, FALLOC_FL_UNKNOWN_BIT, 0, 4096), EOPNOTSUPP);
    CHECK_ERRNO(fallocate(fd, 0, 0, 0), EINVAL);
    CHECK_ERRNO(fallocate(fd, 0, -1, 4096), EINVAL);
    int dfd = CHECK_SYS(open(suite_dir, O_RDONLY | O_DIRECTORY));
    CHECK_ERRNO(fallocate(dfd, 0, 0, 4096), EBADF);
    close(dfd);
    close(fd);
    CHECK_SYS(unlink(path_in("fa")));
    t_pass();
}

static void unlink_cases(void)
{
    T_BEGIN("unlink_unlinkat");
    int fd = CHECK_SYS(make_file("ul", 5000, 13));
    CHECK_SYS(unlink(path_in("ul")));
    struct stat st;
    CHECK_ERRNO(stat(path_in("ul"), &st), ENOENT);
    /* The open file lives on until closed. */
    unsigned char buf[5000], want[5000];
    fill(want, sizeof want, 13);
    CHECK_EQ(pread(fd, buf, sizeof buf, 0), 5000);
    CHECK(memcmp(buf, want, sizeof buf) == 0, "an unlinked open file still reads");
    CHECK_SYS(fstat(fd, &st));
    CHECK_EQ(st.st_nlink, 0);
    close(fd);
    int dfd = CHECK_SYS(open(suite_dir, O_RDONLY | O_DIRECTORY));
    CHECK_SYS(mkdirat(dfd, "uld", 0755));
    CHECK_ERRNO(unlinkat(dfd, "uld", 0), EISDIR);
    CHECK_ERRNO(unlinkat(dfd, "uld", 0x1), EINVAL);
    CHECK_SYS(unlinkat(dfd, "uld", AT_REMOVEDIR));
    fd = CHECK_SYS(openat(dfd, "ulf", O_CREAT | O_RDWR, 0644));
    close(fd);
    CHECK_ERRNO(unlinkat(dfd, "ulf", AT_REMOVEDIR), ENOTDIR);
    CHECK_SYS(unlinkat(dfd, "ulf", 0));
    close(dfd);
    t_pass();
}

static void rename_cases(void)
{
    T_BEGIN("rename_renameat");
    int fd = CHECK_SYS(make_file("rn.a", 3000, 14));
    close(fd);
    fd = CHECK_SYS(make_file("rn.b", 10, 15));
    close(fd);
    CHECK_SYS(rename(path_in("rn.a"), path_in("rn.c")));
    struct stat st;
    CHECK_ERRNO(stat(path_in("rn.a"), &st), ENOENT);
    CHECK_SYS(stat(path_in("rn.c"), &st));
    CHECK_EQ(st.st_size, 3000);
    /* over an existing file: replaced */
    CHECK_SYS(rename(path_in("rn.c"), path_in("rn.b")));
    CHECK_SYS(stat(path_in("rn.b"), &st));
    CHECK_EQ(st.st_size, 3000);
    CHECK_ERRNO(rename(path_in("rn.missing"), path_in("rn.x")), ENOENT);
    CHECK_SYS(mkdir(path_in("rn.d"), 0755));
    CHECK_SYS(mkdir(path_in("rn.d/sub"), 0755));
    CHECK_SYS(mkdir(path_in("rn.e"), 0755));
    CHECK_SYS(mkdir(path_in("rn.e/sub"), 0755));
    CHECK_ERRNO(rename(path_in("rn.d"), path_in("rn.d/sub/inside")), EINVAL);
    CHECK_ERRNO(rename(path_in("rn.b"), path_in("rn.d")), EISDIR);
    CHECK_ERRNO(rename(path_in("rn.d"), path_in("rn.b")), ENOTDIR);
    CHECK_ERRNO(rename(path_in("rn.d"), path_in("rn.e")), ENOTEMPTY);
    CHECK_SYS(rmdir(path_in("rn.e/sub")));
    CHECK_SYS(rename(path_in("rn.d"), path_in("rn.e"))); /* over an empty directory */
    CHECK_SYS(stat(path_in("rn.e/sub"), &st));
    int dfd = CHECK_SYS(open(suite_dir, O_RDONLY | O_DIRECTORY));
    int efd = CHECK_SYS(open(path_in("rn.e"), O_RDONLY | O_DIRECTORY));
    CHECK_SYS(renameat(dfd, "rn.b", efd, "moved"));
    CHECK_SYS(stat(path_in("rn.e/moved"), &st));
    CHECK_EQ(st.st_size, 3000);
    close(efd);
    close(dfd);
    CHECK_SYS(unlink(path_in("rn.e/moved")));
    CHECK_SYS(rmdir(path_in("rn.e/sub")));
    CHECK_SYS(rmdir(path_in("rn.e")));
    t_pass();
}

static void mkdir_rmdir(void)
{
    T_BEGIN("mkdir_rmdir");
    CHECK_SYS(mkdir(path_in("md"), 0755));
    struct stat st;
    CHECK_SYS(stat(path_in("md"), &st));
    CHECK(S_ISDIR(st.st_mode), "S_ISDIR");
    CHECK_ERRNO(mkdir(path_in("md"), 0755), EEXIST);
    int fd = CHECK_SYS(open(path_in("md/f"), O_CREAT | O_RDWR, 0644));
    close(fd);
    CHECK_ERRNO(rmdir(path_in("md")), ENOTEMPTY);
    CHECK_ERRNO(rmdir(path_in("md/.")), EINVAL);
    CHECK_SYS(unlink(path_in("md/f")));
    CHECK_SYS(rmdir(path_in("md")));
    CHECK_ERRNO(stat(path_in("md"), &st), ENOENT);
    int dfd = CHECK_SYS(open(suite_dir, O_RDONLY | O_DIRECTORY));
    CHECK_SYS(mkdirat(dfd, "mda", 0700));
    CHECK_ERRNO(mkdirat(dfd, "mda", 0700), EEXIST);
    CHECK_SYS(unlinkat(dfd, "mda", AT_REMOVEDIR));
    close(dfd);
    t_pass();
}

static void name_too_long(void)
{
    T_BEGIN("enametoolong");
    char name[300];
    memset(name, 'n', 256);
    name[256] = 0; /* one byte over NAME_MAX */
    CHECK_ERRNO(open(path_in(name), O_CREAT | O_RDWR, 0644), ENAMETOOLONG);
    CHECK_ERRNO(mkdir(path_in(name), 0755), ENAMETOOLONG);
    struct stat st;
    CHECK_ERRNO(stat(path_in(name), &st), ENAMETOOLONG);
    name[255] = 0; /* NAME_MAX itself is fine */
    int fd = CHECK_SYS(open(path_in(name), O_CREAT | O_RDWR, 0644));
    close(fd);
    CHECK_SYS(unlink(path_in(name)));
    static char longpath[PATH_MAX + 100];
    memset(longpath, 'p', sizeof longpath - 1);
    for (size_t i = 100; i < sizeof longpath - 1; i += 100)
        longpath[i] = '/';
    CHECK_ERRNO(open(longpath, O_RDONLY), ENAMETOOLONG);
    t_pass();
}

struct dirent64_raw {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static void getdents64_entries(void)
{
    T_BEGIN("getdents64");
    enum { FILES = 60 };
    CHECK_SYS(mkdir(path_in("gd"), 0755));
    char name[64];
    for (int i = 0; i < FILES; i++) {
        snprintf(name, sizeof name, "gd/file-%02d", i);
        int fd = CHECK_SYS(open(path_in(name), O_CREAT | O_RDWR, 0644));
        close(fd);
    }
    CHECK_SYS(mkdir(path_in("gd/sub"), 0755));
    int dfd = CHECK_SYS(open(path_in("gd"), O_RDONLY | O_DIRECTORY));
    int seen[FILES] = {0}, dots = 0, sub = 0, other = 0;
    /* A small buffer, so that it takes several calls. */
    char buf[512];
    for (;;) {
        long n = RAW3(SYS_getdents64, dfd, buf, sizeof buf);
        CHECK(n >= 0, "getdents64 succeeds");
        if (n == 0)
            break;
        for (long off = 0; off < n;) {
            struct dirent64_raw *d = (struct dirent64_raw *)(buf + off);
            CHECK(d->d_reclen >= offsetof(struct dirent64_raw, d_name) + 2 && d->d_reclen % 8 == 0, "8-byte aligned records");
            CHECK(d->d_ino != 0, "an inode number");
            int i;
            if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) {
                CHECK_EQ(d->d_type, DT_DIR);
                dots++;
            } else if (strcmp(d->d_name, "sub") == 0) {
                CHECK_EQ(d->d_type, DT_DIR);
                sub++;
            } else if (sscanf(d->d_name, "file-%d", &i) == 1 && i >= 0 && i < FILES) {
                CHECK_EQ(d->d_type, DT_REG);
                seen[i]++;
            } else {
                other++;
            }
            off += d->d_reclen;
        }
    }
    CHECK_EQ(dots, 2);
    CHECK_EQ(sub, 1);
    CHECK_EQ(other, 0);
    for (int i = 0; i < FILES; i++)
        CHECK_EQ(seen[i], 1);
    /* Rewind and read again. */
    CHECK_EQ(lseek(dfd, 0, SEEK_SET), 0);
    CHECK(RAW3(SYS_getdents64, dfd, buf, sizeof buf) > 0, "entries again after rewinding");
    CHECK_NEG(RAW3(SYS_getdents64, dfd, buf, 1), EINVAL); /* too small for one entry */
    int fd = CHECK_SYS(open(path_in("gd/file-00"), O_RDONLY));
    CHECK_NEG(RAW3(SYS_getdents64, fd, buf, sizeof buf), ENOTDIR);
    close(fd);
    close(dfd);
    for (int i = 0; i < FILES; i++) {
        snprintf(name, sizeof name, "gd/file-%02d", i);
        CHECK_SYS(unlink(path_in(name)));
    }
    CHECK_SYS(rmdir(path_in("gd/sub")));
    CHECK_SYS(rmdir(path_in("gd")));
    t_pass();
}

static void cwd(void)
{
    T_BEGIN("getcwd_chdir");
    char saved[PATH_MAX], now[PATH_MAX];
    CHECK(getcwd(saved, sizeof saved) != NULL, "the current directory");
    CHECK(saved[0] == '/', "an absolute path");
    CHECK_SYS(mkdir(path_in("cwd"), 0755));
    CHECK_SYS(chdir(path_in("cwd")));
    CHECK(getcwd(now, sizeof now) != NULL, "getcwd after chdir");
    CHECK(now[0] == '/', "an absolute path");
    const char *tail = now + strlen(now) - 4;
    CHECK(strlen(now) >= 4 && strcmp(tail, "/cwd") == 0, "getcwd ends in the new directory");
    struct stat a, b;
    CHECK_SYS(stat(".", &a));
    CHECK_SYS(stat(now, &b));
    CHECK_EQ(a.st_ino, b.st_ino);
    /* Relative paths now resolve from here. */
    int fd = CHECK_SYS(open("rel", O_CREAT | O_RDWR, 0644));
    close(fd);
    CHECK_SYS(stat(path_in("cwd/rel"), &a));
    CHECK_SYS(unlink("rel"));
    CHECK_NEG(RAW2(SYS_getcwd, now, 1), ERANGE);
    CHECK_ERRNO(chdir(path_in("missing")), ENOENT);
    CHECK_SYS(chdir(saved));
    CHECK_SYS(rmdir(path_in("cwd")));
    t_pass();
}

static void dup_family(void)
{
    T_BEGIN("dup_dup2_dup3");
    int fd = CHECK_SYS(make_file("dup", 100, 16));
    int d = CHECK_SYS(dup(fd));
    CHECK(d != fd, "a new descriptor");
    /* Shared file offset. */
    CHECK_SYS(lseek(fd, 40, SEEK_SET));
    CHECK_EQ(lseek(d, 0, SEEK_CUR), 40);
    CHECK_EQ(fcntl(d, F_GETFD), 0); /* dup clears FD_CLOEXEC */
    CHECK_EQ(dup2(fd, fd), fd);
    int target = CHECK_SYS(open(path_in("dup"), O_RDONLY));
    CHECK_EQ(dup2(fd, target), target); /* closes what target was */
    CHECK_EQ(lseek(target, 0, SEEK_CUR), 40);
    /* Raw dup3: musl turns dup3 without O_CLOEXEC into dup2. */
    CHECK_EQ(RAW3(SYS_dup3, fd, target, O_CLOEXEC), target);
    CHECK_EQ(fcntl(target, F_GETFD), FD_CLOEXEC);
    CHECK_EQ(RAW3(SYS_dup3, fd, target, 0), target);
    CHECK_EQ(fcntl(target, F_GETFD), 0);
    CHECK_NEG(RAW3(SYS_dup3, fd, fd, 0), EINVAL);
    CHECK_NEG(RAW3(SYS_dup3, fd, target, 0x4), EINVAL);
    CHECK_ERRNO(dup2(-1, target), EBADF);
    CHECK_ERRNO(dup2(fd, 1 << 24), EBADF);
    /* dup returns the lowest free descriptor */
    close(d);
    CHECK_EQ(dup(fd), d);
    close(d);
    close(target);
    close(fd);
    CHECK_SYS(unlink(path_in("dup")));
    t_pass();
}

static void ioctl_enotty(void)
{
    T_BEGIN("ioctl_tcgets_enotty");
    int fd = CHECK_SYS(make_file("tty", 10, 17));
    struct termios t;
    CHECK_ERRNO(ioctl(fd, TCGETS, &t), ENOTTY);
    CHECK_ERRNO(ioctl(fd, 0x5a5a5a5a, 0), ENOTTY);
    close(fd);
    CHECK_SYS(unlink(path_in("tty")));
    t_pass();
}

/* The reflink cases skip when the file system cannot share blocks
 * (EOPNOTSUPP: ext4, tmpfs; EXDEV/EINVAL never count as "unsupported"). */
static int reflink_unsupported(long r, int err)
{
    if (r == -1 && err == EOPNOTSUPP) {
        t_unsupported(t_opts.require_reflink, "FICLONE: the file system under DIR cannot share blocks (EOPNOTSUPP)");
        return 1;
    }
    return 0;
}

static void ficlone(void)
{
    T_BEGIN("ioctl_ficlone");
    enum { N = 1 << 20 };
    static unsigned char a[N], b[N];
    int src = CHECK_SYS(make_file("cl.src", N, 18));
    int dst = CHECK_SYS(open(path_in("cl.dst"), O_CREAT | O_TRUNC | O_RDWR, 0644));
    errno = 0;
    long r = ioctl(dst, FICLONE, src);
    if (reflink_unsupported(r, errno)) {
        close(src);
        close(dst);
        unlink(path_in("cl.src"));
        unlink(path_in("cl.dst"));
        return;
    }
    CHECK_EQ(r, 0);
    CHECK_EQ(file_size(dst), N);
    CHECK_EQ(pread(dst, b, N, 0), N);
    fill(a, N, 18);
    CHECK(memcmp(a, b, N) == 0, "the clone has the source's bytes");
    /* Writing the clone leaves the source alone (copy on write). */
    CHECK_EQ(pwrite(dst, "COPY-ON-WRITE", 13, 4096), 13);
    CHECK_EQ(pread(src, b, N, 0), N);
    CHECK(memcmp(a, b, N) == 0, "the source unchanged after a write to the clone");
    CHECK_EQ(pread(dst, b, 13, 4096), 13);
    CHECK(memcmp(b, "COPY-ON-WRITE", 13) == 0, "the clone has the new bytes");
    CHECK_ERRNO(ioctl(dst, FICLONE, -1), EBADF);
    CHECK_ERRNO(ioctl(dst, FICLONE, dst), EINVAL);
    int dfd = CHECK_SYS(open(suite_dir, O_RDONLY | O_DIRECTORY));
    CHECK_ERRNO(ioctl(dst, FICLONE, dfd), EISDIR);
    close(dfd);
    int ro = CHECK_SYS(open(path_in("cl.dst"), O_RDONLY));
    CHECK_ERRNO(ioctl(ro, FICLONE, src), EBADF);
    close(ro);
    close(src);
    close(dst);
    CHECK_SYS(unlink(path_in("cl.src")));
    CHECK_SYS(unlink(path_in("cl.dst")));
    t_pass();
}

static void ficlonerange(void)
{
    T_BEGIN("ioctl_ficlonerange");
    enum { N = 256 * 1024 };
    static unsigned char a[N], b[N];
    int src = CHECK_SYS(make_file("clr.src", N, 19));
    int dst = CHECK_SYS(make_file("clr.dst", N, 20));
    struct file_clone_range r = {.src_fd = src, .src_offset = 64 * 1024, .src_length = 64 * 1024, .dest_offset = 128 * 1024};
    errno = 0;
    long rc = ioctl(dst, FICLONERANGE, &r);
    if (reflink_unsupported(rc, errno)) {
        close(src);
        close(dst);
        unlink(path_in("clr.src"));
        unlink(path_in("clr.dst"));
        return;
    }
    CHECK_EQ(rc, 0);
    fill(a, N, 19);
    CHECK_EQ(pread(dst, b, N, 0), N);
    CHECK(memcmp(b + 128 * 1024, a + 64 * 1024, 64 * 1024) == 0, "the range cloned to its new offset");
    fill(a, N, 20);
    CHECK(memcmp(b, a, 128 * 1024) == 0 && memcmp(b + 192 * 1024, a + 192 * 1024, 64 * 1024) == 0,
          "the rest of the destination unchanged");
    r.src_offset = 100; /* not block aligned */
    CHECK_ERRNO(ioctl(dst, FICLONERANGE, &r), EINVAL);
    close(src);
    close(dst);
    CHECK_SYS(unlink(path_in("clr.src")));
    CHECK_SYS(unlink(path_in("clr.dst")));
    t_pass();
}

static void fideduperange(void)
{
    T_BEGIN("ioctl_fideduperange");
    enum { N = 128 * 1024 };
    int src = CHECK_SYS(make_file("dd.src", N, 21));
    int same = CHECK_SYS(make_file("dd.same", N, 21));
    int diff = CHECK_SYS(make_file("dd.diff", N, 22));
    struct {
        struct file_dedupe_range r;
        struct file_dedupe_range_info info[2];
    } req;
    memset(&req, 0, sizeof req);
    req.r.src_offset = 0;
    req.r.src_length = N;
    req.r.dest_count = 2;
    req.info[0].dest_fd = same;
    req.info[1].dest_fd = diff;
    errno = 0;
    long rc = ioctl(src, FIDEDUPERANGE, &req);
    if (reflink_unsupported(rc, errno)) {
        close(src);
        close(same);
        close(diff);
        unlink(path_in("dd.src"));
        unlink(path_in("dd.same"));
        unlink(path_in("dd.diff"));
        return;
    }
    CHECK_EQ(rc, 0);
    CHECK_EQ(req.info[0].status, FILE_DEDUPE_RANGE_SAME);
    CHECK_EQ(req.info[0].bytes_deduped, N);
    CHECK_EQ(req.info[1].status, FILE_DEDUPE_RANGE_DIFFERS);
    CHECK_EQ(req.info[1].bytes_deduped, 0);
    req.r.reserved1 = 1;
    CHECK_ERRNO(ioctl(src, FIDEDUPERANGE, &req), EINVAL);
    close(src);
    close(same);
    close(diff);
    CHECK_SYS(unlink(path_in("dd.src")));
    CHECK_SYS(unlink(path_in("dd.same")));
    CHECK_SYS(unlink(path_in("dd.diff")));
    t_pass();
}

/* FS_IOC_FIEMAP of fd's first `max` extents into `fm` (allocated by the caller). */
static long fiemap(int fd, struct fiemap *fm, unsigned max, uint32_t flags)
{
    memset(fm, 0, sizeof *fm + max * sizeof(struct fiemap_extent));
    fm->fm_start = 0;
    fm->fm_length = FIEMAP_MAX_OFFSET;
    fm->fm_flags = flags;
    fm->fm_extent_count = max;
    return ioctl(fd, FS_IOC_FIEMAP, fm);
}

static void fiemap_extents(void)
{
    T_BEGIN("ioctl_fs_ioc_fiemap");
    enum { MAX = 32 };
    static unsigned char buf[64 * 1024];
    struct fiemap *fm = malloc(sizeof *fm + MAX * sizeof(struct fiemap_extent));
    int fd = CHECK_SYS(open(path_in("fm"), O_CREAT | O_TRUNC | O_RDWR, 0644));
    fill(buf, sizeof buf, 23);
    CHECK_EQ(pwrite(fd, buf, sizeof buf, 0), sizeof buf);
    CHECK_EQ(pwrite(fd, buf, sizeof buf, 1 << 20), sizeof buf); /* a hole in between */
    CHECK_SYS(fsync(fd));
    errno = 0;
    long r = fiemap(fd, fm, MAX, FIEMAP_FLAG_SYNC);
    if (r == -1 && errno == EOPNOTSUPP) {
        t_unsupported(0, "FS_IOC_FIEMAP: the file system under DIR has no extent map (EOPNOTSUPP)");
        close(fd);
        unlink(path_in("fm"));
        free(fm);
        return;
    }
    CHECK_EQ(r, 0);
    CHECK(fm->fm_mapped_extents >= 2, "at least two extents around the hole");
    uint64_t covered = 0;
    for (unsigned i = 0; i < fm->fm_mapped_extents; i++) {
        struct fiemap_extent *e = &fm->fm_extents[i];
        CHECK(e->fe_length > 0 && e->fe_logical % 4096 == 0, "block-aligned extents");
        CHECK(!(e->fe_logical < (1 << 20) && e->fe_logical + e->fe_length > sizeof buf), "no extent over the hole");
        covered += e->fe_length;
        if (i + 1 < fm->fm_mapped_extents)
            CHECK(!(e->fe_flags & FIEMAP_EXTENT_LAST), "LAST only on the last extent");
        else
            CHECK(e->fe_flags & FIEMAP_EXTENT_LAST, "FIEMAP_EXTENT_LAST on the last extent");
        CHECK(!(e->fe_flags & FIEMAP_EXTENT_SHARED), "nothing shared in a new file");
    }
    CHECK_EQ(covered, 2 * sizeof buf);
    /* fm_extent_count 0: only count. */
    CHECK_SYS(fiemap(fd, fm, 0, 0));
    CHECK(fm->fm_mapped_extents >= 2, "the extent count");
    CHECK_ERRNO(fiemap(fd, fm, MAX, 0x40000000), EBADR);
    close(fd);
    free(fm);
    CHECK_SYS(unlink(path_in("fm")));
    t_pass();
}

static void fiemap_shared(void)
{
    T_BEGIN("fiemap_extent_shared");
    enum { MAX = 16, N = 256 * 1024 };
    struct fiemap *fm = malloc(sizeof *fm + MAX * sizeof(struct fiemap_extent));
    int src = CHECK_SYS(make_file("fs.src", N, 24));
    CHECK_SYS(fsync(src));
    int dst = CHECK_SYS(open(path_in("fs.dst"), O_CREAT | O_TRUNC | O_RDWR, 0644));
    errno = 0;
    long r = ioctl(dst, FICLONE, src);
    if (reflink_unsupported(r, errno)) {
        close(src);
        close(dst);
        unlink(path_in("fs.src"));
        unlink(path_in("fs.dst"));
        free(fm);
        return;
    }
    CHECK_EQ(r, 0);
    for (int k = 0; k < 2; k++) {
        int fd = k ? dst : src;
        CHECK_SYS(fiemap(fd, fm, MAX, FIEMAP_FLAG_SYNC));
        CHECK(fm->fm_mapped_extents >= 1, "extents");
        for (unsigned i = 0; i < fm->fm_mapped_extents; i++)
            CHECK(fm->fm_extents[i].fe_flags & FIEMAP_EXTENT_SHARED, "FIEMAP_EXTENT_SHARED on both files' extents");
    }
    /* Same physical blocks. */
    uint64_t p_src, p_dst;
    CHECK_SYS(fiemap(src, fm, 1, 0));
    p_src = fm->fm_extents[0].fe_physical;
    CHECK_SYS(fiemap(dst, fm, 1, 0));
    p_dst = fm->fm_extents[0].fe_physical;
    CHECK_EQ(p_src, p_dst);
    close(src);
    close(dst);
    free(fm);
    CHECK_SYS(unlink(path_in("fs.src")));
    CHECK_SYS(unlink(path_in("fs.dst")));
    t_pass();
}

static void poll_stdio(void)
{
    T_BEGIN("poll_fds_0_2");
    struct pollfd p[3] = {{0, POLLIN, 0}, {1, POLLOUT, 0}, {2, POLLOUT, 0}};
    int n = CHECK_SYS(poll(p, 3, 0));
    CHECK(n >= 0 && n <= 3, "a count of ready descriptors");
    for (int i = 0; i < 3; i++)
        CHECK(!(p[i].revents & POLLNVAL), "fds 0-2 are open (no POLLNVAL)");
    int fd = CHECK_SYS(dup(1));
    close(fd);
    struct pollfd c = {fd, POLLIN, 0};
    CHECK_EQ(poll(&c, 1, 0), 1);
    CHECK_EQ(c.revents, POLLNVAL);
    /* A negative fd is ignored. */
    struct pollfd neg = {-1, POLLIN, 0x7};
    CHECK_EQ(poll(&neg, 1, 0), 0);
    CHECK_EQ(neg.revents, 0);
    t_pass();
}

static void enospc(void)
{
    T_BEGIN("enospc_bounded");
    struct statfs sf;
    errno = 0;
    if (statfs(suite_dir, &sf) != 0) {
        t_skip("statfs failed: cannot size the file system to fill it in a bounded way");
        return;
    }
    unsigned long long total = (unsigned long long)sf.f_blocks * sf.f_bsize;
    if (total > (2ULL << 30)) {
        t_skip("the file system under DIR is larger than 2 GiB: filling it is not bounded");
        return;
    }
    int keep = CHECK_SYS(make_file("nospc.keep", 8192, 25));
    CHECK_SYS(fsync(keep));
    int fd = CHECK_SYS(open(path_in("nospc.big"), O_CREAT | O_TRUNC | O_RDWR, 0644));
    CHECK_ERRNO(fallocate(fd, 0, 0, (off_t)total + (1 << 20)), ENOSPC);
    /* Nothing lost: the other file reads back, and space comes back after unlink. */
    unsigned char buf[8192], want[8192];
    fill(want, sizeof want, 25);
    CHECK_EQ(pread(keep, buf, sizeof buf, 0), 8192);
    CHECK(memcmp(buf, want, sizeof buf) == 0, "an existing file intact after ENOSPC");
    close(fd);
    CHECK_SYS(unlink(path_in("nospc.big")));
    fd = CHECK_SYS(open(path_in("nospc.after"), O_CREAT | O_TRUNC | O_RDWR, 0644));
    CHECK_SYS(fallocate(fd, 0, 0, 1 << 20));
    close(fd);
    close(keep);
    CHECK_SYS(unlink(path_in("nospc.after")));
    CHECK_SYS(unlink(path_in("nospc.keep")));
    t_pass();
}

static void seek_data_hole(void)
{
    T_BEGIN("lseek_seek_data_seek_hole");
    enum { K64 = 64 * 1024, M1 = 1 << 20 };
    static unsigned char buf[K64];
    fill(buf, sizeof buf, 26);
    int fd = CHECK_SYS(open(path_in("sdh"), O_CREAT | O_TRUNC | O_RDWR, 0644));
    CHECK_EQ(pwrite(fd, buf, K64, 0), K64);
    CHECK_EQ(pwrite(fd, buf, K64, M1), K64); /* a hole in between */
    CHECK_SYS(fsync(fd));
    CHECK_EQ(lseek(fd, 0, SEEK_DATA), 0);
    CHECK_EQ(lseek(fd, 100, SEEK_DATA), 100);
    CHECK_EQ(lseek(fd, 0, SEEK_HOLE), K64);
    CHECK_EQ(lseek(fd, K64, SEEK_DATA), M1);
    CHECK_EQ(lseek(fd, K64 + 5, SEEK_HOLE), K64 + 5);
    CHECK_EQ(lseek(fd, M1, SEEK_HOLE), M1 + K64); /* the end of the file is a hole */
    CHECK_EQ(lseek(fd, 0, SEEK_CUR), M1 + K64); /* SEEK_HOLE moved the offset */
    CHECK_ERRNO(lseek(fd, M1 + K64, SEEK_DATA), ENXIO);
    CHECK_ERRNO(lseek(fd, M1 + K64, SEEK_HOLE), ENXIO);
    CHECK_ERRNO(lseek(fd, -1, SEEK_DATA), ENXIO);
    close(fd);
    CHECK_SYS(unlink(path_in("sdh")));
    t_pass();
}

static void preadv_pwritev(void)
{
    T_BEGIN("preadv_pwritev");
    char a[] = "left-", b[] = "right";
    struct iovec w[2] = {{a, 5}, {b, 5}};
    int fd = CHECK_SYS(open(path_in("pv"), O_CREAT | O_TRUNC | O_RDWR, 0644));
    CHECK_EQ(RAW5(SYS_pwritev, fd, w, 2, 100, 0), 10);
    CHECK_EQ(lseek(fd, 0, SEEK_CUR), 0); /* the offset did not move */
    CHECK_EQ(file_size(fd), 110);
    char x[3], y[10];
    struct iovec r[2] = {{x, 3}, {y, 10}};
    CHECK_EQ(RAW5(SYS_preadv, fd, r, 2, 100, 0), 10);
    CHECK(memcmp(x, "lef", 3) == 0 && memcmp(y, "t-right", 7) == 0, "bytes scattered in order");
    CHECK_NEG(RAW5(SYS_preadv, fd, r, 2, -1, -1), EINVAL);
    close(fd);
    CHECK_SYS(unlink(path_in("pv")));
    t_pass();
}

static void renameat2_noreplace(void)
{
    T_BEGIN("renameat2_noreplace");
    int fd = CHECK_SYS(make_file("rn2.a", 10, 27));
    close(fd);
    fd = CHECK_SYS(make_file("rn2.b", 20, 28));
    close(fd);
    /* RENAME_NOREPLACE (1) over an existing name: EEXIST, both kept. */
    CHECK_NEG(RAW5(SYS_renameat2, AT_FDCWD, path_in("rn2.a"), AT_FDCWD, path_in("rn2.b"), 1), EEXIST);
    struct stat st;
    CHECK_SYS(stat(path_in("rn2.a"), &st));
    CHECK_EQ(st.st_size, 10);
    CHECK_EQ(RAW5(SYS_renameat2, AT_FDCWD, path_in("rn2.a"), AT_FDCWD, path_in("rn2.c"), 1), 0);
    CHECK_ERRNO(stat(path_in("rn2.a"), &st), ENOENT);
    CHECK_NEG(RAW5(SYS_renameat2, AT_FDCWD, path_in("rn2.c"), AT_FDCWD, path_in("rn2.d"), 0x80), EINVAL);
    CHECK_SYS(unlink(path_in("rn2.b")));
    CHECK_SYS(unlink(path_in("rn2.c")));
    t_pass();
}

static void dev_null(void)
{
    T_BEGIN("dev_null");
    int fd = CHECK_SYS(open("/dev/null", O_RDWR));
    CHECK_EQ(write(fd, "gone", 4), 4);
    char c;
    CHECK_EQ(read(fd, &c, 1), 0);
    struct stat st;
    CHECK_SYS(fstat(fd, &st));
    CHECK(S_ISCHR(st.st_mode), "a character device");
    CHECK_EQ(major(st.st_rdev), 1);
    CHECK_EQ(minor(st.st_rdev), 3);
    CHECK_SYS(stat("/dev/null", &st));
    CHECK(S_ISCHR(st.st_mode), "stat says a character device too");
    close(fd);
    t_pass();
}

static void truncate_path(void)
{
    T_BEGIN("truncate_path");
    int fd = CHECK_SYS(make_file("tp", 5000, 29));
    close(fd);
    CHECK_SYS(truncate(path_in("tp"), 100));
    struct stat st;
    CHECK_SYS(stat(path_in("tp"), &st));
    CHECK_EQ(st.st_size, 100);
    CHECK_SYS(truncate(path_in("tp"), 9000));
    CHECK_SYS(stat(path_in("tp"), &st));
    CHECK_EQ(st.st_size, 9000);
    CHECK_ERRNO(truncate(path_in("tp"), -1), EINVAL);
    CHECK_ERRNO(truncate(suite_dir, 0), EISDIR);
    CHECK_ERRNO(truncate(path_in("missing"), 0), ENOENT);
    CHECK_ERRNO(truncate(path_in("tp/x"), 0), ENOTDIR);
    CHECK_SYS(unlink(path_in("tp")));
    t_pass();
}

static void access_readlink_umask(void)
{
    T_BEGIN("access_readlink_umask");
    int fd = CHECK_SYS(make_file("acc", 10, 30));
    close(fd);
    CHECK_SYS(access(path_in("acc"), R_OK | W_OK));
    CHECK_SYS(access(suite_dir, X_OK));
    CHECK_SYS(faccessat(AT_FDCWD, path_in("acc"), F_OK, 0));
    CHECK_ERRNO(access(path_in("missing"), F_OK), ENOENT);
    CHECK_ERRNO(access(path_in("acc"), 8), EINVAL);
    char buf[64];
    CHECK_ERRNO(readlink(path_in("acc"), buf, sizeof buf), EINVAL); /* not a symbolic link */
    CHECK_ERRNO(readlink(path_in("missing"), buf, sizeof buf), ENOENT);
    mode_t old = umask(077);
    CHECK_EQ(umask(old), 077);
    CHECK_SYS(unlink(path_in("acc")));
    t_pass();
}

static void fchdir_and_dirfds(void)
{
    T_BEGIN("fchdir_dirfd_relative");
    char saved[PATH_MAX], now[PATH_MAX];
    CHECK(getcwd(saved, sizeof saved) != NULL, "the current directory");
    CHECK_SYS(mkdir(path_in("fcd"), 0755));
    int dfd = CHECK_SYS(open(path_in("fcd"), O_RDONLY | O_DIRECTORY));
    int fd = CHECK_SYS(openat(dfd, "inside", O_CREAT | O_RDWR, 0644));
    CHECK_ERRNO(openat(fd, "x", O_RDONLY), ENOTDIR); /* a file as the directory */
    CHECK_ERRNO(fchdir(fd), ENOTDIR);
    close(fd);
    CHECK_SYS(fchdir(dfd));
    CHECK(getcwd(now, sizeof now) != NULL, "getcwd after fchdir");
    CHECK(strlen(now) >= 4 && strcmp(now + strlen(now) - 4, "/fcd") == 0, "getcwd ends in the directory");
    struct stat st;
    CHECK_SYS(stat("inside", &st));
    CHECK_SYS(stat("../fcd/./inside", &st));
    CHECK_SYS(chdir(saved));
    CHECK_SYS(unlinkat(dfd, "inside", 0));
    close(dfd);
    CHECK_SYS(rmdir(path_in("fcd")));
    t_pass();
}

static void fionread_fionbio(void)
{
    T_BEGIN("ioctl_fionread_fionbio");
    int fd = CHECK_SYS(make_file("fio", 100, 31));
    CHECK_SYS(lseek(fd, 10, SEEK_SET));
    int n = -1;
    CHECK_SYS(ioctl(fd, FIONREAD, &n));
    CHECK_EQ(n, 90);
    close(fd);
    CHECK_SYS(unlink(path_in("fio")));
    int p[2];
    CHECK_SYS(pipe(p));
    int on = 1;
    CHECK_SYS(ioctl(p[0], FIONBIO, &on));
    CHECK(fcntl(p[0], F_GETFL) & O_NONBLOCK, "FIONBIO sets O_NONBLOCK");
    char c;
    CHECK_ERRNO(read(p[0], &c, 1), EAGAIN);
    CHECK_EQ(write(p[1], "ab", 2), 2);
    CHECK_SYS(ioctl(p[0], FIONREAD, &n));
    CHECK_EQ(n, 2);
    CHECK_EQ(read(p[0], &c, 1), 1);
    close(p[0]);
    close(p[1]);
    t_pass();
}

static void statfs_fields(void)
{
    T_BEGIN("statfs_fstatfs");
    struct statfs a, b;
    CHECK_SYS(statfs(suite_dir, &a));
    CHECK(a.f_bsize > 0 && a.f_blocks > 0, "a block size and a block count");
    CHECK(a.f_bfree <= a.f_blocks && a.f_bavail <= a.f_bfree, "free blocks within the total");
    CHECK(a.f_namelen >= 255, "names of 255 bytes");
    int dfd = CHECK_SYS(open(suite_dir, O_RDONLY | O_DIRECTORY));
    CHECK_SYS(fstatfs(dfd, &b));
    CHECK_EQ(b.f_type, a.f_type);
    CHECK_EQ(b.f_blocks, a.f_blocks);
    close(dfd);
    CHECK_ERRNO(statfs(path_in("missing"), &a), ENOENT);
    t_pass();
}

/* ---- mmap of files ---- */

static sigjmp_buf mm_jump;
static volatile int mm_signo, mm_code;
static volatile uintptr_t mm_addr;

static void mm_on_signal(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    mm_signo = sig;
    mm_code = si->si_code;
    mm_addr = (uintptr_t)si->si_addr;
    siglongjmp(mm_jump, 1);
}

/* Reads the byte at p; returns the signal it raised (0: none). */
static int mm_touch(volatile unsigned char *p, unsigned char *got)
{
    struct sigaction sa, old_bus, old_segv;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = mm_on_signal;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGBUS, &sa, &old_bus);
    sigaction(SIGSEGV, &sa, &old_segv);
    mm_signo = 0;
    if (sigsetjmp(mm_jump, 1) == 0)
        *got = *p;
    sigaction(SIGBUS, &old_bus, NULL);
    sigaction(SIGSEGV, &old_segv, NULL);
    return mm_signo;
}

static void mmap_files(void)
{
    T_BEGIN("mmap_files");
    const long page = 4096;
    const size_t len = 3 * page + 100;
    int fd = CHECK_SYS(make_file("mm", len, 21));
    unsigned char want[3 * 4096 + 100], b = 0;
    fill(want, len, 21);
    /* Shared: stores reach the file at once, writes reach the mapping. */
    volatile unsigned char *p = mmap(NULL, 5 * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED, "a shared mapping of the file");
    CHECK_EQ(p[4000], want[4000]);
    p[10] = 0xab;
    CHECK_EQ(pread(fd, &b, 1, 10), 1);
    CHECK_EQ(b, 0xab);
    b = 0xcd;
    CHECK_EQ(pwrite(fd, &b, 1, 5000), 1);
    CHECK_EQ(p[5000], 0xcd);
    /* The page holding EOF reads zeros past it; the next page is SIGBUS (BUS_ADRERR). */
    CHECK_EQ(p[3 * page + 200], 0);
    CHECK_EQ(mm_touch(p + 4 * page + 8, &b), SIGBUS);
    CHECK_EQ(mm_code, BUS_ADRERR);
    CHECK(mm_addr == (uintptr_t)(p + 4 * page + 8), "si_addr is the address touched");
    /* msync: whole pages of a mapping; EINVAL unaligned or both MS_SYNC and MS_ASYNC. */
    CHECK_SYS(msync((void *)p, 5 * page, MS_SYNC));
    CHECK_SYS(msync((void *)p, page, MS_ASYNC | MS_INVALIDATE));
    CHECK_ERRNO(msync((void *)(p + 1), page, MS_SYNC), EINVAL);
    CHECK_ERRNO(msync((void *)p, page, MS_SYNC | MS_ASYNC), EINVAL);
    /* Private: a store copies the page; the file stays as it was. */
    volatile unsigned char *q = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, page);
    CHECK(q != MAP_FAILED, "a private mapping of the file");
    CHECK_EQ(q[904], 0xcd); /* file offset 5000 */
    q[20] = (unsigned char)~want[page + 20];
    CHECK_EQ(q[20], (unsigned char)~want[page + 20]);
    CHECK_EQ(pread(fd, &b, 1, page + 20), 1);
    CHECK_EQ(b, want[page + 20]);
    CHECK_EQ(p[page + 20], want[page + 20]);
    CHECK_SYS(munmap((void *)q, 2 * page));
    /* munmap of the middle page: the others stay, the middle one is gone. */
    CHECK_SYS(munmap((void *)(p + page), page));
    CHECK_EQ(p[10], 0xab);
    CHECK_EQ(p[2 * page + 7], want[2 * page + 7]);
    CHECK_EQ(mm_touch(p + page, &b), SIGSEGV);
    /* Truncate: what lies beyond the new EOF is SIGBUS now. */
    CHECK_SYS(ftruncate(fd, page));
    CHECK_EQ(mm_touch(p + 2 * page, &b), SIGBUS);
    CHECK_EQ(p[10], 0xab);
    CHECK_SYS(munmap((void *)p, 5 * page));
    /* Rights: a read-only descriptor maps shared read-only, never writable. */
    int ro = CHECK_SYS(open(path_in("mm"), O_RDONLY));
    CHECK(mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0) == MAP_FAILED && errno == EACCES,
          "EACCES: a writable shared mapping of a read-only descriptor");
    void *r = mmap(NULL, page, PROT_READ, MAP_SHARED, ro, 0);
    CHECK(r != MAP_FAILED, "a read-only shared mapping");
    CHECK_ERRNO(mprotect(r, page, PROT_READ | PROT_WRITE), EACCES);
    CHECK_SYS(munmap(r, page));
    close(ro);
    /* MAP_SHARED_VALIDATE: unknown flags EOPNOTSUPP; MAP_SYNC on DAX only. */
    CHECK(mmap(NULL, page, PROT_READ, MAP_SHARED_VALIDATE | 0x400000, fd, 0) == MAP_FAILED && errno == EOPNOTSUPP,
          "EOPNOTSUPP for an unknown flag with MAP_SHARED_VALIDATE");
    struct statx sx;
    CHECK_SYS(do_statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx));
    void *s = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
    if (sx.stx_attributes & STATX_ATTR_DAX) {
        CHECK(s != MAP_FAILED, "MAP_SYNC on a DAX file");
        ((volatile unsigned char *)s)[1] = 0x77;
        CHECK_EQ(pread(fd, &b, 1, 1), 1);
        CHECK_EQ(b, 0x77);
        munmap(s, page);
    } else {
        CHECK(s == MAP_FAILED && errno == EOPNOTSUPP, "EOPNOTSUPP for MAP_SYNC off DAX");
    }
    close(fd);
    CHECK_SYS(unlink(path_in("mm")));
    t_pass();
}

/* /proc/self/pagemap: 8 bytes per page, bit 63 present; whole entries only. */
static void proc_pagemap(void)
{
    T_BEGIN("proc_pagemap");
    const long page = 4096;
    int fd = CHECK_SYS(make_file("pm", 2 * page, 22));
    volatile unsigned char *p = mmap(NULL, 2 * page, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED, "a mapping");
    unsigned char b = p[0];
    (void)b;
    int pm = CHECK_SYS(open("/proc/self/pagemap", O_RDONLY));
    uint64_t e[2] = {0, 0};
    CHECK_EQ(pread(pm, e, 16, (off_t)((uintptr_t)p / page * 8)), 16);
    CHECK(e[0] >> 63, "the touched page is present");
    CHECK_ERRNO(pread(pm, e, 8, (off_t)((uintptr_t)p / page * 8 + 1)), EINVAL);
    CHECK_ERRNO(write(pm, e, 8), EBADF);
    close(pm);
    munmap((void *)p, 2 * page);
    close(fd);
    CHECK_SYS(unlink(path_in("pm")));
    t_pass();
}

void run_fs(void)
{
    open_creat_excl();
    open_enoent();
    open_trunc();
    open_append();
    open_directory_flag();
    open_eisdir();
    open_cloexec_flag();
    ebadf_everywhere();
    read_write_lseek();
    pread_pwrite();
    readv_writev();
    stat_family();
    statx_basic();
    statx_dax();
    fsync_fdatasync();
    ftruncate_sizes();
    fallocate_modes();
    unlink_cases();
    rename_cases();
    mkdir_rmdir();
    name_too_long();
    getdents64_entries();
    cwd();
    dup_family();
    ioctl_enotty();
    ficlone();
    ficlonerange();
    fideduperange();
    fiemap_extents();
    fiemap_shared();
    poll_stdio();
    seek_data_hole();
    preadv_pwritev();
    renameat2_noreplace();
    dev_null();
    truncate_path();
    access_readlink_umask();
    fchdir_and_dirfds();
    fionread_fionbio();
    statfs_fields();
    mmap_files();
    proc_pagemap();
    enospc();
}
