/*
 * pwrite_pread_pair: two processes share one file and nothing else. Each
 * writes its blocks with pwrite and reads the other's with pread; the file
 * itself is the only channel (no pipes, no shared memory).
 *
 *   pwrite_pread_pair DIR [ROUNDS]
 *
 * Layout of DIR/pair.dat: for process p (0 = parent, 1 = spawned child) and
 * round r, a 4 KiB data block at ((r * 2 + p) + 1) * 4096 whose bytes are a
 * function of (p, r), and an 8-byte round counter at p * 8 written after the
 * block. A process that sees the other's counter reach r reads the other's
 * block r and checks every byte. Prints check.h lines; exits 0 iff all pass.
 */
#include <fcntl.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

extern char **environ;

#define BLOCK 4096
#define TIMEOUT_NS (120ULL * 1000000000ULL)

static unsigned char byte_of(int p, int r, int i)
{
    return (unsigned char)(p * 101 + r * 37 + i * 13 + (i >> 8));
}

static off_t block_off(int p, int r)
{
    return ((off_t)(r * 2 + p) + 1) * BLOCK;
}

/* Runs one side; returns NULL on success or a description of what went wrong. */
static const char *side(const char *path, int me, int rounds, char *why, size_t whylen)
{
    int fd = open(path, O_RDWR);
    if (fd < 0) {
        snprintf(why, whylen, "open %s: %s", path, errno_name(errno));
        return why;
    }
    int peer = 1 - me;
    unsigned char out[BLOCK], in[BLOCK];
    for (int r = 1; r <= rounds; r++) {
        for (int i = 0; i < BLOCK; i++)
            out[i] = byte_of(me, r, i);
        if (pwrite(fd, out, BLOCK, block_off(me, r)) != BLOCK) {
            snprintf(why, whylen, "pwrite of block %d: %s", r, errno_name(errno));
            return why;
        }
        uint64_t counter = (uint64_t)r;
        if (pwrite(fd, &counter, 8, me * 8) != 8) {
            snprintf(why, whylen, "pwrite of counter %d: %s", r, errno_name(errno));
            return why;
        }
        uint64_t start = now_ns(), seen = 0;
        while (seen < (uint64_t)r) {
            if (pread(fd, &seen, 8, peer * 8) != 8) {
                snprintf(why, whylen, "pread of the peer's counter: %s", errno_name(errno));
                return why;
            }
            if (seen > (uint64_t)rounds) {
                snprintf(why, whylen, "peer counter %llu out of range", (unsigned long long)seen);
                return why;
            }
            if (seen < (uint64_t)r) {
                if (now_ns() - start > TIMEOUT_NS) {
                    snprintf(why, whylen, "round %d: the peer's counter stayed at %llu for 120 s", r,
                             (unsigned long long)seen);
                    return why;
                }
                struct timespec ts = {0, 200000};
                nanosleep(&ts, NULL);
            }
        }
        if (pread(fd, in, BLOCK, block_off(peer, r)) != BLOCK) {
            snprintf(why, whylen, "pread of the peer's block %d: %s", r, errno_name(errno));
            return why;
        }
        for (int i = 0; i < BLOCK; i++)
            if (in[i] != byte_of(peer, r, i)) {
                snprintf(why, whylen, "round %d byte %d of the peer's block: 0x%02x, not 0x%02x", r, i, in[i],
                         byte_of(peer, r, i));
                return why;
            }
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    char why[256];
    if (argc == 5 && strcmp(argv[1], "--child") == 0) {
        const char *err = side(argv[2], atoi(argv[3]), atoi(argv[4]), why, sizeof why);
        if (err)
            fprintf(stderr, "pwrite_pread_pair child: %s\n", err);
        return err ? 1 : 0;
    }
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: pwrite_pread_pair DIR [ROUNDS]\n");
        return 2;
    }
    int rounds = argc == 3 ? atoi(argv[2]) : 200;
    static char path[4096];
    snprintf(path, sizeof path, "%s/pair.dat", argv[1]);
    t_begin("pwrite_pread_pair");
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0) {
        t_fail(__FILE__, __LINE__, "a new file", "errno %s", errno_name(errno));
        return t_summary();
    }
    static const uint64_t zero[2];
    if (pwrite(fd, zero, sizeof zero, 0) != sizeof zero) {
        t_fail(__FILE__, __LINE__, "zeroed counters", "errno %s", errno_name(errno));
        return t_summary();
    }
    close(fd);
    char rs[16];
    snprintf(rs, sizeof rs, "%d", rounds);
    char *const child_argv[] = {argv[0], "--child", path, "1", rs, NULL};
    pid_t pid;
    int err = posix_spawn(&pid, argv[0], NULL, NULL, child_argv, environ);
    if (err) {
        t_fail(__FILE__, __LINE__, "posix_spawn of the second process", "error %s", errno_name(err));
        return t_summary();
    }
    const char *mine = side(path, 0, rounds, why, sizeof why);
    int status;
    waitpid(pid, &status, 0);
    if (mine)
        t_fail(__FILE__, __LINE__, "every round's peer block", "%s", mine);
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        t_fail(__FILE__, __LINE__, "the second process to exit 0", "status 0x%x", status);
    else {
        printf("pwrite_pread_pair: %d rounds, each process read all of the other's blocks\n", rounds);
        t_pass();
    }
    unlink(path);
    return t_summary();
}
