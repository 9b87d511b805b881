//! Paths into a JSON payload, as the source mappings and token schemes write them:
//! `data.item.email`, `answers[0].text`, `answers[field.ref=email].email`,
//! `custom_attributes."Company size"`.
//!
//! A path is parsed once, when the configuration loads, so a typo stops the start with the
//! position of the mistake; reading a payload through it never fails, it only finds nothing.

use std::fmt;

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// An object's member.
    Key(String),
    /// An array's element, from 0.
    Index(usize),
    /// The first element of an array whose value at `path` equals `value` (as text), e.g.
    /// Typeform's answer whose `field.ref` is `email`; applied to an object, the object itself
    /// if it matches.
    Where { path: Vec<String>, value: String },
}

/// A parsed path; `Display` writes it back as it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    steps: Vec<Step>,
    text: String,
}

/// Why a path could not be read, with the byte position in the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position} of path {text:?}")]
pub struct PathError {
    pub text: String,
    pub position: usize,
    pub message: &'static str,
}

impl JsonPath {
    /// Parses `a.b[0].c`, `a[k.j=v].c` and `a."key with spaces".c`. The empty path is the
    /// payload itself.
    pub fn parse(text: &str) -> Result<JsonPath, PathError> {
        let error = |position, message| PathError {
            text: text.to_owned(),
            position,
            message,
        };
        let bytes = text.as_bytes();
        let mut steps = Vec::new();
        let mut at = 0;
        // Whether the next thing must be a key: at the start and after a dot.
        let mut expect_key = true;
        while at < bytes.len() {
            match bytes[at] {
                b'.' if !expect_key => {
                    at += 1;
                    expect_key = true;
                    if at == bytes.len() {
                        return Err(error(at, "a path cannot end with a dot"));
                    }
                }
                b'[' => {
                    let close = text[at..]
                        .find(']')
                        .map(|n| at + n)
                        .ok_or_else(|| error(at, "unclosed ["))?;
                    let inside = text[at + 1..close].trim();
                    steps.push(bracket(inside).ok_or_else(|| {
                        error(at, "expected [number] or [field=value] inside the brackets")
                    })?);
                    at = close + 1;
                    expect_key = false;
                }
                b'"' if expect_key => {
                    let close = text[at + 1..]
                        .find('"')
                        .map(|n| at + 1 + n)
                        .ok_or_else(|| error(at, "unclosed quote"))?;
                    steps.push(Step::Key(text[at + 1..close].to_owned()));
                    at = close + 1;
                    expect_key = false;
                }
                _ if expect_key => {
                    let end = text[at..].find(['.', '[']).map_or(bytes.len(), |n| at + n);
                    let key = &text[at..end];
                    if key.is_empty() {
                        return Err(error(at, "empty key"));
                    }
                    if key.contains(['"', ']', ' ']) {
                        return Err(error(
                            at,
                            "a key with spaces or quotes must be written in double quotes",
                        ));
                    }
                    steps.push(Step::Key(key.to_owned()));
                    at = end;
                    expect_key = false;
                }
                _ => return Err(error(at, "expected . or [ between steps")),
            }
        }
        Ok(JsonPath {
            steps,
            text: text.to_owned(),
        })
    }

    /// The value at this path, if every step finds something.
    pub fn find<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        let mut value = root;
        for step in &self.steps {
            value = match (step, value) {
                (Step::Key(key), Value::Object(map)) => map.get(key)?,
                (Step::Index(n), Value::Array(items)) => items.get(*n)?,
                (
                    Step::Where {
                        path,
                        value: wanted,
                    },
                    Value::Array(items),
                ) => items
                    .iter()
                    .find(|item| follow(item, path).and_then(text_of).as_deref() == Some(wanted))?,
                // On an object, the filter keeps it only when it matches: Intercom's
                // `data.item[type=conversation].id` is a conversation's id, never a contact's.
                (
                    Step::Where {
                        path,
                        value: wanted,
                    },
                    Value::Object(_),
                ) if follow(value, path).and_then(text_of).as_deref() == Some(wanted) => value,
                _ => return None,
            };
        }
        Some(value)
    }

    /// The text at this path: a string trimmed, a number or boolean as written, a list of
    /// those joined with ", "; nothing for an empty string, null, or an object.
    pub fn text(&self, root: &Value) -> Option<String> {
        self.find(root).and_then(text_of)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `[3]` or `[field.ref=email]` (the value may be quoted).
fn bracket(inside: &str) -> Option<Step> {
    if let Ok(n) = inside.parse::<usize>() {
        return Some(Step::Index(n));
    }
    let (path, value) = inside.split_once('=')?;
    let path: Vec<String> = path.trim().split('.').map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        return None;
    }
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Some(Step::Where {
        path,
        value: value.to_owned(),
    })
}

fn follow<'a>(value: &'a Value, keys: &[String]) -> Option<&'a Value> {
    keys.iter().try_fold(value, |v, key| v.get(key))
}

/// A value as text for a lead field; see [`JsonPath::text`].
pub fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_owned())
        }
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(scalar_text).collect();
            (!parts.is_empty()).then(|| parts.join(", "))
        }
        Value::Null | Value::Object(_) => None,
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Array(_) | Value::Object(_) => None,
        other => text_of(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(path: &str, payload: &Value) -> Option<String> {
        JsonPath::parse(path).expect("valid path").text(payload)
    }

    #[test]
    fn paths_walk_objects_arrays_and_filters() {
        let payload = json!({
            "data": {"item": {"email": " ada@acme.example ", "tags": ["a", "b"], "n": 250}},
            "answers": [
                {"field": {"ref": "company"}, "text": "Acme"},
                {"field": {"ref": "email"}, "email": "ada@acme.example"}
            ],
            "custom": {"Company size": "51-200", "a.b": true}
        });
        assert_eq!(
            text("data.item.email", &payload).as_deref(),
            Some("ada@acme.example")
        );
        assert_eq!(text("data.item.tags", &payload).as_deref(), Some("a, b"));
        assert_eq!(text("data.item.n", &payload).as_deref(), Some("250"));
        assert_eq!(text("answers[0].text", &payload).as_deref(), Some("Acme"));
        assert_eq!(
            text("answers[field.ref=email].email", &payload).as_deref(),
            Some("ada@acme.example")
        );
        assert_eq!(
            text("answers[field.ref=\"company\"].text", &payload).as_deref(),
            Some("Acme")
        );
        assert_eq!(
            text("custom.\"Company size\"", &payload).as_deref(),
            Some("51-200")
        );
        assert_eq!(text("custom.\"a.b\"", &payload).as_deref(), Some("true"));
        assert_eq!(text("data.item", &payload), None, "an object is not text");
        assert_eq!(text("answers[5].text", &payload), None);
        assert_eq!(text("data.missing.email", &payload), None);
        assert_eq!(text("data[0]", &payload), None, "an index into an object");
    }

    #[test]
    fn a_filter_on_an_object_keeps_it_only_when_it_matches() {
        let conversation = json!({"data": {"item": {"type": "conversation", "id": "2132"}}});
        let contact = json!({"data": {"item": {"type": "contact", "id": "5c95"}}});
        let path = "data.item[type=conversation].id";
        assert_eq!(text(path, &conversation).as_deref(), Some("2132"));
        assert_eq!(text(path, &contact), None);
    }

    #[test]
    fn a_bad_path_is_refused_with_its_position() {
        for (bad, position) in [
            ("a..b", 2),
            ("a.", 2),
            ("a[", 1),
            ("a[x]", 1),
            ("a b", 0),
            ("a.\"b", 2),
            ("a[0]b", 4),
        ] {
            let error = JsonPath::parse(bad).expect_err(bad);
            assert_eq!(error.position, position, "{bad}: {error}");
        }
        assert_eq!(
            JsonPath::parse("").expect("root").find(&json!(1)),
            Some(&json!(1))
        );
    }
}
