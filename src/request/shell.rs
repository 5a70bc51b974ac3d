//! A `command` string → argv, with shell-words quoting rules and no shell.
//!
//! Direktiv's runners parse with go-shellwords, which silently stops at the first unquoted
//! shell operator: `touch x && cat x` runs only `touch x` and reports success. We refuse such
//! a command instead and say how to get a real shell. Nothing is expanded (`$VAR`, backticks
//! and `$(...)` stay literal): the runner never evaluates what a request sends.

/// Characters that start a shell operator when unquoted (`&&`, `||`, `|`, `;`, `>`, `>>`,
/// `<`, `&`, `2>&1`, ...).
const OPERATOR_CHARS: &[char] = &['&', '|', ';', '<', '>'];

/// Splits a command line into argv. The error is a message without a JSON path.
pub(crate) fn split(command: &str) -> Result<Vec<String>, String> {
    if let Some(operator) = unquoted_operator(command) {
        return Err(format!(
            "the shell operator '{operator}' is not quoted, and commands do not run in a shell; \
             set \"shell\": true to run it through the shell (or use bash -c '...'), \
             or quote it to pass it as an argument"
        ));
    }
    let argv = shell_words::split(command).map_err(|e| {
        format!("{e}: quotes must be balanced (use \\' or \\\" for a literal quote)")
    })?;
    match argv.first() {
        None => Err("the command is empty".into()),
        Some(program) if program.is_empty() => Err("the program name is empty".into()),
        Some(_) => Ok(argv),
    }
}

/// The first unquoted operator in `command`, read with the same quoting rules as
/// `shell_words::split` (POSIX: single quotes, double quotes with backslash escapes, backslash
/// outside quotes, `#` at the start of a word begins a comment).
fn unquoted_operator(command: &str) -> Option<String> {
    let chars: Vec<char> = command.chars().collect();
    let mut quote: Option<char> = None;
    let mut word_start = true;
    let mut word_begin = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let blank = matches!(c, ' ' | '\t' | '\n');
        if word_start && !blank {
            word_begin = i;
        }
        match quote {
            Some('\'') if c == '\'' => quote = None,
            Some('"') if c == '"' => quote = None,
            Some('"') if c == '\\' => i += 1,
            Some(_) => {}
            None if c == '\\' => i += 1,
            None if c == '\'' || c == '"' => quote = Some(c),
            None if word_start && c == '#' => return None,
            None if OPERATOR_CHARS.contains(&c) => return Some(operator_at(&chars, i, word_begin)),
            None => {}
        }
        word_start = quote.is_none() && blank;
        i += 1;
    }
    None
}

/// The operator starting at `at`, as the user would recognise it: the run of operator
/// characters, with a redirection's file-descriptor number (`2>`) and a descriptor copy's
/// target (`>&1`, `<&-`), so `2>&1` is named `2>&1`.
fn operator_at(chars: &[char], at: usize, word_begin: usize) -> String {
    let is_operator = |c: &&char| OPERATOR_CHARS.contains(c);
    let run_end = at + chars[at..].iter().take_while(is_operator).take(3).count();
    let redirection = matches!(chars[at], '<' | '>');
    let fd_before = chars[word_begin..at].iter().all(char::is_ascii_digit);
    let start = if redirection && fd_before {
        word_begin
    } else {
        at
    };
    let copies_fd = redirection && chars[run_end - 1] == '&';
    let target = chars[run_end..]
        .iter()
        .take_while(|c| copies_fd && (c.is_ascii_digit() || **c == '-'))
        .count();
    chars[start..run_end + target].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(command: &str) -> Vec<String> {
        split(command).unwrap()
    }

    #[test]
    fn splits_with_quotes_and_escapes() {
        assert_eq!(
            argv("echo 'a b' \"c d\" e\\ f"),
            ["echo", "a b", "c d", "e f"]
        );
        assert_eq!(argv("  ls\t-l\n"), ["ls", "-l"]);
    }

    #[test]
    fn expands_nothing() {
        assert_eq!(
            argv("echo $HOME ${X} `id` $(id)"),
            ["echo", "$HOME", "${X}", "`id`", "$(id)"]
        );
    }

    #[test]
    fn refuses_each_unquoted_operator_by_name() {
        for (command, operator) in [
            ("touch x && cat x", "&&"),
            ("false || true", "||"),
            ("ls | grep x", "|"),
            ("ls; ls", ";"),
            ("echo a > f", ">"),
            ("echo a >> f", ">>"),
            ("cat < f", "<"),
            ("sleep 1 &", "&"),
            ("cmd 2>&1", "2>&1"),
            ("cmd 2>/dev/null", "2>"),
            ("cmd &>/dev/null", "&>"),
            ("echo x >&2", ">&2"),
            ("cat 0<f", "0<"),
            ("a1>f", ">"),
            ("curl http://x?a=1&b=2", "&"),
            ("ls|wc", "|"),
        ] {
            let message = split(command).unwrap_err();
            assert!(
                message.contains(&format!("'{operator}'")) && message.contains("\"shell\": true"),
                "{command}: {message}"
            );
        }
    }

    #[test]
    fn accepts_quoted_and_escaped_operators() {
        assert_eq!(
            argv("bash -c 'env | grep X'"),
            ["bash", "-c", "env | grep X"]
        );
        assert_eq!(
            argv("sh -c \"a && b; c > d\""),
            ["sh", "-c", "a && b; c > d"]
        );
        assert_eq!(argv("echo \\| \\&\\& \\;"), ["echo", "|", "&&", ";"]);
        assert_eq!(argv("echo \"a\\\"|b\""), ["echo", "a\"|b"]);
        assert_eq!(argv("echo 'it''s|x'"), ["echo", "its|x"]);
    }

    #[test]
    fn a_comment_hides_operators_like_it_hides_words() {
        assert_eq!(argv("echo a #| b"), ["echo", "a"]);
        assert!(
            split("echo a#|b").is_err(),
            "# inside a word is not a comment"
        );
    }

    #[test]
    fn refuses_empty_and_unbalanced_commands() {
        assert_eq!(split("   ").unwrap_err(), "the command is empty");
        assert_eq!(
            split("# only a comment").unwrap_err(),
            "the command is empty"
        );
        assert_eq!(split("'' x").unwrap_err(), "the program name is empty");
        assert!(split("echo 'open")
            .unwrap_err()
            .contains("missing closing quote"));
    }
}
