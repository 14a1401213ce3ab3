//! Property 5: the spec parser never panics, and every rejection names
//! what is wrong.

use crate::common::*;

/// Fragments that steer random edits towards every validation rule.
pub(crate) const SNIPPETS: [&str; 18] = [
    "{key}",
    "{value}",
    "{country}",
    "\"",
    "[[task]]\n",
    "name = \"t0\"\n",
    "templates = []\n",
    "pairs = []\n",
    "<eos>",
    ",",
    "]",
    "[",
    "\n",
    " ",
    "is",
    "\"\"",
    "weight = 3\n",
    "[\"a\", \"b\", \"c\"]",
];

#[derive(Debug, Clone)]
pub(crate) enum Edit {
    Delete(prop::sample::Index, usize),
    Insert(prop::sample::Index, usize),
}

pub(crate) fn edited(text: &str, edits: &[Edit]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for e in edits {
        match e {
            Edit::Delete(at, len) => {
                let at = at.index(bytes.len() + 1);
                let end = (at + len).min(bytes.len());
                bytes.drain(at..end);
            }
            Edit::Insert(at, s) => {
                let at = at.index(bytes.len() + 1);
                let snippet = SNIPPETS[s % SNIPPETS.len()].as_bytes();
                bytes.splice(at..at, snippet.iter().copied());
            }
        }
    }
    bytes
}

pub(crate) fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        prop_oneof![
            (any::<prop::sample::Index>(), 1usize..12).prop_map(|(a, l)| Edit::Delete(a, l)),
            (any::<prop::sample::Index>(), 0usize..SNIPPETS.len())
                .prop_map(|(a, s)| Edit::Insert(a, s)),
        ],
        1..4,
    )
}

/// The spec as JSON in the documented shape.
pub(crate) fn json(spec: &Spec) -> String {
    let tasks: Vec<serde_json::Value> = spec
        .tasks
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name,
                "templates": t.templates.iter().map(|x| x.text.clone()).collect::<Vec<_>>(),
                "pairs": t.pairs.iter().map(|p| vec![p.key.clone(), p.value.clone()]).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({ "task": tasks })).unwrap()
}

/// Parse; a rejection must be one line naming the file, a line within the
/// file, the task, and a specific reason; an acceptance must satisfy every
/// rule of the spec format (checked here independently of the validator).
pub(crate) fn parser_is_total(bytes: &[u8], json: bool) -> Result<(), TestCaseError> {
    let file = if json { "fuzz.json" } else { "fuzz.toml" };
    match spec::parse_bytes(file, bytes, json) {
        Err(e) => {
            let message = e.to_string();
            prop_assert!(!message.contains('\n'), "two lines: {:?}", message);
            prop_assert!(message.starts_with(file), "{}", message);
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
            if let Some(line) = e.line {
                prop_assert!(
                    (1..=lines).contains(&line),
                    "line {} of {}: {}",
                    line,
                    lines,
                    message
                );
                prop_assert!(
                    message.starts_with(&format!("{file}:{line}: ")),
                    "{}",
                    message
                );
            }
            if let Some(task) = &e.task {
                prop_assert!(message.contains(&format!("task '{task}'")), "{}", message);
            }
            let reason = e.kind.to_string();
            prop_assert!(reason.trim().len() >= 8, "vague reason: {:?}", message);
            prop_assert!(message.ends_with(&reason), "{}", message);
            if let spec::SpecErrorKind::Syntax(m) = &*e.kind {
                prop_assert!(!m.trim().is_empty(), "empty syntax message");
            }
        }
        Ok(s) => {
            prop_assert!(!s.tasks.is_empty());
            let mut names = BTreeSet::new();
            let mut words = BTreeSet::new();
            let mut entities = BTreeSet::new();
            for t in &s.tasks {
                prop_assert!(!t.name.trim().is_empty() && names.insert(t.name.clone()));
                prop_assert!(!t.templates.is_empty() && !t.pairs.is_empty(), "{}", t.name);
                for x in &t.templates {
                    let key = x.slots.iter().position(|s| *s == SlotSpec::Key);
                    let value = x.slots.iter().position(|s| *s == SlotSpec::Value);
                    prop_assert!(
                        key.is_some() && value.is_some() && key < value,
                        "{}",
                        x.text
                    );
                    prop_assert_eq!(
                        x.slots
                            .iter()
                            .filter(|s| matches!(s, SlotSpec::Key | SlotSpec::Value))
                            .count(),
                        2
                    );
                    for slot in &x.slots {
                        if let SlotSpec::Word(w) = slot {
                            prop_assert!(!w.contains(['{', '}']) && w != "<eos>", "{}", w);
                            words.insert(w.clone());
                        }
                    }
                }
                for p in &t.pairs {
                    for e in [&p.key, &p.value] {
                        prop_assert!(!e.is_empty() && e.trim() == e && e != "<eos>", "{:?}", e);
                        entities.insert(e.clone());
                    }
                }
            }
            prop_assert!(words.is_disjoint(&entities), "a word is also an entity");
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub(crate) enum Input {
    Bytes(Vec<u8>, bool),
    Text(String, bool),
    Edited(GenSet, Vec<Edit>, bool),
}

pub(crate) fn inputs() -> impl Strategy<Value = Input> {
    prop_oneof![
        (prop::collection::vec(any::<u8>(), 0..200), any::<bool>())
            .prop_map(|(b, j)| Input::Bytes(b, j)),
        ("[\\[\\]{}\"a-z=,\n #<>0-9]{0,160}", any::<bool>()).prop_map(|(s, j)| Input::Text(s, j)),
        (strategy::sized_task_set(1, 0), edits(), any::<bool>())
            .prop_map(|(g, e, j)| Input::Edited(g, e, j)),
    ]
}

#[test]
fn property5_parser_never_panics_and_names_what_is_wrong() {
    check("5 (parser)", inputs(), |input| match input {
        Input::Bytes(b, json) => parser_is_total(&b, json),
        Input::Text(s, json) => parser_is_total(s.as_bytes(), json),
        Input::Edited(set, e, is_json) => {
            let spec = set.spec();
            let text = if is_json { json(&spec) } else { spec.to_toml() };
            parser_is_total(&edited(&text, &e), is_json)
        }
    });
}
