//! Text helpers plugins share.

/// `text` cut to at most `max` bytes on a character boundary, with a line
/// saying how much was cut; and whether it was cut.
pub fn truncate(text: &str, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text.to_owned(), false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (
        format!(
            "{}\n[truncated: {} more bytes]",
            &text[..end],
            text.len() - end
        ),
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_says_so() {
        assert_eq!(
            truncate("héllo", 2),
            ("h\n[truncated: 5 more bytes]".to_owned(), true)
        );
        assert_eq!(truncate("short", 10), ("short".to_owned(), false));
    }
}
