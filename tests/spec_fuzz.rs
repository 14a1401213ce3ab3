//! A fuzz target over spec parsing and validation: byte mutations and
//! structure mutations of every file in constructions/, in TOML and in
//! JSON, with a fixed seed. Whatever the input, the parser returns a spec
//! or a one-line error naming the file, and nothing panics; accepted specs
//! also go through the task set and the tokenizer. The test prints how many
//! inputs ran (`cargo test --test spec_fuzz -- --nocapture`).

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed, TestRunner};
use routecert::spec::{self, Spec};
use routecert::taskset::TaskSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(0xf022),
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    })
}

/// Every construction as (TOML bytes, the same spec as JSON bytes).
fn seeds() -> Vec<(Vec<u8>, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("constructions");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let toml = std::fs::read(p).unwrap();
            let json = spec::load(p).unwrap().to_json().into_bytes();
            (toml, json)
        })
        .collect()
}

/// Parse, and on success build the task set and read a prefix back; on
/// failure the message is one line that names the file.
fn exercise(bytes: &[u8], json: bool) -> Result<(), TestCaseError> {
    match spec::parse_bytes("fuzz.spec", bytes, json) {
        Ok(spec) => {
            let ts = TaskSet::try_from_spec(&spec).map_err(TestCaseError::fail)?;
            if let Some(p) = ts.prefixes.last() {
                let text = ts.render(&p.tokens);
                let tokens = ts.tokenize(&text).map_err(TestCaseError::fail)?;
                prop_assert_eq!(ts.render(&tokens), text);
            }
        }
        Err(e) => {
            let message = e.to_string();
            prop_assert!(message.starts_with("fuzz.spec"), "{}", message);
            prop_assert!(!message.contains('\n'), "two lines: {}", message);
        }
    }
    Ok(())
}

/// Byte edits: overwrite, insert or delete at random offsets.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(b"[]{}\",=\\\n\t \x00#'".to_vec())
    ];
    let edit = prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), byte).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
    ];
    prop::collection::vec(edit, 1..6)
}

fn apply(bytes: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for e in edits {
        let n = b.len().max(1);
        match *e {
            Edit::Set(i, x) if !b.is_empty() => b[i % n] = x,
            Edit::Insert(i, x) => b.insert(i % (b.len() + 1), x),
            Edit::Delete(i) if !b.is_empty() => {
                b.remove(i % n);
            }
            _ => {}
        }
    }
    b
}

#[test]
fn byte_mutations_never_panic() {
    let seeds = seeds();
    let ran = AtomicUsize::new(0);
    runner(3000)
        .run(
            &(0..seeds.len(), any::<bool>(), edits()),
            |(i, json, edits)| {
                let source = if json { &seeds[i].1 } else { &seeds[i].0 };
                ran.fetch_add(1, Ordering::Relaxed);
                exercise(&apply(source, &edits), json)
            },
        )
        .unwrap();
    println!(
        "byte mutations: {} inputs, none panicked",
        ran.load(Ordering::Relaxed)
    );
    assert_eq!(ran.load(Ordering::Relaxed), 3000);
}

/// Structure edits on the parsed spec, written back as TOML or JSON:
/// strings from a hostile pool put in any name, template or entity, and
/// templates or pairs duplicated or dropped.
#[derive(Debug, Clone)]
enum Change {
    Name(usize, String),
    Template(usize, usize, String),
    Key(usize, usize, String),
    Value(usize, usize, String),
    DuplicatePair(usize, usize),
    DropTemplates(usize),
    DropPairs(usize),
}

fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            " ",
            "<eos>",
            "{key}",
            "{value}",
            "{key} {value}",
            "{value} {key}",
            "a\tb",
            "a\nb",
            "a\0b",
            "a  b",
            " a",
            "{key} is {value}",
            "{key} {key} {value}",
            "is",
            "in",
            "is in",
            "\u{feff}",
            "{k}",
            "\"",
            "\\",
            "ü ß",
            "x",
            "Paris",
        ])
        .prop_map(String::from),
        "\\PC{0,12}",
    ]
}

fn changes() -> impl Strategy<Value = Vec<Change>> {
    let i = || any::<usize>();
    let change = prop_oneof![
        (i(), hostile()).prop_map(|(a, s)| Change::Name(a, s)),
        (i(), i(), hostile()).prop_map(|(a, b, s)| Change::Template(a, b, s)),
        (i(), i(), hostile()).prop_map(|(a, b, s)| Change::Key(a, b, s)),
        (i(), i(), hostile()).prop_map(|(a, b, s)| Change::Value(a, b, s)),
        (i(), i()).prop_map(|(a, b)| Change::DuplicatePair(a, b)),
        i().prop_map(Change::DropTemplates),
        i().prop_map(Change::DropPairs),
    ];
    prop::collection::vec(change, 1..4)
}

fn mutate(spec: &Spec, changes: &[Change]) -> Spec {
    let mut s = spec.clone();
    let n = s.tasks.len();
    for c in changes {
        match c {
            Change::Name(a, x) => s.tasks[a % n].name = x.clone(),
            Change::Template(a, b, x) => {
                let t = &mut s.tasks[a % n].templates;
                if !t.is_empty() {
                    let l = t.len();
                    t[b % l].text = x.clone();
                }
            }
            Change::Key(a, b, x) | Change::Value(a, b, x) => {
                let p = &mut s.tasks[a % n].pairs;
                if !p.is_empty() {
                    let l = p.len();
                    let pair = &mut p[b % l];
                    if matches!(c, Change::Key(..)) {
                        pair.key = x.clone();
                    } else {
                        pair.value = x.clone();
                    }
                }
            }
            Change::DuplicatePair(a, b) => {
                let p = &mut s.tasks[a % n].pairs;
                if !p.is_empty() {
                    let dup = p[b % p.len()].clone();
                    p.push(dup);
                }
            }
            Change::DropTemplates(a) => s.tasks[a % n].templates.clear(),
            Change::DropPairs(a) => s.tasks[a % n].pairs.clear(),
        }
    }
    s
}

#[test]
fn structure_mutations_never_panic() {
    let specs: Vec<Spec> = seeds()
        .iter()
        .map(|(toml, _)| spec::parse_bytes("seed.toml", toml, false).unwrap())
        .collect();
    let ran = AtomicUsize::new(0);
    runner(2000)
        .run(
            &(0..specs.len(), any::<bool>(), changes()),
            |(i, json, changes)| {
                let changed = mutate(&specs[i], &changes);
                let bytes = if json {
                    changed.to_json()
                } else {
                    changed.to_toml()
                };
                ran.fetch_add(1, Ordering::Relaxed);
                exercise(bytes.as_bytes(), json)
            },
        )
        .unwrap();
    println!(
        "structure mutations: {} inputs, none panicked",
        ran.load(Ordering::Relaxed)
    );
    assert_eq!(ran.load(Ordering::Relaxed), 2000);
}
