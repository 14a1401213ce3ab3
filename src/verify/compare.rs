//! `--arith both`: every decision the exact run took, set against the f64
//! run's. Exact decides; a disagreement means f64 would have told the user
//! something false (or, on P, that the certificate is looser than the
//! float estimate), and is listed with both outcomes.

use super::verdict::{Claim, Verdict};
pub use super::verdict::{CrossCheck, Decision, Disagreement};
use std::collections::HashMap;

/// Compare two verdicts of the same model and task set, decision by
/// decision (matched by claim and subject; one missing on either side is a
/// disagreement too).
pub fn cross_check(exact: &Verdict, float: &Verdict) -> CrossCheck {
    let absent = || "(not decided)".to_string();
    let floats: HashMap<(Claim, &str), &str> = float
        .decisions
        .iter()
        .map(|d| ((d.claim, d.subject.as_str()), d.outcome.as_str()))
        .collect();
    let mut disagreements: Vec<Disagreement> = exact
        .decisions
        .iter()
        .filter_map(|d| {
            let f = floats.get(&(d.claim, d.subject.as_str())).copied();
            (f != Some(d.outcome.as_str())).then(|| Disagreement {
                claim: d.claim,
                subject: d.subject.clone(),
                exact: d.outcome.clone(),
                f64: f.map_or_else(absent, str::to_string),
            })
        })
        .collect();
    let exacts: HashMap<(Claim, &str), &str> = exact
        .decisions
        .iter()
        .map(|d| ((d.claim, d.subject.as_str()), d.outcome.as_str()))
        .collect();
    disagreements.extend(
        float
            .decisions
            .iter()
            .filter(|d| !exacts.contains_key(&(d.claim, d.subject.as_str())))
            .map(|d| Disagreement {
                claim: d.claim,
                subject: d.subject.clone(),
                exact: absent(),
                f64: d.outcome.clone(),
            }),
    );
    CrossCheck {
        f64_claims: float.claims.clone(),
        decisions: exact.decisions.len(),
        disagreements,
    }
}

#[cfg(test)]
mod tests {
    use crate::construct::RouterMode;
    use crate::construct::{Options, build_moe};
    use crate::scalar::{Rat, rat};
    use crate::taskset::TaskSet;
    use crate::verify::{Arith, Claim, Config, Verdict, verify};
    use num_bigint::BigInt;

    fn verify_both(ts: &TaskSet, model: &crate::model::Model<Rat>) -> Verdict {
        let eps = rat(1, 1_000_000);
        let config = Config::new(&eps)
            .router(RouterMode::SyntacticKey)
            .arith(Arith::Both);
        verify(ts, model, &config)
    }

    fn running_example() -> TaskSet {
        crate::fixtures::task_set("running_example.toml")
    }

    #[test]
    fn exact_and_f64_agree_on_the_construction() {
        let ts = running_example();
        let model = build_moe(&ts, &Options::default());
        let v = verify_both(&ts, &model);
        assert_eq!(v.arith, Arith::Both);
        let x = v.cross_check.unwrap();
        // 39 prefixes × (R, P, A) + 2 experts × S.
        assert_eq!(x.decisions, 39 * 3 + 2);
        assert!(x.disagreements.is_empty(), "{:?}", x.disagreements);
        assert!(x.f64_claims.routing.holds);
    }

    /// A deliberately tiny margin: add 2^100 to both router biases. The
    /// routing margins are untouched exactly, but far below the spacing of
    /// f64 at 2^100 (2^48), so in f64 every score ties and the first expert
    /// wins. The comparison must see every routing decision
    /// differ, and exact must still decide.
    #[test]
    fn the_cross_check_detects_a_disagreement_on_a_tiny_margin() {
        let ts = running_example();
        let mut model = build_moe(&ts, &Options::default());
        let huge = Rat::from_integer(BigInt::from(1) << 100);
        for b in &mut model.router.bias {
            *b += &huge;
        }
        let v = verify_both(&ts, &model);
        assert!(v.all_hold(), "exact still decides: every claim holds");
        let x = v.cross_check.unwrap();
        assert!(!x.f64_claims.routing.holds);
        let routing: Vec<_> = x
            .disagreements
            .iter()
            .filter(|d| d.claim == Claim::Routing)
            .collect();
        assert_eq!(routing.len(), 39);
        // located_in prefixes keep their expert but lose the strict margin;
        // spoken_in prefixes go to located_in's expert.
        assert!(
            routing
                .iter()
                .all(|d| d.exact.starts_with("holds") && d.f64.starts_with("fails"))
        );
        assert_eq!(
            routing
                .iter()
                .filter(|d| d.f64 == "fails (expert located_in)"
                    && d.exact == "holds (expert spoken_in)")
                .count(),
            18
        );
        // The misrouted spoken_in prefixes then fail P and A in f64: since
        // exact holds everywhere, those disagreements are exactly the f64
        // failures.
        let others: Vec<_> = x
            .disagreements
            .iter()
            .filter(|d| d.claim != Claim::Routing)
            .collect();
        assert!(
            others
                .iter()
                .all(|d| d.exact == "holds" && d.f64 == "fails")
        );
        assert!(!others.is_empty());
        assert_eq!(
            others.len(),
            x.f64_claims.probability.failures + x.f64_claims.retrieval.failures
        );
    }
}
