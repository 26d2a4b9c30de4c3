/*
 * suite: the system-call suite. Runs every case of the system calls a static
 * Linux x86_64 program uses (process, memory, signals, files on DIR, and the
 * error cases: one case per errno) and prints one line per case (check.h).
 *
 *   suite [--require-dax] [--require-reflink] [--only SUBSTRING] [--sections LIST] DIR
 *
 * --sections runs only the named groups of cases, a comma-separated list of
 * proc, mem, sig, fs, efault (default: all of them, in that order).
 * DIR must exist and be writable; the suite creates and removes its files
 * there. Cases that the file system under DIR cannot do (reflink, DAX) skip
 * with the reason, or fail under --require-dax / --require-reflink.
 * `suite --child MODE ...` is the suite spawning itself (see child_main).
 */
#define _GNU_SOURCE
#include "suite.h"

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

const char *suite_dir;
const char *suite_self;

pid_t spawn_child(const char *const *args, char *const *envp)
{
    const char *argv[16];
    int n = 0;
    argv[n++] = suite_self;
    argv[n++] = "--child";
    for (int i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid;
    int err;
    if (strchr(suite_self, '/'))
        err = posix_spawn(&pid, suite_self, NULL, NULL, (char *const *)argv, envp ? envp : environ);
    else
        err = posix_spawnp(&pid, suite_self, NULL, NULL, (char *const *)argv, envp ? envp : environ);
    return err ? -err : pid;
}

int run_child(const char *const *args)
{
    pid_t pid = spawn_child(args, NULL);
    if (pid < 0) {
        errno = -pid;
        return -1;
    }
    int status;
    if (wait4(pid, &status, 0, NULL) != pid)
        return -1;
    return status;
}

const char *path_in(const char *name)
{
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", suite_dir, name);
    return b;
}

static void usage(void)
{
    fprintf(stderr, "usage: suite [--require-dax] [--require-reflink] [--only SUBSTRING] [--sections LIST] DIR\n"
                    "  DIR: an existing, writable directory for the file cases\n"
                    "  LIST: comma-separated groups of cases: proc, mem, sig, fs, efault (default: all)\n");
    exit(2);
}

/* Whether group `name` is in the comma-separated `list` (NULL: every group). */
static int wanted(const char *list, const char *name)
{
    if (!list)
        return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p += len + (end ? 1 : 0);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *sections = NULL;
    suite_self = argv[0];
    if (argc >= 3 && strcmp(argv[1], "--child") == 0)
        child_main(argc - 2, argv + 2);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--require-dax") == 0)
            t_opts.require_dax = 1;
        else if (strcmp(argv[i], "--require-reflink") == 0)
            t_opts.require_reflink = 1;
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            t_opts.only = argv[++i];
        else if (strcmp(argv[i], "--sections") == 0 && i + 1 < argc)
            sections = argv[++i];
        else if (argv[i][0] == '-')
            usage();
        else if (!suite_dir)
            suite_dir = argv[i];
        else
            usage();
    }
    if (!suite_dir)
        usage();
    struct stat st;
    if (stat(suite_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "suite: %s is not a directory\n", suite_dir);
        return 2;
    }
    /* Absolute, so that the cases that change directory still find it. */
    static char absdir[4096];
    if (suite_dir[0] != '/') {
        if (!getcwd(absdir, sizeof absdir - strlen(suite_dir) - 2)) {
            perror("suite: getcwd");
            return 2;
        }
        strcat(strcmp(absdir, "/") ? strcat(absdir, "/") : absdir, suite_dir);
        suite_dir = absdir;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    static const char *const groups[] = {"proc", "mem", "sig", "fs", "efault"};
    if (sections) {
        for (const char *p = sections; *p;) {
            const char *end = strchr(p, ',');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            int known = 0;
            for (unsigned g = 0; g < sizeof groups / sizeof groups[0]; g++)
                known |= strlen(groups[g]) == len && strncmp(p, groups[g], len) == 0;
            if (!known)
                usage();
            p += len + (end ? 1 : 0);
        }
    }
    if (wanted(sections, "proc"))
        run_proc();
    if (wanted(sections, "mem"))
        run_mem();
    if (wanted(sections, "sig"))
        run_sig();
    if (wanted(sections, "fs"))
        run_fs();
    if (wanted(sections, "efault"))
        run_efault();
    return t_summary();
}
