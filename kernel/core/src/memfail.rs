//! Memory-failure routing: which persistent-memory device a poisoned
//! physical range belongs to, and where in it.
//!
//! The #MC handler (or a software injection) names a physical range; the
//! memory-failure task routes it to the device whose SPA range it hits, as
//! a device-relative offset and length clipped to the device, then records
//! it in that device's bad-block list and tells the device's holder. A
//! range in no device is logged ("not persistent memory").
//!
//! Then the kernel tells the processes that map it ([`early`] decides who
//! hears at once) and records the event ([`EventLog`]), with log lines
//! worded like Linux's ([`recovery_line`], [`signal_line`]) and the
//! console's `mf` report ([`report`]).

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use fsdax_abi::request::McePolicy;

/// A device's physical span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceSpan {
    /// First physical address.
    pub phys_base: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Where a poisoned range goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To device `index`, at `offset` for `len` bytes (clipped to the
    /// device).
    Device {
        /// Index into the device list.
        index: usize,
        /// Device-relative offset of the first poisoned byte.
        offset: u64,
        /// Poisoned bytes inside the device.
        len: u64,
    },
    /// No device holds any of it.
    NotPmem,
}

/// Routes `[start, start + len)` to the first device it overlaps.
pub fn route(start: u64, len: u64, devices: &[DeviceSpan]) -> Route {
    let end = start.saturating_add(len.max(1));
    for (index, d) in devices.iter().enumerate() {
        let d_end = d.phys_base.saturating_add(d.len);
        let s = start.max(d.phys_base);
        let e = end.min(d_end);
        if s < e {
            return Route::Device { index, offset: s - d.phys_base, len: e - s };
        }
    }
    Route::NotPmem
}

// ------------------------------------------------------------------ events

/// Whether a process is told at once (`BUS_MCEERR_AO`, "early") about
/// poison in a page it maps but did not touch, from its
/// `prctl(PR_MCE_KILL)` policy and the system default (console
/// `mf policy`).
pub fn early(policy: McePolicy, default_early: bool) -> bool {
    match policy {
        McePolicy::Default => default_early,
        McePolicy::Early => true,
        McePolicy::Late => false,
    }
}

/// What reported a memory failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A machine check a process consumed in user mode (action required).
    ConsumedByProcess,
    /// An action-required machine check in the kernel: a
    /// machine-check-safe copy (its system call got EIO or a short count)
    /// or a kernel task it killed.
    ActionRequired,
    /// A machine check the hardware found on its own (patrol scrub,
    /// action optional).
    Scrub,
    /// The console's software injection (`mf inject`).
    Software,
    /// `madvise(MADV_HWPOISON)` by a process.
    Madvise,
    /// The device is being removed (`unbind`).
    PreRemove,
}

impl Source {
    /// For the report and the log.
    pub fn text(self) -> &'static str {
        match self {
            Source::ConsumedByProcess => "machine check in a process",
            Source::ActionRequired => "machine check (action required)",
            Source::Scrub => "machine check (action optional)",
            Source::Software => "software injection",
            Source::Madvise => "madvise(MADV_HWPOISON)",
            Source::PreRemove => "device removal",
        }
    }
}

/// Whose bytes the failure hit, as the holder (the file system) said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// File data (a DAX page).
    FileData,
    /// File-system metadata (repaired from its copy or rewritten).
    Metadata,
    /// Free space: nothing lost.
    Free,
    /// No holder, or the holder could not tell.
    Unknown,
}

/// How the event ended (Linux's `action_result` words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded, every mapper unmapped and told by policy.
    Recovered,
    /// Not persistent memory, or already known: nothing to do.
    Ignored,
    /// The holder could not handle it (the file system went read-only).
    Failed,
}

impl Outcome {
    /// Linux's word.
    pub fn text(self) -> &'static str {
        match self {
            Outcome::Recovered => "Recovered",
            Outcome::Ignored => "Ignored",
            Outcome::Failed => "Failed",
        }
    }
}

/// One SIGBUS sent for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The process.
    pub pid: u64,
    /// Its name (`comm`).
    pub name: String,
    /// `BUS_MCEERR_AR` (4) or `BUS_MCEERR_AO` (5).
    pub code: i32,
    /// `si_addr`: the page's address in that process.
    pub addr: u64,
    /// `si_addr_lsb`.
    pub lsb: u16,
}

/// One memory-failure event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Device index.
    pub device: usize,
    /// Device-relative offset and length of the failed bytes.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Physical address of the first failed byte.
    pub phys: u64,
    /// What reported it.
    pub source: Source,
    /// Whose bytes.
    pub hit: Hit,
    /// How it ended.
    pub outcome: Outcome,
    /// Mappings removed (PTEs or PMDs).
    pub unmapped: u32,
    /// Signals sent.
    pub deliveries: Vec<Delivery>,
    /// When (nanoseconds since boot).
    pub at_ns: u64,
}

impl Event {
    /// 4 KiB pages the failed range touches (none for a removal: the
    /// memory is good).
    pub fn pages(&self) -> u64 {
        if self.len == 0 || self.source == Source::PreRemove {
            return 0;
        }
        let first = self.offset / 4096;
        let last = (self.offset + self.len - 1) / 4096;
        last - first + 1
    }
}

/// Counts per device since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Events.
    pub events: u64,
    /// Pages they touched.
    pub pages: u64,
    /// `BUS_MCEERR_AR` signals sent.
    pub action_required: u64,
    /// `BUS_MCEERR_AO` signals sent.
    pub action_optional: u64,
    /// Mappings removed.
    pub unmapped: u64,
}

/// The events since boot: the last `keep` in full, totals per device for
/// all of them.
#[derive(Debug, Clone)]
pub struct EventLog {
    keep: usize,
    recent: VecDeque<Event>,
    totals: Vec<Totals>,
    seq: u64,
}

impl EventLog {
    /// An empty log that keeps the last `keep` events.
    pub const fn new(keep: usize) -> EventLog {
        EventLog { keep, recent: VecDeque::new(), totals: Vec::new(), seq: 0 }
    }

    /// Records an event; returns its number (from 1).
    pub fn record(&mut self, e: Event) -> u64 {
        if self.totals.len() <= e.device {
            self.totals.resize(e.device + 1, Totals::default());
        }
        let t = &mut self.totals[e.device];
        t.events += 1;
        t.pages += e.pages();
        t.unmapped += u64::from(e.unmapped);
        for d in &e.deliveries {
            if d.code == BUS_MCEERR_AR {
                t.action_required += 1;
            } else {
                t.action_optional += 1;
            }
        }
        if self.keep > 0 {
            if self.recent.len() == self.keep {
                self.recent.pop_front();
            }
            self.recent.push_back(e);
        }
        self.seq += 1;
        self.seq
    }

    /// Events recorded since boot.
    pub fn count(&self) -> u64 {
        self.seq
    }

    /// A device's totals.
    pub fn totals(&self, device: usize) -> Totals {
        self.totals.get(device).copied().unwrap_or_default()
    }

    /// The kept events, oldest first, numbered.
    pub fn recent(&self) -> impl Iterator<Item = (u64, &Event)> {
        let first = self.seq - self.recent.len() as u64 + 1;
        self.recent.iter().enumerate().map(move |(i, e)| (first + i as u64, e))
    }
}

const BUS_MCEERR_AR: i32 = 4;

/// The SIGBUS code's name.
pub fn code_name(code: i32) -> &'static str {
    if code == BUS_MCEERR_AR {
        "BUS_MCEERR_AR"
    } else {
        "BUS_MCEERR_AO"
    }
}

/// Linux's line for the end of a memory failure on a DAX page:
/// `Memory failure: 0x<pfn>: recovery action for dax page: Recovered`.
pub fn recovery_line(phys: u64, hit: Hit, outcome: Outcome) -> String {
    let what = match hit {
        Hit::FileData => "dax page",
        Hit::Metadata => "dax page (file-system metadata)",
        Hit::Free => "free dax page",
        Hit::Unknown => "unknown page",
    };
    format!("Memory failure: {:#x}: recovery action for {what}: {}", phys >> 12, outcome.text())
}

/// The line for one signal: `Memory failure: 0x<pfn>: process NAME (pid N)
/// got SIGBUS BUS_MCEERR_AO at 0x7f... (si_addr_lsb 12)`.
pub fn signal_line(phys: u64, d: &Delivery) -> String {
    format!(
        "Memory failure: {:#x}: process {} (pid {}) got SIGBUS {} at {:#x} (si_addr_lsb {})",
        phys >> 12,
        d.name,
        d.pid,
        code_name(d.code),
        d.addr,
        d.lsb
    )
}

/// The console's `mf` report: totals per device (`names[i]` is device
/// `i`), then the kept events with who got what.
pub fn report(log: &EventLog, names: &[&str], default_early: bool, persistent: &[Option<u64>]) -> Vec<String> {
    let mut out = Vec::new();
    out.push(format!(
        "default policy for processes that map a poisoned page: {} (prctl PR_MCE_KILL overrides; `mf policy early|late`)",
        if default_early { "early (SIGBUS BUS_MCEERR_AO at once)" } else { "late (SIGBUS BUS_MCEERR_AR on next touch)" }
    ));
    out.push(format!(
        "{:<8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>12}",
        "device", "events", "pages", "AR sent", "AO sent", "unmapped", "on media"
    ));
    for (i, name) in names.iter().enumerate() {
        let t = log.totals(i);
        let media = match persistent.get(i).copied().flatten() {
            Some(n) => format!("{n}"),
            None => String::from("-"),
        };
        out.push(format!(
            "{:<8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>12}",
            name, t.events, t.pages, t.action_required, t.action_optional, t.unmapped, media
        ));
    }
    if log.count() == 0 {
        out.push(String::from("no memory failures since boot"));
        return out;
    }
    let kept = log.recent().count() as u64;
    out.push(format!("last {kept} of {} event(s):", log.count()));
    for (n, e) in log.recent() {
        let name = names.get(e.device).copied().unwrap_or("pmem?");
        out.push(format!(
            "  #{n:<3} {:>8}.{:03} s  {name} offset {:#x}+{:#x} (phys {:#x})  {}  {}: {}",
            e.at_ns / 1_000_000_000,
            e.at_ns / 1_000_000 % 1000,
            e.offset,
            e.len,
            e.phys,
            e.source.text(),
            match e.hit {
                Hit::FileData => "file data",
                Hit::Metadata => "metadata",
                Hit::Free => "free space",
                Hit::Unknown => "owner unknown",
            },
            e.outcome.text()
        ));
        if e.unmapped > 0 {
            out.push(format!("        {} mapping(s) removed", e.unmapped));
        }
        for d in &e.deliveries {
            out.push(format!(
                "        {} (pid {}) got SIGBUS {} at {:#x}, si_addr_lsb {}",
                d.name,
                d.pid,
                code_name(d.code),
                d.addr,
                d.lsb
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use proptest::prelude::*;

    use super::*;

    const DEVS: [DeviceSpan; 2] = [
        DeviceSpan { phys_base: 0x1_0000_0000, len: 256 << 20 },
        DeviceSpan { phys_base: 0x2_0000_0000, len: 64 << 20 },
    ];

    #[test]
    fn routes_inside_devices() {
        assert_eq!(route(0x1_0020_0140, 64, &DEVS), Route::Device { index: 0, offset: 0x20_0140, len: 64 });
        assert_eq!(route(0x2_0000_0000, 4096, &DEVS), Route::Device { index: 1, offset: 0, len: 4096 });
        assert_eq!(route(0x1000, 64, &DEVS), Route::NotPmem);
        assert_eq!(route(0x1_1000_0000, 64, &DEVS), Route::NotPmem, "just past pmem0");
    }

    #[test]
    fn clips_to_the_device() {
        // Straddles the end of pmem0.
        assert_eq!(route(0x1_1000_0000 - 32, 64, &DEVS), Route::Device { index: 0, offset: (256 << 20) - 32, len: 32 });
        // Starts before pmem1.
        assert_eq!(route(0x2_0000_0000 - 32, 64, &DEVS), Route::Device { index: 1, offset: 0, len: 32 });
        // Overflowing lengths do not wrap.
        assert_eq!(route(u64::MAX - 10, u64::MAX, &DEVS), Route::NotPmem);
        // A zero length counts as one byte.
        assert_eq!(route(0x1_0000_0000, 0, &DEVS), Route::Device { index: 0, offset: 0, len: 1 });
    }

    fn event(device: usize, offset: u64, len: u64, deliveries: Vec<Delivery>) -> Event {
        Event {
            device,
            offset,
            len,
            phys: 0x1_0000_0000 + offset,
            source: Source::Software,
            hit: Hit::FileData,
            outcome: Outcome::Recovered,
            unmapped: deliveries.len() as u32,
            deliveries,
            at_ns: 1_500_000_000,
        }
    }

    fn ao(pid: u64, addr: u64) -> Delivery {
        Delivery { pid, name: String::from("reader"), code: 5, addr, lsb: 12 }
    }

    #[test]
    fn policy_follows_the_process_then_the_default() {
        assert!(early(McePolicy::Default, true));
        assert!(!early(McePolicy::Default, false));
        assert!(early(McePolicy::Early, false));
        assert!(!early(McePolicy::Late, true));
    }

    #[test]
    fn the_log_counts_per_device_and_keeps_the_last_events() {
        let mut log = EventLog::new(2);
        assert_eq!(log.record(event(0, 0x1080, 64, vec![ao(3, 0x7000_0000)])), 1);
        let ar = Delivery { pid: 4, name: String::from("c"), code: 4, addr: 0x5000, lsb: 12 };
        assert_eq!(log.record(event(0, 0x2ff0, 0x20, vec![ar, ao(3, 0x7000_1000)])), 2);
        assert_eq!(log.record(event(1, 0, 4096, vec![])), 3);
        let t = log.totals(0);
        assert_eq!(t, Totals { events: 2, pages: 3, action_required: 1, action_optional: 2, unmapped: 3 });
        assert_eq!(log.totals(1).pages, 1);
        assert_eq!(log.totals(7), Totals::default());
        let kept: Vec<u64> = log.recent().map(|(n, _)| n).collect();
        assert_eq!(kept, vec![2, 3], "the oldest goes first");
        assert_eq!(log.count(), 3);
    }

    #[test]
    fn lines_read_like_linux() {
        assert_eq!(
            recovery_line(0x1_0020_3abc, Hit::FileData, Outcome::Recovered),
            "Memory failure: 0x100203: recovery action for dax page: Recovered"
        );
        assert_eq!(
            signal_line(0x1_0020_3000, &ao(12, 0x7f00_0000_3000)),
            "Memory failure: 0x100203: process reader (pid 12) got SIGBUS BUS_MCEERR_AO at 0x7f0000003000 (si_addr_lsb 12)"
        );
    }

    #[test]
    fn the_report_has_aligned_totals_and_who_got_what() {
        let mut log = EventLog::new(8);
        let r = report(&log, &["pmem0"], true, &[Some(0)]);
        assert!(r.last().unwrap().contains("no memory failures"));
        log.record(event(0, 0x1000, 4096, vec![ao(9, 0x4000_0000)]));
        let r = report(&log, &["pmem0"], false, &[Some(5)]);
        assert!(r[0].contains("late"), "{r:?}");
        let (header, row) = (&r[1], &r[2]);
        assert_eq!(header.len(), row.len(), "columns align: {r:?}");
        assert!(row.starts_with("pmem0") && row.ends_with(" 5"), "{row}");
        assert!(r.iter().any(|l| l.contains("reader (pid 9) got SIGBUS BUS_MCEERR_AO at 0x40000000, si_addr_lsb 12")));
        assert!(r.iter().any(|l| l.contains("1.500 s") && l.contains("Recovered")), "{r:?}");
    }

    proptest! {
        #[test]
        fn a_route_is_inside_its_device_and_the_range(start in 0u64..0x3_0000_0000, len in 0u64..(1 << 30)) {
            match route(start, len, &DEVS) {
                Route::Device { index, offset, len: l } => {
                    let d = DEVS[index];
                    prop_assert!(l > 0 && offset + l <= d.len);
                    prop_assert!(d.phys_base + offset >= start);
                    prop_assert!(d.phys_base + offset + l <= start + len.max(1));
                }
                Route::NotPmem => {
                    for d in DEVS {
                        prop_assert!(start + len.max(1) <= d.phys_base || start >= d.phys_base + d.len);
                    }
                }
            }
        }
    }
}
