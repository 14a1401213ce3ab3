//! An independent reference for the verifier, used only by tests.
//!
//! - [`Dense`]: a naive forward pass over plain dense matrices of
//!   BigRational, built by reading every entry of the model's weight
//!   tensors. It shares nothing with `routecert::eval` (no sparse vectors, no
//!   `Scalar` trait, no shared helper): only the weights.
//! - [`oracle`]: V(w), C(w) and queries by brute force over every sentence
//!   of the spec, written without `routecert::taskset`.
//! - [`judge`]: the claims R, P, A, S decided from those two, with its own
//!   rigorous bounds on exp (range reduction by ln 2 and a Taylor remainder,
//!   unlike `routecert::expbound`).
//!
//! "Naive" means every matrix entry is stored; a product skips an input
//! coordinate that is exactly zero (adding W·0 changes no value), which is
//! what makes hundreds of prefixes per case affordable.

#![allow(dead_code)]

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};
use routecert::model::{LinearMap, Model, SparseVec};
use routecert::spec::{SlotSpec, Spec};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub type Rat = BigRational;
/// Rows of a dense matrix.
pub type Matrix = Vec<Vec<Rat>>;

pub const EOS: &str = "<eos>";

fn zero() -> Rat {
    Rat::zero()
}

/// Every entry of a linear map, as rows (outputs) × columns (inputs).
fn dense_map(map: &LinearMap<Rat>) -> Matrix {
    (0..map.out_dim)
        .map(|r| (0..map.in_dim).map(|c| map.get(r, c)).collect())
        .collect()
}

fn dense_vec(v: &SparseVec<Rat>, d: usize) -> Vec<Rat> {
    (0..d).map(|i| v.get(i)).collect()
}

/// y = M x.
fn mul(m: &Matrix, x: &[Rat]) -> Vec<Rat> {
    let mut y = vec![zero(); m.len()];
    for (c, xc) in x.iter().enumerate() {
        if xc.is_zero() {
            continue;
        }
        for (r, row) in m.iter().enumerate() {
            if !row[c].is_zero() {
                y[r] += &row[c] * xc;
            }
        }
    }
    y
}

fn dot(a: &[Rat], b: &[Rat]) -> Rat {
    let mut s = zero();
    for (x, y) in a.iter().zip(b) {
        if !x.is_zero() && !y.is_zero() {
            s += x * y;
        }
    }
    s
}

fn add(a: &mut [Rat], b: &[Rat]) {
    for (x, y) in a.iter_mut().zip(b) {
        if !y.is_zero() {
            *x += y;
        }
    }
}

/// 2^s for an integer s, exactly.
fn pow2(s: &Rat) -> Result<Rat, String> {
    if !s.is_integer() {
        return Err(format!("attention score {s} is not an integer"));
    }
    let n = s
        .to_integer()
        .to_i64()
        .filter(|n| n.abs() < 1 << 20)
        .ok_or_else(|| format!("attention score {s} is out of range"))?;
    let p = BigInt::one() << n.unsigned_abs();
    Ok(if n >= 0 {
        Rat::from_integer(p)
    } else {
        Rat::new(BigInt::one(), p)
    })
}

struct DenseHead {
    query: Matrix,
    key: Matrix,
    value: Matrix,
    output: Matrix,
}

struct DenseExpert {
    name: String,
    /// One row per neuron: what it reads.
    read: Matrix,
    bias: Vec<Rat>,
    /// One row per neuron: what it writes.
    write: Matrix,
    output_bias: Vec<Rat>,
}

/// The model as dense matrices.
pub struct Dense {
    pub vocab: Vec<String>,
    max_len: usize,
    token: Matrix,
    position: Matrix,
    heads: Vec<DenseHead>,
    router: Matrix,
    router_bias: Vec<Rat>,
    experts: Vec<DenseExpert>,
    unembed: Matrix,
}

/// What the reference forward pass computed at the last position.
#[derive(Debug, Clone)]
pub struct RefTrace {
    pub router_scores: Vec<Rat>,
    pub expert: usize,
    /// One logit per vocabulary token.
    pub logits: Vec<Rat>,
}

impl Dense {
    pub fn new(model: &Model<Rat>) -> Dense {
        let d = model.residual.len();
        Dense {
            vocab: model.vocab.clone(),
            max_len: model.max_len,
            token: model.token_embed.iter().map(|v| dense_vec(v, d)).collect(),
            position: model.pos_embed.iter().map(|v| dense_vec(v, d)).collect(),
            heads: model
                .heads
                .iter()
                .map(|h| DenseHead {
                    query: dense_map(&h.query),
                    key: dense_map(&h.key),
                    value: dense_map(&h.value),
                    output: dense_map(&h.output),
                })
                .collect(),
            router: dense_map(&model.router.weights),
            router_bias: model.router.bias.clone(),
            experts: model
                .experts
                .iter()
                .map(|e| DenseExpert {
                    name: e.name.clone(),
                    read: e.neurons.iter().map(|n| dense_vec(&n.read, d)).collect(),
                    bias: e.neurons.iter().map(|n| n.bias.clone()).collect(),
                    write: e.neurons.iter().map(|n| dense_vec(&n.write, d)).collect(),
                    output_bias: dense_vec(&e.output_bias, d),
                })
                .collect(),
            unembed: dense_map(&model.unembed),
        }
    }

    pub fn expert_name(&self, e: usize) -> &str {
        &self.experts[e].name
    }

    /// A' = A + MHA(A), router, top-1 expert, A'' = A' + FF(A'), logits.
    pub fn forward(&self, tokens: &[usize]) -> Result<RefTrace, String> {
        if tokens.is_empty() || tokens.len() > self.max_len {
            return Err(format!(
                "{} tokens for {} positions",
                tokens.len(),
                self.max_len
            ));
        }
        let inputs: Vec<Vec<Rat>> = tokens
            .iter()
            .enumerate()
            .map(|(j, &t)| {
                let mut x = self.token.get(t).ok_or("unknown token")?.clone();
                add(&mut x, &self.position[j]);
                Ok(x)
            })
            .collect::<Result<_, String>>()?;
        let last = &inputs[inputs.len() - 1];
        let mut hidden = last.clone();
        for head in &self.heads {
            let q = mul(&head.query, last);
            // Scores are in units of ln 2: weight_j = 2^{s_j} / Σ_l 2^{s_l}.
            let powers: Vec<Rat> = inputs
                .iter()
                .map(|x| pow2(&dot(&q, &mul(&head.key, x))))
                .collect::<Result<_, _>>()?;
            let total: Rat = powers.iter().fold(zero(), |a, b| a + b);
            let mut out = vec![zero(); head.value.len()];
            for (p, x) in powers.iter().zip(&inputs) {
                let v = mul(&head.value, x);
                let w = p / &total;
                for (o, vi) in out.iter_mut().zip(&v) {
                    if !vi.is_zero() {
                        *o += &w * vi;
                    }
                }
            }
            add(&mut hidden, &mul(&head.output, &out));
        }
        let mut router_scores = mul(&self.router, &hidden);
        for (s, b) in router_scores.iter_mut().zip(&self.router_bias) {
            *s += b;
        }
        // Top-1, the first expert among equal scores.
        let mut expert = 0;
        for e in 1..router_scores.len() {
            if router_scores[e] > router_scores[expert] {
                expert = e;
            }
        }
        let ffn = self.experts.get(expert).ok_or("no experts")?;
        let mut output = hidden.clone();
        add(&mut output, &ffn.output_bias);
        for ((read, bias), write) in ffn.read.iter().zip(&ffn.bias).zip(&ffn.write) {
            let act = dot(read, &hidden) + bias;
            if act.is_positive() {
                for (o, w) in output.iter_mut().zip(write) {
                    if !w.is_zero() {
                        *o += &act * w;
                    }
                }
            }
        }
        Ok(RefTrace {
            router_scores,
            expert,
            logits: mul(&self.unembed, &output),
        })
    }
}

/// The oracle's facts about one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// V(w), by name (with <eos> after a complete sentence).
    pub valid: BTreeSet<String>,
    /// C(w), by task name.
    pub tasks: BTreeSet<String>,
    /// ⋆2 comes next in every sentence w begins.
    pub is_query: bool,
}

/// One sentence of the spec, with what fills each position.
struct Sentence {
    task: String,
    tokens: Vec<String>,
    /// "word", "key", "value", then "end" for <eos>.
    roles: Vec<&'static str>,
}

/// Every prefix of every sentence with its facts, by brute force: list all
/// sentences, then for each prefix scan all of them.
pub fn oracle(spec: &Spec) -> BTreeMap<Vec<String>, Facts> {
    let mut sentences = Vec::new();
    for task in &spec.tasks {
        for template in &task.templates {
            for pair in &task.pairs {
                let mut tokens = Vec::new();
                let mut roles = Vec::new();
                for slot in &template.slots {
                    let (t, r) = match slot {
                        SlotSpec::Word(w) => (w.clone(), "word"),
                        SlotSpec::Key => (pair.key.clone(), "key"),
                        SlotSpec::Value => (pair.value.clone(), "value"),
                    };
                    tokens.push(t);
                    roles.push(r);
                }
                tokens.push(EOS.to_string());
                roles.push("end");
                sentences.push(Sentence {
                    task: task.name.clone(),
                    tokens,
                    roles,
                });
            }
        }
    }
    let mut prefixes: BTreeSet<Vec<String>> = BTreeSet::new();
    for s in &sentences {
        for len in 1..s.tokens.len() {
            prefixes.insert(s.tokens[..len].to_vec());
        }
    }
    prefixes
        .into_iter()
        .map(|w| {
            let mut valid = BTreeSet::new();
            let mut tasks = BTreeSet::new();
            let mut is_query = true;
            for s in &sentences {
                if s.tokens.len() > w.len() && s.tokens[..w.len()] == w[..] {
                    valid.insert(s.tokens[w.len()].clone());
                    tasks.insert(s.task.clone());
                    is_query &= s.roles[w.len()] == "value";
                }
            }
            (
                w,
                Facts {
                    valid,
                    tasks,
                    is_query,
                },
            )
        })
        .collect()
}

/// L: the longest template of the spec.
pub fn max_len(spec: &Spec) -> usize {
    spec.tasks
        .iter()
        .flat_map(|t| t.templates.iter().map(|x| x.slots.len()))
        .max()
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Rigorous bounds on e^y, independent of routecert::expbound: e^y = 2^n e^r
// with n = ⌊y / ln 2⌋ and r = y − n ln 2 ∈ [−0.01, 0.71], and e^r by a Taylor
// polynomial of degree 30 in fixed point (integers at scale 2^P, every term
// rounded down for the lower bound and up for the upper one) plus the
// Lagrange remainder |R| ≤ 3/31! for |r| ≤ 1. No gcd of huge rationals.

/// Bits of the fixed-point scale.
const P: usize = 128;
const DEGREE: u32 = 30;
/// ln 2 to 60 decimals (truncated): ln 2 ∈ [D, D + 1] · 10^-60.
const LN2_DIGITS: &str = "693147180559945309417232121458176568075500134360255254120680";

fn floor_div(a: &BigInt, b: &BigInt) -> BigInt {
    use num_integer::Integer;
    a.div_floor(b)
}

fn ceil_div(a: &BigInt, b: &BigInt) -> BigInt {
    -floor_div(&-a, b)
}

/// ln 2 · 2^P lies in [lo, hi].
fn ln2_scaled() -> (BigInt, BigInt) {
    let d: BigInt = LN2_DIGITS.parse().unwrap();
    let ten = BigInt::from(10).pow(LN2_DIGITS.len() as u32);
    let one = BigInt::one() << P;
    (
        floor_div(&(&d * &one), &ten),
        ceil_div(&((d + 1) * &one), &ten),
    )
}

/// e^{m / 2^P} · 2^P rounded down (up = false) or up, for |m| ≤ 2^P.
fn exp_fixed(m: &BigInt, up: bool) -> BigInt {
    let one = BigInt::one() << P;
    if m.is_negative() {
        // e^{-x} = 1 / e^{x}: divide by a bound on the other side.
        let other = exp_fixed(&-m, !up);
        let num = &one * &one;
        return if up {
            ceil_div(&num, &other)
        } else {
            floor_div(&num, &other)
        };
    }
    let mut term = one.clone();
    let mut sum = one.clone();
    for j in 1..=DEGREE {
        let num = &term * m;
        let den = &one * BigInt::from(j);
        term = if up {
            ceil_div(&num, &den)
        } else {
            floor_div(&num, &den)
        };
        sum += &term;
    }
    if up {
        let mut fact = BigInt::one();
        for j in 1..=DEGREE + 1 {
            fact *= j;
        }
        sum += ceil_div(&(BigInt::from(3) * &one), &fact);
    }
    sum
}

/// A bound on e^y: below it (up = false) or above it.
fn exp_bound(y: &Rat, up: bool) -> Rat {
    let one = BigInt::one() << P;
    let scaled = y * Rat::from_integer(one.clone());
    let y_fixed = if up {
        scaled.ceil().to_integer()
    } else {
        scaled.floor().to_integer()
    };
    let (ln2_lo, ln2_hi) = ln2_scaled();
    let n = floor_div(&y_fixed, &ln2_hi).to_i64().unwrap_or(0);
    // r = y − n ln 2: at its smallest with ln 2 at its largest when n ≥ 0.
    let ln2 = if (n >= 0) != up { &ln2_hi } else { &ln2_lo };
    let r = &y_fixed - BigInt::from(n) * ln2;
    let e = exp_fixed(&r, up);
    let shift = n.unsigned_abs().min(1 << 22) as usize;
    let (num, den) = if n >= 0 {
        (e << shift, one)
    } else {
        (e, one << shift)
    };
    Rat::new(num, den)
}

/// e^y ≥ this.
pub fn exp_lower(y: &Rat) -> Rat {
    exp_bound(y, false)
}

/// e^y ≤ this.
pub fn exp_upper(y: &Rat) -> Rat {
    exp_bound(y, true)
}

/// Lower and upper bounds on P(invalid | w) from exact logits.
#[derive(Debug, Clone)]
pub struct InvalidMass {
    pub lo: Rat,
    pub hi: Rat,
}

/// Bounds on Σ_{t invalid} e^{z_t} / Σ_t e^{z_t}, shifted by the best valid
/// logit so that every exponent near the top is small.
pub fn invalid_mass(
    logits: &[Rat],
    valid: &BTreeSet<usize>,
    cache: &mut HashMap<Rat, (Rat, Rat)>,
) -> InvalidMass {
    let Some(best) = valid.iter().map(|&t| &logits[t]).max().cloned() else {
        return InvalidMass {
            lo: Rat::one(),
            hi: Rat::one(),
        };
    };
    // Group equal logits: most tokens sit at exactly 0.
    let mut groups: HashMap<(&Rat, bool), i64> = HashMap::new();
    for (t, z) in logits.iter().enumerate() {
        *groups.entry((z, valid.contains(&t))).or_default() += 1;
    }
    let (mut inv_lo, mut inv_hi, mut val_lo, mut val_hi) = (zero(), zero(), zero(), zero());
    for ((z, is_valid), count) in groups {
        let y = z - &best;
        let (lo, hi) = cache
            .entry(y.clone())
            .or_insert_with(|| (exp_lower(&y), exp_upper(&y)))
            .clone();
        let count = Rat::from_integer(count.into());
        if is_valid {
            val_lo += lo * &count;
            val_hi += hi * &count;
        } else {
            inv_lo += lo * &count;
            inv_hi += hi * &count;
        }
    }
    // x / (x + v) grows with x and falls with v.
    let ratio = |x: &Rat, v: &Rat| {
        if x.is_zero() { zero() } else { x / (x + v) }
    };
    InvalidMass {
        lo: ratio(&inv_lo, &val_hi),
        hi: ratio(&inv_hi, &val_lo),
    }
}

/// The reference's verdict on one prefix.
#[derive(Debug, Clone)]
pub struct PrefixVerdict {
    pub text: String,
    pub facts: Facts,
    pub expert: String,
    /// R: routed into C(w), strictly above every expert outside C(w).
    pub routing: bool,
    /// A: the best valid logit is strictly above every invalid one.
    pub retrieval: bool,
    /// P: bounds on P(invalid).
    pub invalid: InvalidMass,
    /// Every token of the prefix is in the model and the pass ran.
    pub ran: bool,
}

/// The reference's verdict on a task set: one entry per prefix, and the
/// size claim per task.
#[derive(Debug, Clone)]
pub struct RefVerdict {
    pub prefixes: Vec<PrefixVerdict>,
    /// (task, neurons, L·|T(k)| + |Δk|, c(k)), None if the model has no
    /// expert of that name.
    pub sizes: Vec<(String, Option<usize>, usize, usize)>,
}

impl RefVerdict {
    pub fn size_holds(&self) -> bool {
        self.sizes
            .iter()
            .all(|(_, n, bound, _)| n.is_some_and(|n| n <= *bound))
    }
}

/// Decide every claim on every prefix from the dense model and the
/// brute-force oracle.
pub fn judge(spec: &Spec, model: &Model<Rat>) -> RefVerdict {
    let dense = Dense::new(model);
    let id: HashMap<&str, usize> = dense
        .vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut cache = HashMap::new();
    let mut prefixes = Vec::new();
    for (w, facts) in oracle(spec) {
        let text = w.join(" ");
        let tokens: Option<Vec<usize>> = w.iter().map(|t| id.get(t.as_str()).copied()).collect();
        let trace = tokens
            .ok_or_else(|| "unknown token".to_string())
            .and_then(|t| dense.forward(&t));
        let Ok(trace) = trace else {
            prefixes.push(PrefixVerdict {
                text,
                facts,
                expert: String::new(),
                routing: false,
                retrieval: false,
                invalid: InvalidMass {
                    lo: Rat::one(),
                    hi: Rat::one(),
                },
                ran: false,
            });
            continue;
        };
        let compatible: BTreeSet<usize> = (0..dense.experts.len())
            .filter(|&e| facts.tasks.contains(dense.expert_name(e)))
            .collect();
        let chosen = &trace.router_scores[trace.expert];
        let routing = compatible.contains(&trace.expert)
            && (0..trace.router_scores.len())
                .filter(|e| !compatible.contains(e))
                .all(|e| trace.router_scores[e] < *chosen);
        let valid: BTreeSet<usize> = facts
            .valid
            .iter()
            .filter_map(|t| id.get(t.as_str()).copied())
            .collect();
        let best_valid = valid.iter().map(|&t| &trace.logits[t]).max();
        let best_invalid = (0..trace.logits.len())
            .filter(|t| !valid.contains(t))
            .map(|t| &trace.logits[t])
            .max();
        let retrieval = match (best_valid, best_invalid) {
            (Some(v), Some(i)) => v > i,
            (Some(_), None) => true,
            (None, _) => false,
        };
        prefixes.push(PrefixVerdict {
            text,
            expert: dense.expert_name(trace.expert).to_string(),
            routing,
            retrieval,
            invalid: invalid_mass(&trace.logits, &valid, &mut cache),
            facts,
            ran: true,
        });
    }
    let l = max_len(spec);
    let sizes = spec
        .tasks
        .iter()
        .map(|t| {
            let templates: usize = t.templates.iter().map(|x| x.slots.len()).sum();
            let neurons = model
                .experts
                .iter()
                .find(|e| e.name == t.name)
                .map(|e| e.neurons.len());
            (
                t.name.clone(),
                neurons,
                l * t.templates.len() + t.pairs.len(),
                templates + t.pairs.len(),
            )
        })
        .collect();
    RefVerdict { prefixes, sizes }
}
