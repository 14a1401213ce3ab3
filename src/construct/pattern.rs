//! Syntactic patterns: a prefix with every entity replaced by one symbol.
//!
//! Head 1 (with the position) determines a prefix's pattern, and within one
//! task the pattern determines what comes next: since ⋆1 precedes ⋆2, the
//! first entity is the key and the second the value.

use crate::taskset::{Slot, Task, TokenId};
use std::collections::BTreeMap;

/// One pattern symbol: a template word, or "some entity".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Symbol {
    Word(TokenId),
    Entity,
}

pub type Pattern = Vec<Symbol>;

/// What may follow a pattern in one task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Next {
    /// Template words that come next in some template.
    pub words: Vec<TokenId>,
    /// ⋆1 comes next in some template.
    pub key: bool,
    /// ⋆2 comes next in some template.
    pub value: bool,
    /// Some template ends here.
    pub end: bool,
}

fn symbol(slot: &Slot) -> Symbol {
    match slot {
        Slot::Word(w) => Symbol::Word(*w),
        Slot::Key | Slot::Value => Symbol::Entity,
    }
}

/// Every nonempty pattern of every template of a task, with what may follow
/// it, ordered (length, symbols).
pub fn patterns(task: &Task) -> BTreeMap<Pattern, Next> {
    let mut out: BTreeMap<Pattern, Next> = BTreeMap::new();
    for template in &task.templates {
        let symbols: Pattern = template.slots.iter().map(symbol).collect();
        for len in 1..=symbols.len() {
            let next = out.entry(symbols[..len].to_vec()).or_default();
            match template.slots.get(len) {
                None => next.end = true,
                Some(Slot::Key) => next.key = true,
                Some(Slot::Value) => next.value = true,
                Some(Slot::Word(w)) => {
                    if !next.words.contains(w) {
                        next.words.push(*w)
                    }
                }
            }
        }
    }
    out
}

/// A pattern as text: words, then ⋆1 and ⋆2 for the first and second entity.
pub fn render(pattern: &[Symbol], word: impl Fn(TokenId) -> String) -> String {
    let mut entities = 0;
    pattern
        .iter()
        .map(|s| match s {
            Symbol::Word(w) => word(*w),
            Symbol::Entity => {
                entities += 1;
                format!("⋆{entities}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taskset::Template;

    #[test]
    fn patterns_merge_shared_template_prefixes() {
        // "⋆1 is in ⋆2" and "⋆1 is located in ⋆2" with words is=0, in=1, located=2.
        let task = Task {
            name: "located_in".into(),
            templates: vec![
                Template {
                    text: String::new(),
                    slots: vec![Slot::Key, Slot::Word(0), Slot::Word(1), Slot::Value],
                },
                Template {
                    text: String::new(),
                    slots: vec![
                        Slot::Key,
                        Slot::Word(0),
                        Slot::Word(2),
                        Slot::Word(1),
                        Slot::Value,
                    ],
                },
            ],
            pairs: vec![(10, 11)],
        };
        let p = patterns(&task);
        // [E], [E is], [E is in], [E is in E], [E is located], [E is located in], [... E]
        assert_eq!(p.len(), 7);
        let after_is = &p[&vec![Symbol::Entity, Symbol::Word(0)]];
        assert_eq!(after_is.words, vec![1, 2]);
        let query = &p[&vec![Symbol::Entity, Symbol::Word(0), Symbol::Word(1)]];
        assert!(query.value && query.words.is_empty() && !query.end);
        let done = &p[&vec![
            Symbol::Entity,
            Symbol::Word(0),
            Symbol::Word(1),
            Symbol::Entity,
        ]];
        assert!(done.end);
        let text = render(&[Symbol::Entity, Symbol::Word(0), Symbol::Entity], |w| {
            format!("w{w}")
        });
        assert_eq!(text, "⋆1 w0 ⋆2");
    }
}
