//! Stage 2: the facts a spec implies, derived from the spec alone.
//!
//! This is the oracle side of verification: the vocabulary, the maximum
//! template length L, every distinct prefix w of every sentence τ[a, b]
//! (followed by `<eos>`), its valid next tokens V(w), its compatible tasks
//! C(w), and whether it is a query (⋆2 comes next in every template it can
//! continue). Nothing here looks at model weights.

use crate::spec::{EOS, SlotSpec, Spec};
use std::collections::{BTreeSet, HashMap, HashSet};

pub type TokenId = usize;
pub type TaskId = usize;

/// What role a token plays in the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A template word (a syntactic token).
    Word,
    /// A key or value (a semantic token).
    Entity,
    /// The end-of-sentence token.
    Eos,
}

/// The vocabulary Σ plus `<eos>`: template words first, then entities, then
/// `<eos>`, each in order of first appearance.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    names: Vec<String>,
    kinds: Vec<TokenKind>,
    index: HashMap<String, TokenId>,
}

impl Vocabulary {
    fn add(&mut self, name: &str, kind: TokenKind) -> TokenId {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let id = self.names.len();
        self.names.push(name.to_string());
        self.kinds.push(kind);
        self.index.insert(name.to_string(), id);
        id
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn name(&self, id: TokenId) -> &str {
        &self.names[id]
    }

    pub fn kind(&self, id: TokenId) -> TokenKind {
        self.kinds[id]
    }

    pub fn id(&self, name: &str) -> Option<TokenId> {
        self.index.get(name).copied()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn eos(&self) -> TokenId {
        self.index[EOS]
    }
}

/// One template position, in token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    Word(TokenId),
    Key,
    Value,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub text: String,
    pub slots: Vec<Slot>,
}

impl Template {
    /// The sentence τ[a, b].
    pub fn fill(&self, key: TokenId, value: TokenId) -> Vec<TokenId> {
        self.slots
            .iter()
            .map(|s| match *s {
                Slot::Word(w) => w,
                Slot::Key => key,
                Slot::Value => value,
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub templates: Vec<Template>,
    /// The dictionary Δk.
    pub pairs: Vec<(TokenId, TokenId)>,
}

impl Task {
    /// Σ_{τ ∈ T(k)} |τ|.
    pub fn template_length_sum(&self) -> usize {
        self.templates.iter().map(|t| t.slots.len()).sum()
    }

    /// Intrinsic complexity c(k) = Σ|τ| + |Δk|.
    pub fn complexity(&self) -> usize {
        self.template_length_sum() + self.pairs.len()
    }

    /// The paper's neuron bound L·|T(k)| + |Δk| (N read per task).
    pub fn bound(&self, max_len: usize) -> usize {
        max_len * self.templates.len() + self.pairs.len()
    }

    /// The distinct keys of Δk, in order of first appearance.
    pub fn keys(&self) -> Vec<TokenId> {
        // A hash set, not `keys.contains`: that made this quadratic in |Δk|.
        let mut seen = HashSet::new();
        self.pairs
            .iter()
            .map(|&(k, _)| k)
            .filter(|&k| seen.insert(k))
            .collect()
    }
}

/// A distinct prefix w of some sentence, with its oracle facts.
#[derive(Debug, Clone)]
pub struct Prefix {
    pub tokens: Vec<TokenId>,
    /// V(w): tokens u such that w·u is a prefix of a sentence (with `<eos>`).
    pub valid_next: BTreeSet<TokenId>,
    /// C(w): tasks with a sentence that w is a prefix of.
    pub tasks: BTreeSet<TaskId>,
    /// ⋆2 is next in every template w can continue.
    pub is_query: bool,
}

impl Prefix {
    pub fn is_ambiguous(&self) -> bool {
        self.tasks.len() > 1
    }
}

/// The derived task set.
#[derive(Debug, Clone)]
pub struct TaskSet {
    pub vocab: Vocabulary,
    pub tasks: Vec<Task>,
    /// L, the maximum template length.
    pub max_len: usize,
    /// Every distinct prefix, in order of first appearance (task, template,
    /// pair, length).
    pub prefixes: Vec<Prefix>,
}

/// Next-slot kinds seen after a prefix, as bits.
const NEXT_WORD: u8 = 1;
const NEXT_KEY: u8 = 2;
const NEXT_VALUE: u8 = 4;
const NEXT_END: u8 = 8;

impl TaskSet {
    pub fn from_spec(spec: &Spec) -> TaskSet {
        let mut vocab = Vocabulary::default();
        for task in &spec.tasks {
            for template in &task.templates {
                for slot in &template.slots {
                    if let SlotSpec::Word(w) = slot {
                        vocab.add(w, TokenKind::Word);
                    }
                }
            }
        }
        for task in &spec.tasks {
            for pair in &task.pairs {
                vocab.add(&pair.key, TokenKind::Entity);
                vocab.add(&pair.value, TokenKind::Entity);
            }
        }
        vocab.add(EOS, TokenKind::Eos);

        let tasks: Vec<Task> = spec
            .tasks
            .iter()
            .map(|t| Task {
                name: t.name.clone(),
                templates: t
                    .templates
                    .iter()
                    .map(|x| Template {
                        text: x.text.clone(),
                        slots: x
                            .slots
                            .iter()
                            .map(|s| match s {
                                SlotSpec::Word(w) => Slot::Word(vocab.index[w]),
                                SlotSpec::Key => Slot::Key,
                                SlotSpec::Value => Slot::Value,
                            })
                            .collect(),
                    })
                    .collect(),
                pairs: t
                    .pairs
                    .iter()
                    .map(|p| (vocab.index[&p.key], vocab.index[&p.value]))
                    .collect(),
            })
            .collect();
        let max_len = tasks
            .iter()
            .flat_map(|t| t.templates.iter().map(|x| x.slots.len()))
            .max()
            .unwrap_or(0);
        let prefixes = enumerate_prefixes(&tasks, vocab.eos());
        TaskSet {
            vocab,
            tasks,
            max_len,
            prefixes,
        }
    }

    /// A token sequence as text.
    pub fn render(&self, tokens: &[TokenId]) -> String {
        tokens
            .iter()
            .map(|&t| self.vocab.name(t))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn queries(&self) -> usize {
        self.prefixes.iter().filter(|p| p.is_query).count()
    }

    pub fn ambiguous(&self) -> usize {
        self.prefixes.iter().filter(|p| p.is_ambiguous()).count()
    }

    /// Split text into tokens. Entities may contain spaces, so a text can
    /// have several readings (an entity "is in" beside the template word
    /// "is"): the reading that is a prefix of the task set wins, found by
    /// walking the prefixes token by token; a text that is no prefix is read
    /// greedily (the longest token at each point), as any input to trace.
    ///
    /// Each step tries at most W token lengths (W, the most words in one
    /// token), so the cost is linear in the text; a text of more than L·W
    /// words cannot be L tokens and is refused before any work.
    pub fn tokenize(&self, text: &str) -> Result<Vec<TokenId>, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let span = self
            .vocab
            .names()
            .iter()
            .map(|n| n.split(' ').count())
            .max()
            .unwrap_or(1);
        if words.len() > self.max_len * span {
            return Err(format!(
                "{} words cannot be a prefix: a prefix has at most L = {} tokens of at most {span} words each",
                words.len(),
                self.max_len
            ));
        }
        let token_at = |at: usize, len: usize| -> Option<TokenId> {
            (at + len <= words.len())
                .then(|| self.vocab.id(&words[at..at + len].join(" ")))
                .flatten()
        };
        if let Some(tokens) = self.prefix_reading(&words, span, &token_at) {
            return Ok(tokens);
        }
        let mut tokens = Vec::new();
        let mut at = 0;
        while at < words.len() {
            match (1..=span)
                .rev()
                .find_map(|n| token_at(at, n).map(|id| (id, n)))
            {
                Some((id, n)) => {
                    tokens.push(id);
                    at += n;
                }
                None => return Err(format!("\"{}\" is not in the vocabulary", words[at])),
            }
        }
        Ok(tokens)
    }

    /// The reading of `words` that is a prefix of the task set, if any: a
    /// depth-first walk that only extends readings that are prefixes, so it
    /// visits at most the prefixes whose text starts the input.
    fn prefix_reading(
        &self,
        words: &[&str],
        span: usize,
        token_at: &dyn Fn(usize, usize) -> Option<TokenId>,
    ) -> Option<Vec<TokenId>> {
        if words.is_empty() {
            return None;
        }
        let known: HashSet<&[TokenId]> = self.prefixes.iter().map(|p| &p.tokens[..]).collect();
        let mut stack: Vec<(usize, Vec<TokenId>)> = vec![(0, Vec::new())];
        while let Some((at, tokens)) = stack.pop() {
            if at == words.len() {
                return Some(tokens);
            }
            // Shorter tokens pushed first, so the longest is tried first.
            for n in 1..=span {
                if let Some(id) = token_at(at, n) {
                    let mut next = tokens.clone();
                    next.push(id);
                    if known.contains(&next[..]) {
                        stack.push((at + n, next));
                    }
                }
            }
        }
        None
    }
}

/// Bytes one stored prefix costs beyond its tokens: the `Prefix` (a token
/// vector and two sets), its index entry and the sets' first nodes, rounded
/// up. The estimate below still charges the index a second token vector,
/// as it once held one; the trie's entry is two integers, so the bound
/// keeps that room to spare.
const PREFIX_OVERHEAD: u64 = 256;

/// An upper bound on the memory the task set of a spec with these shapes
/// needs, before anything is built: every sentence τ[a, b] contributes at
/// most |τ| new prefixes, the one of length j holding j tokens twice (in the
/// prefix and in the index), so a task costs
/// |Δk| · Σ_τ (|τ|·PREFIX_OVERHEAD + |τ|(|τ|+1)·8) bytes. Quadratic in |τ|
/// because the prefixes of one sentence are stored separately.
pub fn estimate_bytes(tasks: impl IntoIterator<Item = (usize, Vec<usize>)>) -> u128 {
    tasks
        .into_iter()
        .map(|(pairs, lengths)| {
            let per_pair: u128 = lengths
                .iter()
                .map(|&l| {
                    let l = l as u128;
                    l * PREFIX_OVERHEAD as u128 + l * (l + 1) * 8
                })
                .sum();
            pairs as u128 * per_pair
        })
        .sum()
}

/// Refuse a task set that would not fit in memory, with the estimate and
/// the limit (half of the available memory: the model and the verifier need
/// the rest).
pub fn check_fits(estimate: u128) -> Result<(), String> {
    let limit = crate::spec::available_memory() / 2;
    if estimate > limit as u128 {
        return Err(format!(
            "the task set would need about {} of memory for its prefixes, more than this machine can hold (limit {}: half of the available memory)",
            show_bytes(estimate),
            show_bytes(limit as u128)
        ));
    }
    Ok(())
}

/// Refuse what an estimate from sampled prefixes puts past `limit` bytes,
/// naming `what` the prefixes hold, the estimate, the per-prefix figure, the
/// sample and the limit: the one message of the construction's refusals.
pub fn check_sampled_fits(
    what: &str,
    prefixes: usize,
    (estimate, per_prefix): (u128, u128),
    sample: usize,
    limit: u64,
) -> Result<(), String> {
    if estimate > u128::from(limit) {
        return Err(format!(
            "the {prefixes} prefixes' {what} would need about {} of memory ({} a prefix, measured on up to {sample} of them), more than this machine can hold (limit {}: half of the available memory); shorter templates (this cost grows as L³ in the template length L) fit",
            show_bytes(estimate),
            show_bytes(per_prefix),
            show_bytes(u128::from(limit)),
        ));
    }
    Ok(())
}

/// Bytes in binary units, for messages.
pub fn show_bytes(b: u128) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

impl TaskSet {
    /// The most tasks that share one (key, value) pair (1 when no pair is
    /// shared): the m of the dense model's margin ([`crate::design::Margins::dense`]).
    pub fn most_tasks_sharing_a_pair(&self) -> usize {
        let mut shared: HashMap<(TokenId, TokenId), usize> = HashMap::new();
        for task in &self.tasks {
            for &pair in &task.pairs {
                *shared.entry(pair).or_default() += 1;
            }
        }
        shared.values().copied().max().unwrap_or(1)
    }

    /// [`TaskSet::from_spec`], refused with the estimate and the limit when
    /// its prefixes would not fit in memory.
    pub fn try_from_spec(spec: &Spec) -> Result<TaskSet, String> {
        let shapes = spec.tasks.iter().map(|t| {
            let lengths = t.templates.iter().map(|x| x.slots.len()).collect();
            (t.pairs.len(), lengths)
        });
        check_fits(estimate_bytes(shapes)).map_err(|e| format!("{}: {e}", spec.file))?;
        Ok(TaskSet::from_spec(spec))
    }
}

/// Walk every sentence of every task and collect the distinct prefixes.
///
/// The distinct prefixes are found as the nodes of a trie: prefix w·t is
/// looked up by (index of w, t), so each step of a sentence costs one hash
/// of two integers, and a sentence of length |τ| costs O(|τ|) lookups (a
/// hash of the whole token vector at each length made it O(|τ|²)). Storing
/// each prefix's own tokens still takes Σ_len len = O(|τ|²) memory per
/// sentence; see [`estimate_bytes`].
fn enumerate_prefixes(tasks: &[Task], eos: TokenId) -> Vec<Prefix> {
    // (parent prefix + 1, or 0 at the root; next token) → prefix index.
    let mut index: HashMap<(usize, TokenId), usize> = HashMap::new();
    let mut prefixes: Vec<Prefix> = Vec::new();
    let mut next_kinds: Vec<u8> = Vec::new();
    for (task_id, task) in tasks.iter().enumerate() {
        for template in &task.templates {
            for &(key, value) in &task.pairs {
                let sentence = template.fill(key, value);
                let mut parent = 0;
                for len in 1..=sentence.len() {
                    let tokens = &sentence[..len];
                    let at = *index.entry((parent, sentence[len - 1])).or_insert_with(|| {
                        prefixes.push(Prefix {
                            tokens: tokens.to_vec(),
                            valid_next: BTreeSet::new(),
                            tasks: BTreeSet::new(),
                            is_query: false,
                        });
                        next_kinds.push(0);
                        prefixes.len() - 1
                    });
                    parent = at + 1;
                    let prefix = &mut prefixes[at];
                    prefix.tasks.insert(task_id);
                    let (next, kind) = match template.slots.get(len) {
                        None => (eos, NEXT_END),
                        Some(Slot::Word(_)) => (sentence[len], NEXT_WORD),
                        Some(Slot::Key) => (sentence[len], NEXT_KEY),
                        Some(Slot::Value) => (sentence[len], NEXT_VALUE),
                    };
                    prefix.valid_next.insert(next);
                    next_kinds[at] |= kind;
                }
            }
        }
    }
    for (prefix, kinds) in prefixes.iter_mut().zip(next_kinds) {
        prefix.is_query = kinds == NEXT_VALUE;
    }
    prefixes
}

#[cfg(test)]
mod tests {
    /// A sampled estimate past the limit is refused with every number
    /// named; at the limit it fits.
    #[test]
    fn sampled_refusals_name_the_estimate_the_sample_and_the_limit() {
        assert_eq!(
            check_sampled_fits("inputs", 7, (3072, 300), 256, 3072),
            Ok(())
        );
        let e = check_sampled_fits("inputs", 7, (3072, 300), 256, 2048).unwrap_err();
        assert_eq!(
            e,
            "the 7 prefixes' inputs would need about 3.0 KiB of memory (300.0 B a prefix, measured on up to 256 of them), more than this machine can hold (limit 2.0 KiB: half of the available memory); shorter templates (this cost grows as L³ in the template length L) fit"
        );
    }

    use super::*;

    fn running_example() -> TaskSet {
        let spec = Spec::from_parts(
            "running",
            &[
                (
                    "located_in".into(),
                    vec![
                        "{key} is in {value}".into(),
                        "{key} is located in {value}".into(),
                    ],
                    vec![
                        ("Paris".into(), "France".into()),
                        ("Tokyo".into(), "Japan".into()),
                        ("Lima".into(), "Peru".into()),
                    ],
                ),
                (
                    "spoken_in".into(),
                    vec!["{key} is spoken widely in {value}".into()],
                    vec![
                        ("French".into(), "France".into()),
                        ("Japanese".into(), "Japan".into()),
                        ("Quechua".into(), "Peru".into()),
                    ],
                ),
            ],
        )
        .unwrap();
        TaskSet::from_spec(&spec)
    }

    fn find<'a>(ts: &'a TaskSet, text: &str) -> &'a Prefix {
        let tokens = ts.tokenize(text).unwrap();
        ts.prefixes.iter().find(|p| p.tokens == tokens).unwrap()
    }

    fn names(ts: &TaskSet, ids: &BTreeSet<TokenId>) -> Vec<String> {
        ids.iter().map(|&t| ts.vocab.name(t).to_string()).collect()
    }

    #[test]
    fn running_example_has_39_prefixes_and_9_queries() {
        let ts = running_example();
        assert_eq!(ts.prefixes.len(), 39);
        assert_eq!(ts.queries(), 9);
        assert_eq!(ts.ambiguous(), 0);
        assert_eq!(ts.max_len, 6);
        // 5 words + 9 entities (France, Japan, Peru shared as values) + <eos>.
        assert_eq!(ts.vocab.len(), 5 + 9 + 1);
        assert_eq!(ts.tasks[0].complexity(), 4 + 5 + 3);
        assert_eq!(ts.tasks[0].bound(ts.max_len), 6 * 2 + 3);
    }

    #[test]
    fn valid_next_tokens_follow_the_templates() {
        let ts = running_example();
        assert_eq!(
            names(&ts, &find(&ts, "Paris is").valid_next),
            ["in", "located"]
        );
        let q = find(&ts, "Tokyo is located in");
        assert!(q.is_query);
        assert_eq!(names(&ts, &q.valid_next), ["Japan"]);
        let done = find(&ts, "Lima is in Peru");
        assert!(!done.is_query);
        assert_eq!(names(&ts, &done.valid_next), ["<eos>"]);
        assert_eq!(find(&ts, "French is").tasks, BTreeSet::from([1]));
    }

    #[test]
    fn shared_prefixes_are_ambiguous() {
        let spec = Spec::from_parts(
            "shared",
            &[
                (
                    "capital".into(),
                    vec!["{key} has capital {value}".into()],
                    vec![("France".into(), "Paris".into())],
                ),
                (
                    "language".into(),
                    vec!["{key} has language {value}".into()],
                    vec![("France".into(), "French".into())],
                ),
            ],
        )
        .unwrap();
        let ts = TaskSet::from_spec(&spec);
        let p = find(&ts, "France has");
        assert_eq!(p.tasks, BTreeSet::from([0, 1]));
        assert_eq!(names(&ts, &p.valid_next), ["capital", "language"]);
        // "France", "France has" are shared; then 2 × 2 task-specific ones.
        assert_eq!(ts.prefixes.len(), 2 + 4);
        assert_eq!(ts.ambiguous(), 2);
    }

    #[test]
    fn tokenize_matches_multiword_entities() {
        let spec = Spec::from_parts(
            "t",
            &[(
                "capital".into(),
                vec!["capital of {key} is {value}".into()],
                vec![("New Zealand".into(), "Wellington".into())],
            )],
        )
        .unwrap();
        let ts = TaskSet::from_spec(&spec);
        let tokens = ts.tokenize("capital of New Zealand is").unwrap();
        assert_eq!(tokens.len(), 4);
        assert_eq!(ts.vocab.name(tokens[2]), "New Zealand");
        assert!(ts.tokenize("capital of Mars").is_err());
    }

    #[test]
    fn an_entity_spanning_template_words_reads_as_the_real_prefix() {
        // The entity "is in" and the template words "is", "in": greedy
        // reading gives [Paris, "is in"], which is no prefix.
        let spec = Spec::from_parts(
            "t",
            &[(
                "loc".into(),
                vec!["{key} is in {value}".into()],
                vec![
                    ("Paris".into(), "France".into()),
                    ("is in".into(), "Peru".into()),
                ],
            )],
        )
        .unwrap();
        let ts = TaskSet::from_spec(&spec);
        let tokens = ts.tokenize("Paris is in").unwrap();
        let names: Vec<&str> = tokens.iter().map(|&t| ts.vocab.name(t)).collect();
        assert_eq!(names, ["Paris", "is", "in"]);
        assert!(ts.prefixes.iter().any(|p| p.tokens == tokens));
        // The entity itself still reads as one token where it is the key.
        let tokens = ts.tokenize("is in is in Peru").unwrap();
        assert_eq!(ts.vocab.name(tokens[0]), "is in");
        assert_eq!(tokens.len(), 4);
    }

    #[test]
    fn a_text_longer_than_any_prefix_is_refused_before_reading_it() {
        let ts = running_example();
        // L = 6, one word per token: 7 words are refused, 2,000 at once.
        let long = vec!["Paris"; 2000].join(" ");
        let e = ts.tokenize(&long).unwrap_err();
        assert!(e.contains("2000 words") && e.contains("L = 6"), "{e}");
        assert!(ts.tokenize(&["Paris"; 7].join(" ")).is_err());
        assert_eq!(ts.tokenize(&["Paris"; 6].join(" ")).unwrap().len(), 6);
    }

    #[test]
    fn keys_are_distinct_in_first_appearance_order() {
        let ts = running_example();
        let names: Vec<&str> = ts.tasks[0]
            .keys()
            .iter()
            .map(|&t| ts.vocab.name(t))
            .collect();
        assert_eq!(names, ["Paris", "Tokyo", "Lima"]);
    }
}
