//! Stage 3: build the weights of the paper's models for a task set, on named
//! bases: the MoE model of Theorem 4.2 and the dense model of Theorem 4.1.
//!
//! The compiler is a chain of small stages, each in its own module:
//! - [`residual`]: name every residual direction;
//! - [`attention`]: embeddings, head 1 (syntactic) and head 2 (key);
//! - [`head1`]: head 1's scores, positional or content-aware;
//! - [`pattern`]: the syntactic patterns of each task's templates;
//! - [`expert`]: syntactic (interpolation) and semantic (recall) neurons;
//! - [`router`]: synthesise a linear top-1 router over exact features
//!   (grouping by router input, perceptron, closed form, exact LP fallback,
//!   each in its own submodule);
//! - [`scale`]: an exact post-pass that re-centres and rescales a router
//!   without changing a decision (`export --scale-router`);
//! - [`dense`]: the dense model of Theorem 4.1, one FFN split into gated
//!   circuits.
//!
//! [`build`] is the entry point for both; each construction ends in the
//! same assembly of embeddings, heads, router, FFN and W_U.

pub mod attention;
pub mod dense;
pub mod exclusion;
pub mod expert;
pub mod gate;
pub mod head1;
pub mod indicator;
pub mod pattern;
pub mod query;
pub mod residual;
pub mod router;
pub mod scale;
pub mod separate;

use crate::model::{Circuit, Expert, Head, LinearMap, Model, Router, Synthesis};
use crate::scalar::{Rat, int};
use crate::taskset::TaskSet;
use residual::Residual;

pub use crate::design::Margins;
pub use crate::design::RouterSynthesis;
pub use dense::build_dense;
pub use head1::{Head1, Head1Mode};
pub use router::RouterMode;

/// Which of the paper's two constructions to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ModelKind {
    /// Theorem 4.2: a router and one expert per task.
    #[default]
    Moe,
    /// Theorem 4.1: one FFN split into gated circuits, one per task.
    Dense,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelKind::Moe => "moe",
            ModelKind::Dense => "dense",
        })
    }
}

impl std::str::FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "moe" => Ok(ModelKind::Moe),
            "dense" => Ok(ModelKind::Dense),
            other => Err(format!("unknown model '{other}' (expected moe or dense)")),
        }
    }
}

/// Build the chosen model: the one entry point for both constructions
/// (each ends in the same assembly).
pub fn build(ts: &TaskSet, options: &Options, kind: ModelKind) -> Model<Rat> {
    match kind {
        ModelKind::Moe => build_moe(ts, options),
        ModelKind::Dense => build_dense(ts, options),
    }
}

/// [`build`], refused (with the estimate and the limit) when the MoE
/// router's training data, or the dense model's hidden states, would not
/// fit in memory: the check the command line runs, before anything large
/// is allocated.
pub fn try_build(ts: &TaskSet, options: &Options, kind: ModelKind) -> Result<Model<Rat>, String> {
    match kind {
        ModelKind::Moe => {
            let (residual, head1) = residual_and_head1(ts, options);
            router::check_fits(ts, &residual, &head1, options.router)?;
            let router = router::synthesize(ts, &residual, &head1, options);
            Ok(moe(ts, options, residual, &head1, router))
        }
        ModelKind::Dense => dense::try_build_dense(ts, options),
    }
}

/// The MoE router's memory check of [`try_build`] alone: routability holds
/// the same exact router inputs (and its LP rows beside them).
pub fn check_router_fits(ts: &TaskSet, options: &Options) -> Result<(), String> {
    let (residual, head1) = residual_and_head1(ts, options);
    router::check_fits(ts, &residual, &head1, options.router)
}

/// Choices the construction leaves open.
#[derive(Debug, Clone)]
pub struct Options {
    pub router: RouterMode,
    /// The target ε of the probability claim; sets the logit margins.
    pub epsilon: Rat,
    /// Perceptron epochs before router synthesis gives up.
    pub max_epochs: usize,
    /// Head 1's scores: positional (score j) or content-aware.
    pub head1: Head1Mode,
    /// When the perceptron finds no router, ask the exact LP (small training
    /// sets only). Tests that bound synthesis time on purpose turn it off.
    pub lp_fallback: bool,
    /// The dense model's circuit form (ignored by the MoE model).
    pub circuit: CircuitForm,
    /// How the MoE router's weights are found.
    pub synthesis: RouterSynthesis,
}

/// How the dense model writes a circuit's syntactic neurons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CircuitForm {
    /// One interpolation along a projection s_k, from a ramp neuron that is
    /// on at every prefix of the task (docs/construction.md).
    Ramp,
    /// The ramp form where its gate closes every lookalike; elsewhere one
    /// indicator neuron per pattern, on at that pattern's prefixes only
    /// (src/construct/indicator.rs). The default: it is the ramp form on
    /// every task set where the ramp form isolates.
    #[default]
    Split,
}

impl std::fmt::Display for CircuitForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CircuitForm::Ramp => "ramp",
            CircuitForm::Split => "split",
        })
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            router: RouterMode::SyntacticKey,
            epsilon: crate::scalar::rat(1, 1_000_000),
            max_epochs: 1000,
            head1: Head1Mode::Positional,
            lp_fallback: true,
            circuit: CircuitForm::default(),
            synthesis: RouterSynthesis::default(),
        }
    }
}

/// W_U: out:t is token t's logit, and keys:k spreads over every key of k.
fn unembedding(ts: &TaskSet, residual: &Residual) -> LinearMap<Rat> {
    let mut unembed = LinearMap::zero(residual.basis.len(), ts.vocab.len());
    for t in 0..ts.vocab.len() {
        unembed.add(t, residual.out[t], int(1));
    }
    for (k, task) in ts.tasks.iter().enumerate() {
        for key in task.keys() {
            unembed.add(key, residual.keys_of[k], int(1));
        }
    }
    unembed
}

/// The MoE model's residual directions and head 1, derived once from the
/// task set: router synthesis trains on the hidden states they give, and
/// assembly writes the same ones into the weights.
pub fn residual_and_head1(ts: &TaskSet, options: &Options) -> (Residual, Head1) {
    (Residual::new(ts), Head1::design(ts, options.head1))
}

/// Build the MoE model for a task set, its router synthesised.
pub fn build_moe(ts: &TaskSet, options: &Options) -> Model<Rat> {
    let (residual, head1) = residual_and_head1(ts, options);
    let router = router::synthesize(ts, &residual, &head1, options);
    moe(ts, options, residual, &head1, router)
}

/// Build the MoE model with given router weights instead of synthesised
/// ones: rows[e] has one weight per direction options.router reads (in
/// [`RouterMode::reads`] order), then the bias. `routability` installs its
/// exact LP router this way so that the verifier can judge it.
pub fn build_moe_routed_by(
    ts: &TaskSet,
    options: &Options,
    rows: &[Vec<Rat>],
    synthesis: Synthesis,
) -> Model<Rat> {
    let (residual, head1) = residual_and_head1(ts, options);
    let router = router::install(&residual, options.router, rows, synthesis);
    moe(ts, options, residual, &head1, router)
}

/// The MoE model around its router: both heads, one expert per task.
fn moe(
    ts: &TaskSet,
    options: &Options,
    residual: Residual,
    head1: &Head1,
    router: Router<Rat>,
) -> Model<Rat> {
    let margins = Margins::new(ts.vocab.len(), ts.max_len, &options.epsilon);
    let heads = attention::heads_with(ts, &residual, head1);
    let experts = (0..ts.tasks.len())
        .map(|k| expert::build_with(ts, k, &residual, &margins, head1))
        .collect();
    assemble(ts, residual, heads, router, experts, Vec::new())
}

/// The one model assembly, for both constructions: embeddings and W_U
/// from the residual, around the heads, router, FFN and (dense) circuits.
fn assemble(
    ts: &TaskSet,
    residual: Residual,
    heads: Vec<Head<Rat>>,
    router: Router<Rat>,
    experts: Vec<Expert<Rat>>,
    circuits: Vec<Circuit<Rat>>,
) -> Model<Rat> {
    let (token_embed, pos_embed) = attention::embeddings(ts, &residual);
    let unembed = unembedding(ts, &residual);
    Model {
        vocab: ts.vocab.names().to_vec(),
        residual: residual.basis,
        max_len: ts.max_len,
        token_embed,
        pos_embed,
        heads,
        router,
        experts,
        unembed,
        circuits,
        score_unit: crate::model::ScoreUnit::Ln2,
    }
}

#[cfg(test)]
mod model_tests {
    use super::*;
    use crate::eval::forward;
    use crate::model::NeuronRole;
    use crate::spec;
    use crate::taskset::TaskSet;
    use std::path::Path;

    fn running_example() -> TaskSet {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("constructions/running_example.toml");
        TaskSet::from_spec(&spec::load(&path).unwrap())
    }

    #[test]
    fn neurons_read_and_write_named_directions() {
        let ts = running_example();
        let model = build_moe(&ts, &Options::default());
        let located = &model.experts[0];
        assert_eq!(located.name, "located_in");
        assert_eq!(located.count(NeuronRole::Syntactic), 6);
        assert_eq!(located.count(NeuronRole::Semantic), 3);
        // Semantic neuron: reads h2:Paris scaled by L = 6, writes β_sem = 18.
        assert_eq!(
            model.explain_neuron(0, 6),
            "located_in/sem: Paris → France: ReLU(h2:Paris=6 + 0) -> out:France=18"
        );
        // Syntactic neurons read only head 1's block and the position.
        let first = model.explain_neuron(0, 0);
        assert!(
            first.starts_with("located_in/syn0: s ≥ s(\"⋆1\"): ReLU("),
            "{first}"
        );
        for n in &located.neurons[..6] {
            for (dir, _) in n.read.entries() {
                let name = model.residual.name(*dir);
                assert!(
                    name.starts_with("h1:") || name.starts_with("pos:"),
                    "{name}"
                );
            }
        }
        // W_U spreads keys:located_in over the task's three keys.
        let keys = model.residual.get("keys:located_in").unwrap();
        let spread: Vec<&str> = model
            .unembed
            .column(keys)
            .entries()
            .iter()
            .map(|(t, _)| model.vocab[*t].as_str())
            .collect();
        assert_eq!(spread, ["Paris", "Tokyo", "Lima"]);
    }

    fn load(name: &str) -> TaskSet {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("constructions")
            .join(name);
        TaskSet::from_spec(&spec::load(&path).unwrap())
    }

    #[test]
    fn designed_hidden_state_is_what_the_weights_compute() {
        // Router synthesis and routability train on the closed form; the
        // forward pass must produce exactly the same A' on every prefix,
        // for either head 1.
        for (file, head1) in [
            ("running_example.toml", Head1Mode::Positional),
            ("running_example.toml", Head1Mode::Content),
            ("xor_expected_failure.toml", Head1Mode::Content),
            ("shared_keys.toml", Head1Mode::Content),
        ] {
            let ts = load(file);
            let options = Options {
                head1,
                ..Options::default()
            };
            let model = build_moe(&ts, &options);
            let r = residual::Residual::new(&ts);
            let head = Head1::design(&ts, head1);
            for p in &ts.prefixes {
                let trace = forward(&model, &p.tokens).unwrap();
                let closed = attention::hidden_state_with(&r, &head, &p.tokens);
                assert_eq!(
                    trace.hidden,
                    closed,
                    "{file} {head1}: {}",
                    ts.render(&p.tokens)
                );
                if head1 == Head1Mode::Positional {
                    assert_eq!(closed, attention::hidden_state(&r, &p.tokens));
                }
            }
        }
    }

    #[test]
    fn content_head_weights_depend_on_the_word_pair() {
        // "red big" (alpha) and "blue big" (beta): the pairs red→big and
        // blue→big are exclusive to alpha and beta, levels 1 and 2, S = 13.
        let ts = load("xor_expected_failure.toml");
        let options = Options {
            head1: Head1Mode::Content,
            ..Options::default()
        };
        let model = build_moe(&ts, &options);
        let attention = |text: &str| {
            let tokens = ts.tokenize(text).unwrap();
            forward(&model, &tokens).unwrap().attention[0].clone()
        };
        assert_eq!(
            attention("red big"),
            vec![crate::scalar::rat(4096, 4097), crate::scalar::rat(1, 4097)]
        );
        let blue = attention("blue big");
        assert_eq!(blue[1], Rat::new(1.into(), ((1i64 << 25) + 1).into()));
        // The positional head gives both the same weights 1/3, 2/3.
        let positional = build_moe(&ts, &Options::default());
        let tokens = ts.tokenize("blue big").unwrap();
        assert_eq!(
            forward(&positional, &tokens).unwrap().attention[0],
            vec![crate::scalar::rat(1, 3), crate::scalar::rat(2, 3)]
        );
        // Named q·k coordinates: "attend red" carries S·level from tok:big.
        let head = &model.heads[0];
        let slot = head.qk.get("attend red").unwrap();
        let big = model.residual.get("tok:big").unwrap();
        assert_eq!(head.query.get(slot, big), int(13));
        assert_eq!(head.name, "head1 (syntactic, content)");
    }

    #[test]
    fn interpolation_is_exact_on_every_pattern() {
        // Routed to its task, each prefix's logits are exactly β_syn on the
        // next template word(s) and (L/i)·β_sem on values of the key seen.
        let ts = running_example();
        let model = build_moe(&ts, &Options::default());
        let tokens = ts.tokenize("Paris is located").unwrap();
        let t = forward(&model, &tokens).unwrap();
        let logit = |name: &str| t.logits.get(model.token(name).unwrap());
        assert_eq!(logit("in"), int(217));
        assert_eq!(logit("France"), int(36)); // (6/3)·18
        assert_eq!(logit("is"), int(0));
        assert_eq!(t.logits.nonzero.nnz(), 2);
    }
}
