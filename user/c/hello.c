/*
 * hello: prints its arguments, environment and a few auxv entries, then exits
 * with the status given as its first argument (0 without one).
 *
 *   hello [STATUS [ARGS...]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
    printf("hello from pid %d: argc=%d\n", (int)getpid(), argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    for (int i = 0; environ[i]; i++)
        printf("envp[%d]=%s\n", i, environ[i]);
    printf("auxv AT_PAGESZ=%lu AT_PHNUM=%lu AT_ENTRY=0x%lx AT_RANDOM=%s\n", getauxval(AT_PAGESZ),
           getauxval(AT_PHNUM), getauxval(AT_ENTRY), getauxval(AT_RANDOM) ? "set" : "missing");
    int status = argc > 1 ? atoi(argv[1]) : 0;
    printf("exit %d\n", status);
    return status;
}
