//! Human units in the configuration file: durations such as `"10s"` and sizes
//! such as `"64KiB"`.
//!
//! Both directions live here so that `print-config` writes back exactly the
//! forms that the parser accepts.

use std::time::Duration;

/// Parses a duration written as `"10s"`, `"1m 30s"` or `"250ms"`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!("{text:?} is not a duration ({e}); write a number with a unit, such as \"10s\", \"500ms\" or \"2m\"")
    })
}

/// Formats a duration so that [`parse_duration`] reads it back unchanged.
pub(crate) fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// Binary and decimal size units, largest first so that [`format_size`] picks
/// the shortest exact form.
const SIZE_UNITS: [(&str, u64); 7] = [
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("B", 1),
];

/// Parses a size written as `"64KiB"`, `"1 MiB"`, `"16KB"` or `"512B"`.
pub(crate) fn parse_size(text: &str) -> Result<usize, String> {
    let invalid = || {
        format!(
            "{text:?} is not a size; write a whole number with a unit, such as \"512B\", \"64KiB\" or \"1MiB\" (units: B, KB, MB, GB, KiB, MiB, GiB)"
        )
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let unit = unit.trim();
    let (_, multiplier) = SIZE_UNITS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit) && (*name == unit || unit.len() > 1))
        .ok_or_else(invalid)?;
    number
        .checked_mul(*multiplier)
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(|| format!("{text:?} is too large for this machine"))
}

/// Formats a size in the largest binary unit that divides it exactly.
pub(crate) fn format_size(bytes: usize) -> String {
    let bytes = bytes as u64;
    for (name, multiplier) in SIZE_UNITS
        .iter()
        .filter(|(name, _)| name.ends_with("iB") || *name == "B")
    {
        if bytes % multiplier == 0 && bytes >= *multiplier {
            return format!("{}{name}", bytes / multiplier);
        }
    }
    "0B".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_every_unit() {
        let cases = [
            ("512B", 512),
            ("64KiB", 64 * 1024),
            ("64 KiB", 64 * 1024),
            ("1MiB", 1 << 20),
            ("16KB", 16_000),
            ("2GiB", 2 << 30),
            ("3mib", 3 << 20),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn sizes_reject_what_is_not_a_size() {
        for text in [
            "",
            "64",
            "KiB",
            "-1KiB",
            "1.5MiB",
            "10 parsecs",
            "99999999999999GiB",
        ] {
            assert!(parse_size(text).is_err(), "{text} should be rejected");
        }
    }

    #[test]
    fn sizes_round_trip_through_format() {
        for bytes in [1, 512, 1024, 64 * 1024, 1 << 20, 1_000_000, 3 << 30] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
        }
        assert_eq!(format_size(64 * 1024), "64KiB");
    }

    #[test]
    fn durations_round_trip_through_format() {
        for text in ["10s", "250ms", "1m 30s"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(parsed)), Ok(parsed));
        }
        assert!(parse_duration("ten seconds").is_err());
    }
}
