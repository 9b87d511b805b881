//! Where a key is written. The configuration text is parsed once more into toml's spanned
//! document, so that every error names the line of its own key (not its table's header) and
//! errors from deserialisation name the full key path, as the validator's do.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Key(String),
    Index(usize),
}

/// Arrays of tables whose elements the validator names by a field, as in `reps[2] ("bruno")`.
const LABELS: [(&str, &str); 4] = [
    ("teams", "id"),
    ("reps", "id"),
    ("pools", "id"),
    ("rules", "name"),
];

/// The spanned configuration document.
pub(super) struct Document<'i> {
    root: Spanned<DeValue<'i>>,
}

impl<'i> Document<'i> {
    pub(super) fn new(table: Spanned<DeTable<'i>>) -> Self {
        let span = table.span();
        Document {
            root: Spanned::new(span, DeValue::Table(table.into_inner())),
        }
    }

    /// Parses what it can of a document with syntax errors (for naming the key of the first).
    pub(super) fn recover(text: &'i str) -> (Self, Vec<toml::de::Error>) {
        let (table, errors) = DeTable::parse_recoverable(text);
        (Document::new(table), errors)
    }

    /// The span of the key `path` names (`reps[2] ("bruno").capacity`, `sources[0].secrets[1]`)
    /// or, when it is not written, of its deepest ancestor that is; `None` when not even the
    /// first step is written. For an array element, the element's own span.
    pub(super) fn locate(&self, path: &str) -> Option<Range<usize>> {
        let mut node = &self.root;
        let mut found = None;
        for step in steps(path) {
            match (&step, node.get_ref()) {
                (Step::Key(name), DeValue::Table(table)) => {
                    let Some((key, value)) =
                        table.iter().find(|(key, _)| key.get_ref().as_ref() == name)
                    else {
                        break;
                    };
                    found = Some(key.span());
                    node = value;
                }
                (Step::Index(index), DeValue::Array(array)) => {
                    let Some(value) = array.get(*index) else {
                        break;
                    };
                    found = Some(value.span());
                    node = value;
                }
                _ => break,
            }
        }
        found
    }

    /// Whether the key `path` names is written.
    pub(super) fn is_written(&self, path: &str) -> bool {
        self.depth(path) == steps(path).len()
    }

    /// How many steps of `path` are written.
    fn depth(&self, path: &str) -> usize {
        let mut node = &self.root;
        let mut depth = 0;
        for step in steps(path) {
            let next = match (&step, node.get_ref()) {
                (Step::Key(name), DeValue::Table(table)) => table
                    .iter()
                    .find(|(key, _)| key.get_ref().as_ref() == name)
                    .map(|(_, value)| value),
                (Step::Index(index), DeValue::Array(array)) => array.get(*index),
                _ => None,
            };
            match next {
                Some(next) => {
                    node = next;
                    depth += 1;
                }
                None => break,
            }
        }
        depth
    }

    /// The deepest key or value written at `offset`, as key-path steps.
    pub(super) fn steps_at(&self, offset: usize) -> Option<Vec<Step>> {
        let mut path = Vec::new();
        search(&self.root, offset, &mut path).then_some(path)
    }

    /// Writes `steps` as the validator does: `reps[2] ("bruno").capacity`.
    pub(super) fn render(&self, steps: &[Step]) -> String {
        let mut out = String::new();
        let mut node = Some(&self.root);
        for (n, step) in steps.iter().enumerate() {
            match step {
                Step::Key(name) => {
                    if n > 0 {
                        out.push('.');
                    }
                    out.push_str(name);
                    node = node.and_then(|v| v.get_ref().get(name.as_str()));
                }
                Step::Index(index) => {
                    out.push_str(&format!("[{index}]"));
                    node = node.and_then(|v| v.get_ref().get(*index));
                    let label = match (n, steps.first()) {
                        (1, Some(Step::Key(array))) => LABELS
                            .iter()
                            .find(|(name, _)| name == array)
                            .and_then(|(_, field)| node?.get_ref().get(*field)?.get_ref().as_str()),
                        _ => None,
                    };
                    if let Some(label) = label {
                        out.push_str(&format!(" ({label:?})"));
                    }
                }
            }
        }
        out
    }
}

/// Depth first, children before their parent, so the deepest match wins. Array-of-tables
/// elements span only their header, so every child is searched whatever its parent's span.
fn search(node: &Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<Step>) -> bool {
    let within = |span: Range<usize>| span.contains(&offset) || span == (offset..offset);
    match node.get_ref() {
        DeValue::Table(table) => {
            for (key, value) in table.iter() {
                path.push(Step::Key(key.get_ref().to_string()));
                if search(value, offset, path) || within(key.span()) || within(value.span()) {
                    return true;
                }
                path.pop();
            }
            false
        }
        DeValue::Array(array) => {
            for (index, value) in array.iter().enumerate() {
                path.push(Step::Index(index));
                if search(value, offset, path) || within(value.span()) {
                    return true;
                }
                path.pop();
            }
            false
        }
        _ => false,
    }
}

/// Splits a key path as the validator writes them: `a.b[2] ("label").c`. The label is skipped.
pub(super) fn steps(path: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut name = String::new();
    let mut chars = path.chars().peekable();
    let flush = |name: &mut String, steps: &mut Vec<Step>| {
        if !name.is_empty() {
            steps.push(Step::Key(std::mem::take(name)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '.' => flush(&mut name, &mut steps),
            '[' => {
                flush(&mut name, &mut steps);
                let inner: String = chars.by_ref().take_while(|c| *c != ']').collect();
                match inner.parse() {
                    Ok(index) => steps.push(Step::Index(index)),
                    Err(_) => return steps,
                }
            }
            ' ' if chars.peek() == Some(&'(') => {
                flush(&mut name, &mut steps);
                // A Debug-quoted label: skip to the `)` outside the quotes.
                let (mut quoted, mut escaped) = (false, false);
                for c in chars.by_ref().skip(1) {
                    match c {
                        _ if escaped => escaped = false,
                        '\\' if quoted => escaped = true,
                        '"' => quoted = !quoted,
                        ')' if !quoted => break,
                        _ => {}
                    }
                }
            }
            _ => name.push(c),
        }
    }
    flush(&mut name, &mut steps);
    steps
}

/// The key a syntax error's line holds, read from the text when the parser could not place it:
/// the enclosing `[table]` or `[[array]]` (with its index) and the key before `=`, or the
/// header itself when the error is on one.
pub(super) fn steps_on_line(text: &str, line: usize) -> Vec<Step> {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line.saturating_sub(1)).map_or("", |l| l.trim());
    let header = |l: &str| -> Option<(bool, String)> {
        let l = l.split('#').next().unwrap_or("").trim();
        let array = l.starts_with("[[");
        l.starts_with('[')
            .then(|| (array, l.trim_matches(['[', ']', ' ']).to_owned()))
    };
    let dotted = |name: &str| -> Vec<Step> {
        name.split('.')
            .map(|part| Step::Key(part.trim().trim_matches('"').to_owned()))
            .filter(|step| *step != Step::Key(String::new()))
            .collect()
    };
    if let Some((_, name)) = header(here) {
        return dotted(&name);
    }
    let mut steps = Vec::new();
    let before = &lines[..line.saturating_sub(1).min(lines.len())];
    if let Some((at, (array, name))) = before
        .iter()
        .enumerate()
        .rev()
        .find_map(|(at, l)| header(l).map(|h| (at, h)))
    {
        steps = dotted(&name);
        if array {
            let earlier = before[..at]
                .iter()
                .filter(|l| header(l).is_some_and(|(a, n)| a && n == name))
                .count();
            steps.push(Step::Index(earlier));
        }
    }
    let key = here.split('=').next().unwrap_or(here);
    steps.extend(dotted(key));
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_steps_and_labels_are_skipped() {
        assert_eq!(
            steps(r#"rules[3] ("a.b \"(x)\"").when.any[0].topics"#),
            vec![
                Step::Key("rules".into()),
                Step::Index(3),
                Step::Key("when".into()),
                Step::Key("any".into()),
                Step::Index(0),
                Step::Key("topics".into()),
            ]
        );
        assert_eq!(steps("pipeline"), vec![Step::Key("pipeline".into())]);
    }

    #[test]
    fn keys_are_located_at_their_own_line() {
        let text = "[pipeline]\nmax_receives = 5\n\n[[reps]]\nid = \"a\"\n\n[[reps]]\nid = \"b\"\n\
                    capacity = 3\nwhen.any = [{ topics = [\"x\"] }]\n";
        let document = Document::new(DeTable::parse(text).expect("valid"));
        let line = |path: &str| {
            document
                .locate(path)
                .map(|span| text[..span.start].matches('\n').count() + 1)
        };
        assert_eq!(line("pipeline.max_receives"), Some(2));
        assert_eq!(line("reps[1] (\"b\").capacity"), Some(9));
        assert_eq!(line("reps[1].when.any[0].topics"), Some(10));
        // Not written: the deepest ancestor that is.
        assert_eq!(line("reps[1].backup"), Some(7));
        assert_eq!(line("notify.email"), None);
        assert!(document.is_written("reps[1].capacity"));
        assert!(!document.is_written("reps[1].backup"));
        assert!(!document.is_written("reps[0].capacity"));

        let at = text.find("3\n").expect("capacity");
        let steps = document.steps_at(at).expect("written there");
        assert_eq!(document.render(&steps), "reps[1] (\"b\").capacity");
    }

    #[test]
    fn a_line_the_parser_could_not_place_is_named_from_the_text() {
        let text = "[a]\nx = 1\n\n[[reps]]\nid = 1\n\n[[reps]]\nid = 2\nid = 3\n[routing\n";
        let named = |line| {
            steps_on_line(text, line)
                .iter()
                .map(|s| match s {
                    Step::Key(k) => k.clone(),
                    Step::Index(i) => format!("[{i}]"),
                })
                .collect::<Vec<_>>()
                .join(".")
        };
        assert_eq!(named(2), "a.x");
        assert_eq!(named(9), "reps.[1].id");
        assert_eq!(named(10), "routing");
    }
}
