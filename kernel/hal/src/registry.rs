//! Linker-section registries: items declared anywhere in the kernel, found
//! at run time.
//!
//! A registered item is a `static` placed in a named linker section; the
//! linker defines `__start_NAME` and `__stop_NAME` around each section
//! (kept with `-z nostart-stop-gc`, see `x86_64-fsdax.json`), and the one
//! generic reader here, [`linker_set!`], turns the two bounds into a slice.
//! Sections in use:
//!
//! | section       | item                              | declared by |
//! |---------------|-----------------------------------|-------------|
//! | `ktests`      | [`fsdax_ktest::KTest`]            | `fsdax_ktest::ktest!` |
//! | `kshell`      | [`ShellCommand`]                  | [`shell_command!`] |
//! | `mc_extable`  | [`crate::copy`]'s machine-check-safe instructions | `global_asm!` in `copy` |
//! | `uaccess_extable` | [`crate::uaccess`]'s user-copy instructions | `global_asm!` in `uaccess` |
//!
//! The declaring macros expand to a `#[link_section]` attribute, which the
//! `unsafe_code` lint counts as unsafe (a wrong section would be read as the
//! wrong type); each expansion carries a narrowly scoped
//! `#[allow(unsafe_code)]` on that one static. Reading is sound because each
//! section only ever holds statics of its one type, placed by its one macro.

/// Defines `fn $name() -> &'static [$ty]` over the linker section whose
/// bounds are `$start`/`$stop`.
///
/// The caller promises that only `$ty` items are placed in that section
/// (each section has exactly one declaring macro or assembly block).
macro_rules! linker_set {
    ($(#[$m:meta])* $vis:vis fn $name:ident() -> [$ty:ty], $start:literal, $stop:literal) => {
        $(#[$m])*
        $vis fn $name() -> &'static [$ty] {
            // Linker-defined symbols: only their addresses are taken, never
            // their values, so the type's FFI layout does not matter.
            #[allow(improper_ctypes)]
            extern "C" {
                #[link_name = $start]
                static START: $ty;
                #[link_name = $stop]
                static STOP: $ty;
            }
            let start = core::ptr::addr_of!(START);
            let stop = core::ptr::addr_of!(STOP);
            let len = (stop as usize - start as usize) / core::mem::size_of::<$ty>();
            // SAFETY: the linker places the section's contents between the
            // two symbols; the section only holds `$ty` statics (this
            // macro's contract), which the linker lays out contiguously like
            // an array (same type, so same size and alignment), and they
            // live, unchanged, for the whole run.
            unsafe { core::slice::from_raw_parts(start, len) }
        }
    };
}

/// A console command: registered beside the code it belongs to with
/// [`shell_command!`], run by the kernel's shell.
#[derive(Debug)]
pub struct ShellCommand {
    /// The first word of the command line.
    pub name: &'static str,
    /// One line of usage.
    pub usage: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Runs the command with the remaining words.
    pub run: fn(&[&str]),
}

/// Registers a console command.
#[macro_export]
macro_rules! shell_command {
    ($id:ident, name: $name:expr, usage: $usage:expr, help: $help:expr, run: $run:expr $(,)?) => {
        // `link_section` counts as unsafe code: this static is a
        // `ShellCommand`, and `kshell` holds only those.
        #[allow(unsafe_code)]
        #[used]
        #[link_section = "kshell"]
        static $id: $crate::registry::ShellCommand =
            $crate::registry::ShellCommand { name: $name, usage: $usage, help: $help, run: $run };
    };
}

linker_set!(
    /// Every registered console command, in link order.
    pub fn shell_commands() -> [ShellCommand], "__start_kshell", "__stop_kshell"
);

linker_set!(
    /// Every registered kernel test, in link order.
    pub fn ktests() -> [fsdax_ktest::KTest], "__start_ktests", "__stop_ktests"
);
