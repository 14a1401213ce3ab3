//! The model file: export → read round trips, `verify --weights` against
//! `verify`, decisions.json against the verifier, the f32 check, and every
//! bad input the reader must reject with a typed error (never a panic).

mod common;

use common::{construction, routecert, verify_json};
use proptest::prelude::*;
use routecert::construct::{self, ModelKind, Options};
use routecert::model::{Basis, LinearMap, Model, SparseVec};
use routecert::modelfile::{self, Dtype, ExportOptions, Layout, ModelFileError};
use routecert::scalar::{Rat, int};
use routecert::spec;
use routecert::taskset::TaskSet;
use routecert::verify::{self, Arith};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

const CONSTRUCTIONS: [&str; 7] = [
    "running_example.toml",
    "shared_keys.toml",
    "random_seed1.toml",
    "random_seed2.toml",
    "xor_expected_failure.toml",
    "xor_late_expected_failure.toml",
    "ambiguous_xor_expected_failure.toml",
];

fn taskset(name: &str) -> TaskSet {
    TaskSet::from_spec(&spec::load(&construction(name)).unwrap())
}

fn options(kind: ModelKind) -> ExportOptions {
    ExportOptions {
        dtype: Dtype::F64,
        layout: None,
        force: false,
        router_mode: match kind {
            ModelKind::Moe => Options::default().router.to_string(),
            ModelKind::Dense => "none".into(),
        },
        scale_router: false,
    }
}

fn export_to(
    model: &Model<Rat>,
    name: &str,
    dir: &Path,
    opts: &ExportOptions,
) -> Result<modelfile::Summary, ModelFileError> {
    let ts = taskset(name);
    let bytes = std::fs::read(construction(name)).unwrap();
    modelfile::export(model, &ts, &bytes, dir, opts)
}

fn build(name: &str, kind: ModelKind) -> Model<Rat> {
    construct::build(&taskset(name), &Options::default(), kind)
}

fn names(b: &Basis) -> Vec<String> {
    (0..b.len()).map(|i| b.name(i).to_string()).collect()
}

fn map_eq(a: &LinearMap<Rat>, b: &LinearMap<Rat>, what: &str) {
    assert_eq!((a.in_dim, a.out_dim), (b.in_dim, b.out_dim), "{what}: dims");
    for c in 0..a.in_dim {
        assert_eq!(a.column(c), b.column(c), "{what}: column {c}");
    }
}

fn vecs_eq(a: &[SparseVec<Rat>], b: &[SparseVec<Rat>], what: &str) {
    assert_eq!(a, b, "{what}");
}

/// Every field of two exact models.
fn assert_same(a: &Model<Rat>, b: &Model<Rat>) {
    assert_eq!(a.vocab, b.vocab);
    assert_eq!(names(&a.residual), names(&b.residual));
    assert_eq!(a.max_len, b.max_len);
    vecs_eq(&a.token_embed, &b.token_embed, "token_embed");
    vecs_eq(&a.pos_embed, &b.pos_embed, "pos_embed");
    assert_eq!(a.heads.len(), b.heads.len());
    for (x, y) in a.heads.iter().zip(&b.heads) {
        assert_eq!(x.name, y.name);
        assert_eq!(names(&x.qk), names(&y.qk));
        assert_eq!(names(&x.values), names(&y.values));
        map_eq(&x.query, &y.query, "query");
        map_eq(&x.key, &y.key, "key");
        map_eq(&x.value, &y.value, "value");
        map_eq(&x.output, &y.output, "output");
    }
    assert_eq!(a.router.inputs, b.router.inputs);
    map_eq(&a.router.weights, &b.router.weights, "router");
    assert_eq!(a.router.bias, b.router.bias);
    assert_eq!(a.router.synthesis, b.router.synthesis);
    assert_eq!(a.experts.len(), b.experts.len());
    for (x, y) in a.experts.iter().zip(&b.experts) {
        assert_eq!(x.name, y.name);
        assert_eq!(x.output_bias, y.output_bias);
        assert_eq!(x.neurons.len(), y.neurons.len());
        for (m, n) in x.neurons.iter().zip(&y.neurons) {
            assert_eq!(
                (&m.name, m.role, &m.read, &m.bias, &m.write),
                (&n.name, n.role, &n.read, &n.bias, &n.write)
            );
        }
    }
    map_eq(&a.unembed, &b.unembed, "unembed");
    assert_eq!(a.circuits.len(), b.circuits.len());
    for (x, y) in a.circuits.iter().zip(&b.circuits) {
        assert_eq!(
            (&x.name, &x.neurons, &x.gate, &x.gate_weight, &x.unexcluded),
            (&y.name, &y.neurons, &y.gate, &y.gate_weight, &y.unexcluded)
        );
    }
    assert_eq!(a.score_unit, b.score_unit);
}

#[test]
fn export_then_read_is_the_identical_exact_model_on_every_construction() {
    let tmp = tempfile::tempdir().unwrap();
    for name in CONSTRUCTIONS {
        for kind in [ModelKind::Moe, ModelKind::Dense] {
            for layout in [Layout::Dense, Layout::Sparse] {
                let model = build(name, kind);
                let dir = tmp.path().join(format!("{name}-{kind:?}-{layout:?}"));
                let opts = ExportOptions {
                    layout: Some(layout),
                    ..options(kind)
                };
                export_to(&model, name, &dir, &opts).unwrap();
                let read = modelfile::read(&dir).unwrap();
                assert!(read.exact, "{name} {kind:?}: exact.json used");
                assert_same(&model, &read.model);
            }
        }
    }
}

/// Export, then `verify --weights` must print `verify`'s JSON verdict.
#[test]
fn verify_weights_equals_verify_on_every_construction() {
    let tmp = tempfile::tempdir().unwrap();
    for name in CONSTRUCTIONS {
        for model in ["moe", "dense"] {
            let dir = tmp.path().join(format!("{name}-{model}"));
            let d = dir.to_str().unwrap();
            let spec = construction(name);
            let out = routecert(&["export", spec.to_str().unwrap(), "-o", d, "--model", model]);
            assert_eq!(out.code, 0, "{}", out.stderr);
            let (code, built) = verify_json(&spec, &["--model", model]);
            let (code_w, read) = verify_json(&spec, &["--model", model, "--weights", d]);
            assert_eq!(code, code_w, "{name} {model}");
            assert_eq!(built, read, "{name} {model}");
        }
    }
}

/// decisions.json's expert and argmax are what the verifier decided.
#[test]
fn decisions_json_agrees_with_the_verifier() {
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "running_example.toml",
        "random_seed1.toml",
        "shared_keys.toml",
    ] {
        let ts = taskset(name);
        let model = build(name, ModelKind::Moe);
        let dir = tmp.path().join(name);
        export_to(&model, name, &dir, &options(ModelKind::Moe)).unwrap();
        let text = std::fs::read_to_string(dir.join("decisions.json")).unwrap();
        let decisions: modelfile::json::Decisions = serde_json::from_str(&text).unwrap();
        let epsilon = Options::default().epsilon;
        let config = verify::Config::new(&epsilon)
            .arith(Arith::Exact)
            .decisions(true);
        let verdict = verify::verify(&ts, &model, &config);
        assert_eq!(decisions.prefixes.len(), ts.prefixes.len());
        let mut retrieval_checked = 0;
        for (p, d) in ts.prefixes.iter().zip(&decisions.prefixes) {
            let routed = verdict
                .decisions
                .iter()
                .find(|x| x.claim == verify::Claim::Routing && x.subject == d.text)
                .unwrap_or_else(|| panic!("no routing decision for {}", d.text));
            let expert = &model.experts[d.expert.unwrap()].name;
            assert!(
                routed.outcome.ends_with(&format!("(expert {expert})")),
                "{}: {}",
                d.text,
                routed.outcome
            );
            if let Some(r) = verdict
                .decisions
                .iter()
                .find(|x| x.claim == verify::Claim::Retrieval && x.subject == d.text)
            {
                let valid: Vec<usize> = p
                    .valid_next
                    .iter()
                    .map(|&t| model.token(ts.vocab.name(t)).unwrap())
                    .collect();
                let all_valid = d.argmax.iter().all(|t| valid.contains(t));
                assert_eq!(r.outcome == "holds", all_valid, "{}", d.text);
                retrieval_checked += 1;
            }
            let logits = d.logits.as_ref().expect("small sets carry logits");
            let top = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            for &t in &d.argmax {
                assert_eq!(logits[t], top);
            }
        }
        assert!(retrieval_checked > 0);
    }
}

#[test]
fn float_only_files_are_decided_by_intervals_and_run_in_f64() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = construction("running_example.toml");
    let s = spec.to_str().unwrap();
    let dir = tmp.path().join("m");
    let d = dir.to_str().unwrap();
    assert_eq!(routecert(&["export", s, "-o", d]).code, 0);
    std::fs::remove_file(dir.join("exact.json")).unwrap();
    let read = modelfile::read(&dir).unwrap();
    assert!(!read.exact);
    assert_eq!(read.model.score_unit, routecert::model::ScoreUnit::Natural);
    // W_Q carries ln 2, read back as the dyadic rational of its f64.
    let exact = build("running_example.toml", ModelKind::Moe);
    let (h, c) = (
        0,
        exact.heads[0]
            .query
            .column(0)
            .entries()
            .first()
            .map(|e| e.0),
    );
    if let Some(c) = c {
        let want = exact.heads[h].query.get(c, 0);
        let got = read.model.heads[h].query.get(c, 0);
        let f = num_traits::ToPrimitive::to_f64(&want).unwrap() * std::f64::consts::LN_2;
        assert_eq!(got, Rat::from_float(f).unwrap());
    }
    // Exact mode decides the float weights with rigorous intervals: the
    // running example's 39 prefixes are all proved, none left undecided.
    let (code, iv) = verify_json(&spec, &["--weights", d]);
    assert_eq!(code, 0, "{iv}");
    for claim in ["routing", "probability", "retrieval"] {
        assert_eq!(iv["claims"][claim]["proved"], 39, "{claim}: {iv}");
        assert_eq!(iv["claims"][claim]["undecided"], 0, "{claim}: {iv}");
    }
    // `--arith both` needs exact values, which float weights do not have.
    let out = routecert(&["verify", s, "--weights", d, "--arith", "both"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("needs exact values"), "{}", out.stderr);
    // `inspect` traces the float weights in intervals: head 2's uniform
    // attention is exact (scores all equal), head 1's two weights enclose
    // 1/3 and 2/3 (ln 2 rounded into W_Q moves them by ~1e-16), the router
    // picks located_in, and R, P and A are decided there as `verify` does.
    let out = routecert(&["inspect", s, "--weights", d, "--prefix", "Paris is"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let o = &out.stdout;
    assert!(o.contains("arithmetic: interval"), "{o}");
    assert!(o.contains("head2 (key) attention: 1:0.5, 2:0.5"), "{o}");
    let head1 = o.lines().find(|l| l.starts_with("head1")).unwrap();
    let bounds: Vec<f64> = head1
        .split(['[', ']', ','])
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    assert_eq!(bounds.len(), 4, "{head1}");
    assert!(bounds[0] <= 1.0 / 3.0 && 1.0 / 3.0 <= bounds[1] && bounds[1] - bounds[0] < 1e-14);
    assert!(bounds[2] <= 2.0 / 3.0 && 2.0 / 3.0 <= bounds[3] && bounds[3] - bounds[2] < 1e-14);
    assert!(o.contains("routed to expert: located_in\n"), "{o}");
    assert!(
        o.contains(
            "decided by the intervals: R routing Proved (margin ≥ 0.5), P probability Proved"
        ),
        "{o}"
    );
    assert!(o.contains("A retrieval Proved"), "{o}");
    // A prefix the spec lacks is traced without the oracle's verdicts.
    let out = routecert(&["inspect", s, "--weights", d, "--prefix", "is Paris"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("not a prefix of any sentence"));
    assert!(!out.stdout.contains("decided by the intervals"));
    // `--arith both` on inspect needs exact values too: exit 2 naming the
    // directory; `--arith f64` traces the same file.
    let out = routecert(&[
        "inspect",
        s,
        "--weights",
        d,
        "--prefix",
        "Paris is",
        "--arith",
        "both",
    ]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stderr.contains(d) && out.stderr.contains("needs exact values"),
        "{}",
        out.stderr
    );
    let out = routecert(&[
        "inspect",
        s,
        "--weights",
        d,
        "--prefix",
        "Paris is",
        "--arith",
        "f64",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("prefix: \"Paris is\""),
        "{}",
        out.stdout
    );
    let (code, f64_read) = verify_json(&spec, &["--weights", d, "--arith", "f64"]);
    let (code_b, f64_built) = verify_json(&spec, &["--arith", "f64"]);
    assert_eq!(code, code_b);
    assert_eq!(f64_read["claims"], f64_built["claims"]);
    // An edited file (hash mismatch) is certified from its floats.
    assert_eq!(routecert(&["export", s, "-o", d, "--force"]).code, 0);
    let mut bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    let read = modelfile::read(&dir).unwrap();
    assert!(!read.exact && read.floats_because.unwrap().contains("sha256"));
}

#[test]
fn f32_export_is_refused_when_f32_flips_a_decision_and_written_when_not() {
    let tmp = tempfile::tempdir().unwrap();
    let name = "running_example.toml";
    let f32 = ExportOptions {
        dtype: Dtype::F32,
        ..options(ModelKind::Moe)
    };
    // Accepted: every decision survives, and the f32 file reads back exactly.
    let model = build(name, ModelKind::Moe);
    let ok = tmp.path().join("ok");
    let s = export_to(&model, name, &ok, &f32).unwrap();
    assert_eq!(s.f32.unwrap().flips, 0);
    let read = modelfile::read(&ok).unwrap();
    assert!(read.exact);
    assert_same(&model, &read.model);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ok.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["dtype"], "float32");
    // Made to flip: the same constant 2^30 added to every router bias leaves
    // every exact decision alone, but f32's spacing there is 128, far above
    // the router's margins of 1/6: every score rounds to 2^30, the tie goes
    // to expert 0, and every prefix routed elsewhere flips.
    let mut shifted = model.clone();
    for b in &mut shifted.router.bias {
        *b += int(1 << 30);
    }
    let routed_elsewhere = {
        let ts = taskset(name);
        ts.prefixes
            .iter()
            .filter(|p| {
                let input: Vec<usize> = p
                    .tokens
                    .iter()
                    .map(|&t| model.token(ts.vocab.name(t)).unwrap())
                    .collect();
                routecert::eval::forward(&model, &input).unwrap().expert != 0
            })
            .count()
    };
    assert!(routed_elsewhere > 0);
    let bad = tmp.path().join("bad");
    match export_to(&shifted, name, &bad, &f32) {
        Err(ModelFileError::Refused(m)) => {
            assert!(m.contains(&format!("flips {routed_elsewhere} of")), "{m}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!bad.exists(), "nothing written");
    let forced = ExportOptions { force: true, ..f32 };
    let s = export_to(&shifted, name, &bad, &forced).unwrap();
    assert_eq!(s.f32.unwrap().flips, routed_elsewhere);
    // The f64 export of the shifted model keeps every decision.
    let f64_dir = tmp.path().join("f64");
    export_to(&shifted, name, &f64_dir, &options(ModelKind::Moe)).unwrap();
}

/// `--scale-router` keeps every verdict: on every MoE construction the
/// scaled export, read back exactly, gets the same claims, failures and
/// decisions as the built model; its routing margin is the original's times
/// the reported factor and at least 1; and on a router whose biases share a
/// constant 2^30 (f32 flips every prefix routed away from expert 0) the
/// centring removes that constant and the f32 file keeps every decision.
#[test]
fn scale_router_keeps_every_verdict_and_rescues_a_shared_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let epsilon = Options::default().epsilon;
    let config = verify::Config::new(&epsilon)
        .arith(Arith::Exact)
        .decisions(true);
    let scaled_opts = ExportOptions {
        scale_router: true,
        ..options(ModelKind::Moe)
    };
    for name in CONSTRUCTIONS {
        let ts = taskset(name);
        let model = build(name, ModelKind::Moe);
        let dir = tmp.path().join(format!("scaled-{name}"));
        let s = export_to(&model, name, &dir, &scaled_opts).unwrap();
        let read = modelfile::read(&dir).unwrap();
        assert!(read.exact, "{name}");
        let before = verify::verify(&ts, &model, &config);
        let after = verify::verify(&ts, &read.model, &config);
        let c = (&before.claims, &after.claims);
        for (a, b) in [
            (&c.0.routing, &c.1.routing),
            (&c.0.probability, &c.1.probability),
            (&c.0.retrieval, &c.1.retrieval),
            (&c.0.size, &c.1.size),
        ] {
            assert_eq!(
                (a.holds, a.failures, a.checked),
                (b.holds, b.failures, b.checked),
                "{name}"
            );
        }
        assert_eq!(c.0.probability.worst, c.1.probability.worst, "{name}");
        assert_eq!(c.0.retrieval.min_margin, c.1.retrieval.min_margin, "{name}");
        assert_eq!(before.decisions.len(), after.decisions.len());
        for (a, b) in before.decisions.iter().zip(&after.decisions) {
            assert_eq!(
                (&a.claim, &a.subject, &a.outcome),
                (&b.claim, &b.subject, &b.outcome)
            );
        }
        let sc = s
            .scaling
            .expect("an MoE model with several experts is scaled");
        let (m0, m1) = (sc.margin_before.unwrap(), sc.margin_after.unwrap());
        assert_eq!(&m0 * &sc.factor, m1, "{name}");
        assert_eq!(s.min_router_margin.as_ref(), Some(&m1), "{name}");
        // Scaled to margin ≥ 1 wherever no two experts tie.
        if m0 > int(0) {
            assert!(m1 >= int(1), "{name}: {m1}");
        }
        // Every router weight and bias of the file is an integer.
        for e in 0..read.model.router.bias.len() {
            assert!(read.model.router.bias[e].is_integer(), "{name}");
            for &d in &read.model.router.inputs {
                assert!(read.model.router.weights.get(e, d).is_integer(), "{name}");
            }
        }
    }
    // A constant shared by every bias: centring removes it.
    let name = "running_example.toml";
    let model = build(name, ModelKind::Moe);
    let mut shifted = model.clone();
    for b in &mut shifted.router.bias {
        *b += int(1 << 30);
    }
    let f32 = ExportOptions {
        dtype: Dtype::F32,
        ..scaled_opts
    };
    let s = export_to(&shifted, name, &tmp.path().join("shifted"), &f32).unwrap();
    assert_eq!(s.f32.unwrap().flips, 0);
    let sc = s.scaling.unwrap();
    assert!(sc.max_before >= int(1 << 30));
    assert!(sc.max_after < int(1000), "{}", sc.max_after);
}

// ---- bad input ----

fn fresh_export(tmp: &Path, tag: &str, layout: Layout) -> PathBuf {
    let dir = tmp.join(tag);
    let model = build("running_example.toml", ModelKind::Moe);
    let opts = ExportOptions {
        layout: Some(layout),
        ..options(ModelKind::Moe)
    };
    export_to(&model, "running_example.toml", &dir, &opts).unwrap();
    dir
}

/// Rewrite model.safetensors tensor by tensor (and drop exact.json, which no
/// longer matches).
fn rewrite(
    dir: &Path,
    edit: impl FnOnce(&mut Vec<(String, safetensors::tensor::Dtype, Vec<usize>, Vec<u8>)>),
) {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut t: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut t);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = t
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), out).unwrap();
}

fn message(dir: &Path) -> String {
    modelfile::read(dir)
        .expect_err("a bad model file")
        .to_string()
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn every_bad_model_file_is_a_typed_error_naming_file_and_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let d = fresh_export(tmp, "truncated", Layout::Dense);
    let st = d.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let m = message(&d);
    assert!(
        m.contains("model.safetensors: not a safetensors file"),
        "{m}"
    );

    let d = fresh_export(tmp, "garbage", Layout::Dense);
    let st = d.join("model.safetensors");
    let mut bytes = std::fs::read(&st).unwrap();
    bytes[8..16].copy_from_slice(b"!garbage");
    std::fs::write(&st, &bytes).unwrap();
    assert!(message(&d).contains("not a safetensors file"));

    let d = fresh_export(tmp, "huge-header", Layout::Dense);
    let st = d.join("model.safetensors");
    let mut bytes = std::fs::read(&st).unwrap();
    bytes[..8].copy_from_slice(&200_000_000u64.to_le_bytes());
    std::fs::write(&st, &bytes).unwrap();
    let m = message(&d);
    assert!(
        m.contains("not a safetensors file") && m.to_lowercase().contains("header"),
        "{m}"
    );

    let d = fresh_export(tmp, "unknown-dtype", Layout::Dense);
    let st = d.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    let text = String::from_utf8_lossy(&bytes).replacen("\"F64\"", "\"Q64\"", 1);
    std::fs::write(&st, text.as_bytes()).unwrap();
    assert!(message(&d).contains("not a safetensors file"));

    let d = fresh_export(tmp, "int-dtype", Layout::Dense);
    rewrite(&d, |t| {
        let x = t.iter_mut().find(|x| x.0 == "unembed.b_U").unwrap();
        x.1 = safetensors::tensor::Dtype::I64;
    });
    let m = message(&d);
    assert!(m.contains("tensor unembed.b_U: dtype I64"), "{m}");

    let d = fresh_export(tmp, "missing", Layout::Dense);
    rewrite(&d, |t| t.retain(|x| x.0 != "blocks.0.attn.W_K"));
    assert!(message(&d).contains("tensor blocks.0.attn.W_K: missing"));

    let d = fresh_export(tmp, "extra", Layout::Dense);
    rewrite(&d, |t| {
        t.push((
            "blocks.1.attn.W_K".into(),
            safetensors::tensor::Dtype::F64,
            vec![1],
            vec![0; 8],
        ))
    });
    assert!(message(&d).contains("tensor blocks.1.attn.W_K: not a tensor"));

    let d = fresh_export(tmp, "shape", Layout::Dense);
    rewrite(&d, |t| {
        let x = t.iter_mut().find(|x| x.0 == "unembed.b_U").unwrap();
        x.2 = vec![x.2[0] / 3, 3];
    });
    let m = message(&d);
    assert!(
        m.contains("tensor unembed.b_U: shape [5, 3], expected [15]"),
        "{m}"
    );

    for (layout, name) in [
        (Layout::Dense, "embed.W_E"),
        (Layout::Sparse, "embed.W_E.values"),
    ] {
        for bad in [f64::NAN, f64::INFINITY] {
            let d = fresh_export(tmp, &format!("nan-{layout:?}-{bad}"), layout);
            rewrite(&d, |t| {
                let x = t.iter_mut().find(|x| x.0 == name).unwrap();
                x.3[..8].copy_from_slice(&bad.to_le_bytes());
            });
            let m = message(&d);
            assert!(m.contains(&format!("tensor {name}: holds {bad}")), "{m}");
        }
    }

    let d = fresh_export(tmp, "unsorted", Layout::Sparse);
    rewrite(&d, |t| {
        let x = t.iter_mut().find(|x| x.0 == "unembed.W_U.indices").unwrap();
        let nnz = x.2[1];
        // Entries 0 and 1 swapped in every dimension: out of order.
        for d in 0..x.2[0] {
            for k in 0..8 {
                x.3.swap((d * nnz) * 8 + k, (d * nnz + 1) * 8 + k);
            }
        }
    });
    let m = message(&d);
    assert!(m.contains("tensor unembed.W_U.indices"), "{m}");

    let d = fresh_export(tmp, "no-config", Layout::Dense);
    std::fs::remove_file(d.join("config.json")).unwrap();
    let m = message(&d);
    assert!(m.contains("config.json: cannot read"), "{m}");

    let d = fresh_export(tmp, "config-tensors", Layout::Dense);
    edit_json(&d.join("config.json"), |v| {
        v["d_model"] = 55.into();
    });
    let m = message(&d);
    assert!(m.contains("config.json: shapes"), "{m}");

    let d = fresh_export(tmp, "config-shapes", Layout::Dense);
    edit_json(&d.join("config.json"), |v| {
        v["d_model"] = 55.into();
        let shapes = v["shapes"].as_object_mut().unwrap();
        for (_, s) in shapes.iter_mut() {
            for x in s.as_array_mut().unwrap() {
                if x == 54 {
                    *x = 55.into();
                }
            }
        }
    });
    let m = message(&d);
    assert!(
        m.contains("names.json: 54 residual names for d_model 55"),
        "{m}"
    );
    std::fs::remove_file(d.join("names.json")).unwrap();
    let m = message(&d);
    assert!(
        m.contains("model.safetensors: tensor") && m.contains("expected"),
        "{m}"
    );

    let d = fresh_export(tmp, "vocab", Layout::Dense);
    edit_json(&d.join("config.json"), |v| {
        v["vocab"][3] = v["vocab"][2].clone();
    });
    assert!(message(&d).contains("config.json: vocab lists \"located\" twice"));

    let d = fresh_export(tmp, "names", Layout::Dense);
    edit_json(&d.join("names.json"), |v| {
        v["residual"][1] = v["residual"][0].clone();
    });
    let m = message(&d);
    assert!(
        m.contains("names.json: residual: the name") && m.contains("twice"),
        "{m}"
    );
    let d = fresh_export(tmp, "roles", Layout::Dense);
    edit_json(&d.join("names.json"), |v| {
        v["experts"][0]["neurons"][0]["role"] = "magic".into();
    });
    assert!(message(&d).contains("names.json: neuron role \"magic\""));

    let d = fresh_export(tmp, "exact", Layout::Dense);
    edit_json(&d.join("exact.json"), |v| {
        v["tensors"]["unembed.W_U"]["entries"][0][2] = "1/0x".into();
    });
    assert!(message(&d).contains("exact.json: tensor unembed.W_U"));
}

#[test]
fn cli_bad_inputs_exit_2_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = construction("running_example.toml");
    let s = spec.to_str().unwrap();
    // DIR existing and non-empty.
    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), "mine").unwrap();
    let out = routecert(&["export", s, "-o", full.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains(&format!("{}: exists and is not empty", full.display())),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(full.join("keep.txt")).unwrap(),
        "mine"
    );
    // DIR not writable: its parent is a file.
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let inside = file.join("model");
    let out = routecert(&["export", s, "-o", inside.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(&inside.display().to_string()),
        "{}",
        out.stderr
    );
    // An empty existing DIR is fine; --force replaces a full one.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(
        routecert(&["export", s, "-o", empty.to_str().unwrap()]).code,
        0
    );
    assert_eq!(
        routecert(&["export", s, "-o", full.to_str().unwrap(), "--force"]).code,
        0
    );
    assert!(!full.join("keep.txt").exists() && full.join("model.safetensors").exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("routecert-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A spec token the model lacks: exit 2 naming the token.
    let m = tmp.path().join("m");
    assert_eq!(routecert(&["export", s, "-o", m.to_str().unwrap()]).code, 0);
    edit_json(&m.join("config.json"), |v| {
        v["vocab"][5] = "Lutetia".into();
    });
    let out = routecert(&["verify", s, "--weights", m.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no token \"Paris\""), "{}", out.stderr);
    let out = routecert(&[
        "inspect",
        s,
        "--weights",
        m.to_str().unwrap(),
        "--prefix",
        "Paris is",
    ]);
    assert_eq!(out.code, 2);
}

/// A permuted vocabulary is matched by name: the verdict is unchanged.
#[test]
fn a_permuted_vocabulary_verifies_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let name = "running_example.toml";
    let mut model = build(name, ModelKind::Moe);
    let n = model.vocab.len();
    let perm: Vec<usize> = (0..n).rev().collect(); // new id i = old id perm[i]
    model.vocab = perm.iter().map(|&o| model.vocab[o].clone()).collect();
    model.token_embed = perm.iter().map(|&o| model.token_embed[o].clone()).collect();
    let mut unembed = LinearMap::zero(model.unembed.in_dim, n);
    for c in 0..model.unembed.in_dim {
        for (t, w) in model.unembed.column(c).entries() {
            unembed.add(n - 1 - *t, c, w.clone());
        }
    }
    model.unembed = unembed;
    let dir = tmp.path().join("perm");
    export_to(&model, name, &dir, &options(ModelKind::Moe)).unwrap();
    let spec = construction(name);
    let (code, built) = verify_json(&spec, &[]);
    let (code_w, read) = verify_json(&spec, &["--weights", dir.to_str().unwrap()]);
    assert_eq!((code, &built["claims"]), (code_w, &read["claims"]));
}

/// Byte mutations of every file of a real export (both layouts), and
/// truncations: the reader answers Ok or a typed error, never a panic.
#[test]
fn the_reader_never_panics_on_mutated_exports() {
    use proptest::test_runner::{Config, TestRunner};
    const CASES: u32 = 400;
    let tmp = tempfile::tempdir().unwrap();
    let originals =
        [Layout::Dense, Layout::Sparse].map(|l| fresh_export(tmp.path(), &format!("{l:?}"), l));
    let ran = AtomicUsize::new(0);
    let errors = AtomicUsize::new(0);
    let strategy = (
        0usize..4,
        any::<bool>(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        proptest::option::of(any::<prop::sample::Index>()),
    );
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        ..Config::default()
    });
    runner
        .run(&strategy, |(file, sparse, edits, cut)| {
            let dir = tmp.path().join("case");
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir).unwrap();
            for entry in std::fs::read_dir(&originals[sparse as usize]).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
            }
            let name = [
                "model.safetensors",
                "config.json",
                "names.json",
                "exact.json",
            ][file];
            let path = dir.join(name);
            let mut bytes = std::fs::read(&path).unwrap();
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len()));
            }
            std::fs::write(&path, &bytes).unwrap();
            if modelfile::read(&dir).is_err() {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            ran.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    let (ran, errors) = (ran.into_inner(), errors.into_inner());
    eprintln!("mutated exports read: {ran}, rejected with a typed error: {errors}, none panicked");
    assert_eq!(ran, CASES as usize);
    // Most mutations break something the reader checks.
    assert!(errors > ran / 2, "{errors} of {ran}");
}

/// The nalgebra f64 pass (what `inspect --arith f64` runs) uses e^score on a
/// natural-unit model, as the generic forward pass does.
#[test]
fn the_f64_passes_agree_on_natural_unit_files() {
    use routecert::eval::{self, float::FloatModel};
    let tmp = tempfile::tempdir().unwrap();
    let dir = fresh_export(tmp.path(), "m", Layout::Sparse);
    std::fs::remove_file(dir.join("exact.json")).unwrap();
    let model = modelfile::read(&dir).unwrap().model.to_f64();
    let ts = taskset("running_example.toml");
    let compiled = FloatModel::new(&model);
    let mut differs_from_base_2 = 0;
    for p in &ts.prefixes {
        let input: Vec<usize> = p
            .tokens
            .iter()
            .map(|&t| model.token(ts.vocab.name(t)).unwrap())
            .collect();
        let (a, b) = (
            compiled.forward(&input).unwrap(),
            eval::forward(&model, &input).unwrap(),
        );
        assert_eq!(a.expert, b.expert);
        for t in 0..model.vocab.len() {
            let (x, y) = (a.logits.get(t), b.logits.get(t));
            assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{x} vs {y}");
        }
        let mut base2 = model.clone();
        base2.score_unit = routecert::model::ScoreUnit::Ln2;
        let c = eval::forward(&base2, &input).unwrap();
        if (0..model.vocab.len()).any(|t| (c.logits.get(t) - b.logits.get(t)).abs() > 1e-6) {
            differs_from_base_2 += 1;
        }
    }
    // Reading ln 2 · W_Q as base 2 would change the logits: the unit matters.
    assert!(differs_from_base_2 > 0);
}
