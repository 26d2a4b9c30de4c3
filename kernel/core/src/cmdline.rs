//! The kernel command line (passed by the host through QEMU's fw_cfg).
//!
//! Grammar: `MODE [ARGS...]` with `loglevel=LEVEL` anywhere, where MODE is
//! `shell` (the default), `test [selftest] [FILTER...]` or `bench
//! [NAME...]`. Words are separated by whitespace; an unknown level is
//! reported, not guessed.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Log levels, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// And warnings.
    Warn,
    /// And information (the default).
    Info,
    /// Everything.
    Debug,
}

impl LogLevel {
    /// Parses `error`, `warn`, `info` or `debug`.
    pub fn parse(s: &str) -> Option<LogLevel> {
        Some(match s {
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            _ => return None,
        })
    }

    /// The level's name.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmdline {
    /// The mode (first word that is not an option).
    pub mode: String,
    /// The mode's arguments.
    pub args: Vec<String>,
    /// `loglevel=...`, if given and valid.
    pub log_level: Option<LogLevel>,
    /// A `loglevel=` value that is not a level.
    pub bad_log_level: Option<String>,
}

/// Parses a command line. Never fails: an empty line is `shell`.
pub fn parse(text: &str) -> Cmdline {
    let text = text.trim_end_matches('\0');
    let mut words = Vec::new();
    let mut log_level = None;
    let mut bad_log_level = None;
    for w in text.split_whitespace() {
        match w.strip_prefix("loglevel=") {
            Some(v) => match LogLevel::parse(v) {
                Some(l) => log_level = Some(l),
                None => bad_log_level = Some(String::from(v)),
            },
            None => words.push(String::from(w)),
        }
    }
    let mut words = words.into_iter();
    let mode = words.next().unwrap_or_else(|| String::from("shell"));
    Cmdline { mode, args: words.collect(), log_level, bad_log_level }
}

impl fmt::Display for Cmdline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mode {}", self.mode)?;
        if !self.args.is_empty() {
            write!(f, ", arguments:")?;
            for a in &self.args {
                write!(f, " {a}")?;
            }
        }
        if let Some(l) = self.log_level {
            write!(f, ", log level {}", l.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_arguments_and_levels() {
        let c = parse("test selftest mm loglevel=debug");
        assert_eq!(c.mode, "test");
        assert_eq!(c.args, ["selftest", "mm"]);
        assert_eq!(c.log_level, Some(LogLevel::Debug));
        assert_eq!(c.to_string(), "mode test, arguments: selftest mm, log level debug");
        let c = parse("loglevel=warn bench pmem");
        assert_eq!((c.mode.as_str(), c.args.len(), c.log_level), ("bench", 1, Some(LogLevel::Warn)));
    }

    #[test]
    fn empty_and_odd_lines() {
        assert_eq!(parse("").mode, "shell");
        assert_eq!(parse("  \t\n").mode, "shell");
        assert_eq!(parse("shell\0\0\0").mode, "shell", "fw_cfg strings may carry NULs");
        let c = parse("shell loglevel=loud");
        assert_eq!(c.log_level, None);
        assert_eq!(c.bad_log_level.as_deref(), Some("loud"));
        assert_eq!(c.to_string(), "mode shell");
    }

    #[test]
    fn levels_are_ordered_most_severe_first() {
        assert!(LogLevel::Error < LogLevel::Warn && LogLevel::Info < LogLevel::Debug);
        for l in [LogLevel::Error, LogLevel::Warn, LogLevel::Info, LogLevel::Debug] {
            assert_eq!(LogLevel::parse(l.name()), Some(l));
        }
    }
}
