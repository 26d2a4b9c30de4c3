/*
 * scen.h: what the scenario programs (scen_dax, scen_mf) share: result lines,
 * the host protocol, SIGBUS recording, physical addresses, processes.
 *
 * Results: one JSON object per line on stdout, always starting with
 *   {"scenario":NAME,"case":CASE,...}
 * then the figures of that case. A process of a multi-process case adds
 * "proc":ROLE. Properties that must hold on every system go into a
 * "checks" object of booleans; everything else is a measurement. A case a
 * system cannot run prints {"scenario":..,"case":..,"skipped":"why"}.
 *
 * Host protocol (the programs run unchanged on Linux and on fsdax; the host
 * watches the serial console and acts through QEMU's monitor). Lines from
 * the program, each on its own line:
 *   @@INJECT id=ID kind=ar|ao phys=0xADDR cpu=N
 *       inject a machine check at physical address ADDR on CPU N:
 *       ar = action required (data load, MCi_STATUS 0xbd80000000000134,
 *       MCG_STATUS 0x7), ao = action optional (memory scrub,
 *       0xbd000000000000c0, 0x5); MCi_MISC 0x86 (physical address, LSB 6).
 *       The program keeps a reader spinning on the page (ar) or waits (ao).
 *   @@CRASH id=ID
 *       stop the machine now, as a power failure would (QMP `quit`, no
 *       shutdown); the program sleeps until then. The next boot's program
 *       checks what survived.
 * Lines from the host, typed into the console (the program's stdin):
 *   @@GO id=ID
 *       the request ID was carried out (the machine check was raised).
 * A program that gets no @@GO within its timeout goes on and reports
 * "ack":false, so a run without a host watching ends rather than hangs.
 */
#ifndef FSDAX_SCEN_H
#define FSDAX_SCEN_H

#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "check.h" /* errno_name, now_ns */

#define PAGE 4096UL
#define HUGE (2UL << 20)

/* ---- result lines ---- */

/* Names every line of this process carries. */
void scen_set(const char *scenario, const char *proc);
const char *scen_scenario(void);

/* A JSON object being built; nested objects and arrays through *_begin/end. */
struct jl {
    char buf[8192];
    size_t n;
    int depth;
    int first[8]; /* no member written yet at this depth */
};

/* Starts a result line: {"scenario":..,"case":CASE[,"proc":..]. */
void jl_start(struct jl *j, const char *case_name);
void jl_str(struct jl *j, const char *key, const char *v);
void jl_int(struct jl *j, const char *key, long long v);
void jl_num(struct jl *j, const char *key, double v);
void jl_bool(struct jl *j, const char *key, int v);
void jl_hex(struct jl *j, const char *key, uint64_t v); /* "0x..." string */
void jl_null(struct jl *j, const char *key);
void jl_obj_begin(struct jl *j, const char *key); /* key NULL inside an array */
void jl_obj_end(struct jl *j);
void jl_arr_begin(struct jl *j, const char *key);
void jl_arr_end(struct jl *j);
/* Ends the line and writes it with one write(2), so lines of several processes never mix. */
void jl_end(struct jl *j);
/* A whole line saying the case could not run here. */
void scen_skipped(const char *case_name, const char *why);

/* "Linux 6.1.0-..." of the running system. */
const char *system_name(void);

/* Progress for people, on stderr. */
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints what failed (with errno) and exits 2: the scenario could not be set up. */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ---- host protocol ---- */

/* Prints @@INJECT for `kind` ("ar" or "ao") at `phys`; returns its id. *t_ns gets the
 * CLOCK_MONOTONIC time just before the line was written. */
unsigned scen_inject(const char *kind, uint64_t phys, uint64_t *t_ns);
/* Waits up to timeout_ms for "@@GO id=ID" on stdin; returns 1 if it came. */
int scen_wait_go(unsigned id, int timeout_ms);
/* Prints @@CRASH and sleeps until the machine stops. */
void scen_crash(void) __attribute__((noreturn));

/* ---- SIGBUS recording ---- */

struct sig_rec {
    int signo, code, lsb;
    int in_spin; /* it interrupted spin_read */
    uint64_t addr, t_ns;
    uint64_t tsc, spin_tsc; /* TSC in the handler, and at spin_read's last sample before it */
};

#define SIG_MAX 32
struct sig_log {
    int n;         /* records kept */
    int missed;    /* signals beyond SIG_MAX */
    int last_code; /* si_code of the latest signal, kept or not */
    struct sig_rec rec[SIG_MAX];
};

/* Records every SIGBUS into `log` (which may live in memory other processes see). */
void sig_record_into(struct sig_log *log);
/* A read of one byte that survives SIGBUS: returns 0 and the byte, or 1 (the signal was recorded). */
int probe_read(const volatile unsigned char *p, unsigned char *out);
/* Reads 8 bytes at p until a SIGBUS arrives or *stop becomes non-zero (then another `extra`
 * rounds); returns 1 if a SIGBUS arrived. Runs in user mode only: no system call inside. */
int spin_read(const volatile unsigned char *p, const volatile int *stop, uint64_t extra);
/* A write of one byte that survives SIGBUS: 0 or 1 as probe_read. */
int probe_write(volatile unsigned char *p, unsigned char v);
/* madvise(MADV_HWPOISON) that survives the SIGBUS it may raise in this process: returns 0
 * (done), -1 (failed, *err = errno) or 1 (a SIGBUS interrupted it; the signal was recorded). */
int madvise_poison(void *addr, size_t len, int *err);
/* "BUS_MCEERR_AR" for 4, ... */
const char *bus_code_name(int code);
/* The pages a case poisoned, in one process's mapping, and when each was poisoned. */
struct poison_set {
    const unsigned char *base; /* the process's mapping of the poisoned file */
    size_t len;
    int n;
    int page[4];       /* page indexes in the mapping */
    uint64_t t_ns[4];  /* CLOCK_MONOTONIC when the poison was requested (0: unknown) */
};
/* Adds "signals":[{...},...] for the records of `log` from index `from`: signal, si_code and
 * its name, the page index of si_addr in the mapping (null outside it), "addr_ok" (si_addr is
 * the first byte of a poisoned page of this mapping), si_addr_lsb, "us", the time from the
 * poison request of that page to the handler in microseconds, and for an action-required
 * signal that interrupted spin_read, "mc_us": from spin_read's last TSC sample (taken every
 * 1024 loads, so just before the machine check) to the handler. */
void jl_signals(struct jl *j, const struct sig_log *log, int from, const struct poison_set *ps);

/* ---- addresses ---- */

/* The physical address behind p from /proc/self/pagemap (PFN bits 0-54, bit 63
 * present); 0 when the page is not present or the PFN is hidden (no CAP_SYS_ADMIN). */
uint64_t virt_to_phys(const void *p);
/* Whether phys lies in a "Persistent Memory" range of /proc/iomem: 1, 0, or -1 when unknown. */
int phys_in_pmem(uint64_t phys);
/* A mapping whose address is a multiple of 2 MiB (so 2 MiB pages are possible). */
void *mmap_aligned(size_t len, int prot, int flags, int fd, off_t off);

/* ---- files ---- */

/* Path DIR/NAME in one of 8 rotating buffers. */
const char *in_dir(const char *dir, const char *name);
/* The byte of file `seed` at offset `off`: a pattern every process can recompute. */
static inline unsigned char pattern(unsigned seed, uint64_t off)
{
    /* Cheap enough for 256 MiB under TCG; differs between pages (and within one). */
    return (unsigned char)((off >> 12) * 0x3b + (off >> 20) * 13 + (off & 0xfff) * 7 + seed * 0x55 + 1);
}
/* Creates (truncating) DIR/NAME of `len` bytes of pattern(seed) written with pwrite, fsynced. */
int make_file(const char *path, uint64_t len, unsigned seed);
/* Whether [off, off+len) of fd holds pattern(seed): 1 yes, 0 no, -errno when pread failed. */
int file_has_pattern(int fd, uint64_t off, uint64_t len, unsigned seed);
/* Allocated 512-byte blocks of fd (statx, falling back to fstat). */
long long file_blocks(int fd);
/* Extent flags at file offset off (FIEMAP): -1 for a hole, else fe_flags. */
long long extent_flags_at(int fd, uint64_t off);

/* ---- processes ---- */

/* argv[0] of this program, for spawning helpers of itself. */
extern const char *scen_self;
/* Spawns this program with `args` (NULL-terminated, without argv[0]); dies on failure. */
pid_t spawn_self(char *const args[]);
/* Waits for pid; returns its exit status, 128+signal if killed, -1 on error. */
int wait_status(pid_t pid);
void sleep_ms(unsigned ms);

/* A control block shared by the processes of a case: a small file in DIR
 * mapped MAP_SHARED by each of them (no fork: the processes are spawned). */
void *ctl_create(const char *path, size_t len);
void *ctl_open(const char *path, size_t len);

#endif
