//! The console as processes see it: output goes straight to the serial
//! console; input is what the console task forwards while a process runs
//! in the foreground (the console reads the UART, so one reader owns it).
//! A process that is not in the foreground reads end-of-file.

use alloc::collections::VecDeque;

use super::Pid;
use crate::sync::WaitQueue;

/// Console input waiting for the foreground process.
#[derive(Debug, Default)]
pub struct Input {
    /// The foreground process, if any.
    pub foreground: Option<Pid>,
    /// Bytes typed and not read yet.
    pub bytes: VecDeque<u8>,
}

/// The input queue; readers wait on it.
pub static INPUT: WaitQueue<Input> = WaitQueue::new(Input { foreground: None, bytes: VecDeque::new() });

/// Most bytes kept for a foreground process that does not read.
const MAX_QUEUED: usize = 4096;

/// Makes `pid` the foreground process (None: the console itself).
pub fn set_foreground(pid: Option<Pid>) {
    INPUT.update_and_notify(true, |i| {
        i.foreground = pid;
        i.bytes.clear();
    });
}

/// The console task forwards a typed byte to the foreground process.
pub fn push(byte: u8) {
    INPUT.update_and_notify(true, |i| {
        if i.bytes.len() < MAX_QUEUED {
            i.bytes.push_back(if byte == b'\r' { b'\n' } else { byte });
        }
    });
}

/// Wakes every reader (a signal for one of them).
pub fn wake_readers() {
    INPUT.update_and_notify(true, |_| ());
}

/// Writes a process's output.
pub fn write(bytes: &[u8]) {
    fsdax_hal::console::write_bytes(bytes);
}
