//! Configuration text for tests: the shipped example, adjusted per test by edits that fail
//! loudly when the text they expect is gone.

use super::root;

/// The example configuration that `make run` uses, exactly as shipped.
pub fn shipped_example_config() -> String {
    std::fs::read_to_string(root().join("config/leadrelay.toml")).expect("example config")
}

/// The commented example block of the shipped configuration that starts at the line
/// `# <header>`, uncommented: its `[section]` headers and `key = value` lines (prose and
/// indented continuation lines left out).
pub fn commented_example(shipped: &str, header: &str) -> String {
    let start = shipped
        .find(&format!("# {header}"))
        .unwrap_or_else(|| panic!("a commented {header} example in the shipped config"));
    shipped[start..]
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| !l.starts_with(' ') && (l.starts_with('[') || l.contains(" = ")))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The example configuration as text to adjust per test, with working hours, holidays and
/// leave taken out: tests that run on the real clock must not depend on the hour they run at.
/// (Hours are covered by the routing tests, which hold the clock.)
pub fn example_config() -> String {
    shipped_example_config()
        .lines()
        .filter(|line| {
            let key = line.trim_start();
            !(key.starts_with("hours =")
                || key.starts_with("holidays =")
                || key.starts_with("out_of_office ="))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `config` with `[pipeline] retry_schedule` set to `steps` and `max_receives` to
/// `max_receives`: tests must not wait the shipped schedule's seconds and hours for a retry.
pub fn with_retry_schedule(config: &str, steps: &[&str], max_receives: u32) -> String {
    let schedule = steps
        .iter()
        .map(|step| format!("{step:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut found = (false, false);
    let text = config
        .lines()
        .map(|line| {
            if line.starts_with("retry_schedule =") {
                found.0 = true;
                format!("retry_schedule = [{schedule}]")
            } else if line.starts_with("max_receives =") {
                found.1 = true;
                format!("max_receives = {max_receives}")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        found == (true, true),
        "fixture edit: the configuration has no `retry_schedule =` or no `max_receives =` line \
         (config/leadrelay.toml changed?): update with_retry_schedule"
    );
    text
}

/// Edits of fixture text: the example configuration, a sample webhook. An edit whose text is
/// missing panics, naming it, where `str::replace` would change nothing and the test would
/// quietly test less than its name says.
pub trait Edit {
    /// Every `find` replaced by `with`; panics when there is none.
    fn edit(&self, find: &str, with: &str) -> String;
    /// The first `find` replaced by `with`; panics when there is none.
    fn edit_first(&self, find: &str, with: &str) -> String;
}

impl Edit for str {
    #[track_caller]
    fn edit(&self, find: &str, with: &str) -> String {
        assert_contains(self, find);
        self.replace(find, with)
    }

    #[track_caller]
    fn edit_first(&self, find: &str, with: &str) -> String {
        assert_contains(self, find);
        self.replacen(find, with, 1)
    }
}

#[track_caller]
fn assert_contains(text: &str, find: &str) {
    assert!(
        text.contains(find),
        "fixture edit: the text to replace, {find:?}, is not in the fixture (config/leadrelay.toml \
         or events/ changed?): update this test's edit"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_replaces_every_occurrence_and_edit_first_only_the_first() {
        assert_eq!("a = 1\na = 1\n".edit("a = 1", "a = 2"), "a = 2\na = 2\n");
        assert_eq!(
            "a = 1\na = 1\n".edit_first("a = 1", "a = 2"),
            "a = 2\na = 1\n"
        );
    }

    #[test]
    #[should_panic(expected = "the text to replace, \"capacity = 99\", is not in the fixture")]
    fn an_edit_whose_text_is_missing_panics_naming_it() {
        let _ = example_config().edit("capacity = 99", "capacity = 1");
    }

    #[test]
    #[should_panic(expected = "no `retry_schedule =` or no `max_receives =` line")]
    fn a_retry_schedule_without_its_lines_panics() {
        let _ = with_retry_schedule("[pipeline]\nbatch_size = 10\n", &["10ms"], 2);
    }
}
