//! Render a routability report: the decision, the evidence (the verified
//! router, or the certificate and its check), and the conflicting prefixes.

use super::Format;
use crate::routability::Report;
use crate::routability::certificate::{Proof, Tokens};
use std::fmt::Write;

fn title(r: &Report) -> &'static str {
    match r.decision {
        "routable" => "ROUTABLE",
        "not_routable" => "NOT ROUTABLE",
        _ => "UNDECIDED",
    }
}

fn quote(p: &Tokens) -> String {
    format!("\"{}\"", p.join(" "))
}

fn facts(r: &Report) -> String {
    let lp = &r.lp;
    let counts = format!(
        "{} prefixes, {} distinct router inputs, {} ambiguous",
        r.prefixes, r.router_inputs, r.ambiguous
    );
    if lp.lp_solves == 0 {
        return format!("{counts} | decided without an LP");
    }
    format!(
        "{counts} | presolve routed {} of {} constraining inputs | exact LP: {} solves, {} pivots, largest {} rows × {} columns",
        lp.presolved, lp.constraining, lp.lp_solves, lp.pivots, lp.largest.0, lp.largest.1
    )
}

/// A proof as indented lines.
fn proof_lines(proof: &Proof, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match proof {
        Proof::IdenticalInputs { prefixes } => {
            let list: Vec<String> = prefixes.iter().map(quote).collect();
            let _ = writeln!(
                out,
                "{pad}identical router inputs: {} reach the router with the same input, and no task is compatible with all of them",
                list.join(", ")
            );
        }
        Proof::Farkas { rows } => {
            let _ = writeln!(
                out,
                "{pad}Farkas certificate: each row is a score difference every correct router keeps > 0 at that prefix's router input"
            );
            for row in rows {
                let at: Vec<String> = row.prefixes.iter().map(quote).collect();
                let _ = writeln!(
                    out,
                    "{pad}  {} × [{} − {}] at {}",
                    row.multiplier,
                    row.task,
                    row.against,
                    at.join(" = ")
                );
            }
            let _ = writeln!(
                out,
                "{pad}  sum = 0 on every (expert, input direction) and the bias: the rows cannot all be positive"
            );
        }
        Proof::Cases { prefixes, cases } => {
            let list: Vec<String> = prefixes.iter().map(quote).collect();
            let tasks: Vec<&str> = cases.iter().map(|c| c.task.as_str()).collect();
            let _ = writeln!(
                out,
                "{pad}case split: the router sends {} to one of {{{}}}, strictly above every other task",
                list.join(" = "),
                tasks.join(", ")
            );
            for case in cases {
                let _ = writeln!(out, "{pad}  case {}:", case.task);
                proof_lines(&case.proof, indent + 4, out);
            }
        }
    }
}

pub fn text(r: &Report, source: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{source}: router {}, head 1 {}, {} experts",
        r.router, r.head1, r.experts
    );
    let _ = writeln!(s, "{}: {}", title(r), r.reason);
    let _ = writeln!(s, "{}", facts(r));
    if let Some(routing) = &r.routing {
        let _ = writeln!(
            s,
            "verify with this router: routing {} ({} of {} prefixes fail), smallest margin {}",
            if routing.holds { "holds" } else { "FAILS" },
            routing.failures,
            routing.checked,
            routing
                .worst
                .as_ref()
                .map_or_else(|| "n/a".to_string(), |w| w.text())
        );
    }
    if let Some(cert) = &r.certificate {
        let _ = writeln!(s);
        proof_lines(&cert.proof, 0, &mut s);
        let _ = writeln!(
            s,
            "certificate check (exact, on the forward pass, separate from the solver): {}",
            r.check.as_deref().unwrap_or("not run")
        );
        let minimal = matches!(
            cert.proof,
            Proof::Farkas { .. } | Proof::IdenticalInputs { .. }
        );
        let _ = writeln!(
            s,
            "\n{} ({}{}):",
            if minimal {
                "minimal conflicting prefixes"
            } else {
                "prefixes the proof uses"
            },
            r.conflict.len(),
            if minimal {
                "; every proper subset of them can be routed"
            } else {
                ""
            }
        );
        let width = r
            .conflict
            .iter()
            .map(|c| c.prefix.chars().count())
            .max()
            .unwrap_or(0);
        for c in &r.conflict {
            let _ = writeln!(
                s,
                "  \"{}\"{}  C(w) = {{{}}}",
                c.prefix,
                " ".repeat(width - c.prefix.chars().count()),
                c.tasks.join(", ")
            );
        }
    }
    s
}

pub fn markdown(r: &Report, source: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "**{}**: {}\n", title(r), r.reason);
    let _ = writeln!(
        s,
        "{source}: router {}, head 1 {}, {} experts\n\n{}\n",
        r.router,
        r.head1,
        r.experts,
        facts(r)
    );
    if let Some(cert) = &r.certificate {
        let mut lines = String::new();
        proof_lines(&cert.proof, 0, &mut lines);
        let _ = writeln!(s, "```\n{lines}```\n");
        let _ = writeln!(
            s,
            "Certificate check: {}\n",
            r.check.as_deref().unwrap_or("not run")
        );
        let _ = writeln!(s, "| prefix | C(w) |\n|---|---|");
        for c in &r.conflict {
            let _ = writeln!(
                s,
                "| `{}` | {} |",
                super::markdown::escape(&c.prefix),
                super::markdown::escape(&c.tasks.join(", "))
            );
        }
    }
    s
}

pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}

/// `routability --check`: whether a saved certificate was accepted (with
/// its size) or why it was rejected, in the requested format.
pub fn check(
    file: &str,
    reads: &str,
    outcome: &Result<crate::routability::certificate::Accepted, String>,
    format: Format,
) -> String {
    match (format, outcome) {
        (Format::Json, _) => {
            let value = match outcome {
                Ok(a) => serde_json::json!({
                    "file": file,
                    "accepted": true,
                    "rows": a.rows,
                    "prefixes": a.prefixes,
                    "reads": reads,
                }),
                Err(e) => serde_json::json!({
                    "file": file,
                    "accepted": false,
                    "rejection": e,
                    "reads": reads,
                }),
            };
            serde_json::to_string_pretty(&value)
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
                + "\n"
        }
        (_, Ok(a)) => format!(
            "{file}: certificate accepted ({} rows over {} prefixes): no linear router over {reads} routes every prefix\n",
            a.rows, a.prefixes
        ),
        (_, Err(e)) => format!("{file}: certificate REJECTED: {e}\n"),
    }
}
