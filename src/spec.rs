//! Stage 1: parse and validate a task specification (TOML, or JSON).
//!
//! A spec lists knowledge tasks, each with templates ("{key} is in {value}")
//! and key–value pairs. Everything a later stage relies on is checked here,
//! and every rejection names the file, the task and the offending line.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

/// The end-of-sentence token; reserved, so no word or entity may be spelled so.
pub const EOS: &str = "<eos>";
/// The wildcard ⋆1 in template text.
pub const KEY: &str = "{key}";
/// The wildcard ⋆2 in template text.
pub const VALUE: &str = "{value}";

/// A validated specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The file it came from, as given (for messages).
    pub file: String,
    pub tasks: Vec<TaskSpec>,
}

/// One knowledge task k = (Δk, T(k)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    pub name: String,
    pub line: Option<usize>,
    pub templates: Vec<TemplateSpec>,
    pub pairs: Vec<PairSpec>,
}

/// A template τ: a sequence of words with ⋆1 before ⋆2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSpec {
    pub text: String,
    pub line: Option<usize>,
    pub slots: Vec<SlotSpec>,
}

/// One position of a template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SlotSpec {
    Word(String),
    Key,
    Value,
}

/// One entry (a, b) of the dictionary Δk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairSpec {
    pub key: String,
    pub value: String,
    pub line: Option<usize>,
}

/// A rejected spec: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    pub file: String,
    pub line: Option<usize>,
    pub task: Option<String>,
    pub kind: Box<SpecErrorKind>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(task) = &self.task {
            write!(f, ": task '{}'", one_line(task))?;
        }
        write!(f, ": {}", one_line(&self.kind.to_string()))
    }
}

/// A message stays one line whatever text it quotes: control characters
/// (a newline in a template, a NUL in a name) are shown escaped.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// What is wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecErrorKind {
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    #[error("the file is not UTF-8 text (invalid byte at offset {0})")]
    NotUtf8(usize),
    #[error("the file is empty: a spec needs at least one [[task]]")]
    Empty,
    #[error("syntax error: {0}")]
    Syntax(String),
    #[error("no tasks: a spec needs at least one [[task]] with templates and pairs")]
    NoTasks,
    #[error("a task needs a non-empty name")]
    EmptyName,
    #[error("duplicate task name (first defined on line {0})")]
    DuplicateTask(String),
    #[error("the task has no templates")]
    NoTemplates,
    #[error("the task has no pairs")]
    NoPairs,
    #[error("template \"{template}\" has no {wildcard} wildcard")]
    MissingWildcard {
        template: String,
        wildcard: &'static str,
    },
    #[error("template \"{template}\" has {wildcard} more than once")]
    RepeatedWildcard {
        template: String,
        wildcard: &'static str,
    },
    #[error("template \"{0}\" has {{value}} before {{key}} (⋆1 must come before ⋆2)")]
    ValueBeforeKey(String),
    #[error(
        "template \"{template}\" has the word \"{word}\": braces are only allowed as the whole words {{key}} and {{value}}"
    )]
    BadPlaceholder { template: String, word: String },
    #[error("template \"{0}\" appears twice in this task")]
    DuplicateTemplate(String),
    #[error("pair {0} must be [key, value]: two strings")]
    PairShape(String),
    #[error(
        "pair has a malformed entity: [{0:?}, {1:?}] (an entity is words separated by single spaces: no leading, trailing or repeated spaces, no tabs, newlines or other control characters)"
    )]
    BadEntity(String, String),
    #[error(
        "template \"{template}\" has a word with a control character ({word:?}): a --prefix could not name it"
    )]
    ControlCharacter { template: String, word: String },
    #[error(
        "the file is larger than a spec may be: more than {limit} bytes ({} MiB, the limit; parsing takes about 16 bytes per byte of text)", limit >> 20
    )]
    TooLarge { limit: u64 },
    #[error("duplicate pair [\"{0}\", \"{1}\"]")]
    DuplicatePair(String, String),
    #[error(
        "\"{token}\" is used both as a template word (task '{word_task}') and as an entity (task '{entity_task}'); entities and template words must be distinct tokens"
    )]
    WordIsEntity {
        token: String,
        word_task: String,
        entity_task: String,
    },
    #[error("\"{0}\" is reserved for the end-of-sentence token")]
    Reserved(String),
}

/// The on-disk shape, generic over how strings carry their position
/// (TOML keeps byte spans; JSON gives plain strings).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec<S> {
    #[serde(default = "Vec::new")]
    task: Vec<RawTask<S>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask<S> {
    name: S,
    #[serde(default = "Vec::new")]
    templates: Vec<S>,
    #[serde(default = "Vec::new")]
    pairs: Vec<Vec<S>>,
}

/// A string from the file and, where the parser knows it, its byte offset
/// in `source` (the text it was parsed from).
trait Located {
    fn text(&self) -> &str;
    fn offset(&self, source: &str) -> Option<usize>;
}

impl Located for String {
    fn text(&self) -> &str {
        self
    }
    fn offset(&self, _: &str) -> Option<usize> {
        None
    }
}

impl Located for toml::Spanned<String> {
    fn text(&self) -> &str {
        self.get_ref()
    }
    fn offset(&self, _: &str) -> Option<usize> {
        let span: Range<usize> = toml::Spanned::span(self);
        Some(span.start)
    }
}

/// A JSON string with where serde_json found it: the parser hands out the
/// raw text of the value ([`serde_json::value::RawValue`], borrowed from the
/// source), whose address within the source is its offset. So lines come
/// from the parser, whatever the field order or escapes, not from searching
/// the text.
struct JsonStr {
    text: String,
    addr: usize,
}

impl<'de> Deserialize<'de> for JsonStr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: &'de serde_json::value::RawValue = Deserialize::deserialize(d)?;
        let text: String = serde_json::from_str(raw.get()).map_err(|_| {
            // The raw value may span lines (an array, an object): quote it
            // on one line, whitespace collapsed, so the message stays one.
            let found = raw.get().split_whitespace().collect::<Vec<_>>().join(" ");
            serde::de::Error::custom(format!("expected a string, found {found}"))
        })?;
        Ok(JsonStr {
            text,
            addr: raw.get().as_ptr() as usize,
        })
    }
}

impl Located for JsonStr {
    fn text(&self) -> &str {
        &self.text
    }
    fn offset(&self, source: &str) -> Option<usize> {
        let base = source.as_ptr() as usize;
        (base..=base + source.len())
            .contains(&self.addr)
            .then(|| self.addr - base)
    }
}

/// The available memory in bytes (MemAvailable in /proc/meminfo), or 4 GiB
/// where that cannot be read: what size refusals compare against.
pub fn available_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(4 << 30, |kb| kb * 1024)
}

/// The largest spec file read, in bytes: 64 MiB. A fixed cap, so that a
/// refusal does not depend on the machine's load: parsing and validation
/// hold about 16 bytes per byte of text (1 GiB here, well within the
/// machine), and 64 MiB holds about two million pairs, twenty times more
/// than the largest set verified in the benchmarks (10^5 pairs). Only this
/// much (and one byte) is ever read, so `/dev/zero` is refused at once.
pub const MAX_SPEC_BYTES: u64 = 64 << 20;

/// The bytes of a spec file, read through [`MAX_SPEC_BYTES`] (one byte
/// past it, to tell a file of exactly the limit from a larger one).
pub fn read_capped(path: &Path) -> Result<Vec<u8>, SpecError> {
    let fail = |kind| SpecError {
        file: path.display().to_string(),
        line: None,
        task: None,
        kind: Box::new(kind),
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SPEC_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| fail(SpecErrorKind::Unreadable(e.to_string())))?;
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(fail(SpecErrorKind::TooLarge {
            limit: MAX_SPEC_BYTES,
        }));
    }
    Ok(bytes)
}

/// Read and validate a spec file. The format follows the extension (.json,
/// otherwise TOML).
pub fn load(path: &Path) -> Result<Spec, SpecError> {
    let bytes = read_capped(path)?;
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    parse_bytes(&path.display().to_string(), &bytes, json)
}

/// Validate spec bytes; `file` is only used in messages.
pub fn parse_bytes(file: &str, bytes: &[u8], json: bool) -> Result<Spec, SpecError> {
    let error = |line: Option<usize>, kind| SpecError {
        file: file.to_string(),
        line,
        task: None,
        kind: Box::new(kind),
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        error(Some(line_of(bytes, at)), SpecErrorKind::NotUtf8(at))
    })?;
    // A byte-order mark is not content, in either format (the TOML parser
    // skips it; serde_json does not). Lines are unchanged by removing it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(error(None, SpecErrorKind::Empty));
    }
    if json {
        let raw: RawSpec<JsonStr> = serde_json::from_str(text).map_err(|e| {
            let message = e.to_string();
            error(Some(e.line()), SpecErrorKind::Syntax(message))
        })?;
        Validator::new(file, text).run(raw)
    } else {
        let raw: RawSpec<toml::Spanned<String>> = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text.as_bytes(), s.start));
            let message = e.message().trim().to_string();
            error(line, SpecErrorKind::Syntax(message))
        })?;
        Validator::new(file, text).run(raw)
    }
}

/// 1-based line of a byte offset.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    1 + bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// Validation state: the source text (to turn positions into lines).
struct Validator<'a> {
    file: &'a str,
    text: &'a str,
    /// Byte offset of every newline, so a line is a binary search, not a
    /// rescan of the file for every string (which made large specs load in
    /// quadratic time).
    newlines: Vec<usize>,
}

impl<'a> Validator<'a> {
    fn new(file: &'a str, text: &'a str) -> Self {
        Validator {
            file,
            text,
            newlines: text
                .bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        }
    }

    /// The line of a string from the file, from the parser's position.
    fn locate(&mut self, s: &impl Located) -> Option<usize> {
        let offset = s.offset(self.text)?;
        // Newlines strictly before the offset, plus one.
        Some(1 + self.newlines.partition_point(|&n| n < offset))
    }

    fn fail(&self, line: Option<usize>, task: &str, kind: SpecErrorKind) -> SpecError {
        SpecError {
            file: self.file.to_string(),
            line,
            task: (!task.is_empty()).then(|| task.to_string()),
            kind: Box::new(kind),
        }
    }

    fn run<S: Located>(mut self, raw: RawSpec<S>) -> Result<Spec, SpecError> {
        if raw.task.is_empty() {
            return Err(self.fail(None, "", SpecErrorKind::NoTasks));
        }
        let mut tasks = Vec::with_capacity(raw.task.len());
        let mut seen: HashMap<String, Option<usize>> = HashMap::new();
        for raw_task in raw.task {
            let line = self.locate(&raw_task.name);
            let name = raw_task.name.text().to_string();
            if name.trim().is_empty() {
                return Err(self.fail(line, "", SpecErrorKind::EmptyName));
            }
            if let Some(first) = seen.get(&name) {
                let first = first.map_or("?".into(), |l| l.to_string());
                return Err(self.fail(line, &name, SpecErrorKind::DuplicateTask(first)));
            }
            seen.insert(name.clone(), line);
            tasks.push(self.task(name, line, raw_task)?);
        }
        let spec = Spec {
            file: self.file.to_string(),
            tasks,
        };
        self.check_token_roles(&spec)?;
        Ok(spec)
    }

    fn task<S: Located>(
        &mut self,
        name: String,
        line: Option<usize>,
        raw: RawTask<S>,
    ) -> Result<TaskSpec, SpecError> {
        if raw.templates.is_empty() {
            return Err(self.fail(line, &name, SpecErrorKind::NoTemplates));
        }
        if raw.pairs.is_empty() {
            return Err(self.fail(line, &name, SpecErrorKind::NoPairs));
        }
        // Duplicates are found by hashing, so validation stays linear in the
        // size of the task.
        let mut templates: Vec<TemplateSpec> = Vec::with_capacity(raw.templates.len());
        let mut seen_templates: HashSet<Vec<SlotSpec>> = HashSet::new();
        for raw_template in &raw.templates {
            let line = self.locate(raw_template);
            let text = raw_template.text().to_string();
            let slots = parse_template(&text).map_err(|kind| self.fail(line, &name, kind))?;
            if !seen_templates.insert(slots.clone()) {
                return Err(self.fail(line, &name, SpecErrorKind::DuplicateTemplate(text)));
            }
            templates.push(TemplateSpec { text, line, slots });
        }
        let mut pairs: Vec<PairSpec> = Vec::with_capacity(raw.pairs.len());
        let mut seen_pairs: HashSet<(&str, &str)> = HashSet::new();
        for raw_pair in &raw.pairs {
            let line = raw_pair.first().and_then(|s| self.locate(s));
            let [key, value] = raw_pair.as_slice() else {
                let shown = format!(
                    "{:?}",
                    raw_pair.iter().map(|s| s.text()).collect::<Vec<_>>()
                );
                return Err(self.fail(line, &name, SpecErrorKind::PairShape(shown)));
            };
            if !well_formed_entity(key.text()) || !well_formed_entity(value.text()) {
                let (key, value) = (key.text().to_string(), value.text().to_string());
                return Err(self.fail(line, &name, SpecErrorKind::BadEntity(key, value)));
            }
            if key.text() == EOS || value.text() == EOS {
                return Err(self.fail(line, &name, SpecErrorKind::Reserved(EOS.into())));
            }
            if !seen_pairs.insert((key.text(), value.text())) {
                let (key, value) = (key.text().to_string(), value.text().to_string());
                return Err(self.fail(line, &name, SpecErrorKind::DuplicatePair(key, value)));
            }
            let (key, value) = (key.text().to_string(), value.text().to_string());
            pairs.push(PairSpec { key, value, line });
        }
        Ok(TaskSpec {
            name,
            line,
            templates,
            pairs,
        })
    }

    /// Template words and entities must be different tokens: the model tells
    /// a key from a word by its token, so one token cannot be both.
    fn check_token_roles(&self, spec: &Spec) -> Result<(), SpecError> {
        let mut entity_of: HashMap<&str, (&str, Option<usize>)> = HashMap::new();
        for task in &spec.tasks {
            for pair in &task.pairs {
                for e in [&pair.key, &pair.value] {
                    entity_of.entry(e).or_insert((&task.name, pair.line));
                }
            }
        }
        for task in &spec.tasks {
            for template in &task.templates {
                for slot in &template.slots {
                    if let SlotSpec::Word(w) = slot
                        && let Some((entity_task, _)) = entity_of.get(w.as_str())
                    {
                        let kind = SpecErrorKind::WordIsEntity {
                            token: w.clone(),
                            word_task: task.name.clone(),
                            entity_task: entity_task.to_string(),
                        };
                        return Err(self.fail(template.line, &task.name, kind));
                    }
                }
            }
        }
        Ok(())
    }
}

/// An entity is one or more words joined by single spaces, no word holding
/// whitespace or a control character: exactly the texts that
/// `--prefix "…"` (split on whitespace, rejoined with single spaces) can
/// name, so every entity of a spec can be typed.
pub fn well_formed_entity(e: &str) -> bool {
    e.split(' ')
        .all(|w| !w.is_empty() && !w.chars().any(|c| c.is_whitespace() || c.is_control()))
}

/// Split a template on whitespace into words and the two wildcards.
fn parse_template(text: &str) -> Result<Vec<SlotSpec>, SpecErrorKind> {
    let mut slots = Vec::new();
    for word in text.split_whitespace() {
        let slot = match word {
            KEY => SlotSpec::Key,
            VALUE => SlotSpec::Value,
            EOS => return Err(SpecErrorKind::Reserved(EOS.into())),
            w if w.chars().any(char::is_control) => {
                return Err(SpecErrorKind::ControlCharacter {
                    template: text.into(),
                    word: w.into(),
                });
            }
            w if w.contains(['{', '}']) => {
                return Err(SpecErrorKind::BadPlaceholder {
                    template: text.into(),
                    word: w.into(),
                });
            }
            w => SlotSpec::Word(w.into()),
        };
        slots.push(slot);
    }
    for (wildcard, slot) in [(KEY, SlotSpec::Key), (VALUE, SlotSpec::Value)] {
        match slots.iter().filter(|s| **s == slot).count() {
            0 => {
                return Err(SpecErrorKind::MissingWildcard {
                    template: text.into(),
                    wildcard,
                });
            }
            1 => {}
            _ => {
                return Err(SpecErrorKind::RepeatedWildcard {
                    template: text.into(),
                    wildcard,
                });
            }
        }
    }
    let key_at = slots.iter().position(|s| *s == SlotSpec::Key);
    let value_at = slots.iter().position(|s| *s == SlotSpec::Value);
    if value_at < key_at {
        return Err(SpecErrorKind::ValueBeforeKey(text.into()));
    }
    Ok(slots)
}

/// A task as plain parts: name, template texts, (key, value) pairs.
pub type TaskParts = (String, Vec<String>, Vec<(String, String)>);

/// The on-disk shape for writing specs (as `generate` does).
#[derive(Serialize)]
struct WriteSpec<'a> {
    task: Vec<WriteTask<'a>>,
}

#[derive(Serialize)]
struct WriteTask<'a> {
    name: &'a str,
    templates: Vec<&'a str>,
    pairs: Vec<[&'a str; 2]>,
}

impl Spec {
    /// Build a spec in memory from template texts and pairs, validating it
    /// exactly as a file would be.
    pub fn from_parts(file: &str, tasks: &[TaskParts]) -> Result<Spec, SpecError> {
        let raw = RawSpec {
            task: tasks
                .iter()
                .map(|(name, templates, pairs)| RawTask {
                    name: name.clone(),
                    templates: templates.clone(),
                    pairs: pairs
                        .iter()
                        .map(|(k, v)| vec![k.clone(), v.clone()])
                        .collect(),
                })
                .collect(),
        };
        Validator::new(file, "").run(raw)
    }

    /// Render as TOML in the documented format.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.to_write()).unwrap_or_default()
    }

    /// Render as JSON in the documented format (the same fields as TOML).
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.to_write()).unwrap_or_default();
        text.push('\n');
        text
    }

    fn to_write(&self) -> WriteSpec<'_> {
        WriteSpec {
            task: self
                .tasks
                .iter()
                .map(|t| WriteTask {
                    name: &t.name,
                    templates: t.templates.iter().map(|x| x.text.as_str()).collect(),
                    pairs: t
                        .pairs
                        .iter()
                        .map(|p| [p.key.as_str(), p.value.as_str()])
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Spec, SpecError> {
        parse_bytes("t.toml", text.as_bytes(), false)
    }

    const GOOD: &str = r#"
[[task]]
name = "capital"
templates = ["the capital of {key} is {value}", "{key} has capital {value}"]
pairs = [["France", "Paris"], ["New Zealand", "Wellington"]]
"#;

    #[test]
    fn parses_a_good_spec() {
        let spec = parse(GOOD).unwrap();
        assert_eq!(spec.tasks.len(), 1);
        let task = &spec.tasks[0];
        assert_eq!(task.name, "capital");
        assert_eq!(task.line, Some(3));
        assert_eq!(task.templates[1].slots.len(), 4);
        assert_eq!(task.templates[1].slots[0], SlotSpec::Key);
        assert_eq!(task.templates[1].slots[3], SlotSpec::Value);
        assert_eq!(task.pairs[1].key, "New Zealand");
        assert_eq!(task.pairs[1].line, Some(5));
    }

    #[test]
    fn json_gives_the_same_spec() {
        let json = r#"{"task": [{"name": "capital",
  "templates": ["the capital of {key} is {value}", "{key} has capital {value}"],
  "pairs": [["France", "Paris"], ["New Zealand", "Wellington"]]}]}"#;
        let a = parse_bytes("t.json", json.as_bytes(), true).unwrap();
        let b = parse(GOOD).unwrap();
        assert_eq!(a.tasks[0].templates, {
            let mut t = b.tasks[0].templates.clone();
            t.iter_mut().for_each(|t| t.line = Some(2));
            t
        });
    }

    fn kind(text: &str) -> (Option<usize>, Option<String>, SpecErrorKind) {
        let e = parse(text).unwrap_err();
        (e.line, e.task, *e.kind)
    }

    #[test]
    fn rejects_templates_with_wildcard_errors() {
        let t = "[[task]]\nname = \"a\"\npairs = [[\"x\", \"y\"]]\ntemplates = [\"{key} is\"]\n";
        let (line, task, k) = kind(t);
        assert_eq!((line, task.as_deref()), (Some(4), Some("a")));
        assert!(matches!(
            k,
            SpecErrorKind::MissingWildcard {
                wildcard: VALUE,
                ..
            }
        ));
        let t = t.replace("{key} is", "{value} is {key}");
        assert!(matches!(kind(&t).2, SpecErrorKind::ValueBeforeKey(_)));
        let t = t.replace("{value} is {key}", "{key} {key} {value}");
        assert!(matches!(
            kind(&t).2,
            SpecErrorKind::RepeatedWildcard { wildcard: KEY, .. }
        ));
        let t = t.replace("{key} {key} {value}", "{key}'s {value}");
        assert!(matches!(kind(&t).2, SpecErrorKind::BadPlaceholder { .. }));
    }

    #[test]
    fn rejects_duplicates_and_role_clashes() {
        let dup_pair = "[[task]]\nname = \"a\"\ntemplates = [\"{key} is {value}\"]\npairs = [[\"x\", \"y\"],\n [\"x\", \"y\"]]\n";
        let (line, _, k) = kind(dup_pair);
        assert_eq!(line, Some(5));
        assert_eq!(k, SpecErrorKind::DuplicatePair("x".into(), "y".into()));
        let clash = "[[task]]\nname = \"a\"\ntemplates = [\"{key} is {value}\"]\npairs = [[\"is\", \"y\"]]\n";
        assert!(
            matches!(kind(clash).2, SpecErrorKind::WordIsEntity { ref token, .. } if token == "is")
        );
        let two = format!("{GOOD}\n{GOOD}");
        let (line, task, k) = kind(&two);
        assert_eq!((line, task.as_deref()), (Some(9), Some("capital")));
        assert_eq!(k, SpecErrorKind::DuplicateTask("3".into()));
    }

    #[test]
    fn rejects_empty_and_garbage_input() {
        assert_eq!(kind("  \n").2, SpecErrorKind::Empty);
        assert_eq!(kind("# nothing\n").2, SpecErrorKind::NoTasks);
        assert!(
            matches!(kind("[[task]]\nname = \"a\"\nfoo = 1\n").2, SpecErrorKind::Syntax(m) if m.contains("foo"))
        );
        let e = parse_bytes("t.toml", &[0x5b, 0xff, 0xfe, 0x00], false).unwrap_err();
        assert_eq!(*e.kind, SpecErrorKind::NotUtf8(1));
        assert!(matches!(
            kind("[[task]]\nname = \"a\"\ntemplates = []\npairs = [[\"x\",\"y\"]]\n").2,
            SpecErrorKind::NoTemplates
        ));
    }

    #[test]
    fn round_trips_through_toml() {
        let spec = parse(GOOD).unwrap();
        let again = parse(&spec.to_toml()).unwrap();
        assert_eq!(again.tasks[0].templates.len(), 2);
        assert_eq!(again.tasks[0].pairs[1].value, "Wellington");
        assert_eq!(again.tasks[0].name, "capital");
    }
}
