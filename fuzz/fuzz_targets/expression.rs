//! The expression engine on arbitrary text: check it against a scope, then
//! render it and evaluate it as a condition with a small context.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trun::template::{Context, Engine, Scope};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // hashFiles() reads below the workspace: point it at an empty directory.
    let engine = Engine::new(std::path::PathBuf::from("/nonexistent-trun-fuzz"));
    let mut scope = Scope::default();
    scope.inputs.insert("name".into());
    scope.env.insert("HOME".into());
    let _ = engine.check(text, &scope);
    let _ = engine.check_condition(text, &scope);
    let mut ctx = Context::default();
    ctx.inputs.insert("name".into(), serde_json::json!("world"));
    ctx.env.insert("HOME".into(), serde_json::json!("/root"));
    ctx.matrix.insert("os".into(), serde_json::json!(["a", 1, null]));
    let _ = engine.render(text, &ctx);
    let _ = engine.eval_value(text, &ctx);
    let _ = engine.condition(text, &ctx);
});
