//! The three rubric formats on arbitrary text: YAML, Markdown and GitHub
//! Classroom's autograding.json, each parsed and validated.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trun::rubric::{classroom, markdown, Rubric};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Rubric::from_yaml(text, "rubric.yaml") {
        let _ = r.validate("rubric.yaml");
        let _ = r.run_order();
    }
    if let Ok(r) = markdown::from_markdown(text, "rubric.md") {
        let _ = r.validate("rubric.md");
    }
    if let Ok(r) = classroom::from_autograding_json(text, "autograding.json") {
        let _ = r.validate("autograding.json");
        let _ = classroom::to_yaml(&r);
    }
});
