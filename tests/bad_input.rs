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
                .contains("[possible values: syntactic, syntactic+key]"),
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
