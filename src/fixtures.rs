//! The files of constructions/ as task sets, for tests and benchmarks: the
//! one loader every unit test, integration test (through tests/common) and
//! bench uses, so a fixture is named the same way everywhere.

use crate::spec;
use crate::taskset::TaskSet;
use std::path::PathBuf;

/// constructions/`name` in this crate's source tree.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("constructions")
        .join(name)
}

/// constructions/`name` loaded and expanded; panics with the spec error (a
/// broken fixture is a broken test).
pub fn task_set(name: &str) -> TaskSet {
    let p = path(name);
    let spec = spec::load(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()));
    TaskSet::from_spec(&spec)
}
