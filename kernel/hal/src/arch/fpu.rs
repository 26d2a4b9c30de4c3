//! The x87/SSE state of processes: one 512-byte FXSAVE image per user task,
//! saved and restored eagerly at every context switch ([`crate::task`]).
//! The kernel itself is built soft-float and never touches these registers,
//! so a process's state stays live in the CPU from its switch-in to its
//! switch-out, across system calls and interrupts.

use core::arch::asm;
use core::sync::atomic::{AtomicU32, Ordering};

/// Size of an FXSAVE image.
pub const FXSAVE_SIZE: usize = 512;

/// An FXSAVE image (16-byte aligned, as FXSAVE/FXRSTOR require).
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct FxArea(pub [u8; FXSAVE_SIZE]);

impl core::fmt::Debug for FxArea {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FxArea").field("fcw", &u16::from_le_bytes([self.0[0], self.0[1]])).finish_non_exhaustive()
    }
}

impl FxArea {
    /// The state a new program starts with (Linux's `fpstate_init`): x87
    /// control word 0x37f (all exceptions masked, 64-bit precision), MXCSR
    /// 0x1f80 (all SIMD exceptions masked), every register empty and zero.
    pub fn initial() -> FxArea {
        let mut a = [0u8; FXSAVE_SIZE];
        a[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        a[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        FxArea(a)
    }

    /// Saves this CPU's x87/SSE registers into the area.
    pub(crate) fn save(&mut self) {
        // SAFETY: FXSAVE writes exactly 512 bytes at a 16-byte aligned
        // address: this area; CR4.OSFXSR is set at boot.
        unsafe { asm!("fxsave64 [{}]", in(reg) self.0.as_mut_ptr(), options(nostack, preserves_flags)) };
    }

    /// Loads this CPU's x87/SSE registers from the area.
    pub(crate) fn restore(&self) {
        // SAFETY: FXRSTOR reads 512 bytes at a 16-byte aligned address. Its
        // MXCSR must not set reserved bits (that raises #GP): images come
        // from `initial`, from FXSAVE, or from processes through the
        // kernel, which masks MXCSR with `mxcsr_mask` (signal return).
        unsafe { asm!("fxrstor64 [{}]", in(reg) self.0.as_ptr(), options(nostack, preserves_flags)) };
    }
}

static MXCSR_MASK: AtomicU32 = AtomicU32::new(0xffbf);

/// Reads MXCSR_MASK (the MXCSR bits this CPU supports) once at boot.
pub(crate) fn init() {
    let mut a = FxArea::initial();
    a.save();
    let mask = u32::from_le_bytes([a.0[28], a.0[29], a.0[30], a.0[31]]);
    // Zero means the default mask (Intel SDM 11.6.6).
    MXCSR_MASK.store(if mask == 0 { 0xffbf } else { mask }, Ordering::Relaxed);
    // Leave the registers in the initial state.
    FxArea::initial().restore();
}

/// The MXCSR bits this CPU supports: an image a process supplies (a signal
/// frame) must be masked with it before it is loaded.
pub fn mxcsr_mask() -> u32 {
    MXCSR_MASK.load(Ordering::Relaxed)
}
