//! Numbers and byte sizes as people type and read them: one parser for the
//! kernel console, the host tool and the QEMU runner, and one formatter.
//!
//! - [`parse_u64`]: `123`, `0x1f000` (hex with `0x`), `1_000_000`.
//! - [`parse_size`]: a number with an optional binary suffix: `4k`, `256M`,
//!   `1G`, `2MiB`, `1T`, `0x200000`. Suffixes are powers of 1024 and ignore
//!   case (`4k` = `4K` = `4KiB` = 4096).
//! - [`Size`]: formats a byte count for people (`512 B`, `4 KiB`,
//!   `256 MiB`, `1.5 GiB`): the largest unit the value reaches, with one
//!   decimal unless it is exact. Honours width and alignment (`{:>9}`).

use core::fmt;

/// Why a number or size did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing to parse.
    Empty,
    /// Not a decimal or `0x` hex number.
    NotANumber,
    /// A suffix that is not K, M, G or T (optionally with `iB`).
    UnknownSuffix,
    /// The value does not fit in 64 bits.
    TooLarge,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "a number is missing",
            Self::NotANumber => "not a number (write decimal like 4096 or hex like 0x1000)",
            Self::UnknownSuffix => "unknown size suffix (use K, M, G or T, e.g. 256M)",
            Self::TooLarge => "too large for 64 bits",
        })
    }
}

/// Parses a decimal (`4096`, `1_000`) or hex (`0x1000`, `0X1F`) number.
pub fn parse_u64(s: &str) -> Result<u64, ParseError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(ParseError::Empty);
    }
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    let mut any = false;
    let mut v: u64 = 0;
    for c in digits.chars() {
        if c == '_' && any {
            continue;
        }
        let d = c.to_digit(radix).ok_or(ParseError::NotANumber)?;
        v = v.checked_mul(u64::from(radix)).and_then(|v| v.checked_add(u64::from(d))).ok_or(ParseError::TooLarge)?;
        any = true;
    }
    if !any {
        return Err(ParseError::NotANumber);
    }
    Ok(v)
}

/// Parses a size: a number ([`parse_u64`]) with an optional suffix K, M, G,
/// T or P (any case, optionally followed by `iB`), each a power of 1024:
/// every exact size [`Size`] prints below 1 EiB parses back. (No E: it is
/// a hex digit.)
pub fn parse_size(s: &str) -> Result<u64, ParseError> {
    let s = s.trim();
    let (body, had_ib) = match s.len().checked_sub(2).filter(|&k| s.is_char_boundary(k)) {
        Some(k) if s[k..].eq_ignore_ascii_case("ib") => (&s[..k], true),
        _ => (s, false),
    };
    let shift = match body.chars().last() {
        Some('k' | 'K') => 10,
        Some('m' | 'M') => 20,
        Some('g' | 'G') => 30,
        Some('t' | 'T') => 40,
        Some('p' | 'P') => 50,
        _ if had_ib => return Err(ParseError::UnknownSuffix),
        _ => 0,
    };
    // The unit letters are ASCII, so this slices at a character boundary.
    let num = if shift == 0 { body } else { &body[..body.len() - 1] };
    if shift != 0 && num.trim().is_empty() {
        return Err(ParseError::NotANumber);
    }
    match parse_u64(num) {
        Ok(v) => v.checked_mul(1 << shift).ok_or(ParseError::TooLarge),
        Err(ParseError::NotANumber) if shift == 0 => {
            // "12Q": a number followed by letters that are not a unit.
            let head = num.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            if head.len() < num.len() && parse_u64(head).is_ok() {
                Err(ParseError::UnknownSuffix)
            } else {
                Err(ParseError::NotANumber)
            }
        }
        Err(e) => Err(e),
    }
}

/// A byte count formatted for people: `512 B`, `4 KiB`, `256 MiB`,
/// `1.5 GiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Buf::default();
        let v = self.0;
        let mut unit = 0;
        while unit + 1 < UNITS.len() && v >> (10 * (unit + 1)) > 0 {
            unit += 1;
        }
        let div = 1u128 << (10 * unit);
        if u128::from(v).is_multiple_of(div) {
            fmt::write(&mut buf, format_args!("{} {}", v >> (10 * unit), UNITS[unit]))?;
        } else {
            // Tenths, rounded to nearest; 1023.96 KiB becomes 1.0 MiB.
            let mut tenths = (u128::from(v) * 10 + div / 2) / div;
            if tenths >= 10240 && unit + 1 < UNITS.len() {
                unit += 1;
                tenths = (u128::from(v) * 10 + (div << 9)) / (div << 10);
            }
            fmt::write(&mut buf, format_args!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit]))?;
        }
        f.pad(buf.as_str())
    }
}

/// A small stack buffer, so that [`Size`] can honour width and alignment
/// without allocating.
#[derive(Default)]
struct Buf {
    bytes: [u8; 32],
    len: usize,
}

impl Buf {
    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever appended, so this cannot fail.
        core::str::from_utf8(self.bytes.get(..self.len).unwrap_or(&[])).unwrap_or("")
    }
}

impl fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("123"), Ok(123));
        assert_eq!(parse_u64(" 0x1f "), Ok(0x1f));
        assert_eq!(parse_u64("0X1F000"), Ok(0x1f000));
        assert_eq!(parse_u64("1_000_000"), Ok(1_000_000));
        assert_eq!(parse_u64(&u64::MAX.to_string()), Ok(u64::MAX));
        assert_eq!(parse_u64("0xffffffffffffffff"), Ok(u64::MAX));
        assert_eq!(parse_u64("18446744073709551616"), Err(ParseError::TooLarge));
        assert_eq!(parse_u64("0x1_0000_0000_0000_0000"), Err(ParseError::TooLarge));
        assert_eq!(parse_u64(""), Err(ParseError::Empty));
        assert_eq!(parse_u64("0x"), Err(ParseError::NotANumber));
        assert_eq!(parse_u64("_1"), Err(ParseError::NotANumber));
        assert_eq!(parse_u64("12a"), Err(ParseError::NotANumber));
        assert_eq!(parse_u64("-1"), Err(ParseError::NotANumber));
        assert_eq!(parse_u64("4k"), Err(ParseError::NotANumber));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("3T"), Ok(3 << 40));
        assert_eq!(parse_size("67PiB"), Ok(67 << 50));
        assert_eq!(parse_size("0x1E"), Ok(0x1e), "E is a hex digit, not exbi");
        assert_eq!(parse_size("0x200000"), Ok(0x20_0000));
        assert_eq!(parse_size("0x1b"), Ok(0x1b), "b is a hex digit, not a suffix");
        assert_eq!(parse_size("0x10M"), Ok(16 << 20));
        assert_eq!(parse_size("12Q"), Err(ParseError::UnknownSuffix));
        assert_eq!(parse_size("12B"), Err(ParseError::UnknownSuffix));
        assert_eq!(parse_size("12iB"), Err(ParseError::UnknownSuffix));
        assert_eq!(parse_size("M"), Err(ParseError::NotANumber));
        assert_eq!(parse_size(""), Err(ParseError::Empty));
        assert_eq!(parse_size("99999999999999G"), Err(ParseError::TooLarge));
        assert_eq!(parse_size("16777216T"), Err(ParseError::TooLarge));
    }

    #[test]
    fn sizes_for_people() {
        let s = |v| format!("{}", Size(v));
        assert_eq!(s(0), "0 B");
        assert_eq!(s(512), "512 B");
        assert_eq!(s(1023), "1023 B");
        assert_eq!(s(4096), "4 KiB");
        assert_eq!(s(256 << 20), "256 MiB");
        assert_eq!(s(3 << 29), "1.5 GiB");
        assert_eq!(s((1 << 30) + 1), "1.0 GiB");
        assert_eq!(s(1536), "1.5 KiB");
        assert_eq!(s((1 << 20) - 1), "1.0 MiB");
        assert_eq!(s(u64::MAX), "16.0 EiB");
        assert_eq!(format!("[{:>9}]", Size(4096)), "[    4 KiB]");
        assert_eq!(format!("[{:<9}]", Size(4096)), "[4 KiB    ]");
    }

    proptest! {
        #[test]
        fn formatted_exact_sizes_parse_back(v in 0u64..1 << 20, unit in 0u32..5) {
            let bytes = v << (10 * unit);
            let text = format!("{}", Size(bytes));
            if !text.contains('.') {
                let compact: String = text.chars().filter(|c| *c != ' ').collect();
                let compact = compact.trim_end_matches('B').trim_end_matches('i');
                prop_assert_eq!(parse_size(compact), Ok(bytes));
            }
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,24}") {
            let _ = parse_u64(&s);
            let _ = parse_size(&s);
        }

        #[test]
        fn decimal_and_hex_agree(v: u64) {
            prop_assert_eq!(parse_u64(&v.to_string()), Ok(v));
            prop_assert_eq!(parse_u64(&format!("{v:#x}")), Ok(v));
        }
    }
}
