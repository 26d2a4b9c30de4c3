//! The numbers side of `fsdax bench`: samples per system and metric, their
//! medians and spreads, the ratios, and `bench.json` / `bench.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

/// Which way a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// What a metric's numbers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    OpsPerSec,
    BytesPerSec,
    Secs,
    Faults,
}

impl Unit {
    fn better(self) -> Better {
        match self {
            Unit::OpsPerSec | Unit::BytesPerSec => Better::Higher,
            Unit::Secs | Unit::Faults => Better::Lower,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::OpsPerSec => "ops/s",
            Unit::BytesPerSec => "bytes/s",
            Unit::Secs => "s",
            Unit::Faults => "faults",
        }
    }

    /// A value for people: `2,611 ops/s`, `377.2 MiB/s`, `12.3 ms`.
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::OpsPerSec => format!("{} ops/s", group(v)),
            Unit::Faults => thousands(v),
            Unit::BytesPerSec => {
                if v >= (1u64 << 30) as f64 {
                    format!("{:.2} GiB/s", v / (1u64 << 30) as f64)
                } else {
                    format!("{:.1} MiB/s", v / (1u64 << 20) as f64)
                }
            }
            Unit::Secs => {
                if v >= 1.0 {
                    format!("{v:.2} s")
                } else if v >= 1e-3 {
                    format!("{:.2} ms", v * 1e3)
                } else {
                    format!("{:.1} µs", v * 1e6)
                }
            }
        }
    }
}

/// Digits grouped by thousands, rounded to an integer (two decimals below 10).
fn group(v: f64) -> String {
    if v < 10.0 {
        return format!("{v:.2}");
    }
    thousands(v)
}

/// An integer with its digits grouped by thousands.
pub(crate) fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    if v < 0.0 && s != "0" {
        out.push('-');
    }
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One metric: a benchmark's primary figure, or its fault count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetricKey {
    /// Position of the benchmark in the program's output (table order).
    pub order: usize,
    pub name: String,
}

/// Median and spread of one system's samples of one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub median: f64,
    /// (max - min) / median, in percent.
    pub spread_pct: f64,
    pub n: usize,
}

pub fn stats(samples: &[f64]) -> Option<Stats> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
    let spread_pct = if median > 0.0 { (s[n - 1] - s[0]) / median * 100.0 } else { 0.0 };
    Some(Stats { median, spread_pct, n })
}

/// How much better fsdax is than Linux (> 1: fsdax better), whichever way
/// the metric is better.
pub fn speedup(unit: Unit, fsdax: f64, linux: f64) -> Option<f64> {
    if fsdax <= 0.0 || linux <= 0.0 {
        return None;
    }
    Some(match unit.better() {
        Better::Higher => fsdax / linux,
        Better::Lower => linux / fsdax,
    })
}

/// Everything measured: per metric, per system, the samples.
#[derive(Debug, Default)]
pub struct Results {
    pub metrics: BTreeMap<MetricKey, (Unit, BTreeMap<String, Vec<f64>>)>,
    /// Metrics that are a system's own raw reference (no counterpart on
    /// the other system, no ratio).
    pub references: std::collections::BTreeSet<String>,
    /// Why a benchmark did not run, per system.
    pub skipped: BTreeMap<(String, String), String>,
    /// uname of each system as the benchmark program saw it.
    pub uname: BTreeMap<String, String>,
    /// Every JSON line, with `round` and `on` (system) added.
    pub raw: Vec<Value>,
}

impl Results {
    /// Keeps a JSON line as it came, with `round` and `on` added.
    pub fn add_raw(&mut self, system: &str, round: usize, line: &Value) {
        let mut raw = line.clone();
        raw["on"] = json!(system);
        raw["round"] = json!(round);
        self.raw.push(raw);
    }

    /// Adds one sample of a raw reference figure (bytes/s) of `system`:
    /// its rows come right after the first benchmark's (the `memcpy`).
    pub fn add_reference(&mut self, system: &str, name: &str, bytes_per_s: f64) {
        // Orders 2..8 lie between the first line's (0, and 1 for faults)
        // and the second's (8); a known name keeps its first order.
        let order = 2 + self.references.len().min(5);
        self.references.insert(name.to_string());
        self.push(MetricKey { order, name: name.to_string() }, Unit::BytesPerSec, system, bytes_per_s);
    }

    /// Adds one JSON line of the benchmark program from `system`.
    pub fn add(&mut self, system: &str, round: usize, order: usize, line: &Value) {
        self.add_raw(system, round, line);
        let Some(bench) = line["bench"].as_str() else { return };
        if let Some(u) = line["system"].as_str() {
            self.uname.insert(system.to_string(), u.to_string());
        }
        if let Some(why) = line["skipped"].as_str() {
            self.skipped.insert((bench.to_string(), system.to_string()), why.to_string());
            return;
        }
        let unit = match line["primary"].as_str() {
            Some("ops_per_s") => Unit::OpsPerSec,
            Some("bytes_per_s") => Unit::BytesPerSec,
            Some("secs") => Unit::Secs,
            _ => return,
        };
        let field = line["primary"].as_str().unwrap_or_default();
        if let Some(v) = line[field].as_f64() {
            self.push(MetricKey { order: order * 8, name: bench.to_string() }, unit, system, v);
        }
        if let Some(f) = line["minflt"].as_f64() {
            let total = f + line["majflt"].as_f64().unwrap_or(0.0);
            self.push(MetricKey { order: order * 8 + 1, name: format!("{bench} faults") }, Unit::Faults, system, total);
        }
    }

    fn push(&mut self, key: MetricKey, unit: Unit, system: &str, v: f64) {
        // A benchmark keeps its first order number across rounds and systems.
        let key = self.metrics.keys().find(|k| k.name == key.name).cloned().unwrap_or(key);
        self.metrics
            .entry(key)
            .or_insert_with(|| (unit, BTreeMap::new()))
            .1
            .entry(system.to_string())
            .or_default()
            .push(v);
    }
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Row {
    pub metric: String,
    pub unit: Unit,
    pub fsdax: Option<Stats>,
    pub linux: Option<Stats>,
    pub ratio: Option<f64>,
    /// A system's own raw reference figure (no counterpart, no ratio).
    pub reference: bool,
}

pub fn rows(results: &Results) -> Vec<Row> {
    results
        .metrics
        .iter()
        .map(|(key, (unit, per))| {
            let fsdax = per.get("fsdax").and_then(|s| stats(s));
            let linux = per.get("linux").and_then(|s| stats(s));
            let ratio = match (fsdax, linux) {
                (Some(f), Some(l)) => speedup(*unit, f.median, l.median),
                _ => None,
            };
            let reference = results.references.contains(&key.name);
            Row { metric: key.name.clone(), unit: *unit, fsdax, linux, ratio, reference }
        })
        .collect()
}

/// How a goal is judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Check {
    /// fsdax at least this many times better than Linux (the ratio).
    Ratio(f64),
    /// fsdax's median at least this fraction of each of fsdax's medians of
    /// `refs`, measured in the same boot or run (raw copy bandwidth).
    OfRaw { frac: f64, refs: &'static [&'static str] },
    /// fsdax's median of the metric's fault count at most this.
    MaxFaults(f64),
}

/// A goal fsdax is held to: one metric, one check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goal {
    pub metric: &'static str,
    /// The goal as a person reads it.
    pub what: &'static str,
    pub check: Check,
}

/// The goals, at the default size (256 MiB files).
pub const GOALS: &[Goal] = &[
    Goal { metric: "overwrite_4k", what: ">= 3x Linux's ops/s", check: Check::Ratio(3.0) },
    Goal { metric: "append_4k", what: ">= 5x Linux's ops/s", check: Check::Ratio(5.0) },
    Goal {
        metric: "write_2m",
        what: ">= 0.9x the raw copy bandwidth (memcpy; kernel pmem write)",
        check: Check::OfRaw { frac: 0.9, refs: &["memcpy", "pmem_write_2m (kernel)"] },
    },
    Goal {
        metric: "read_2m",
        what: ">= 0.9x the raw copy bandwidth (memcpy; kernel pmem read)",
        check: Check::OfRaw { frac: 0.9, refs: &["memcpy", "pmem_read_2m (kernel)"] },
    },
    Goal { metric: "first_touch_written", what: "<= 129 faults", check: Check::MaxFaults(129.0) },
    Goal { metric: "first_touch_written", what: ">= 10x faster than Linux", check: Check::Ratio(10.0) },
    Goal { metric: "first_touch_sparse", what: "<= 129 faults", check: Check::MaxFaults(129.0) },
    Goal { metric: "first_touch_sparse", what: ">= 10x faster than Linux", check: Check::Ratio(10.0) },
    Goal { metric: "ficlone", what: "<= 1/10 of Linux's time", check: Check::Ratio(10.0) },
    Goal { metric: "cow_pwrite_first", what: "<= 1/10 of Linux's time", check: Check::Ratio(10.0) },
    Goal { metric: "cow_mmap", what: ">= 20x faster than Linux", check: Check::Ratio(20.0) },
    Goal { metric: "create_close", what: ">= 3x Linux's ops/s", check: Check::Ratio(3.0) },
];

/// Whether a goal was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// A figure it needs was not measured.
    NotMeasured,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "missed",
            Verdict::NotMeasured => "not measured",
        }
    }
}

/// A goal judged against the results.
#[derive(Debug, Clone)]
pub struct GoalRow {
    pub goal: Goal,
    /// What was measured, for people: `3.71x`, `0.93x memcpy, 0.88x pmem_write_2m (kernel)`.
    pub measured: String,
    pub verdict: Verdict,
}

/// Judges every goal of [`GOALS`].
pub fn goals(results: &Results) -> Vec<GoalRow> {
    let rows = rows(results);
    let row = |name: &str| rows.iter().find(|r| r.metric == name);
    let fsdax = |name: &str| row(name).and_then(|r| r.fsdax).map(|s| s.median);
    GOALS
        .iter()
        .map(|&goal| {
            let (measured, verdict) = match goal.check {
                Check::Ratio(want) => match row(goal.metric).and_then(|r| r.ratio) {
                    Some(x) => (format!("{x:.2}x"), if x >= want { Verdict::Met } else { Verdict::Missed }),
                    None => ("–".to_string(), Verdict::NotMeasured),
                },
                Check::MaxFaults(max) => match fsdax(&format!("{} faults", goal.metric)) {
                    Some(f) => {
                        (format!("{} faults", thousands(f)), if f <= max { Verdict::Met } else { Verdict::Missed })
                    }
                    None => ("–".to_string(), Verdict::NotMeasured),
                },
                Check::OfRaw { frac, refs } => {
                    let mut parts = Vec::new();
                    let mut verdict = Verdict::Met;
                    for r in refs {
                        match (fsdax(goal.metric), fsdax(r)) {
                            (Some(v), Some(raw)) if raw > 0.0 => {
                                parts.push(format!("{:.2}x {r}", v / raw));
                                if v / raw < frac && verdict == Verdict::Met {
                                    verdict = Verdict::Missed;
                                }
                            }
                            _ => {
                                parts.push(format!("– {r}"));
                                verdict = Verdict::NotMeasured;
                            }
                        }
                    }
                    (parts.join(", "), verdict)
                }
            };
            GoalRow { goal, measured, verdict }
        })
        .collect()
}

/// The settings a report states.
#[derive(Debug, Clone)]
pub struct Setup {
    pub size: u64,
    pub rounds: usize,
    pub machine: String,
    /// system -> why it was not measured.
    pub not_measured: BTreeMap<String, String>,
    pub wall_secs: f64,
}

fn stats_json(s: Option<Stats>, samples: Option<&Vec<f64>>) -> Value {
    match s {
        Some(s) => json!({"median": s.median, "spread_pct": s.spread_pct, "samples": samples}),
        None => Value::Null,
    }
}

pub fn to_json(results: &Results, setup: &Setup) -> Value {
    let rows = rows(results);
    let metrics: Vec<Value> = rows
        .iter()
        .map(|r| {
            let per = &results.metrics.iter().find(|(k, _)| k.name == r.metric).expect("row from metrics").1 .1;
            json!({
                "metric": r.metric,
                "unit": r.unit.name(),
                "better": if r.unit.better() == Better::Higher { "higher" } else { "lower" },
                "fsdax": stats_json(r.fsdax, per.get("fsdax")),
                "linux": stats_json(r.linux, per.get("linux")),
                "ratio": r.ratio,
                "reference": r.reference,
            })
        })
        .collect();
    let skipped: Vec<Value> =
        results.skipped.iter().map(|((b, s), why)| json!({"bench": b, "on": s, "why": why})).collect();
    json!({
        "size": setup.size,
        "rounds": setup.rounds,
        "machine": setup.machine,
        "wall_secs": setup.wall_secs,
        "systems": {
            "fsdax": {"uname": results.uname.get("fsdax"), "not_measured": setup.not_measured.get("fsdax")},
            "linux": {"uname": results.uname.get("linux"), "not_measured": setup.not_measured.get("linux")},
        },
        "ratio_means": "how much better fsdax is than Linux: fsdax/linux for rates, linux/fsdax for times and faults",
        "metrics": metrics,
        "goals": goals(results)
            .iter()
            .map(|g| json!({"metric": g.goal.metric, "goal": g.goal.what, "measured": g.measured, "verdict": g.verdict.name()}))
            .collect::<Vec<_>>(),
        "skipped": skipped,
        "raw": results.raw,
    })
}

fn cell(s: Option<Stats>, unit: Unit, not_measured: bool) -> String {
    match s {
        Some(s) => unit.format(s.median),
        None if not_measured => "not measured".into(),
        None => "–".into(),
    }
}

fn spread(s: Option<Stats>) -> String {
    s.map(|s| format!("±{:.0}%", s.spread_pct / 2.0)).unwrap_or_else(|| "–".into())
}

pub fn to_markdown(results: &Results, setup: &Setup) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# fsdax vs Linux 6.1 XFS-DAX\n");
    let _ = writeln!(
        md,
        "Same static benchmark binary (`user/c/bench.c`, `--size {} MiB`) on both systems, same QEMU machine \
         ({}), {} round(s) with the systems alternated; medians of the rounds. Ratio: how much better fsdax is \
         than Linux (fsdax/Linux for rates, Linux/fsdax for times and fault counts; > 1 means fsdax is better). \
         Spread: half the range of the rounds, relative to the median.\n",
        setup.size >> 20,
        setup.machine,
        setup.rounds
    );
    for (system, uname) in &results.uname {
        let _ = writeln!(md, "- {system}: `{uname}`");
    }
    for (system, why) in &setup.not_measured {
        let _ = writeln!(md, "- {system}: not measured: {why}");
    }
    let _ = writeln!(md, "- wall time of the run: {:.0} s\n", setup.wall_secs);
    let _ = writeln!(md, "| metric | fsdax median | Linux median | ratio | spread (fsdax / Linux) |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    let mut references = false;
    for r in rows(results) {
        let ratio = r.ratio.map(|x| format!("{x:.2}x")).unwrap_or_else(|| "–".into());
        references |= r.reference;
        let _ = writeln!(
            md,
            "| {}{} | {} | {} | {} | {} / {} |",
            r.metric,
            if r.reference { " ¹" } else { "" },
            cell(r.fsdax, r.unit, setup.not_measured.contains_key("fsdax")),
            if r.reference {
                "–".to_string()
            } else {
                cell(r.linux, r.unit, setup.not_measured.contains_key("linux"))
            },
            ratio,
            spread(r.fsdax),
            spread(r.linux)
        );
    }
    if references {
        let _ = writeln!(
            md,
            "\n¹ A raw reference of fsdax, not a file-system figure: the kernel's `bench pmem` at 2 MiB \
             (`write_nt`: a RAM buffer to pmem with non-temporal stores and a fence; `read_mc`: pmem to a RAM \
             buffer with the machine-check-safe copy), in a boot of its own after each fsdax round."
        );
    }
    let goals = goals(results);
    if !goals.is_empty() {
        let _ = writeln!(md, "\n## Goals\n");
        let _ = writeln!(md, "| metric | goal | measured | |");
        let _ = writeln!(md, "|---|---|---|---|");
        for g in &goals {
            let _ = writeln!(md, "| {} | {} | {} | {} |", g.goal.metric, g.goal.what, g.measured, g.verdict.name());
        }
    }
    if !results.skipped.is_empty() {
        let _ = writeln!(md, "\nSkipped:\n");
        for ((bench, system), why) in &results.skipped {
            let _ = writeln!(md, "- {bench} on {system}: {why}");
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(bench: &str, primary: &str, v: f64, minflt: Option<i64>) -> Value {
        let mut l = json!({"bench": bench, "system": "Linux 6.1.0", "primary": primary});
        l[primary] = json!(v);
        if let Some(f) = minflt {
            l["minflt"] = json!(f);
            l["majflt"] = json!(0);
        }
        l
    }

    #[test]
    fn medians_spreads_and_ratios() {
        assert_eq!(stats(&[3.0, 1.0, 2.0]).unwrap().median, 2.0);
        assert_eq!(stats(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert_eq!(stats(&[1.0, 3.0, 2.0]).unwrap().spread_pct, 100.0);
        assert!(stats(&[]).is_none());
        assert_eq!(speedup(Unit::OpsPerSec, 300.0, 100.0), Some(3.0));
        assert_eq!(speedup(Unit::Secs, 0.1, 1.0), Some(10.0));
        assert_eq!(speedup(Unit::Faults, 129.0, 65537.0).map(|x| x.round()), Some(508.0));
        assert_eq!(speedup(Unit::Secs, 0.0, 1.0), None);
    }

    #[test]
    fn results_group_by_metric_and_system() {
        let mut r = Results::default();
        for round in 1..=3 {
            r.add("linux", round, 0, &line("append_4k", "ops_per_s", 1000.0 * round as f64, None));
            r.add("fsdax", round, 0, &line("append_4k", "ops_per_s", 5000.0, None));
            r.add("linux", round, 1, &line("first_touch_sparse", "secs", 4.0, Some(65537)));
            r.add("linux", round, 2, &json!({"bench": "ficlone", "system": "Linux", "skipped": "FICLONE: EOPNOTSUPP"}));
        }
        let rows = rows(&r);
        let names: Vec<_> = rows.iter().map(|r| r.metric.as_str()).collect();
        assert_eq!(names, ["append_4k", "first_touch_sparse", "first_touch_sparse faults"]);
        assert_eq!(rows[0].linux.unwrap().median, 2000.0);
        assert_eq!(rows[0].ratio, Some(2.5));
        assert!(rows[1].fsdax.is_none() && rows[1].ratio.is_none());
        assert_eq!(rows[2].linux.unwrap().median, 65537.0);
        assert_eq!(r.raw.len(), 12);
        let setup = Setup {
            size: 256 << 20,
            rounds: 3,
            machine: "TCG".into(),
            not_measured: [("fsdax".to_string(), "cannot exec yet".to_string())].into(),
            wall_secs: 1.0,
        };
        let md = to_markdown(&r, &setup);
        assert!(md.contains("| append_4k | 5,000 ops/s | 2,000 ops/s | 2.50x |"), "{md}");
        assert!(md.contains("| first_touch_sparse | not measured | 4.00 s | – |"), "{md}");
        assert!(md.contains("ficlone on linux: FICLONE: EOPNOTSUPP"), "{md}");
        let j = to_json(&r, &setup);
        assert_eq!(j["metrics"][0]["ratio"], json!(2.5));
        assert_eq!(j["metrics"][1]["fsdax"], Value::Null);
        assert_eq!(j["metrics"][1]["linux"]["samples"], json!([4.0, 4.0, 4.0]));
    }

    #[test]
    fn goals_are_judged_against_linux_and_the_raw_copy() {
        let mut r = Results::default();
        for round in 1..=2 {
            r.add("fsdax", round, 0, &line("memcpy", "bytes_per_s", 1000.0, None));
            r.add_reference("fsdax", "pmem_write_2m (kernel)", 2000.0);
            r.add_reference("fsdax", "pmem_read_2m (kernel)", 1000.0);
            r.add("fsdax", round, 1, &line("overwrite_4k", "ops_per_s", 300.0, None));
            r.add("linux", round, 1, &line("overwrite_4k", "ops_per_s", 100.0, None));
            r.add("fsdax", round, 2, &line("append_4k", "ops_per_s", 400.0, None));
            r.add("linux", round, 2, &line("append_4k", "ops_per_s", 100.0, None));
            r.add("fsdax", round, 3, &line("write_2m", "bytes_per_s", 1900.0, None));
            r.add("fsdax", round, 4, &line("read_2m", "bytes_per_s", 950.0, None));
            r.add("fsdax", round, 5, &line("first_touch_sparse", "secs", 0.1, Some(129)));
        }
        let rows = rows(&r);
        let names: Vec<_> = rows.iter().map(|r| r.metric.as_str()).collect();
        assert_eq!(names[..3], ["memcpy", "pmem_write_2m (kernel)", "pmem_read_2m (kernel)"]);
        assert!(rows[1].reference && !rows[0].reference && rows[1].ratio.is_none());
        assert_eq!(rows[1].fsdax.unwrap().n, 2);
        let g = goals(&r);
        let verdict = |metric: &str, what: &str| {
            g.iter()
                .find(|g| g.goal.metric == metric && g.goal.what.contains(what))
                .map(|g| (g.verdict, g.measured.clone()))
        };
        assert_eq!(verdict("overwrite_4k", "3x"), Some((Verdict::Met, "3.00x".into())));
        assert_eq!(verdict("append_4k", "5x"), Some((Verdict::Missed, "4.00x".into())));
        // 1900 is 1.9x memcpy but 0.95x the kernel's pmem write.
        assert_eq!(
            verdict("write_2m", "raw"),
            Some((Verdict::Met, "1.90x memcpy, 0.95x pmem_write_2m (kernel)".into()))
        );
        assert_eq!(verdict("read_2m", "raw").map(|v| v.0), Some(Verdict::Met));
        assert_eq!(verdict("first_touch_sparse", "faults"), Some((Verdict::Met, "129 faults".into())));
        assert_eq!(verdict("first_touch_sparse", "10x").map(|v| v.0), Some(Verdict::NotMeasured));
        assert_eq!(verdict("create_close", "3x").map(|v| v.0), Some(Verdict::NotMeasured));
    }

    #[test]
    fn units_read_well() {
        assert_eq!(Unit::OpsPerSec.format(2611.2), "2,611 ops/s");
        assert_eq!(Unit::BytesPerSec.format(377.0 * 1048576.0), "377.0 MiB/s");
        assert_eq!(Unit::Secs.format(0.0123), "12.30 ms");
        assert_eq!(Unit::Faults.format(65537.0), "65,537");
        assert_eq!(Unit::Faults.format(0.0), "0");
        assert_eq!(group(1234567.0), "1,234,567");
        assert_eq!(thousands(-1234567.0), "-1,234,567");
    }
}
