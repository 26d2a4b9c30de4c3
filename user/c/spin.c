/*
 * spin: prints one line, then loops forever without a system call (only the
 * timer can take the CPU from it). A test kills it from outside and checks
 * that the rest of the system kept running.
 */
#include <stdio.h>

int main(void)
{
    printf("spin: looping forever\n");
    fflush(stdout);
    for (volatile unsigned long i = 0;; i++)
        ;
}
