#!/bin/busybox sh
# /init of the Linux reference guest (boot/src/linux.rs builds the initramfs).
# Loads the NVDIMM and XFS modules, puts the label-less namespace into fsdax
# mode (what `ndctl create-namespace -m fsdax` does, through sysfs), makes
# or mounts XFS on /dev/pmem0 with -o dax=always, runs one user program from
# /bin on it, optionally checks the file system, and powers off. Lines for
# the host start with "@@fsdax " (boot/src/system.rs lists them).
# Kernel command-line words NAME=VALUE that the kernel does not know reach
# this script as environment variables:
#   fsdax_run     the program and its arguments, joined by '+'
#                 (bench+--size+8M+/mnt)
#   fsdax_mkfs    1: a fresh XFS (mkfs.xfs -m reflink=1,rmapbt=1); 0: mount
#                 what pmem0 holds (with log recovery after a crash)
#   fsdax_layout  default | aligned2m (mkfs -d su=2m,sw=1 and a 2 MiB extent
#                 size hint on /mnt, so that files can be mapped with 2 MiB pages)
#   fsdax_fsck    1: xfs_repair -n on the unmounted file system afterwards
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /mnt /tmp

say() { echo "@@fsdax $*"; }
fail() { say "error: $*"; dmesg | tail -30; say "done"; poweroff -f; }

for m in $(cat /modules.order); do
    insmod "/lib/modules/$m" || fail "insmod $m"
done
i=0
while [ ! -e /dev/pmem0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -e /dev/pmem0 ] || fail "no /dev/pmem0 after loading nfit and nd_pmem"

if [ "$(cat /sys/block/pmem0/queue/dax)" != 1 ]; then
    say "converting namespace0.0 to fsdax mode (2 MiB alignment, memmap in pmem)"
    pfn=$(cat /sys/bus/nd/devices/region0/pfn_seed)
    echo namespace0.0 > /sys/bus/nd/drivers/nd_pmem/unbind
    cat /proc/sys/kernel/random/uuid > /sys/bus/nd/devices/$pfn/uuid
    echo pmem > /sys/bus/nd/devices/$pfn/mode
    echo 2097152 > /sys/bus/nd/devices/$pfn/align
    echo namespace0.0 > /sys/bus/nd/devices/$pfn/namespace
    echo $pfn > /sys/bus/nd/drivers/nd_pmem/bind
    i=0
    while [ ! -e /dev/pmem0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ "$(cat /sys/block/pmem0/queue/dax 2>/dev/null)" = 1 ] || fail "pmem0 is not DAX-capable after the conversion"
fi

if [ "${fsdax_mkfs:-1}" = 1 ]; then
    opts="-m reflink=1,rmapbt=1"
    [ "$fsdax_layout" = aligned2m ] && opts="$opts -d su=2m,sw=1"
    mkfs.xfs -f -q $opts /dev/pmem0 || fail "mkfs.xfs $opts"
fi
mount -t xfs -o dax=always /dev/pmem0 /mnt || fail "mount -o dax=always"
if [ "$fsdax_layout" = aligned2m ]; then
    xfs_io -c "extsize 2m" /mnt || fail "xfs_io -c 'extsize 2m' /mnt"
fi
dmesg -c > /dev/null
say "ready: Linux $(uname -r), pmem0 $(($(cat /sys/block/pmem0/size) / 2048)) MiB, $(grep pmem0 /proc/mounts)"
[ -n "$fsdax_run" ] || fail "no fsdax_run= on the kernel command line"
set -- $(echo "$fsdax_run" | tr '+' ' ')
prog=$1
shift
"/bin/$prog" "$@"
say "exit $?"
# What the kernel logged about memory failure, machine checks, DAX and the file system.
dmesg | grep -iE 'memory.failure|hwpoison|mce|machine check|hardware error|sigbus|dax|pmem|xfs|badblock|poison|corrupt|shut' |
    while read -r l; do say "dmesg: $l"; done
umount /mnt || say "error: umount /mnt failed"
if [ "$fsdax_fsck" = 1 ]; then
    if xfs_repair -n /dev/pmem0 > /tmp/repair.log 2>&1; then
        say "fsck clean"
    else
        rc=$?
        bad=$(tr '\n' ' ' < /sys/block/pmem0/badblocks)
        say "fsck errors: xfs_repair -n exit $rc: $(tail -3 /tmp/repair.log | tr '\n' ' ')${bad:+(pmem0 bad sectors, offset and count: $bad)}"
    fi
fi
say "done"
poweroff -f
