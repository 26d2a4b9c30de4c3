#!/bin/busybox sh
# /init of the Linux reference guest (boot/src/linux.rs builds the initramfs).
# Loads the NVDIMM and XFS modules, puts the label-less namespace into fsdax
# mode (what `ndctl create-namespace -m fsdax` does, through sysfs), formats
# XFS with Linux's default reflink layout, mounts it with -o dax=always, runs
# /bin/bench on it and powers off. Lines for the host start with "@@fsdax ".
# Kernel command-line words NAME=VALUE that the kernel does not know reach
# this script as environment variables: fsdax_size, fsdax_only.
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /mnt /tmp

say() { echo "@@fsdax $*"; }
fail() { say "error: $*"; dmesg | tail -30; poweroff -f; }

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

mkfs.xfs -f -q -m reflink=1,rmapbt=1 /dev/pmem0 || fail "mkfs.xfs"
mount -t xfs -o dax=always /dev/pmem0 /mnt || fail "mount -o dax=always"
say "ready: Linux $(uname -r), pmem0 $(($(cat /sys/block/pmem0/size) / 2048)) MiB, $(grep pmem0 /proc/mounts)"
set -- --size "${fsdax_size:-8M}"
[ -n "$fsdax_only" ] && set -- "$@" --only "$fsdax_only"
/bin/bench "$@" /mnt
say "bench exit $?"
umount /mnt
say "done"
poweroff -f
