//! Number formatting and aligned text tables for `plan` and `datasheet` output.

/// Carbon with a unit that keeps the number readable: g below 1 kg, kg below 1 t, t above.
pub fn grams(g: f64) -> String {
    let a = g.abs();
    if a >= 1e6 {
        format!("{} t", sig(g / 1e6))
    } else if a >= 1e3 {
        format!("{} kg", sig(g / 1e3))
    } else {
        format!("{} g", sig(g))
    }
}

/// Four significant digits, plain notation between 1e-4 and 1e9, scientific outside.
pub fn sig(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if !(1e-4..1e9).contains(&a) {
        return format!("{v:.3e}");
    }
    let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A count with thousands separators (rounded), scientific when huge.
pub fn count(v: f64) -> String {
    if !v.is_finite() || v.abs() >= 1e15 {
        return format!("{v:.3e}");
    }
    let rounded = v.round() as i64;
    let digits = rounded.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0 { format!("-{out}") } else { out }
}

/// A duration in the largest unit that keeps it ≥ 1 (y, d, h, min, s).
pub fn duration(seconds: f64) -> String {
    const UNITS: [(&str, f64); 5] = [
        ("y", 365.0 * 86_400.0),
        ("d", 86_400.0),
        ("h", 3600.0),
        ("min", 60.0),
        ("s", 1.0),
    ];
    for (unit, size) in UNITS {
        if seconds.abs() >= size {
            return format!("{} {unit}", sig(seconds / size));
        }
    }
    format!("{} s", sig(seconds))
}

/// Columns padded to their widest cell; numeric-looking columns right-aligned.
pub fn text_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    let numeric: Vec<bool> = (0..columns)
        .map(|i| {
            i > 0
                && rows.iter().all(|r| {
                    r.get(i)
                        .and_then(|c| c.chars().next())
                        .is_some_and(|c| c.is_ascii_digit() || c == '-')
                })
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = width[i].saturating_sub(cell.chars().count());
            if i > 0 {
                out.push_str("  ");
            }
            if numeric[i] {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if i + 1 < cells.len() {
                    out.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A GitHub-flavoured Markdown table.
pub fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let escape = |s: &str| s.replace('|', "\\|");
    let mut out = format!("| {} |\n", header.join(" | "));
    out.push_str(&format!(
        "|{}\n",
        header.iter().map(|_| "---|").collect::<String>()
    ));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| escape(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_readably() {
        assert_eq!(grams(1234.5), "1.234 kg");
        assert_eq!(grams(7_372_800.0), "7.373 t");
        assert_eq!(grams(0.19968), "0.1997 g");
        assert_eq!(count(1234567.4), "1,234,567");
        assert_eq!(duration(3.0 * 365.0 * 86_400.0), "3 y");
        assert_eq!(duration(7.0 * 86_400.0), "7 d");
        assert_eq!(sig(1e-7), "1.000e-7");
    }

    #[test]
    fn aligns_columns() {
        let t = text_table(
            &["name", "g"],
            &[
                vec!["a".into(), "1".into()],
                vec!["bbb".into(), "100".into()],
            ],
        );
        assert_eq!(t, "name    g\na       1\nbbb   100\n");
    }
}
