/*
 * eatmem: allocates memory in 1 MiB blocks and touches every page, until
 * malloc fails (it prints "eatmem: out of memory after N MiB" and exits 3)
 * or the kernel kills it. Either way it must die alone: the rest of the
 * system goes on. `eatmem LIMIT_MIB` stops after LIMIT_MIB (exit 0).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    long limit = argc > 1 ? atol(argv[1]) : -1;
    long mib = 0;
    printf("eatmem: allocating%s\n", limit < 0 ? " until it fails" : "");
    fflush(stdout);
    for (;;) {
        if (limit >= 0 && mib >= limit) {
            printf("eatmem: stopped at the limit, %ld MiB\n", mib);
            return 0;
        }
        char *p = malloc(1 << 20);
        if (!p) {
            printf("eatmem: out of memory after %ld MiB\n", mib);
            return 3;
        }
        memset(p, 0xa5, 1 << 20);
        mib++;
        if (mib % 64 == 0) {
            printf("eatmem: %ld MiB\n", mib);
            fflush(stdout);
        }
    }
}
