/* suite_mem.c: brk, anonymous mmap/munmap/mprotect/madvise, MAP_FIXED. */
#define _GNU_SOURCE
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "suite.h"

#define PAGE 4096UL

static void brk_grows_and_shrinks(void)
{
    T_BEGIN("brk");
    long cur = RAW1(SYS_brk, 0);
    CHECK(cur > 0, "a current break");
    long want = cur + 64 * 1024;
    CHECK_EQ(RAW1(SYS_brk, want), want);
    memset((void *)cur, 0x5a, 64 * 1024);
    CHECK_EQ(((volatile char *)cur)[64 * 1024 - 1], 0x5a);
    CHECK_EQ(RAW1(SYS_brk, cur), cur);
    /* A break below the start of the heap is refused: the current one comes back. */
    CHECK_EQ(RAW1(SYS_brk, 4096), cur);
    /* Growing again gives zero-filled memory. */
    CHECK_EQ(RAW1(SYS_brk, want), want);
    CHECK_EQ(((volatile char *)cur)[100], 0);
    CHECK_EQ(RAW1(SYS_brk, cur), cur);
    t_pass();
}

static void mmap_anonymous(void)
{
    T_BEGIN("mmap_anonymous");
    size_t len = 1 << 20;
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "a 1 MiB anonymous mapping");
    CHECK_EQ((uintptr_t)p % PAGE, 0);
    for (size_t i = 0; i < len; i += PAGE)
        CHECK_EQ(p[i], 0);
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(i * 7);
    for (size_t i = 0; i < len; i += 999)
        CHECK_EQ(p[i], (unsigned char)(i * 7));
    CHECK_SYS(munmap(p, len));
    /* Two mappings do not overlap. */
    char *a = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *b = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(a != MAP_FAILED && b != MAP_FAILED, "two mappings");
    CHECK(a + 3 * PAGE <= b || b + 3 * PAGE <= a, "disjoint mappings");
    munmap(a, 3 * PAGE);
    munmap(b, 3 * PAGE);
    t_pass();
}

static void mmap_errors(void)
{
    T_BEGIN("mmap_einval_ebadf_enomem");
    CHECK(mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED && errno == EINVAL,
          "EINVAL for length 0");
    CHECK(mmap(NULL, PAGE, PROT_READ, MAP_ANONYMOUS, -1, 0) == MAP_FAILED && errno == EINVAL,
          "EINVAL without MAP_SHARED or MAP_PRIVATE");
    CHECK(mmap((void *)0x10000123, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED &&
              errno == EINVAL,
          "EINVAL for an unaligned MAP_FIXED address");
    CHECK(mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, -1, 0) == MAP_FAILED && errno == EBADF,
          "EBADF for a file mapping of fd -1");
    CHECK(mmap(NULL, 1UL << 47, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0) == MAP_FAILED &&
              errno == ENOMEM,
          "ENOMEM for a mapping as large as the user address space");
    CHECK_NEG(RAW2(SYS_munmap, 0x10000123, PAGE), EINVAL);
    CHECK_NEG(RAW2(SYS_munmap, 0x10000000, 0), EINVAL);
    t_pass();
}

static void munmap_partial(void)
{
    T_BEGIN("munmap_partial");
    char *p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "a 4-page mapping");
    memset(p, 1, 4 * PAGE);
    CHECK_SYS(munmap(p + PAGE, PAGE));
    /* The pages around the hole keep their data; mincore would say the hole is gone
     * (the signal cases check that touching it faults). */
    CHECK_EQ(p[0], 1);
    CHECK_EQ(p[2 * PAGE], 1);
    /* munmap of a range with holes in it is fine. */
    CHECK_SYS(munmap(p, 4 * PAGE));
    CHECK_SYS(munmap(p, 4 * PAGE));
    t_pass();
}

static void mprotect_changes(void)
{
    T_BEGIN("mprotect");
    char *p = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "a mapping");
    p[0] = 9;
    CHECK_SYS(mprotect(p, PAGE, PROT_READ));
    CHECK_EQ(p[0], 9);
    CHECK_SYS(mprotect(p, PAGE, PROT_READ | PROT_WRITE));
    p[0] = 10;
    CHECK_EQ(p[0], 10);
    /* Raw: musl rounds the start down to a page itself. */
    CHECK_NEG(RAW3(SYS_mprotect, p + 1, PAGE, PROT_READ), EINVAL);
    CHECK_NEG(RAW3(SYS_mprotect, p, PAGE, 0x100), EINVAL);
    CHECK_SYS(munmap(p, 2 * PAGE));
    CHECK_NEG(RAW3(SYS_mprotect, p, PAGE, PROT_READ), ENOMEM);
    t_pass();
}

static void map_fixed_replaces(void)
{
    T_BEGIN("map_fixed");
    char *p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "a 4-page mapping");
    memset(p, 0x77, 4 * PAGE);
    char *q = mmap(p + 2 * PAGE, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(q == p + 2 * PAGE, "MAP_FIXED at the address asked for");
    CHECK_EQ(q[0], 0);
    CHECK_EQ(p[PAGE], 0x77);
    CHECK_EQ(p[3 * PAGE], 0x77);
    char *r = mmap(p, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    CHECK(r == MAP_FAILED && errno == EEXIST, "EEXIST from MAP_FIXED_NOREPLACE over a mapping");
    CHECK_EQ(p[0], 0x77);
    munmap(p, 4 * PAGE);
    /* A hint without MAP_FIXED is only a hint: any free address is fine. */
    char *h = mmap(p, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(h != MAP_FAILED, "a mapping with a hint");
    munmap(h, PAGE);
    t_pass();
}

static void madvise_hints(void)
{
    T_BEGIN("madvise");
    char *p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "a mapping");
    memset(p, 3, 4 * PAGE);
    CHECK_SYS(madvise(p, 4 * PAGE, MADV_WILLNEED));
    CHECK_SYS(madvise(p, 4 * PAGE, MADV_SEQUENTIAL));
    CHECK_SYS(madvise(p, 4 * PAGE, MADV_NORMAL));
    /* MADV_DONTNEED on private anonymous memory: the next read sees zeros. */
    CHECK_SYS(madvise(p, PAGE, MADV_DONTNEED));
    CHECK_EQ(p[0], 0);
    CHECK_EQ(p[PAGE], 3);
    CHECK_ERRNO(madvise(p, PAGE, 9999), EINVAL);
    CHECK_NEG(RAW3(SYS_madvise, p + 1, PAGE, MADV_NORMAL), EINVAL);
    munmap(p, 4 * PAGE);
    t_pass();
}

void run_mem(void)
{
    brk_grows_and_shrinks();
    mmap_anonymous();
    mmap_errors();
    munmap_partial();
    mprotect_changes();
    map_fixed_replaces();
    madvise_hints();
}
