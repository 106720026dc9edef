// The consolidation key as it was first written (tokens, then split and joined again): the
// reference the fast `normalize` is checked against (included by `tests/consolidate.rs` and
// the unit tests of `patterns::consolidate::normalize`).

/// Lower case; placeholders and numbers one token each; other punctuation dropped.
fn reference_normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '[' | '{' | '<' => {
                if depth == 0 {
                    out.push_str(" _slot_ ");
                }
                depth += 1;
            }
            ']' | '}' | '>' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c if c.is_ascii_digit() => {
                if !out.ends_with("_num_ ") {
                    out.push_str(" _num_ ");
                }
            }
            c if c.is_alphanumeric() => out.extend(c.to_lowercase()),
            '\'' | '’' => {}
            _ => out.push(' '),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}
