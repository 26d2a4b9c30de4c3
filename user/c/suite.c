/*
 * suite: the system-call suite. Runs every case of the system calls a static
 * Linux x86_64 program uses (process, memory, signals, files on DIR, and the
 * error cases: one case per errno) and prints one line per case (check.h).
 *
 *   suite [--require-dax] [--require-reflink] [--only SUBSTRING]
 *         [--section LIST] DIR
 *
 * DIR must exist and be writable; the suite creates and removes its files
 * there. --section runs only the listed groups (comma-separated: proc, mem,
 * sig, fs, efault); DIR is checked only when fs or efault runs. Cases that the file system under DIR cannot do (reflink, DAX) skip
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
    fprintf(stderr, "usage: suite [--require-dax] [--require-reflink] [--only SUBSTRING] [--section LIST] DIR\n"
                    "  DIR: an existing, writable directory for the file cases\n"
                    "  LIST: groups to run, comma-separated: proc,mem,sig,fs,efault (default: all)\n");
    exit(2);
}

static const char *sections;

/* Whether group `name` runs (--section). */
static int section(const char *name)
{
    if (!sections)
        return 1;
    size_t n = strlen(name);
    for (const char *p = sections; (p = strstr(p, name)) != NULL; p += n) {
        if ((p == sections || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
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
        else if (strcmp(argv[i], "--section") == 0 && i + 1 < argc) {
            sections = argv[++i];
            static const char *const known[] = {"proc", "mem", "sig", "fs", "efault"};
            int n = 0;
            for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
                n += section(known[k]);
            /* Every listed name must be known: count the commas. */
            int items = 1;
            for (const char *c = sections; *c; c++)
                items += *c == ',';
            if (n != items)
                usage();
        }
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
    int uses_dir = section("fs") || section("efault");
    if (uses_dir && (stat(suite_dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        fprintf(stderr, "suite: %s is not a directory\n", suite_dir);
        return 2;
    }
    /* Absolute, so that the cases that change directory still find it. */
    static char absdir[4096];
    if (uses_dir && suite_dir[0] != '/') {
        if (!getcwd(absdir, sizeof absdir - strlen(suite_dir) - 2)) {
            perror("suite: getcwd");
            return 2;
        }
        strcat(strcmp(absdir, "/") ? strcat(absdir, "/") : absdir, suite_dir);
        suite_dir = absdir;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (section("proc"))
        run_proc();
    if (section("mem"))
        run_mem();
    if (section("sig"))
        run_sig();
    if (section("fs"))
        run_fs();
    if (section("efault"))
        run_efault();
    return t_summary();
}
