//! The words side of `fsdax scenario`: results merged across runs, and the
//! markdown tables, one section per scenario.
//!
//! A scenario result (JSON, from `run_scenario`) has `scenario`, `what`,
//! `system`, `layout`, `ready` (the system's own description), `secs` and
//! `phases`; each phase has `command`, `ended` (`done`, `stopped on request`
//! or `problem`), `problem`, `exit`, `fsck`, `results` (the program's result
//! lines), `injections`, `dmesg` and `log`.

use std::fmt::Write as _;

use serde_json::Value;

use crate::bench::report::thousands;

/// What the report states about the run.
#[derive(Debug, Clone)]
pub struct Setup {
    pub machine: String,
    pub wall_secs: f64,
    /// The scenarios this run ran.
    pub ran: Vec<String>,
}

/// Earlier results with the fresh ones in place of those of the same
/// scenario and system, ordered by `order` (scenario names), then system.
pub fn merge(earlier: Vec<Value>, fresh: Vec<Value>, order: &[&str]) -> Vec<Value> {
    let key =
        |v: &Value| (v["scenario"].as_str().unwrap_or("").to_string(), v["system"].as_str().unwrap_or("").to_string());
    let mut all: Vec<Value> = earlier.into_iter().filter(|e| !fresh.iter().any(|f| key(f) == key(e))).collect();
    all.extend(fresh);
    all.retain(|v| order.contains(&v["scenario"].as_str().unwrap_or("")));
    all.sort_by_key(|v| {
        let (s, sys) = key(v);
        (order.iter().position(|o| *o == s).unwrap_or(usize::MAX), sys)
    });
    all
}

/// A number for people: integers grouped, others with 3 significant digits.
fn number(v: &Value) -> String {
    if let Some(i) = v.as_i64() {
        return thousands(i as f64);
    }
    let f = v.as_f64().unwrap_or(f64::NAN);
    if f == 0.0 {
        "0".into()
    } else if f.abs() >= 100.0 {
        format!("{f:.0}")
    } else if f.abs() >= 1.0 {
        format!("{f:.2}")
    } else {
        format!("{}", (f * 1e3).round() / 1e3)
    }
}

fn value(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::Bool(b) => (if *b { "yes" } else { "no" }).into(),
        Value::Number(_) => number(v),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "none".into(),
        Value::Array(a) => a.iter().map(value).collect::<Vec<_>>().join(", "),
        Value::Object(o) => o.iter().map(|(k, v)| format!("{} {}", words(k), value(v))).collect::<Vec<_>>().join(", "),
    }
}

/// `pages_intact` -> `pages intact`.
fn words(key: &str) -> String {
    key.replace('_', " ")
}

/// Time in microseconds for people.
fn micros(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

const META: &[&str] = &["scenario", "case", "proc", "checks", "system"];

/// The figures of a result line, `key value; ...`, in the program's order.
pub fn measured_cell(line: &Value) -> String {
    let Some(obj) = line.as_object() else { return "–".into() };
    if let Some(why) = obj.get("skipped").and_then(Value::as_str) {
        return format!("skipped: {why}");
    }
    let parts: Vec<String> = obj
        .iter()
        .filter(|(k, _)| !META.contains(&k.as_str()))
        .map(|(k, v)| format!("{} {}", words(k), value(v)))
        .collect();
    if parts.is_empty() {
        "–".into()
    } else {
        parts.join("; ")
    }
}

/// `all 6 hold`, or the failed checks.
pub fn checks_cell(line: &Value) -> String {
    let Some(checks) = line["checks"].as_object() else { return "–".into() };
    let failed: Vec<&str> = checks.iter().filter(|(_, v)| v.as_bool() != Some(true)).map(|(k, _)| k.as_str()).collect();
    if failed.is_empty() {
        format!("all {} hold", checks.len())
    } else {
        format!(
            "**FAILED**: {} ({} of {} hold)",
            failed.iter().map(|f| words(f)).collect::<Vec<_>>().join(", "),
            checks.len() - failed.len(),
            checks.len()
        )
    }
}

/// The signals a process got, in order of first arrival, the same ones
/// (si_code, page, si_addr, lsb) counted together: `AR page 4 lsb 12,
/// 54.1 ms (machine check to handler 180 µs)`, `BUS_ADRERR page 4 ×59, first
/// 71.8 ms`, or `none`. Times are from the poison request.
pub fn signals_cell(line: &Value) -> String {
    let Some(signals) = line["signals"].as_array() else { return "–".into() };
    if signals.is_empty() {
        return "none".into();
    }
    let mut groups: Vec<(String, &Value, usize)> = Vec::new();
    for s in signals {
        let code = s["code"].as_str().unwrap_or("?");
        let mce = code.starts_with("BUS_MCEERR_");
        let short = code.strip_prefix("BUS_MCEERR_").unwrap_or(code);
        let page = match s["page"].as_i64() {
            Some(p) => format!("page {p}"),
            None => format!("addr {} (outside the mapping)", s["addr"].as_str().unwrap_or("?")),
        };
        // si_addr of a machine-check signal names the page; of a fault, the faulting byte.
        let exact = if mce && s["addr_ok"].as_bool() != Some(true) { " (si_addr not the page start)" } else { "" };
        let lsb = if mce { s["lsb"].as_i64().map(|l| format!(" lsb {l}")).unwrap_or_default() } else { String::new() };
        let key = format!("{short} {page}{exact}{lsb}");
        match groups.iter_mut().find(|(k, _, _)| *k == key) {
            Some(g) => g.2 += 1,
            None => groups.push((key, s, 1)),
        }
    }
    let mut parts: Vec<String> = groups
        .into_iter()
        .map(|(key, first, n)| {
            let count = if n > 1 { format!(" ×{n}") } else { String::new() };
            let t = first["us"].as_f64().map(|us| format!(", {}{}", if n > 1 { "first " } else { "" }, micros(us)));
            let mc = first["mc_us"].as_f64().map(|us| format!(" (machine check to handler {})", micros(us)));
            format!("{key}{count}{}{}", t.unwrap_or_default(), mc.unwrap_or_default())
        })
        .collect();
    if let Some(missed) = line["signals_missed"].as_i64() {
        parts.push(format!("{missed} more not recorded"));
    }
    parts.join("; ")
}

/// What the process found at the poisoned pages afterwards.
pub fn poisoned_cell(line: &Value) -> String {
    let Some(pages) = line["poisoned"].as_array() else { return "–".into() };
    pages
        .iter()
        .map(|p| {
            let mut s = format!("page {}", p["page"].as_i64().unwrap_or(-1));
            if p["shared"].as_bool() == Some(false) && line["proc"] == "reader" {
                s.push_str(" (not shared: never poisoned here)");
            }
            let mut facts = Vec::new();
            if let Some(ok) = p["reads_ok_after"].as_i64() {
                let bus = p["reads_sigbus_after"].as_i64().unwrap_or(0);
                facts.push(format!("reads after the poison: {ok} ok, {bus} SIGBUS"));
            }
            if let Some(r) = p["read_at_end"].as_str() {
                facts.push(format!("read at end: {r}"));
            }
            if let Some(r) = p["pread_at_end"].as_str() {
                facts.push(format!("pread: {r}"));
            }
            if facts.is_empty() {
                s
            } else {
                format!("{s}: {}", facts.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The other pages (`63 ok`), or what the ndctl and recovery steps found.
pub fn afterwards_cell(line: &Value) -> String {
    if let Some(after) = line["after"].as_object() {
        return after.iter().map(|(k, v)| format!("{} {}", words(k), value(v))).collect::<Vec<_>>().join(", ");
    }
    let Some(n) = line["other_pages"].as_i64() else { return "–".into() };
    let map = line["other_pages_bad_through_mapping"].as_i64().unwrap_or(0);
    let pread = line["other_pages_bad_through_pread"].as_i64().unwrap_or(0);
    if map == 0 && pread == 0 {
        format!("all {n} read right")
    } else {
        format!("**{map} of {n} wrong through the mapping, {pread} through pread**")
    }
}

/// One line about a result line, for progress output.
pub fn summarize_line(v: &Value) -> String {
    let case = v["case"].as_str().unwrap_or("?");
    let who = v["proc"].as_str().map(|p| format!(" {p}")).unwrap_or_default();
    if v.get("signals").is_some() {
        format!("{case}{who}: signals {}", signals_cell(v))
    } else if v.get("checks").is_some() && v.get("reader_status").is_none() {
        format!("{case}{who}: checks {}", checks_cell(v))
    } else {
        let m = measured_cell(v);
        let m = if m.chars().count() > 110 { format!("{}…", m.chars().take(110).collect::<String>()) } else { m };
        format!("{case}{who}: {m}")
    }
}

fn is_mf_line(v: &Value) -> bool {
    v.get("signals").is_some()
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// How a scenario's boots went, in one line.
fn boots_line(r: &Value) -> String {
    let phases = r["phases"].as_array().cloned().unwrap_or_default();
    let mut parts = Vec::new();
    for (i, p) in phases.iter().enumerate() {
        let mut s = format!("boot {}: ", i + 1);
        s.push_str(match p["ended"].as_str() {
            Some("stopped on request") => "stopped by the host on the program's request (QMP quit)",
            Some("done") => "ran to the end",
            _ => "**did not finish**",
        });
        if let Some(e) = p["exit"].as_i64() {
            let _ = write!(s, ", exit {e}");
        }
        if let Some(f) = p["fsck"].as_str() {
            let _ = write!(s, ", fsck {f}");
        }
        let inj = p["injections"].as_array().map(Vec::len).unwrap_or(0);
        if inj > 0 {
            let acked = p["injections"].as_array().unwrap().iter().filter(|i| i["acked"] == true).count();
            let _ = write!(s, ", {inj} machine check(s) raised ({acked} done)");
        }
        if let Some(pr) = p["problem"].as_str() {
            let _ = write!(s, ": {}", cell(pr));
        }
        let _ = write!(s, " ({:.0} s)", p["secs"].as_f64().unwrap_or(0.0));
        parts.push(s);
    }
    let planned = r["phases_planned"].as_u64().unwrap_or(phases.len() as u64) as usize;
    if planned > phases.len() {
        parts.push(format!("{} later boot(s) not run", planned - phases.len()));
    }
    parts.join("; ")
}

/// The markdown report: one section per scenario, results of every system.
pub fn to_markdown(results: &[Value], setup: &Setup) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# DAX and memory-failure scenarios\n");
    let _ = writeln!(
        md,
        "The same static programs (`user/c/scen_dax.c`, `user/c/scen_mf.c`) on each system, in the same QEMU \
         machine ({}). Written by `./fsdax scenario`; the last run ({}) took {:.0} s.\n",
        setup.machine,
        setup.ran.join(", "),
        setup.wall_secs
    );
    let mut systems: Vec<(String, String)> = Vec::new();
    for r in results {
        let sys = r["system"].as_str().unwrap_or("?").to_string();
        if let Some(ready) = r["ready"].as_str() {
            if !systems.iter().any(|(s, _)| *s == sys) {
                systems.push((sys, ready.to_string()));
            }
        }
    }
    for (sys, ready) in &systems {
        let _ = writeln!(md, "- {sys}: {ready}");
    }
    if !systems.is_empty() {
        md.push('\n');
    }
    let mut last = String::new();
    for r in results {
        let name = r["scenario"].as_str().unwrap_or("?");
        if name != last {
            let _ = writeln!(md, "## {name}\n\n{}\n", r["what"].as_str().unwrap_or(""));
            last = name.to_string();
        }
        let sys = r["system"].as_str().unwrap_or("?");
        let layout = r["layout"].as_str().unwrap_or("default");
        let _ = writeln!(md, "{sys} ({layout} layout): {}\n", boots_line(r));
        let lines: Vec<&Value> = r["phases"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| p["results"].as_array().into_iter().flatten())
            .collect();
        if lines.is_empty() {
            continue;
        }
        if lines.iter().any(|l| is_mf_line(l)) {
            let _ = writeln!(
                md,
                "| case | process | SIGBUS (si_code, page of si_addr, si_addr_lsb, time from the request) | \
                 poisoned page(s) afterwards | other pages / later steps |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|");
            for l in &lines {
                if is_mf_line(l) {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} | {} |",
                        cell(l["case"].as_str().unwrap_or("?")),
                        cell(l["proc"].as_str().unwrap_or("–")),
                        cell(&signals_cell(l)),
                        cell(&poisoned_cell(l)),
                        cell(&afterwards_cell(l))
                    );
                } else if l.get("skipped").is_some() {
                    let _ = writeln!(
                        md,
                        "| {} | – | {} | | |",
                        cell(l["case"].as_str().unwrap_or("?")),
                        cell(&measured_cell(l))
                    );
                } else if l.get("reader_status").is_some() {
                    let status = |k: &str| match l[k].as_i64() {
                        Some(-1) | None => None,
                        Some(0) => Some("exit 0".to_string()),
                        Some(s) if s >= 128 => Some(format!("killed by signal {}", s - 128)),
                        Some(s) => Some(format!("exit {s}")),
                    };
                    let who: Vec<String> =
                        [("reader", status("reader_status")), ("poisoner", status("poisoner_status"))]
                            .into_iter()
                            .filter_map(|(n, s)| s.map(|s| format!("{n} {s}")))
                            .collect();
                    if who.iter().any(|w| !w.ends_with("exit 0")) {
                        let _ = writeln!(
                            md,
                            "| {} | – | {} | | |",
                            cell(l["case"].as_str().unwrap_or("?")),
                            who.join(", ")
                        );
                    }
                }
            }
        } else {
            let _ = writeln!(md, "| case | measured | checks |");
            let _ = writeln!(md, "|---|---|---|");
            for l in &lines {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} |",
                    cell(l["case"].as_str().unwrap_or("?")),
                    cell(&measured_cell(l)),
                    cell(&checks_cell(l))
                );
            }
        }
        md.push('\n');
    }
    md
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn poisoner_line() -> Value {
        json!({"scenario":"xfs550_ar","case":"late_1","proc":"poisoner","method":"ar","mce_kill":"late",
               "acked":[true],
               "signals":[{"code":"BUS_MCEERR_AR","si_code":4,"page":4,"addr":"0x7f0000004000","addr_ok":true,"lsb":12,"us":3150.2}],
               "poisoned":[{"page":4,"phys":"0x101234000","shared":true,"read_at_end":"ok","pread_at_end":"EIO"}],
               "other_pages":63,"other_pages_bad_through_mapping":0,"other_pages_bad_through_pread":0})
    }

    #[test]
    fn signal_and_page_cells() {
        let l = poisoner_line();
        assert_eq!(signals_cell(&l), "AR page 4 lsb 12, 3.2 ms");
        assert_eq!(poisoned_cell(&l), "page 4: read at end: ok, pread: EIO");
        assert_eq!(afterwards_cell(&l), "all 63 read right");
        let reader = json!({"case":"late_2","proc":"reader","signals":[],
            "poisoned":[{"page":4,"shared":true,"reads_ok_after":37,"reads_sigbus_after":0,"read_at_end":"ok","pread_at_end":"ok"},
                        {"page":5,"shared":false,"reads_ok_after":40,"reads_sigbus_after":0,"read_at_end":"ok","pread_at_end":"ok"}],
            "other_pages":14,"other_pages_bad_through_mapping":1,"other_pages_bad_through_pread":0});
        assert_eq!(signals_cell(&reader), "none");
        assert_eq!(
            poisoned_cell(&reader),
            "page 4: reads after the poison: 37 ok, 0 SIGBUS, read at end: ok, pread: ok; \
             page 5 (not shared: never poisoned here): reads after the poison: 40 ok, 0 SIGBUS, read at end: ok, pread: ok"
        );
        assert_eq!(afterwards_cell(&reader), "**1 of 14 wrong through the mapping, 0 through pread**");
        let odd = json!({"signals":[{"code":"BUS_ADRERR","page":null,"addr":"0x10","addr_ok":false,"lsb":0,"us":null}],
                         "signals_missed":2});
        assert_eq!(signals_cell(&odd), "BUS_ADRERR addr 0x10 (outside the mapping); 2 more not recorded");
        let many = json!({"signals":[
            {"code":"BUS_MCEERR_AO","page":4,"addr_ok":true,"lsb":12,"us":53800.0},
            {"code":"BUS_ADRERR","page":4,"addr_ok":false,"lsb":0,"us":60400.0},
            {"code":"BUS_MCEERR_AR","page":5,"addr_ok":false,"lsb":21,"us":900.0,"mc_us":180.0},
            {"code":"BUS_ADRERR","page":4,"addr_ok":false,"lsb":0,"us":71800.0}]});
        assert_eq!(
            signals_cell(&many),
            "AO page 4 lsb 12, 53.8 ms; BUS_ADRERR page 4 ×2, first 60.4 ms; \
             AR page 5 (si_addr not the page start) lsb 21, 900 µs (machine check to handler 180 µs)"
        );
        let ndctl = json!({"signals":[],"after":{"punch_hole":"ok","pwrite":"EFAULT"}});
        assert_eq!(afterwards_cell(&ndctl), "punch hole ok, pwrite EFAULT");
    }

    #[test]
    fn measured_and_checks_cells() {
        let l = json!({"scenario":"first_touch","case":"written","size":268435456,"secs":2.512,"faults":65536,
                       "phys_in_pmem":true,"phys0":null,"ratio":0.00012,"checks":{"a_b":true,"c":false}});
        assert_eq!(measured_cell(&l), "size 268,435,456; secs 2.51; faults 65,536; phys in pmem yes; phys0 –; ratio 0");
        assert_eq!(checks_cell(&l), "**FAILED**: c (1 of 2 hold)");
        assert_eq!(checks_cell(&json!({"checks":{"x":true,"y":true}})), "all 2 hold");
        assert_eq!(checks_cell(&json!({})), "–");
        assert_eq!(measured_cell(&json!({"case":"x","skipped":"FICLONE: EOPNOTSUPP"})), "skipped: FICLONE: EOPNOTSUPP");
        assert_eq!(number(&json!(0.5)), "0.5");
        assert_eq!(number(&json!(-1234567)), "-1,234,567");
        assert_eq!(micros(950.0), "950 µs");
        assert_eq!(micros(2.5e6), "2.50 s");
    }

    #[test]
    fn merge_replaces_the_same_scenario_and_system_and_keeps_order() {
        let r = |s: &str, sys: &str, n: i64| json!({"scenario": s, "system": sys, "n": n});
        let earlier = vec![r("b", "linux", 1), r("a", "linux", 1), r("gone", "linux", 1)];
        let fresh = vec![r("b", "linux", 2), r("b", "fsdax", 2)];
        let m = merge(earlier, fresh, &["a", "b"]);
        let got: Vec<(String, String, i64)> = m
            .iter()
            .map(|v| {
                (v["scenario"].as_str().unwrap().into(), v["system"].as_str().unwrap().into(), v["n"].as_i64().unwrap())
            })
            .collect();
        assert_eq!(
            got,
            [("a".into(), "linux".into(), 1), ("b".into(), "fsdax".into(), 2), ("b".into(), "linux".into(), 2)]
        );
    }

    #[test]
    fn markdown_has_a_section_and_row_per_result() {
        let result = json!({
            "scenario": "xfs550_ar", "what": "xfs/550 layout, AR", "system": "linux", "layout": "default",
            "ready": "Linux 6.1.0-57-amd64", "phases_planned": 1,
            "phases": [{"ended": "done", "exit": 0, "fsck": "clean", "secs": 40.2, "problem": null,
                        "injections": [{"acked": true}], "results": [
                poisoner_line(),
                json!({"scenario":"xfs550_ar","case":"late_1","reader_status":0,"poisoner_status":135}),
            ]}]
        });
        let dax = json!({
            "scenario": "map_sync_crash", "what": "MAP_SYNC", "system": "linux", "layout": "default", "phases_planned": 2,
            "phases": [{"ended": "stopped on request", "secs": 9.0, "results": []},
                       {"ended": "problem", "problem": "timed out | waiting", "secs": 600.0,
                        "results": [json!({"scenario":"map_sync_crash","case":"map_sync","pages_intact":8,"checks":{"survive":true}})]}]
        });
        let md = to_markdown(
            &[result, dax],
            &Setup { machine: "TCG".into(), wall_secs: 50.0, ran: vec!["xfs550_ar".into()] },
        );
        assert!(md.contains("- linux: Linux 6.1.0-57-amd64"), "{md}");
        assert!(md.contains("## xfs550_ar\n\nxfs/550 layout, AR"), "{md}");
        assert!(
            md.contains("linux (default layout): boot 1: ran to the end, exit 0, fsck clean, 1 machine check(s) raised (1 done) (40 s)"),
            "{md}"
        );
        assert!(
            md.contains("| late_1 | poisoner | AR page 4 lsb 12, 3.2 ms | page 4: read at end: ok, pread: EIO | all 63 read right |"),
            "{md}"
        );
        assert!(md.contains("| late_1 | – | reader exit 0, poisoner killed by signal 7 | | |"), "{md}");
        assert!(md.contains("boot 1: stopped by the host on the program's request (QMP quit) (9 s); boot 2: **did not finish**: timed out \\| waiting"), "{md}");
        assert!(md.contains("| map_sync | pages intact 8 | all 1 hold |"), "{md}");
    }
}
