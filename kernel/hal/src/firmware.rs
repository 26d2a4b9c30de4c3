//! QEMU's firmware configuration device (fw_cfg): the kernel command line
//! comes through it, and its presence says "running under QEMU".

use fsdax_drivers::fw_cfg::FwCfg;

fn probe() -> Option<FwCfg> {
    // SAFETY: on a PC, ports 0x510/0x511 are QEMU's fw_cfg or unassigned;
    // probing writes a selector and reads a signature, which has no effect
    // on any other device.
    unsafe { FwCfg::probe() }
}

/// Whether the machine is QEMU (the fw_cfg device answers with its
/// signature).
pub fn under_qemu() -> bool {
    probe().is_some()
}

/// Reads the fw_cfg file `name` into `buf`; returns its length (which may
/// be larger than `buf`: the rest is not read), or `None` if there is no
/// fw_cfg device or no such file.
pub fn read_fw_cfg_file(name: &str, buf: &mut [u8]) -> Option<usize> {
    crate::arch::cpu::without_interrupts(|| probe()?.read_file(name, buf))
}
