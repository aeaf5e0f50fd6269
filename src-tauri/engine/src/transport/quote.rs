//! Quoting values for the POSIX shell that runs remote commands.
//!
//! Every remote command is fixed text plus values passed through [`quote`],
//! so that no value, whatever bytes it holds, can end the word it is in.

/// Returns `value` as one single-quoted shell word.
///
/// Single quotes keep every byte literal except the single quote itself,
/// which is written as `'\''`: close the quote, an escaped quote, reopen.
pub fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn plain_words_are_wrapped() {
        assert_eq!(quote("/tmp/fwu.bin"), "'/tmp/fwu.bin'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn metacharacters_stay_literal() {
        assert_eq!(quote("a'b"), "'a'\\''b'");
        assert_eq!(
            quote("$(reboot); `id` | x & y"),
            "'$(reboot); `id` | x & y'"
        );
        assert_eq!(quote("line\nbreak"), "'line\nbreak'");
    }
}
