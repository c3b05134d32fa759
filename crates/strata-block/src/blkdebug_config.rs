//! blkdebug's `config` file (`read_config` → `qemu_config_parse`):
//! `[inject-error]` and `[set-state]` sections of `key = "value"` lines,
//! read into the same option lists as the driver's own
//! `inject-error.N.*` / `set-state.N.*` options.

use crate::error::{Error, Result};
use strata_graph::{OptValue, Options};

/// The errno of a read that failed without one.
const EIO: i32 = 5;

/// The rules of the config file at `path`, as lists under
/// `inject-error` and `set-state`.
pub(crate) fn read(path: &str) -> Result<Options> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::generic(format!(
            "Could not read blkdebug config file: {}",
            crate::error::strerror(e.raw_os_error().unwrap_or(EIO))
        ))
    })?;
    parse(&text)
}

/// `qemu_config_parse`'s syntax: `#` comments, `[group]` headers and
/// `name = "value"` lines.
fn parse(text: &str) -> Result<Options> {
    let mut lists: Vec<(String, Vec<OptValue>)> = vec![
        ("inject-error".to_string(), Vec::new()),
        ("set-state".to_string(), Vec::new()),
    ];
    let mut current: Option<(usize, Options)> = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(group) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            flush(&mut lists, current.take());
            let index = lists
                .iter()
                .position(|(name, _)| name == group)
                .ok_or_else(|| Error::generic(format!("There is no option group '{group}'")))?;
            current = Some((index, Options::new()));
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
            .ok_or_else(|| Error::generic(format!("parse error at line {}", number + 1)))?;
        let Some((_, rule)) = current.as_mut() else {
            return Err(Error::generic(format!(
                "no group defined at line {}",
                number + 1
            )));
        };
        rule.put(key, typed(value));
    }
    flush(&mut lists, current);
    let mut options = Options::new();
    for (name, rules) in lists {
        options.put(name, OptValue::List(rules));
    }
    Ok(options)
}

fn flush(lists: &mut [(String, Vec<OptValue>)], rule: Option<(usize, Options)>) {
    if let Some((index, rule)) = rule {
        lists[index].1.push(OptValue::Dict(rule));
    }
}

/// The rules' numbers and booleans as the typed options hold them.
fn typed(value: &str) -> OptValue {
    match value {
        "on" | "yes" | "true" => OptValue::Bool(true),
        "off" | "no" | "false" => OptValue::Bool(false),
        _ => value
            .parse::<i64>()
            .map(OptValue::Int)
            .unwrap_or_else(|_| OptValue::Str(value.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_become_rule_lists() {
        let options = parse(
            "\n[inject-error]\nstate = \"1\"\nevent = \"read_aio\"\nerrno = \"5\"\nonce = \"on\"\n\n[set-state]\nstate = \"1\"\nevent = \"read_aio\"\nnew_state = \"2\"\n",
        )
        .unwrap();
        let Some(OptValue::List(inject)) = options.get("inject-error") else {
            panic!("inject-error list")
        };
        let OptValue::Dict(rule) = &inject[0] else {
            panic!("a rule")
        };
        assert_eq!(rule.get("errno"), Some(&OptValue::Int(5)));
        assert_eq!(rule.get("once"), Some(&OptValue::Bool(true)));
        assert_eq!(rule.get_str("event"), Some("read_aio"));
        assert!(matches!(options.get("set-state"), Some(OptValue::List(l)) if l.len() == 1));
        assert!(parse("[bogus]\n").is_err());
    }
}
