/*
 * suite.h: the system-call suite (suite*.c), one program: `suite [OPTIONS] DIR`.
 * Each group file registers its cases in a run function called by suite.c.
 */
#ifndef FSDAX_SUITE_H
#define FSDAX_SUITE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sys/types.h>

#include "check.h"
#include "uapi.h"

/* The directory the file cases work in (argv's DIR) and the suite's own path. */
extern const char *suite_dir;
extern const char *suite_self;

/* Spawns the suite itself as `suite --child ARGS...` (NULL-terminated) with
 * `envp` (NULL: the current environment); returns the pid or -errno. */
pid_t spawn_child(const char *const *args, char *const *envp);
/* Spawns `--child ARGS` and waits for it with wait4; returns the raw status
 * or -1 (errno set). */
int run_child(const char *const *args);
/* Runs in the child: `suite --child MODE ...`; never returns. */
void child_main(int argc, char **argv) __attribute__((noreturn));

/* "DIR/name" in a static buffer ring (8 entries). */
const char *path_in(const char *name);

void run_proc(void);
void run_mem(void);
void run_sig(void);
void run_fs(void);
void run_efault(void);

#endif
