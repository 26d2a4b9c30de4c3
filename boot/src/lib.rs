//! Host side of fsdax: image building, QEMU runner, QMP.
