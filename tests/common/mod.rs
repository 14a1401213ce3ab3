//! Helpers shared by the integration tests: run the real binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn routecert(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_routecert"))
        .args(args)
        .output()
        .expect("the routecert binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// constructions/`name` (the library's one fixture loader; its
/// `task_set` loads one as a task set).
pub fn construction(name: &str) -> PathBuf {
    routecert::fixtures::path(name)
}

#[allow(unused_imports)]
pub use routecert::fixtures::task_set;

/// `verify --format json` on a file, with extra flags; returns (exit, JSON).
pub fn verify_json(path: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let p = path.to_str().unwrap();
    let mut args = vec!["verify", p, "--format", "json"];
    args.extend_from_slice(extra);
    let run = routecert(&args);
    let json = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr));
    (run.code, json)
}

/// (task, neurons, syntactic, semantic, complexity, bound) per expert.
pub fn experts(v: &serde_json::Value) -> Vec<(String, u64, u64, u64, u64, u64)> {
    v["experts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let n = |k: &str| e[k].as_u64().unwrap();
            (
                e["task"].as_str().unwrap().to_string(),
                n("neurons"),
                n("syntactic"),
                n("semantic"),
                n("complexity"),
                n("bound"),
            )
        })
        .collect()
}
