/*
 * uapi.h: the Linux user-space ABI pieces that musl's headers do not carry
 * (they live in the kernel's <linux/fs.h>, <linux/fiemap.h>, <linux/stat.h>,
 * <linux/falloc.h>, <linux/mman.h> and <linux/prctl.h>, which are not on
 * musl-gcc's include path, or an older musl lacks them). The values
 * and layouts are Linux's x86_64 ABI; the ioctl numbers are derived with
 * _IOW/_IOWR from the structure sizes exactly as Linux derives them, and the
 * sizes are checked at compile time.
 */
#ifndef FSDAX_UAPI_H
#define FSDAX_UAPI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>

/* <linux/mman.h>: MAP_SYNC mappings (older musl lacks them) */
#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif

/* <linux/fs.h>: freeze, and a block device's size */
#ifndef FIFREEZE
#define FIFREEZE _IOWR('X', 119, int)
#define FITHAW _IOWR('X', 120, int)
#endif
#ifndef BLKGETSIZE64
#define BLKGETSIZE64 _IOR(0x12, 114, size_t)
#endif

/* <linux/prctl.h>: the memory-failure kill policy */
#ifndef PR_MCE_KILL
#define PR_MCE_KILL 33
#define PR_MCE_KILL_SET 1
#define PR_MCE_KILL_LATE 0
#define PR_MCE_KILL_EARLY 1
#define PR_MCE_KILL_GET 34
#endif

/* <linux/fs.h>: reflink and dedupe */
struct file_clone_range {
    int64_t src_fd;
    uint64_t src_offset;
    uint64_t src_length;
    uint64_t dest_offset;
};

struct file_dedupe_range_info {
    int64_t dest_fd;
    uint64_t dest_offset;
    uint64_t bytes_deduped;
    int32_t status;
    uint32_t reserved;
};

struct file_dedupe_range {
    uint64_t src_offset;
    uint64_t src_length;
    uint16_t dest_count;
    uint16_t reserved1;
    uint32_t reserved2;
    struct file_dedupe_range_info info[];
};

#define FILE_DEDUPE_RANGE_SAME 0
#define FILE_DEDUPE_RANGE_DIFFERS 1

#define FICLONE _IOW(0x94, 9, int)
#define FICLONERANGE _IOW(0x94, 13, struct file_clone_range)
#define FIDEDUPERANGE _IOWR(0x94, 54, struct file_dedupe_range)

/* <linux/fiemap.h> */
struct fiemap_extent {
    uint64_t fe_logical;
    uint64_t fe_physical;
    uint64_t fe_length;
    uint64_t fe_reserved64[2];
    uint32_t fe_flags;
    uint32_t fe_reserved[3];
};

struct fiemap {
    uint64_t fm_start;
    uint64_t fm_length;
    uint32_t fm_flags;
    uint32_t fm_mapped_extents;
    uint32_t fm_extent_count;
    uint32_t fm_reserved;
    struct fiemap_extent fm_extents[];
};

#define FS_IOC_FIEMAP _IOWR('f', 11, struct fiemap)
#define FIEMAP_MAX_OFFSET (~0ULL)
#define FIEMAP_FLAG_SYNC 0x00000001
#define FIEMAP_FLAG_XATTR 0x00000002
#define FIEMAP_EXTENT_LAST 0x00000001
#define FIEMAP_EXTENT_UNWRITTEN 0x00000800
#define FIEMAP_EXTENT_SHARED 0x00002000

/* <linux/stat.h>: statx */
struct statx_timestamp {
    int64_t tv_sec;
    uint32_t tv_nsec;
    int32_t reserved;
};

struct statx {
    uint32_t stx_mask;
    uint32_t stx_blksize;
    uint64_t stx_attributes;
    uint32_t stx_nlink;
    uint32_t stx_uid;
    uint32_t stx_gid;
    uint16_t stx_mode;
    uint16_t spare0;
    uint64_t stx_ino;
    uint64_t stx_size;
    uint64_t stx_blocks;
    uint64_t stx_attributes_mask;
    struct statx_timestamp stx_atime, stx_btime, stx_ctime, stx_mtime;
    uint32_t stx_rdev_major, stx_rdev_minor;
    uint32_t stx_dev_major, stx_dev_minor;
    uint64_t spare2[14];
};

#define STATX_TYPE 0x0001U
#define STATX_MODE 0x0002U
#define STATX_NLINK 0x0004U
#define STATX_SIZE 0x0200U
#define STATX_BLOCKS 0x0400U
#define STATX_BASIC_STATS 0x07ffU
#define STATX__RESERVED 0x80000000U
#define STATX_ATTR_DAX 0x00200000ULL
#define AT_STATX_SYNC_AS_STAT 0x0000
#define AT_STATX_FORCE_SYNC 0x2000
#define AT_STATX_DONT_SYNC 0x4000

/* <linux/falloc.h> (musl has KEEP_SIZE and PUNCH_HOLE only) */
#ifndef FALLOC_FL_ZERO_RANGE
#define FALLOC_FL_ZERO_RANGE 0x10
#endif
#define FALLOC_FL_UNKNOWN_BIT 0x8000 /* no such mode: EOPNOTSUPP */

_Static_assert(sizeof(struct file_clone_range) == 32, "file_clone_range layout");
_Static_assert(sizeof(struct file_dedupe_range) == 24, "file_dedupe_range layout");
_Static_assert(sizeof(struct file_dedupe_range_info) == 32, "file_dedupe_range_info layout");
_Static_assert(sizeof(struct fiemap) == 32, "fiemap layout");
_Static_assert(sizeof(struct fiemap_extent) == 56, "fiemap_extent layout");
_Static_assert(sizeof(struct statx) == 256, "statx layout");
_Static_assert(FICLONE == 0x40049409, "FICLONE");
_Static_assert(FICLONERANGE == 0x4020940d, "FICLONERANGE");
_Static_assert(FIDEDUPERANGE == 0xc0189436, "FIDEDUPERANGE");
_Static_assert(FS_IOC_FIEMAP == 0xc020660b, "FS_IOC_FIEMAP");

#endif
