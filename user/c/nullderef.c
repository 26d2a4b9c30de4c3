/*
 * nullderef: writes through a NULL pointer. It must die of SIGSEGV (a shell
 * sees status 139); if it ever survives, it says so and exits 1.
 */
#include <stdio.h>

int main(void)
{
    printf("nullderef: writing through NULL\n");
    fflush(stdout);
    *(volatile int *)0 = 42;
    printf("nullderef: survived a write through NULL\n");
    return 1;
}
