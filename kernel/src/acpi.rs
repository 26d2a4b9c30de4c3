//! The `acpi` console command: the firmware's tables (enumerated by the
//! hal at boot), or a hex dump of one.

fsdax_hal::shell_command!(ACPI_CMD, name: "acpi", usage: "acpi [dump SIG]",
    help: "list ACPI tables, or hex-dump one (e.g. acpi dump NFIT)",
    run: |args| {
        let Some(acpi) = fsdax_hal::acpi::get() else {
            crate::kprintln!("no ACPI tables (the bootloader found no RSDP, or the tables were unreadable)");
            return;
        };
        match args {
            ["dump", sig] if sig.len() == 4 => {
                let mut s = [0u8; 4];
                s.copy_from_slice(sig.as_bytes());
                match fsdax_hal::acpi::table_bytes(&s) {
                    Some(bytes) => {
                        crate::kprintln!("{sig}: {} bytes", bytes.len());
                        crate::shell::hexdump(0, bytes, 4, false);
                    }
                    None => crate::kprintln!("no {sig} table (`acpi` lists them)"),
                }
            }
            [] => {
                crate::kprintln!("ACPI revision {}", acpi.revision);
                for t in &acpi.tables {
                    crate::kprintln!("  {}  at {:#x}, {} bytes", t.name(), t.phys, t.len);
                }
            }
            _ => crate::kprintln!("usage: acpi [dump SIG] (SIG is four letters, e.g. NFIT)"),
        }
    }
);
