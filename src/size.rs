//! The one grammar for every size the runner reads — `limits.memory`, `limits.file_size`,
//! `CMD_LIMIT_MEMORY`, `CMD_LIMIT_FILE_SIZE`, `CMD_MAX_OUTPUT`, `CMD_MAX_BODY` — so a value
//! means the same wherever it is written: Kubernetes quantities, which a Direktiv user already
//! writes for the pod's own resources.
//!
//! Whole bytes (`1048576`), or a number (fractions allowed) with a binary suffix `Ki Mi Gi Ti
//! Pi Ei` (powers of 1024; `KiB`, `MiB`, ... mean the same) or a decimal one `k M G T P E`
//! (powers of 1000). Fractional bytes round up, as Kubernetes does. `KB`, `MB`, `GB` (and `K`)
//! are refused: half the world reads them in powers of 1024, the other half in powers of 1000,
//! and a limit read the other way is off by 5 to 10 per cent; the message shows both readings.
//! `m` is refused too: in Kubernetes it means thousandths (`256m` of memory is 0.256 bytes).

/// Bytes in `text`, or why it is not a size (the message quotes `text` and, for an ambiguous
/// unit, says what to write instead).
pub fn parse(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, suffix) = trimmed.split_at(split);
    let malformed = || {
        format!("\"{text}\" is not a size; use bytes or a value like \"256Mi\", \"1Gi\", \"500M\"")
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') || fraction.len() > 18 {
        return Err(malformed());
    }
    let multiplier =
        multiplier(suffix.trim_start()).map_err(|problem| problem.message(text, number.trim()))?;
    let whole: u128 = match whole {
        "" => 0,
        digits => digits.parse().map_err(|_| malformed())?,
    };
    let fraction_value: u128 = match fraction {
        "" => 0,
        digits => digits.parse().map_err(|_| malformed())?,
    };
    let scale = 10u128.pow(fraction.len() as u32);
    whole
        .checked_mul(multiplier)
        .and_then(|bytes| bytes.checked_add((fraction_value * multiplier).div_ceil(scale)))
        .and_then(|bytes| u64::try_from(bytes).ok())
        .filter(|bytes| *bytes < u64::MAX)
        .ok_or_else(|| format!("\"{text}\" is too large"))
}

/// `parse` for a size the runner holds in memory (`CMD_MAX_OUTPUT`, `CMD_MAX_BODY`).
pub fn parse_usize(text: &str) -> Result<usize, String> {
    let bytes = parse(text)?;
    usize::try_from(bytes).map_err(|_| format!("\"{text}\" is too large"))
}

/// Bytes in the largest binary unit that divides them (`256Mi`), else as bytes: how the
/// runner writes a size back (start-up line, error messages), in the grammar it reads.
pub fn format(bytes: u64) -> String {
    for (shift, unit) in [
        (60, "Ei"),
        (50, "Pi"),
        (40, "Ti"),
        (30, "Gi"),
        (20, "Mi"),
        (10, "Ki"),
    ] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Why a suffix is refused.
enum Refused {
    /// Read in powers of 1024 or of 1000 depending on who wrote it: the binary suffix and the
    /// decimal one that would say each.
    Ambiguous {
        binary: &'static str,
        decimal: &'static str,
    },
    /// `m`: thousandths in Kubernetes quantities.
    Thousandths,
    Unknown,
}

const UNITS: &str =
    "use bytes or a unit: Ki, Mi, Gi, Ti (powers of 1024) or k, M, G, T (powers of 1000)";

impl Refused {
    /// The message for `text`, whose number part is `number`.
    fn message(&self, text: &str, number: &str) -> String {
        let both = |binary: &str, decimal: &str| {
            let reading = |unit: &str| {
                parse(&format!("{number}{unit}")).map_or_else(|_| "?".to_owned(), |b| b.to_string())
            };
            format!(
                "write {number}{binary} for {} bytes or {number}{decimal} for {}",
                reading(binary),
                reading(decimal)
            )
        };
        match self {
            Refused::Ambiguous { binary, decimal } => {
                let suffix = &text.trim()[number.len()..];
                format!(
                    "\"{text}\": the unit '{}' is ambiguous; {}",
                    suffix.trim(),
                    both(binary, decimal)
                )
            }
            Refused::Thousandths => format!(
                "\"{text}\": 'm' means thousandths in Kubernetes quantities; {}",
                both("Mi", "M")
            ),
            Refused::Unknown => {
                let suffix = text.trim()[number.len()..].trim();
                format!("\"{text}\": unknown unit '{suffix}'; {UNITS}")
            }
        }
    }
}

/// The factor of a quantity suffix.
fn multiplier(suffix: &str) -> Result<u128, Refused> {
    let binary = |power: u32| Ok(1u128 << (10 * power));
    let decimal = |power: u32| Ok(10u128.pow(3 * power));
    let ambiguous = |binary, decimal| Err(Refused::Ambiguous { binary, decimal });
    match suffix {
        "" => Ok(1),
        "Ki" | "KiB" => binary(1),
        "Mi" | "MiB" => binary(2),
        "Gi" | "GiB" => binary(3),
        "Ti" | "TiB" => binary(4),
        "Pi" | "PiB" => binary(5),
        "Ei" | "EiB" => binary(6),
        "k" => decimal(1),
        "M" => decimal(2),
        "G" => decimal(3),
        "T" => decimal(4),
        "P" => decimal(5),
        "E" => decimal(6),
        "m" => Err(Refused::Thousandths),
        "K" | "KB" | "kB" | "kb" | "Kb" => ambiguous("Ki", "k"),
        "MB" | "mb" | "Mb" | "mB" => ambiguous("Mi", "M"),
        "GB" | "gb" | "Gb" | "gB" => ambiguous("Gi", "G"),
        "TB" | "tb" | "Tb" | "tB" => ambiguous("Ti", "T"),
        _ => Err(Refused::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_kubernetes_quantities() {
        assert_eq!(parse("1024"), Ok(1024));
        assert_eq!(parse("64Ki"), Ok(64 << 10));
        assert_eq!(parse("256Mi"), Ok(256 << 20));
        assert_eq!(parse("1Gi"), Ok(1 << 30));
        assert_eq!(parse("2Ti"), Ok(2 << 40));
        assert_eq!(parse("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse("500M"), Ok(500_000_000));
        assert_eq!(parse("1G"), Ok(1_000_000_000));
        assert_eq!(parse("2k"), Ok(2000));
        assert_eq!(parse("3T"), Ok(3_000_000_000_000));
        assert_eq!(parse(" 1 Gi "), Ok(1 << 30));
        // Fractional bytes round up.
        assert_eq!(parse("0.5"), Ok(1));
        assert_eq!(parse("1.0001k"), Ok(1001));
    }

    #[test]
    fn kib_mib_gib_are_the_binary_units() {
        assert_eq!(parse("512KiB"), Ok(512 << 10));
        assert_eq!(parse("256MiB"), Ok(256 << 20));
        assert_eq!(parse("32 MiB"), Ok(32 << 20));
        assert_eq!(parse("1GiB"), Ok(1 << 30));
        assert_eq!(parse("1TiB"), Ok(1 << 40));
    }

    #[test]
    fn mb_gb_kb_are_refused_with_both_readings() {
        assert_eq!(
            parse("256MB"),
            Err(
                "\"256MB\": the unit 'MB' is ambiguous; write 256Mi for 268435456 bytes or \
                 256M for 256000000"
                    .to_owned()
            )
        );
        assert!(parse("2GB")
            .unwrap_err()
            .contains("write 2Gi for 2147483648 bytes or 2G for 2000000000"));
        assert!(parse("4KB")
            .unwrap_err()
            .contains("write 4Ki for 4096 bytes or 4k for 4000"));
        assert!(parse("1K").unwrap_err().contains("ambiguous"));
        assert!(parse("1.5 gb")
            .unwrap_err()
            .contains("write 1.5Gi for 1610612736 bytes or 1.5G for 1500000000"));
        assert!(parse("256m")
            .unwrap_err()
            .contains("thousandths in Kubernetes quantities; write 256Mi for 268435456 bytes"));
    }

    #[test]
    fn malformed_or_too_large_values_are_refused() {
        assert!(parse("3 parsecs")
            .unwrap_err()
            .contains("unknown unit 'parsecs'"));
        for bad in ["", "Mi", ".", "1..2", "1.2.3Mi", "-1Mi", "lots", "0x10"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse("16Ei").unwrap_err().contains("too large"));
        assert!(parse("99999999999999999999999").is_err());
        assert_eq!(parse_usize("32MiB"), Ok(32 << 20));
    }

    #[test]
    fn formatted_in_the_largest_binary_unit_that_divides() {
        assert_eq!(format(256 << 20), "256Mi");
        assert_eq!(format(1 << 30), "1Gi");
        assert_eq!(format(1536), "1536");
        assert_eq!(format(3 << 10), "3Ki");
        assert_eq!(format(0), "0");
        for bytes in [1u64, 4096, 1 << 20, 3 << 40, 1_000_000] {
            assert_eq!(parse(&format(bytes)), Ok(bytes));
        }
    }
}
