/*
 * suite_efault.c: bad pointers: null, unmapped, kernel-space, non-canonical
 * and straddling the end of a mapping. Every case goes through the raw
 * system call (libc wrappers may touch the pointer themselves, or use the
 * vDSO) and expects -EFAULT, never a signal.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "suite.h"

/* Addresses no user pointer may reach. */
static const long KERNEL_LINUX = (long)0xffffffff81000000UL; /* Linux kernel text */
static const long KERNEL_DIRECT = (long)0xffff800000000000UL; /* start of the upper half */
static const long NON_CANONICAL = (long)0x0000800000000000UL; /* first non-canonical address */
static const long UNMAPPED = 0x1000;

static void efault_write_read(void)
{
    T_BEGIN("efault_read_write_buffers");
    int fd = CHECK_SYS(open(path_in("ef"), O_CREAT | O_TRUNC | O_RDWR, 0644));
    CHECK_EQ(write(fd, "0123456789", 10), 10);
    const long bad[] = {0, UNMAPPED, KERNEL_LINUX, KERNEL_DIRECT, NON_CANONICAL};
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_NEG(RAW3(SYS_write, fd, bad[i], 10), EFAULT);
        CHECK_NEG(RAW4(SYS_pwrite64, fd, bad[i], 10, 0), EFAULT);
        CHECK_NEG(RAW4(SYS_pread64, fd, bad[i], 10, 0), EFAULT);
    }
    CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
    CHECK_NEG(RAW3(SYS_read, fd, 0, 10), EFAULT);
    CHECK_NEG(RAW3(SYS_read, fd, KERNEL_DIRECT, 10), EFAULT);
    /* The file is as it was. */
    char back[10];
    CHECK_EQ(pread(fd, back, 10, 0), 10);
    CHECK(memcmp(back, "0123456789", 10) == 0, "the file unchanged by the failed calls");
    struct stat st;
    CHECK_SYS(fstat(fd, &st));
    CHECK_EQ(st.st_size, 10);
    close(fd);
    CHECK_SYS(unlink(path_in("ef")));
    t_pass();
}

static void straddling_buffers(void)
{
    T_BEGIN("straddling_buffers_short_count");
    int fd = CHECK_SYS(open(path_in("st"), O_CREAT | O_TRUNC | O_RDWR, 0644));
    char data[300];
    memset(data, 'd', sizeof data);
    CHECK_EQ(write(fd, data, sizeof data), 300);
    /* 100 readable bytes, then the hole: the copy stops at the hole. */
    CHECK_EQ(RAW4(SYS_pread64, fd, page_end(100), 200, 0), 100);
    CHECK_EQ(page_end(100)[99], 'd');
    CHECK_EQ(RAW4(SYS_pwrite64, fd, page_end(100), 200, 1000), 100);
    struct stat st;
    CHECK_SYS(fstat(fd, &st));
    CHECK_EQ(st.st_size, 1100);
    /* Nothing readable at all: EFAULT. */
    CHECK_NEG(RAW4(SYS_pread64, fd, hole_start(), 10, 0), EFAULT);
    close(fd);
    CHECK_SYS(unlink(path_in("st")));
    t_pass();
}

static void efault_structs(void)
{
    T_BEGIN("efault_struct_pointers");
    /* Whole structures copied out or in: a straddling one is EFAULT. */
    CHECK_NEG(RAW2(SYS_clock_gettime, CLOCK_MONOTONIC, 0), EFAULT);
    CHECK_NEG(RAW2(SYS_clock_gettime, CLOCK_MONOTONIC, page_end(8)), EFAULT);
    CHECK_NEG(RAW2(SYS_clock_gettime, CLOCK_MONOTONIC, KERNEL_DIRECT), EFAULT);
    CHECK_NEG(RAW1(SYS_uname, 0), EFAULT);
    CHECK_NEG(RAW1(SYS_uname, page_end(100)), EFAULT);
    CHECK_NEG(RAW1(SYS_uname, KERNEL_LINUX), EFAULT);
    CHECK_NEG(RAW2(SYS_fstat, 1, page_end(16)), EFAULT);
    CHECK_NEG(RAW2(SYS_fstat, 1, NON_CANONICAL), EFAULT);
    CHECK_NEG(RAW2(SYS_nanosleep, 0, 0), EFAULT);
    CHECK_NEG(RAW2(SYS_nanosleep, page_end(8), 0), EFAULT);
    CHECK_NEG(RAW2(SYS_getrusage, RUSAGE_SELF, 0), EFAULT);
    CHECK_NEG(RAW2(SYS_getrusage, RUSAGE_SELF, KERNEL_DIRECT), EFAULT);
    CHECK_NEG(RAW3(SYS_getrandom, 0, 16, 0), EFAULT);
    CHECK_NEG(RAW3(SYS_poll, 0, 1, 0), EFAULT);
    CHECK_NEG(RAW3(SYS_poll, page_end(4), 1, 0), EFAULT);
    CHECK_NEG(RAW4(SYS_rt_sigaction, SIGUSR1, UNMAPPED, 0, 8), EFAULT);
    CHECK_NEG(RAW4(SYS_rt_sigaction, SIGUSR1, 0, KERNEL_DIRECT, 8), EFAULT);
    CHECK_NEG(RAW4(SYS_rt_sigprocmask, SIG_BLOCK, UNMAPPED, 0, 8), EFAULT);
    CHECK_NEG(RAW2(SYS_sigaltstack, UNMAPPED, 0), EFAULT);
    CHECK_NEG(RAW2(SYS_getcwd, 0, 4096), EFAULT);
    CHECK_NEG(RAW2(SYS_getcwd, KERNEL_DIRECT, 4096), EFAULT);
    t_pass();
}

static void efault_iovecs(void)
{
    T_BEGIN("efault_iovec");
    int fd = CHECK_SYS(open(path_in("iv"), O_CREAT | O_TRUNC | O_RDWR, 0644));
    CHECK_NEG(RAW3(SYS_writev, fd, 0, 1), EFAULT);
    CHECK_NEG(RAW3(SYS_readv, fd, KERNEL_DIRECT, 1), EFAULT);
    struct iovec bad = {(void *)KERNEL_DIRECT, 10};
    CHECK_NEG(RAW3(SYS_writev, fd, &bad, 1), EFAULT);
    /* The iovec array itself straddles the hole. */
    struct iovec *strad = (struct iovec *)page_end(sizeof(struct iovec));
    strad->iov_base = "abc";
    strad->iov_len = 3;
    CHECK_NEG(RAW3(SYS_writev, fd, strad, 2), EFAULT);
    struct stat st;
    CHECK_SYS(fstat(fd, &st));
    CHECK_EQ(st.st_size, 0);
    close(fd);
    CHECK_SYS(unlink(path_in("iv")));
    t_pass();
}

static void efault_paths(void)
{
    T_BEGIN("efault_path_strings");
    CHECK_NEG(RAW3(SYS_open, 0, O_RDONLY, 0), EFAULT);
    CHECK_NEG(RAW3(SYS_open, UNMAPPED, O_RDONLY, 0), EFAULT);
    CHECK_NEG(RAW3(SYS_open, KERNEL_LINUX, O_RDONLY, 0), EFAULT);
    CHECK_NEG(RAW4(SYS_openat, AT_FDCWD, NON_CANONICAL, O_RDONLY, 0), EFAULT);
    /* A name that runs into the hole without its NUL. */
    char *name = page_end(16);
    memset(name, 'a', 16);
    CHECK_NEG(RAW3(SYS_open, name, O_RDONLY, 0), EFAULT);
    CHECK_NEG(RAW2(SYS_mkdir, name, 0755), EFAULT);
    CHECK_NEG(RAW1(SYS_unlink, 0), EFAULT);
    CHECK_NEG(RAW1(SYS_rmdir, KERNEL_DIRECT), EFAULT);
    CHECK_NEG(RAW1(SYS_chdir, 0), EFAULT);
    CHECK_NEG(RAW2(SYS_rename, 0, path_in("x")), EFAULT);
    CHECK_NEG(RAW2(SYS_stat, 0, page_end(200)), EFAULT);
    struct stat st;
    CHECK_NEG(RAW2(SYS_stat, name, &st), EFAULT);
    CHECK_NEG(RAW2(SYS_stat, suite_dir, 0), EFAULT);
    CHECK_NEG(RAW2(SYS_stat, suite_dir, page_end(16)), EFAULT);
    CHECK_NEG(RAW4(SYS_newfstatat, AT_FDCWD, suite_dir, KERNEL_DIRECT, 0), EFAULT);
    CHECK_NEG(RAW5(SYS_statx, AT_FDCWD, suite_dir, 0, STATX_BASIC_STATS, page_end(100)), EFAULT);
    CHECK_NEG(RAW5(SYS_statx, AT_FDCWD, 0, 0, STATX_BASIC_STATS, 0), EFAULT);
    int dfd = CHECK_SYS(open(suite_dir, O_RDONLY | O_DIRECTORY));
    CHECK_NEG(RAW3(SYS_getdents64, dfd, 0, 4096), EFAULT);
    CHECK_NEG(RAW3(SYS_getdents64, dfd, KERNEL_DIRECT, 4096), EFAULT);
    close(dfd);
    t_pass();
}

static void misaligned_pointers_work(void)
{
    T_BEGIN("misaligned_pointers_ok");
    /* Alignment is not a reason for EFAULT: x86 copies any alignment. */
    static char buf[256] __attribute__((aligned(16)));
    CHECK_EQ(RAW2(SYS_clock_gettime, CLOCK_MONOTONIC, buf + 3), 0);
    CHECK_EQ(RAW2(SYS_fstat, 1, buf + 1), 0);
    int fd = CHECK_SYS(open(path_in("mis"), O_CREAT | O_TRUNC | O_RDWR, 0644));
    CHECK_EQ(RAW3(SYS_write, fd, buf + 7, 9), 9);
    close(fd);
    CHECK_SYS(unlink(path_in("mis")));
    t_pass();
}

static void efault_ioctl(void)
{
    T_BEGIN("efault_ioctl_fiemap");
    int fd = CHECK_SYS(open(path_in("io"), O_CREAT | O_TRUNC | O_RDWR, 0644));
    CHECK_EQ(write(fd, "x", 1), 1);
    long r = RAW3(SYS_ioctl, fd, FS_IOC_FIEMAP, 0);
    if (r == -EOPNOTSUPP) {
        t_unsupported(0, "FS_IOC_FIEMAP: the file system under DIR has no extent map (EOPNOTSUPP)");
        close(fd);
        unlink(path_in("io"));
        return;
    }
    CHECK_NEG(r, EFAULT);
    CHECK_NEG(RAW3(SYS_ioctl, fd, FS_IOC_FIEMAP, KERNEL_DIRECT), EFAULT);
    CHECK_NEG(RAW3(SYS_ioctl, fd, FICLONERANGE, UNMAPPED), EFAULT);
    close(fd);
    CHECK_SYS(unlink(path_in("io")));
    t_pass();
}

void run_efault(void)
{
    efault_write_read();
    straddling_buffers();
    efault_structs();
    efault_iovecs();
    efault_paths();
    misaligned_pointers_work();
    efault_ioctl();
}
