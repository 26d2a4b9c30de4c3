//! The console protocol between a scenario program and the host (the
//! program side is `user/c/scen.h`): what one console line means.
//!
//! From the program: `@@INJECT id=ID kind=ar|ao phys=0xADDR cpu=N` (raise a
//! machine check), `@@CRASH id=ID` (stop the machine now), and JSON result
//! lines `{"scenario":...}`. From the system: status lines
//! (`crate::system::STATUS_PREFIX`). From the host into the console:
//! `@@GO id=ID` once a request was carried out; the guest's terminal echoes
//! it back, so it shows up here too.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::system::STATUS_PREFIX;

/// The kind of machine check a program asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McKind {
    /// Action required: an uncorrected data load the CPU consumed
    /// (SRAR, MCACOD 0x134; MCG_STATUS RIPV|EIPV|MCIP).
    ActionRequired,
    /// Action optional: found by the memory scrubber, nobody consumed it
    /// (SRAO, MCACOD 0xc0; MCG_STATUS RIPV|MCIP).
    ActionOptional,
}

impl McKind {
    pub fn name(self) -> &'static str {
        match self {
            McKind::ActionRequired => "ar",
            McKind::ActionOptional => "ao",
        }
    }

    /// `IA32_MCi_STATUS`: VAL|UC|EN|MISCV|ADDRV|S (|AR) and the MCA error code.
    pub fn status(self) -> u64 {
        match self {
            McKind::ActionRequired => 0xbd80_0000_0000_0134,
            McKind::ActionOptional => 0xbd00_0000_0000_00c0,
        }
    }

    /// `IA32_MCG_STATUS`: RIPV|MCIP, and EIPV for action required.
    pub fn mcg_status(self) -> u64 {
        match self {
            McKind::ActionRequired => 0x7,
            McKind::ActionOptional => 0x5,
        }
    }
}

/// A machine check the program asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectRequest {
    pub id: u64,
    pub kind: McKind,
    pub phys: u64,
    pub cpu: u32,
}

/// Bank of the injected machine check (any bank the guest enabled).
const MC_BANK: u32 = 9;
/// `IA32_MCi_MISC`: physical address mode, recoverable address LSB 6.
const MC_MISC: u64 = 0x86;

impl InjectRequest {
    /// The HMP command that raises it (`-b`: broadcast, as Intel hardware does).
    pub fn hmp_command(&self) -> String {
        format!(
            "mce -b {} {MC_BANK} {:#x} {:#x} {:#x} {MC_MISC:#x}",
            self.cpu,
            self.kind.status(),
            self.kind.mcg_status(),
            self.phys
        )
    }
}

/// Whether the CPU was in user mode, from the text of HMP `info registers`
/// (the privilege level in the low bits of the `CS` selector).
pub fn user_mode(info_registers: &str) -> Option<bool> {
    let at = info_registers.find("CS =")?;
    let sel = info_registers[at + 4..].split_whitespace().next()?;
    let cs = u16::from_str_radix(sel, 16).ok()?;
    Some(cs & 3 == 3)
}

/// A status line of the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ready(String),
    Exit(i32),
    Dmesg(String),
    FsckClean,
    FsckErrors(String),
    Error(String),
    Done,
    Other(String),
}

/// What one console line is.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Inject(InjectRequest),
    Crash {
        id: u64,
    },
    /// The echo of the host's own acknowledgement.
    Go {
        id: u64,
    },
    Status(Status),
    Result(Value),
    /// A kernel panic: the machine is going down.
    Panic(String),
    /// Anything else (kernel messages, the programs' progress on stderr).
    Other,
}

/// `key=value` words of a protocol line.
fn field<'a>(words: &[&'a str], key: &str) -> Option<&'a str> {
    words.iter().find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn number(words: &[&str], key: &str) -> Result<u64> {
    let v = field(words, key).ok_or_else(|| anyhow!("no {key}="))?;
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    parsed.map_err(|_| anyhow!("{key}={v} is not a number"))
}

/// Reads one console line. A protocol line that does not parse is an error
/// (the program and the host disagree); anything unknown is [`Line::Other`].
pub fn parse_line(text: &str) -> Result<Line> {
    let text = text.trim_end_matches(['\n', '\r']);
    if let Some(at) = text.find("@@INJECT ") {
        let words: Vec<&str> = text[at..].split_whitespace().skip(1).collect();
        let parsed = (|| -> Result<InjectRequest> {
            let kind = match field(&words, "kind") {
                Some("ar") => McKind::ActionRequired,
                Some("ao") => McKind::ActionOptional,
                other => bail!("kind={} (want ar or ao)", other.unwrap_or("missing")),
            };
            let phys = number(&words, "phys")?;
            if phys == 0 {
                bail!("phys=0: the program could not learn the physical address (pagemap needs CAP_SYS_ADMIN)");
            }
            let cpu = u32::try_from(number(&words, "cpu").unwrap_or(0)).context("cpu out of range")?;
            Ok(InjectRequest { id: number(&words, "id")?, kind, phys, cpu })
        })();
        return parsed.map(Line::Inject).with_context(|| format!("a garbled @@INJECT line: {text}"));
    }
    for (tag, make) in [("@@CRASH", true), ("@@GO", false)] {
        if let Some(at) =
            text.find(tag).filter(|&at| text[at + tag.len()..].chars().next().is_none_or(char::is_whitespace))
        {
            let words: Vec<&str> = text[at..].split_whitespace().skip(1).collect();
            let id = number(&words, "id").with_context(|| format!("a garbled {} line: {text}", tag.trim()))?;
            return Ok(if make { Line::Crash { id } } else { Line::Go { id } });
        }
    }
    if let Some(at) = text.find(STATUS_PREFIX) {
        let s = &text[at + STATUS_PREFIX.len()..];
        let status = if let Some(r) = s.strip_prefix("ready: ") {
            Status::Ready(r.to_string())
        } else if let Some(r) = s.strip_prefix("exit ") {
            Status::Exit(r.trim().parse().with_context(|| format!("a garbled exit status: {text}"))?)
        } else if let Some(r) = s.strip_prefix("dmesg: ") {
            Status::Dmesg(r.to_string())
        } else if s == "fsck clean" {
            Status::FsckClean
        } else if let Some(r) = s.strip_prefix("fsck errors: ") {
            Status::FsckErrors(r.to_string())
        } else if let Some(r) = s.strip_prefix("error: ") {
            Status::Error(r.to_string())
        } else if s == "done" {
            Status::Done
        } else {
            Status::Other(s.to_string())
        };
        return Ok(Line::Status(status));
    }
    if let Some(at) = text.find("{\"scenario\"") {
        let json = &text[at..];
        let v: Value = serde_json::from_str(json).with_context(|| format!("a garbled result line: {json}"))?;
        return Ok(Line::Result(v));
    }
    if text.contains("Kernel panic - not syncing") {
        return Ok(Line::Panic(text.trim().to_string()));
    }
    Ok(Line::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inject_lines_become_hmp_commands() {
        let l = parse_line("@@INJECT id=12301 kind=ar phys=0x101234000 cpu=0\n").unwrap();
        let Line::Inject(r) = l else { panic!("{l:?}") };
        assert_eq!(r, InjectRequest { id: 12301, kind: McKind::ActionRequired, phys: 0x1_0123_4000, cpu: 0 });
        assert_eq!(r.hmp_command(), "mce -b 0 9 0xbd80000000000134 0x7 0x101234000 0x86");
        // Kernel output before it on the same line does not matter; cpu defaults to 0.
        let l = parse_line("[  3.1] random: crng init done@@INJECT id=7 kind=ao phys=0x13fffe000").unwrap();
        let Line::Inject(r) = l else { panic!("{l:?}") };
        assert_eq!(r.hmp_command(), "mce -b 0 9 0xbd000000000000c0 0x5 0x13fffe000 0x86");
    }

    #[test]
    fn privilege_level_from_info_registers() {
        let user = "RAX=0000000000000000 RBX=0000000000000001\nES =0000 0000000000000000 ffffffff 00c00000\n\
                    CS =0033 0000000000000000 ffffffff 00a0fb00 DPL=3 CS64 [-RA]\nSS =002b 0000000000000000";
        assert_eq!(user_mode(user), Some(true));
        let kernel = "CS =0010 0000000000000000 ffffffff 00a09b00 DPL=0 CS64 [-RA]";
        assert_eq!(user_mode(kernel), Some(false));
        assert_eq!(user_mode("no registers"), None);
    }

    #[test]
    fn garbled_protocol_lines_are_errors() {
        for bad in [
            "@@INJECT id=1 kind=xx phys=0x1000",
            "@@INJECT id=1 kind=ar",
            "@@INJECT id=1 kind=ar phys=0",
            "@@INJECT id=1 kind=ar phys=zz",
            "@@INJECT kind=ar phys=0x1000",
            "@@CRASH",
            "@@fsdax exit x",
            "{\"scenario\":\"a\",",
        ] {
            assert!(parse_line(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn other_lines() {
        assert_eq!(parse_line("@@CRASH id=55").unwrap(), Line::Crash { id: 55 });
        assert_eq!(parse_line("@@GO id=55\n").unwrap(), Line::Go { id: 55 });
        assert_eq!(parse_line("@@fsdax exit 0").unwrap(), Line::Status(Status::Exit(0)));
        assert_eq!(parse_line("@@fsdax done").unwrap(), Line::Status(Status::Done));
        assert_eq!(parse_line("@@fsdax fsck clean").unwrap(), Line::Status(Status::FsckClean));
        assert_eq!(
            parse_line("@@fsdax dmesg: [   12.3] Memory failure: 0x101234: recovery action for dax page: Recovered")
                .unwrap(),
            Line::Status(Status::Dmesg(
                "[   12.3] Memory failure: 0x101234: recovery action for dax page: Recovered".into()
            ))
        );
        assert_eq!(parse_line("@@fsdax error: mkfs.xfs").unwrap(), Line::Status(Status::Error("mkfs.xfs".into())));
        let Line::Result(v) = parse_line("{\"scenario\":\"hole_read\",\"case\":\"hole\",\"n\":3}").unwrap() else {
            panic!()
        };
        assert_eq!(v["n"], 3);
        assert!(matches!(
            parse_line("[ 9.9] Kernel panic - not syncing: Fatal machine check").unwrap(),
            Line::Panic(_)
        ));
        assert_eq!(parse_line("scen_mf xfs550_ar: running on Linux 6.1.0").unwrap(), Line::Other);
    }
}
