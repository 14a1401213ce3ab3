//! Markdown escaping, shared by every Markdown report (`verify`,
//! `routability`, `table`): text from a spec (task names, prefixes) or a
//! header like `Σ|τ|` must not break the table or list it sits in.

/// Text for a Markdown table cell or list item: `|` escaped (it would end
/// the cell), backslashes escaped first (so an escape cannot be undone by
/// the text), and line breaks as `<br>` (a raw newline ends the row).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("<br>");
            }
            '\n' => out.push_str("<br>"),
            c => out.push(c),
        }
    }
    out
}

/// One table row of escaped cells.
pub fn row<S: AsRef<str>>(cells: &[S]) -> String {
    let cells: Vec<String> = cells.iter().map(|c| escape(c.as_ref())).collect();
    format!("| {} |", cells.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_backslashes_and_newlines_cannot_break_a_cell() {
        assert_eq!(escape("Σ|τ|"), "Σ\\|τ\\|");
        assert_eq!(escape("a\\|b"), "a\\\\\\|b");
        assert_eq!(escape("two\nlines\r\nthree"), "two<br>lines<br>three");
        assert_eq!(row(&["x|y", "|Δk|"]), "| x\\|y | \\|Δk\\| |");
        // Every unescaped pipe left in a row is a cell border: two cells,
        // three borders.
        let r = row(&["a|b|c", "d\ne"]);
        let borders = r
            .char_indices()
            .filter(|&(i, c)| c == '|' && (i == 0 || r.as_bytes()[i - 1] != b'\\'))
            .count();
        assert_eq!(borders, 3, "{r}");
        assert!(!r.contains('\n'));
    }
}
