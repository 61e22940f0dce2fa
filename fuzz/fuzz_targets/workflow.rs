//! The workflow parser and validator on arbitrary bytes: parse as `trun.yaml`,
//! validate, and plan when valid. Any panic, hang or over-budget allocation is a bug.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(wf) = trun::workflow::WorkflowFile::parse(Path::new("trun.yaml"), text.to_string())
    else {
        return;
    };
    let engine = trun::template::Engine::new(std::env::temp_dir());
    if trun::validate::validate(&wf, &engine).is_ok() {
        let _ = trun::plan::build(&wf, &trun::plan::Request::default());
    }
});
