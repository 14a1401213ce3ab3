//! Every malformed input gets one clear line naming the file, the task and
//! the offending line, and exit code 2; never a panic.

mod common;

use common::routecert;
use std::io::Write;

/// Write `bytes` to a temporary file with `ext`, run verify, and return
/// (exit code, stderr, file path).
fn verify_bytes(bytes: &[u8], ext: &str) -> (i32, String, String) {
    let mut file = tempfile::Builder::new().suffix(ext).tempfile().unwrap();
    file.write_all(bytes).unwrap();
    let path = file.path().to_str().unwrap().to_string();
    let run = routecert(&["verify", &path]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        run.stdout.is_empty(),
        "no report on bad input: {}",
        run.stdout
    );
    (run.code, run.stderr, path)
}

/// Assert exit 2 and a message with the path, `:line`, the task and `what`.
fn rejects(spec: &str, line: Option<usize>, task: Option<&str>, what: &str) {
    let (code, stderr, path) = verify_bytes(spec.as_bytes(), ".toml");
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    let location = match line {
        Some(l) => format!("{path}:{l}:"),
        None => format!("{path}:"),
    };
    assert!(
        stderr.starts_with(&format!("routecert: {location}")),
        "{stderr}"
    );
    if let Some(task) = task {
        assert!(stderr.contains(&format!("task '{task}'")), "{stderr}");
    }
    assert!(stderr.contains(what), "expected {what:?} in {stderr}");
}

const HEAD: &str = "[[task]]\nname = \"capital\"\n";

#[test]
fn template_without_key() {
    let spec = format!(
        "{HEAD}templates = [\"{{key}} is {{value}}\",\n  \"capital is {{value}}\"]\npairs = [[\"France\", \"Paris\"]]\n"
    );
    rejects(
        &spec,
        Some(4),
        Some("capital"),
        "template \"capital is {value}\" has no {key} wildcard",
    );
}

#[test]
fn template_without_value() {
    let spec = format!("{HEAD}templates = [\"{{key}} is\"]\npairs = [[\"France\", \"Paris\"]]\n");
    rejects(&spec, Some(3), Some("capital"), "has no {value} wildcard");
}

#[test]
fn repeated_wildcard() {
    let spec = format!(
        "{HEAD}templates = [\"{{key}} is {{key}} of {{value}}\"]\npairs = [[\"France\", \"Paris\"]]\n"
    );
    rejects(&spec, Some(3), Some("capital"), "has {key} more than once");
}

#[test]
fn value_before_key() {
    let spec = format!(
        "{HEAD}templates = [\"{{value}} is the capital of {{key}}\"]\npairs = [[\"France\", \"Paris\"]]\n"
    );
    rejects(&spec, Some(3), Some("capital"), "has {value} before {key}");
}

#[test]
fn unknown_placeholder() {
    let spec = format!(
        "{HEAD}templates = [\"{{key}} is {{country}} {{value}}\"]\npairs = [[\"France\", \"Paris\"]]\n"
    );
    rejects(&spec, Some(3), Some("capital"), "\"{country}\"");
}

#[test]
fn task_without_templates() {
    let spec = format!("{HEAD}pairs = [[\"France\", \"Paris\"]]\n");
    rejects(&spec, Some(2), Some("capital"), "the task has no templates");
}

#[test]
fn task_without_pairs() {
    let spec = format!("{HEAD}templates = [\"{{key}} is {{value}}\"]\npairs = []\n");
    rejects(&spec, Some(2), Some("capital"), "the task has no pairs");
}

#[test]
fn duplicate_task_name() {
    let task = format!(
        "{HEAD}templates = [\"{{key}} is {{value}}\"]\npairs = [[\"France\", \"Paris\"]]\n"
    );
    let spec = format!("{task}\n{task}");
    rejects(
        &spec,
        Some(7),
        Some("capital"),
        "duplicate task name (first defined on line 2)",
    );
}

#[test]
fn duplicate_pair() {
    let spec = format!(
        "{HEAD}templates = [\"{{key}} is {{value}}\"]\npairs = [\n  [\"France\", \"Paris\"],\n  [\"Japan\", \"Tokyo\"],\n  [\"France\", \"Paris\"],\n]\n"
    );
    rejects(
        &spec,
        Some(7),
        Some("capital"),
        "duplicate pair [\"France\", \"Paris\"]",
    );
}

#[test]
fn duplicate_template() {
    let spec = format!(
        "{HEAD}templates = [\"{{key}} is {{value}}\", \"{{key}}  is {{value}}\"]\npairs = [[\"France\", \"Paris\"]]\n"
    );
    rejects(&spec, Some(3), Some("capital"), "appears twice");
}

#[test]
fn word_used_as_entity() {
    let spec = format!(
        "{HEAD}templates = [\"{{key}} is {{value}}\"]\npairs = [[\"France\", \"Paris\"]]\n\n[[task]]\nname = \"size\"\ntemplates = [\"{{key}} has {{value}}\"]\npairs = [[\"is\", \"big\"]]\n"
    );
    rejects(
        &spec,
        Some(3),
        Some("capital"),
        "\"is\" is used both as a template word (task 'capital') and as an entity (task 'size')",
    );
}

#[test]
fn pair_of_wrong_shape() {
    let spec = format!(
        "{HEAD}templates = [\"{{key}} is {{value}}\"]\npairs = [[\"France\", \"Paris\", \"Lyon\"]]\n"
    );
    rejects(&spec, Some(4), Some("capital"), "must be [key, value]");
}

#[test]
fn reserved_eos_token() {
    let spec = format!(
        "{HEAD}templates = [\"{{key}} is {{value}}\"]\npairs = [[\"France\", \"<eos>\"]]\n"
    );
    rejects(
        &spec,
        Some(4),
        Some("capital"),
        "reserved for the end-of-sentence token",
    );
}

#[test]
fn unknown_field() {
    let spec = format!(
        "{HEAD}templates = [\"{{key}} is {{value}}\"]\npairs = [[\"France\", \"Paris\"]]\nweight = 3\n"
    );
    rejects(&spec, Some(5), None, "unknown field `weight`");
}

#[test]
fn empty_file() {
    rejects("", None, None, "the file is empty");
    rejects("\n  \n", None, None, "the file is empty");
}

#[test]
fn file_without_tasks() {
    rejects("# only a comment\n", None, None, "no tasks");
}

#[test]
fn toml_syntax_error() {
    rejects("[[task]\nname = \"x\"\n", Some(1), None, "syntax error");
}

#[test]
fn binary_garbage() {
    let (code, stderr, path) = verify_bytes(&[0x00, 0x9f, 0x92, 0x96, 0xff, 0x10, 0x80], ".toml");
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("{path}:1: the file is not UTF-8 text")),
        "{stderr}"
    );
    // Valid UTF-8 but not TOML either.
    let (code, stderr, _) = verify_bytes(b"\x01\x02\x03 = = =", ".toml");
    assert_eq!(code, 2);
    assert!(stderr.contains("syntax error"), "{stderr}");
}

#[test]
fn json_specs_are_checked_the_same_way() {
    let json = "{\"task\": [{\"name\": \"capital\",\n  \"templates\": [\"{key} is {value}\",\n   \"{value} of {key}\"],\n  \"pairs\": [[\"France\", \"Paris\"]]}]}";
    let (code, stderr, path) = verify_bytes(json.as_bytes(), ".json");
    assert_eq!(code, 2);
    assert!(stderr.contains(&format!("{path}:3: task 'capital': template \"{{value}} of {{key}}\" has {{value}} before {{key}}")), "{stderr}");
    let (code, stderr, _) = verify_bytes(b"{\"task\": [", ".json");
    assert_eq!(code, 2);
    assert!(stderr.contains("syntax error"), "{stderr}");
}

#[test]
fn missing_file() {
    let run = routecert(&["verify", "/nonexistent/spec.toml"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("/nonexistent/spec.toml: cannot read the file"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_flags() {
    let spec = common::construction("running_example.toml");
    let spec = spec.to_str().unwrap();
    for eps in ["0", "1", "-0.5", "abc", "2/0"] {
        let flag = format!("--epsilon={eps}");
        let run = routecert(&["verify", spec, &flag]);
        assert_eq!(run.code, 2, "--epsilon {eps}");
        assert!(
            run.stderr.contains("strictly between 0 and 1"),
            "{}",
            run.stderr
        );
    }
    let run = routecert(&["verify", spec, "--router", "semantic"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("invalid value 'semantic' for '--router")
            && run
                .stderr
                .contains("[possible values: syntactic, syntactic+key, star]"),
        "{}",
        run.stderr
    );
    let run = routecert(&["verify", spec, "--format", "yaml"]);
    assert_eq!(run.code, 2);
}

#[test]
fn content_head_is_moe_only() {
    let spec = common::construction("running_example.toml");
    let run = routecert(&[
        "verify",
        spec.to_str().unwrap(),
        "--model",
        "dense",
        "--head1",
        "content",
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("--head1 content applies to the MoE model only"),
        "{}",
        run.stderr
    );
}

/// Write `text` to a temporary file named with `ext` and run `args` with the
/// path appended.
fn run_on(text: &str, ext: &str, args: &[&str]) -> (common::Run, tempfile::NamedTempFile) {
    let mut file = tempfile::Builder::new().suffix(ext).tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    let mut all = args.to_vec();
    all.push(file.path().to_str().unwrap());
    (routecert(&all), file)
}

#[test]
fn json_error_lines_come_from_the_parser_not_from_the_text() {
    // Fields out of order: the bad template is on line 2, though the same
    // text also appears in a pair value on line 1, and the name is last.
    let json = "{\"task\": [{\"pairs\": [[\"France\", \"{value} of {key}\"]],\n \"templates\": [\"{value} of {key}\"],\n \"name\": \"capital\"}]}";
    let (code, stderr, path) = verify_bytes(json.as_bytes(), ".json");
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("{path}:2: task 'capital'")),
        "{stderr}"
    );
    // A \u escape in the name and a duplicate pair on line 4.
    let json = "{\"task\": [{\"name\": \"caf\\u00e9\",\n \"templates\": [\"{key} is {value}\"],\n \"pairs\": [[\"France\", \"Paris\"],\n  [\"France\", \"Paris\"]]}]}";
    let (code, stderr, path) = verify_bytes(json.as_bytes(), ".json");
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("{path}:4: task 'café': duplicate pair")),
        "{stderr}"
    );
    // A non-string where a string belongs is a syntax error with its line.
    let json = "{\"task\": [{\"name\": \"a\",\n \"templates\": [7],\n \"pairs\": []}]}";
    let (code, stderr, path) = verify_bytes(json.as_bytes(), ".json");
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("{path}:2: syntax error")),
        "{stderr}"
    );
}

#[test]
fn a_byte_order_mark_is_accepted_in_json_as_in_toml() {
    let body = "{\"task\": [{\"name\": \"capital\", \"templates\": [\"{key} is {value}\"], \"pairs\": [[\"France\", \"Paris\"]]}]}";
    let (run, _f) = run_on(&format!("\u{feff}{body}"), ".json", &["verify", "-q"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let toml = "\u{feff}[[task]]\nname = \"capital\"\ntemplates = [\"{key} is {value}\"]\npairs = [[\"France\", \"Paris\"]]\n";
    let (run, _f) = run_on(toml, ".toml", &["verify", "-q"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn entities_no_prefix_could_name_are_rejected() {
    for entity in [
        "Fr\tance",
        "Fr\nance",
        "Fr\\u0000ance",
        "New  Zealand",
        "a\\u0007b",
    ] {
        let spec = format!(
            "{{\"task\": [{{\"name\": \"capital\", \"templates\": [\"{{key}} is {{value}}\"],\n \"pairs\": [[{:?}, \"Paris\"]]}}]}}",
            entity
        )
        .replace("\\\\u", "\\u");
        let (code, stderr, path) = verify_bytes(spec.as_bytes(), ".json");
        assert_eq!(code, 2, "{entity:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{path}:2: task 'capital': pair has a malformed entity"
            )),
            "{entity:?}: {stderr}"
        );
    }
    // A template word with a control character.
    let spec = format!(
        "{HEAD}templates = [\"{{key}} i\\u0000s {{value}}\"]\npairs = [[\"France\", \"Paris\"]]\n"
    );
    rejects(&spec, Some(3), Some("capital"), "control character");
}

/// The refusal of an oversized spec, naming the file and the limit.
fn too_large(path: &str) -> String {
    format!(
        "routecert: {path}: the file is larger than a spec may be: more than {} bytes (64 MiB, the limit; parsing takes about 16 bytes per byte of text)\n",
        routecert::spec::MAX_SPEC_BYTES
    )
}

#[test]
fn an_endless_spec_file_is_refused_not_read_forever() {
    let clock = std::time::Instant::now();
    let run = routecert(&["verify", "/dev/zero"]);
    let took = clock.elapsed();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stderr, too_large("/dev/zero"));
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    // 64 MiB read and refused (today ~0.1 s); reading until memory runs
    // out took minutes.
    assert!(took.as_secs() < 20, "{took:?}");
}

#[test]
fn a_spec_one_byte_over_the_cap_is_refused_naming_file_and_limit() {
    // A valid spec, then zeros up to one byte past the cap (a sparse file:
    // nothing is written to disk).
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    let text = std::fs::read(common::construction("running_example.toml")).unwrap();
    file.write_all(&text).unwrap();
    file.as_file()
        .set_len(routecert::spec::MAX_SPEC_BYTES + 1)
        .unwrap();
    let path = file.path().to_str().unwrap().to_string();
    for command in [
        &["verify"][..],
        &["inspect", "--prefix", "Paris"],
        &["routability"],
    ] {
        let run = routecert(&[command, &[path.as_str()]].concat());
        assert_eq!(run.code, 2, "{command:?}: {}", run.stderr);
        assert_eq!(run.stderr, too_large(&path), "{command:?}");
        assert!(run.stdout.is_empty(), "{command:?}: {}", run.stdout);
    }
    // At the cap it is read whole and judged on its content: here the
    // zeros (NUL bytes are UTF-8, not TOML).
    file.as_file()
        .set_len(routecert::spec::MAX_SPEC_BYTES)
        .unwrap();
    let run = routecert(&["verify", &path]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!("routecert: {path}:")) && !run.stderr.contains("larger"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_epsilon_beyond_the_exponent_limit_names_the_limit() {
    let spec = common::construction("running_example.toml");
    let run = routecert(&[
        "verify",
        spec.to_str().unwrap(),
        "--epsilon",
        "1e-999999999",
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("exponent is beyond") && run.stderr.contains("1e-10000"),
        "{}",
        run.stderr
    );
    // 1e-300 is served, and quickly (the margins are a few exact powers).
    let run = routecert(&[
        "verify",
        "-q",
        spec.to_str().unwrap(),
        "--epsilon",
        "1e-300",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("P probability holds (39/39 prefixes)"),
        "{}",
        run.stdout
    );
}

#[test]
fn generate_writes_json_for_a_json_output_and_shared_prefixes_has_a_working_default() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.json");
    let out = out.to_str().unwrap();
    let run = routecert(&["generate", "--tasks", "2", "--shared-prefixes", "-o", out]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(out).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let templates = value["task"][0]["templates"].as_array().unwrap();
    assert!(
        templates
            .iter()
            .all(|t| t.as_str().unwrap().starts_with("{key} is")),
        "{text}"
    );
    let run = routecert(&["verify", "-q", out]);
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    assert!(run.stdout.contains("prefixes"), "{}", run.stdout);
}

#[test]
fn sizes_beyond_the_machine_are_refused_before_allocating() {
    let run = routecert(&["table", "--sweep", "pairs", "--over", "1-1000000000"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("1000000000 points; a sweep runs at most 10000"),
        "{}",
        run.stderr
    );
    for args in [
        &["generate", "--tasks", "1000000"][..],
        &["generate", "--min-len", "100000", "--max-len", "100000"][..],
    ] {
        let run = routecert(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("more than this machine can hold (limit"),
            "{}",
            run.stderr
        );
        assert!(run.stdout.is_empty());
    }
    // A spec whose one template has 100,000 positions: the task set is
    // refused with its estimate before it is built.
    let words = vec!["w"; 99_998].join(" ");
    let toml = format!(
        "[[task]]\nname = \"long\"\ntemplates = [\"{{key}} {words} {{value}}\"]\npairs = [[\"a\", \"b\"]]\n"
    );
    let (run, _f) = run_on(&toml, ".toml", &["verify"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("the task set would need about"),
        "{}",
        run.stderr
    );
}

/// One template of 5,000 words (the case, from the generator): the
/// task set fits (25,916 prefixes), but the router's training data grows as
/// L³ (about 73 GiB here, against 5.8 GB measured at 2,000 words), so
/// verify is refused with the estimate and the limit before synthesis
/// allocates it (a machine with over 146 GB free would run it instead).
#[test]
fn a_template_whose_router_data_cannot_fit_is_refused_with_the_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("t5000.toml");
    let spec = spec.to_str().unwrap();
    let made = routecert(&[
        "generate",
        "--tasks",
        "1",
        "--templates",
        "1",
        "--min-len",
        "5000",
        "--max-len",
        "5000",
        "--words",
        "5000",
        "--pairs",
        "8",
        "-o",
        spec,
    ]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let started = std::time::Instant::now();
    let run = routecert(&["verify", spec]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "the 25916 prefixes' router inputs (the router's training data) would need about"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("more than this machine can hold (limit"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
    // routability holds the same inputs: refused the same way.
    let run = routecert(&["routability", spec]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("25916 prefixes' router inputs"),
        "{}",
        run.stderr
    );
    // The dense model's gates are built from every prefix's hidden state,
    // L³ bytes too: refused before any is built.
    let dense = std::time::Instant::now();
    let run = routecert(&["verify", spec, "--model", "dense"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "the 25916 prefixes' hidden states (what the dense model's gates are built from) would need about"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("measured on up to 256 of them), more than this machine can hold (limit"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
    assert!(dense.elapsed().as_secs() < 30);
    assert!(started.elapsed().as_secs() < 60);
}

#[test]
fn a_prefix_longer_than_l_is_refused_at_once() {
    let spec = common::construction("running_example.toml");
    let long = vec!["Paris"; 2000].join(" ");
    let started = std::time::Instant::now();
    let run = routecert(&["inspect", spec.to_str().unwrap(), "--prefix", &long]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("2000 words cannot be a prefix"),
        "{}",
        run.stderr
    );
    assert!(started.elapsed().as_secs() < 10);
}

#[test]
fn f64_refuses_the_dense_model_where_its_mantissa_cannot_hold_head_1() {
    let words = (0..40)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let toml = format!(
        "[[task]]\nname = \"long\"\ntemplates = [\"{{key}} {words} {{value}}\"]\npairs = [[\"a\", \"b\"]]\n"
    );
    let (run, _f) = run_on(
        &toml,
        ".toml",
        &["verify", "--model", "dense", "--arith", "f64"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot represent the dense model at L = 42"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
}

#[test]
fn files_other_than_the_spec_are_named_in_their_errors() {
    let spec = common::construction("running_example.toml");
    let spec = spec.to_str().unwrap();
    // A certificate that is not JSON.
    let mut cert = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    cert.write_all(b"{ not json").unwrap();
    let cert = cert.path().to_str().unwrap().to_string();
    let run = routecert(&["routability", spec, "--check", &cert]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!(
            "routecert: {cert}: not JSON: key must be a string"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    // An output file in a directory that does not exist.
    let run = routecert(&["generate", "-o", "/nonexistent/dir/x.toml"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "routecert: /nonexistent/dir/x.toml: cannot write: No such file or directory (os error 2)\n"
    );
}
