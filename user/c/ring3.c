/*
 * ring3: proves that user code runs in ring 3. Each privileged act runs in
 * its own spawned child (`ring3 --child ACT`); the parent checks that every
 * child died of SIGSEGV (the signal Linux gives for #GP and for a user-mode
 * #PF on a kernel page) and prints one line per act (check.h format).
 *
 * Acts: cli (clear IF), hlt, cr3 (read CR3), out (write the isa-debug-exit
 * port, which would end QEMU), kread (read a kernel address), ptwrite (write
 * where a kernel's page tables live: the direct map of physical memory).
 */
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

extern char **environ;

/* The start of the upper half: Linux's and fsdax's direct map of physical memory. */
#define DIRECT_MAP 0xffff800000000000UL

static void act(const char *what)
{
    if (strcmp(what, "cli") == 0)
        __asm__ volatile("cli");
    else if (strcmp(what, "hlt") == 0)
        __asm__ volatile("hlt");
    else if (strcmp(what, "cr3") == 0) {
        uint64_t cr3;
        __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
        printf("ring3: read CR3 = 0x%lx\n", (unsigned long)cr3);
    } else if (strcmp(what, "out") == 0)
        __asm__ volatile("outl %0, %1" ::"a"(0x10), "Nd"((uint16_t)0xf4));
    else if (strcmp(what, "kread") == 0)
        printf("ring3: kernel byte 0x%x\n", *(volatile unsigned char *)0xffffffff81000000UL);
    else if (strcmp(what, "ptwrite") == 0) {
        /* Page tables sit in low physical memory on both kernels; write a few candidates. */
        for (uint64_t phys = 0x1000; phys < 0x200000; phys += 0x1000)
            *(volatile uint64_t *)(DIRECT_MAP + phys) = 0;
    } else {
        fprintf(stderr, "ring3: unknown act %s\n", what);
        _exit(100);
    }
    printf("ring3: %s did not fault\n", what);
    fflush(stdout);
    _exit(2);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--child") == 0)
        act(argv[2]);
    static const char *const acts[] = {"cli", "hlt", "cr3", "out", "kread", "ptwrite"};
    for (unsigned i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        if (!t_begin(acts[i]))
            continue;
        char *const child_argv[] = {argv[0], "--child", (char *)acts[i], NULL};
        pid_t pid;
        int err = posix_spawn(&pid, argv[0], NULL, NULL, child_argv, environ);
        if (err) {
            t_fail(__FILE__, __LINE__, "posix_spawn of ring3 itself", "error %s", errno_name(err));
            continue;
        }
        int status;
        if (waitpid(pid, &status, 0) != pid) {
            t_fail(__FILE__, __LINE__, "waitpid of the child", "errno %s", errno_name(errno));
            continue;
        }
        if (!WIFSIGNALED(status)) {
            t_fail(__FILE__, __LINE__, "death by SIGSEGV", "exit status %d", WEXITSTATUS(status));
            continue;
        }
        if (WTERMSIG(status) != SIGSEGV) {
            t_fail(__FILE__, __LINE__, "death by SIGSEGV", "signal %d", WTERMSIG(status));
            continue;
        }
        t_pass();
    }
    return t_summary();
}
