//! `inspect --neuron` on every neuron of running_example, in both models:
//! the printed reads, bias and writes must be the weights, and the printed
//! firing prefixes exactly those where the forward pass routes to the
//! neuron's expert and read·A' + bias > 0 (with that activation).

mod common;

use common::{construction, routecert};
use routecert::construct::{self, ModelKind, Options};
use routecert::eval::forward;
use routecert::model::{Model, Neuron, SparseVec};
use routecert::scalar::Rat;
use routecert::spec;
use routecert::taskset::TaskSet;

/// What `inspect --neuron` printed about one neuron.
#[derive(Debug, Default, PartialEq)]
struct Printed {
    heading: String,
    reads: Vec<(String, String)>,
    bias: String,
    writes: Vec<(String, String)>,
    fires: Vec<(String, String)>,
}

fn parse(out: &str) -> Printed {
    let mut p = Printed::default();
    let term = |line: &str| {
        let (d, v) = line.rsplit_once(" = ").expect("DIRECTION = VALUE");
        (d.to_string(), v.to_string())
    };
    // The neuron's block follows the group header and a blank line.
    let block = out.split_once("\n\n").expect("a header, then the neuron").1;
    for line in block.lines() {
        if let Some(rest) = line.strip_prefix("  read ") {
            p.reads.push(term(rest));
        } else if let Some(rest) = line.strip_prefix("  bias = ") {
            p.bias = rest.to_string();
        } else if let Some(rest) = line.strip_prefix("  write ") {
            p.writes.push(term(rest));
        } else if let Some(rest) = line.strip_prefix("    \"") {
            let (prefix, a) = rest.rsplit_once("\" → ").expect("\"PREFIX\" → ACTIVATION");
            p.fires.push((prefix.to_string(), a.to_string()));
        } else if !line.starts_with("  ") {
            p.heading = line.to_string();
        }
    }
    p
}

fn named(model: &Model<Rat>, v: &SparseVec<Rat>) -> Vec<(String, String)> {
    v.entries()
        .iter()
        .map(|(i, x)| (model.residual.name(*i).to_string(), x.to_string()))
        .collect()
}

/// What the weights and the forward pass say about neuron `index` of
/// expert `expert`, addressed as `address`.
fn expected(
    ts: &TaskSet,
    model: &Model<Rat>,
    expert: usize,
    index: usize,
    address: &str,
) -> Printed {
    let neuron: &Neuron<Rat> = &model.experts[expert].neurons[index];
    let mut fires = Vec::new();
    for p in &ts.prefixes {
        let trace = forward(model, &p.tokens).unwrap();
        let pre = neuron.read.dot(&trace.hidden) + &neuron.bias;
        if trace.expert == expert && pre > Rat::from_integer(0.into()) {
            fires.push((ts.render(&p.tokens), pre.to_string()));
        }
    }
    Printed {
        heading: format!("{address}: {}", neuron.name),
        reads: named(model, &neuron.read),
        bias: neuron.bias.to_string(),
        writes: named(model, &neuron.write),
        fires,
    }
}

#[test]
fn every_neuron_of_the_running_example_by_address_and_by_name() {
    let path = construction("running_example.toml");
    let ts = TaskSet::from_spec(&spec::load(&path).unwrap());
    let spec_arg = path.to_str().unwrap();
    let mut walked = [0usize; 2];
    let mut firings = 0;
    for (m, (kind, flag)) in [(ModelKind::Moe, "moe"), (ModelKind::Dense, "dense")]
        .into_iter()
        .enumerate()
    {
        let model = construct::build(&ts, &Options::default(), kind);
        // (group name, expert, neuron indices in that expert).
        let groups: Vec<(String, usize, Vec<usize>)> = match kind {
            ModelKind::Moe => model
                .experts
                .iter()
                .enumerate()
                .map(|(e, x)| (x.name.clone(), e, (0..x.neurons.len()).collect()))
                .collect(),
            ModelKind::Dense => model
                .circuits
                .iter()
                .map(|c| (c.name.clone(), 0, c.neurons.clone()))
                .collect(),
        };
        for (group, expert, neurons) in &groups {
            for (n, &index) in neurons.iter().enumerate() {
                let address = format!("{group}/{n}");
                let run = routecert(&["inspect", spec_arg, "--model", flag, "--neuron", &address]);
                assert_eq!(run.code, 0, "{address}: {}", run.stderr);
                let printed = parse(&run.stdout);
                let want = expected(&ts, &model, *expert, index, &address);
                assert!(
                    printed.heading.starts_with(&want.heading),
                    "{flag} {address}: {} vs {}",
                    printed.heading,
                    want.heading
                );
                assert_eq!(
                    (
                        &printed.reads,
                        &printed.bias,
                        &printed.writes,
                        &printed.fires
                    ),
                    (&want.reads, &want.bias, &want.writes, &want.fires),
                    "{flag} {address}"
                );
                firings += want.fires.len();
                // The same neuron by its full name prints the same.
                let name = &model.experts[*expert].neurons[index].name;
                let by_name = routecert(&["inspect", spec_arg, "--model", flag, "--neuron", name]);
                assert_eq!(by_name.stdout, run.stdout, "{flag} {name}");
                walked[m] += 1;
            }
        }
    }
    // Every neuron of both models: 9 + 8 experts' neurons, 10 + 9 circuits'.
    assert_eq!(walked, [17, 19]);
    assert!(firings > 0);
}

#[test]
fn a_whole_expert_and_the_unknown_ones() {
    let path = construction("running_example.toml");
    let spec_arg = path.to_str().unwrap();
    let run = routecert(&["inspect", spec_arg, "--expert", "spoken_in"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("expert spoken_in: 8 neurons (5 syntactic, 3 semantic)"),
        "{}",
        run.stdout
    );
    let blocks = run.stdout.matches("\nspoken_in/").count();
    assert_eq!(blocks, 8);
    // The dense model's circuit, by task name, shows its gate.
    let dense = routecert(&[
        "inspect",
        spec_arg,
        "--model",
        "dense",
        "--expert",
        "located_in",
    ]);
    assert_eq!(dense.code, 0, "{}", dense.stderr);
    assert!(
        dense.stdout.contains("\ngate Γ_k: one=63,"),
        "{}",
        dense.stdout
    );
    // Unknown names: exit 2, one line naming it and what exists.
    for (args, message) in [
        (
            vec!["--neuron", "capital/7"],
            "routecert: --neuron: no expert named 'capital' (the experts are: located_in, spoken_in)\n",
        ),
        (
            vec!["--neuron", "located_in/9"],
            "routecert: --neuron: 'located_in' has no neuron 9 (it has 9: located_in/0 to located_in/8)\n",
        ),
        (
            vec!["--expert", "capital", "--model", "dense"],
            "routecert: --expert: no circuit named 'capital' (the circuits are: located_in, spoken_in)\n",
        ),
    ] {
        let mut full = vec!["inspect", spec_arg];
        full.extend(args);
        let run = routecert(&full);
        assert_eq!(run.code, 2, "{full:?}");
        assert_eq!(run.stderr, message, "{full:?}");
        assert!(run.stdout.is_empty());
    }
    let ambiguous = routecert(&["inspect", spec_arg, "--neuron", "located_in/sem"]);
    assert_eq!(ambiguous.code, 2);
    assert!(
        ambiguous
            .stderr
            .starts_with("routecert: --neuron: 'located_in/sem' names 3 neurons: located_in/6 = located_in/sem: Paris → France;"),
        "{}",
        ambiguous.stderr
    );
}

/// `inspect --neuron --weights DIR` describes the file's weights, not the
/// construction: a file whose neuron has another bias prints that bias, and
/// its firing prefixes are those of the edited weights' forward pass.
#[test]
fn inspect_neuron_reads_the_model_file_given_with_weights() {
    use routecert::modelfile::{self, Dtype, ExportOptions};
    let path = construction("running_example.toml");
    let ts = TaskSet::from_spec(&spec::load(&path).unwrap());
    let mut model = construct::build(&ts, &Options::default(), ModelKind::Moe);
    let address = "located_in/0";
    let built = expected(&ts, &model, 0, 0, address);
    // A large negative bias: the neuron no longer fires anywhere.
    model.experts[0].neurons[0].bias = Rat::from_integer((-1000).into());
    let edited = expected(&ts, &model, 0, 0, address);
    assert_ne!(built.bias, edited.bias);
    assert!(!built.fires.is_empty() && edited.fires.is_empty());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("edited");
    let opts = ExportOptions {
        dtype: Dtype::F64,
        layout: None,
        force: false,
        router_mode: Options::default().router.to_string(),
        scale_router: false,
    };
    let bytes = std::fs::read(&path).unwrap();
    modelfile::export(&model, &ts, &bytes, &dir, &opts).unwrap();
    let spec_arg = path.to_str().unwrap();
    let args = ["inspect", spec_arg, "--neuron", address, "--weights"];
    let run = routecert(&[&args[..], &[dir.to_str().unwrap()]].concat());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let same = |p: Printed, want: &Printed| {
        assert!(p.heading.starts_with(&want.heading), "{}", p.heading);
        assert_eq!(
            (p.reads, p.bias, p.writes, p.fires),
            (
                want.reads.clone(),
                want.bias.clone(),
                want.writes.clone(),
                want.fires.clone()
            )
        );
    };
    same(parse(&run.stdout), &edited);
    // Without --weights the construction is described.
    same(
        parse(&routecert(&["inspect", spec_arg, "--neuron", address]).stdout),
        &built,
    );
}
