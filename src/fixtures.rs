//! The files of constructions/ as task sets, for tests and benchmarks: the
//! one loader every unit test, integration test (through tests/common) and
//! bench uses, so a fixture is named the same way everywhere; and the one
//! deliberate break of a built model that the isolation tests apply.

use crate::model::{Model, SparseVec};
use crate::scalar::Rat;
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

/// Remove the task gate from the dense model's first neuron whose name
/// starts with `name`: its pre-activation loses −G·Γ_k (the gate's evidence
/// and its large negative constant), so the neuron fires on other tasks'
/// prefixes and isolation must fail there. Panics if no such neuron or it
/// is in no circuit (a broken test).
pub fn ungate(model: &mut Model<Rat>, name: &str) {
    let n = model.experts[0]
        .neurons
        .iter()
        .position(|x| x.name.starts_with(name))
        .unwrap_or_else(|| panic!("no neuron named {name}*"));
    let c = model
        .circuit_of(n)
        .unwrap_or_else(|| panic!("neuron {name} is in no circuit"));
    let at = model.circuits[c]
        .neurons
        .iter()
        .position(|&x| x == n)
        .expect("a circuit lists its neurons");
    let (g, gate) = (
        model.circuits[c].gate_weight[at].clone(),
        model.circuits[c].gate.clone(),
    );
    let one = model.residual.get("one").expect("the residual has \"one\"");
    let constant = gate.get(one);
    let evidence = gate.add_scaled(&-constant.clone(), &SparseVec::unit(one));
    let neuron = &mut model.experts[0].neurons[n];
    neuron.read = neuron.read.add_scaled(&g, &evidence);
    neuron.bias += &g * &constant;
}

/// One task whose one template is {key}, then `len` words cycling through
/// `words` distinct ones (so a head-1 direction sums several positions),
/// then {value}, with three pairs: the long-template shape of issue 15,
/// 3·(len + 1) prefixes.
pub fn one_long_template(len: usize, words: usize) -> TaskSet {
    let template: Vec<String> = (0..len).map(|j| format!("w{}", j % words)).collect();
    let text = format!(
        "[[task]]\nname = \"long\"\ntemplates = [\"{{key}} {} {{value}}\"]\npairs = [[\"K1\", \"V1\"], [\"K2\", \"V2\"], [\"K3\", \"V1\"]]\n",
        template.join(" ")
    );
    let spec = spec::parse_bytes("long.toml", text.as_bytes(), false)
        .unwrap_or_else(|e| panic!("the long template: {e}"));
    TaskSet::from_spec(&spec)
}

/// Two tasks whose templates of `len` distinct words differ in the middle
/// one ("x" in task b), each followed by {key} {value}: past that word the
/// tasks' prefixes are disjoint, so the router must separate them there.
pub fn two_long_tasks(len: usize) -> TaskSet {
    let words: Vec<String> = (0..len).map(|j| format!("w{j}")).collect();
    let mut other = words.clone();
    other[len / 2] = "x".into();
    let text = format!(
        "[[task]]\nname = \"a\"\ntemplates = [\"{} {{key}} {{value}}\"]\npairs = [[\"K1\", \"V1\"], [\"K2\", \"V2\"]]\n\
         [[task]]\nname = \"b\"\ntemplates = [\"{} {{key}} {{value}}\"]\npairs = [[\"K3\", \"V1\"], [\"K4\", \"V3\"]]\n",
        words.join(" "),
        other.join(" ")
    );
    let spec = spec::parse_bytes("long.toml", text.as_bytes(), false)
        .unwrap_or_else(|e| panic!("the two long tasks: {e}"));
    TaskSet::from_spec(&spec)
}
