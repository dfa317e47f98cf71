//! Command lines typed at a prompt (the shell, the bot, the dashboard's terminal).

/// Splits a prompt line like a shell, except that JSON (a word starting with `{` or `[`) runs to
/// the end of the line as one argument, so requests need no quoting.
pub(crate) fn words(line: &str) -> Result<Vec<String>, shell_words::ParseError> {
    let json_at = line
        .char_indices()
        .find(|&(i, c)| (c == '{' || c == '[') && (i == 0 || line[..i].ends_with(char::is_whitespace)))
        .map(|(i, _)| i);
    match json_at {
        Some(i) => {
            let mut w = shell_words::split(&line[..i])?;
            w.push(line[i..].trim_end().to_string());
            Ok(w)
        }
        None => shell_words::split(line),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_runs_to_the_end_of_the_line() {
        assert_eq!(
            super::words(r#"call svc Svc.Call {"name": "John Smith"}"#).unwrap(),
            ["call", "svc", "Svc.Call", r#"{"name": "John Smith"}"#]
        );
        assert_eq!(super::words("get service 'a b'").unwrap(), ["get", "service", "a b"]);
    }
}
