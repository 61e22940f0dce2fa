use super::*;
use serde_json::json;

fn obj(v: Json) -> Map<String, Json> {
    match v {
        Json::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn engine() -> Engine {
    Engine::new(std::env::temp_dir())
}

fn ctx() -> Context {
    Context {
        inputs: obj(json!({"profile": "release", "debug": false, "count": 3, "flags": ["a", "b"]})),
        env: obj(json!({"RUST_LOG": "info", "EMPTY": ""})),
        matrix: obj(json!({"os": "linux", "shard": 2})),
        needs: obj(
            json!({"build-app": {"outputs": {"image-id": "sha256:abc", "list": "[1,2,3]"}, "result": "success"}}),
        ),
        steps: obj(
            json!({"my-step": {"outputs": {"x": "42"}, "outcome": "success", "conclusion": "success"}}),
        ),
        job: obj(json!({"id": "build", "name": "Build", "status": "success"})),
        trun: obj(json!({"workspace": "/w", "run_id": 7, "os": "linux"})),
        secrets: obj(json!({"TOKEN": "hunter2"})),
        status: StatusFlags::default(),
        ..Context::default()
    }
}

fn eval(src: &str) -> Json {
    engine()
        .eval(src, &ctx())
        .unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn eval_err(src: &str) -> ExprError {
    engine().eval(src, &ctx()).unwrap_err()
}

#[test]
fn template_parse_splits_parts_with_offsets() {
    let t = Template::parse("a ${{ x }} b${{'}}'}}").unwrap();
    assert_eq!(
        t.parts,
        vec![
            Part::Lit("a ".into()),
            Part::Expr {
                src: " x ".into(),
                offset: 5,
                len: 3
            },
            Part::Lit(" b".into()),
            Part::Expr {
                src: "'}}'".into(),
                offset: 15,
                len: 4
            },
        ]
    );
    assert!(t.has_expressions());
    assert!(!Template::parse("plain $x {{ y }}")
        .unwrap()
        .has_expressions());
}

#[test]
fn unclosed_expression_is_an_error_at_its_offset() {
    let e = Template::parse("echo ok ${{ inputs.x").unwrap_err();
    assert_eq!((e.offset, e.len), (8, 3));
    assert_eq!(e.message, "unclosed `${{` (expected `}}`)");
    let e = engine().render("x ${{ 'abc }}", &ctx()).unwrap_err();
    assert_eq!(
        (e.offset, e.message.as_str()),
        (6, "unterminated string literal")
    );
}

#[test]
fn dialect_operators_evaluate_like_github() {
    assert_eq!(
        eval("inputs.profile == 'release' && matrix.shard == 2"),
        json!(true)
    );
    assert_eq!(eval("inputs.debug || 'fallback'"), json!("fallback"));
    assert_eq!(eval("inputs.profile && 'yes'"), json!("yes"));
    assert_eq!(eval("!inputs.debug"), json!(true));
    assert_eq!(eval("inputs.profile != 'debug'"), json!(true));
    assert_eq!(eval("!(inputs.profile != 'debug')"), json!(false));
    assert_eq!(eval("null"), json!(null));
    assert_eq!(eval("inputs.profile == 'RELEASE'"), json!(true));
    assert_eq!(eval("matrix.shard == '2'"), json!(true));
    assert_eq!(eval("inputs.count > 2 && inputs.count <= 3"), json!(true));
    assert_eq!(eval("'b' > 'A'"), json!(true));
    assert_eq!(eval("'it''s && || !x'"), json!("it's && || !x"));
    assert_eq!(
        eval("needs.build-app.outputs.image-id"),
        json!("sha256:abc")
    );
    assert_eq!(eval("needs['build-app'].result"), json!("success"));
    assert_eq!(eval("steps.my-step.outputs.x"), json!("42"));
    assert_eq!(eval("inputs.flags[1]"), json!("b"));
    assert_eq!(eval("matrix[format('{0}', 'os')]"), json!("linux"));
    assert_eq!(eval("0xff == 255"), json!(true));
}

#[test]
fn missing_properties_are_null_unknown_contexts_are_errors() {
    // GitHub: a property or index that does not exist is null at run time.
    assert_eq!(eval("steps.my-step.outputs.unset"), json!(null));
    assert_eq!(eval("steps.my-step.outputs.unset || 'd'"), json!("d"));
    assert_eq!(
        eval("toJSON(steps.my-step.outputs)"),
        json!("{\n  \"x\": \"42\"\n}")
    );
    assert_eq!(eval("inputs.profil"), json!(null));
    assert_eq!(eval("needs.build-app.outputs.image"), json!(null));
    assert_eq!(eval("env.SET_LATER_BY_GITHUB_ENV && true"), json!(null));
    assert_eq!(eval("fromJSON('{\"a\": 1}').b"), json!(null));
    assert_eq!(eval("inputs.flags[7]"), json!(null));
    assert_eq!(eval("inputs.profile.deeper.still"), json!(null));

    // A name that is no context at all is still an error.
    let e = eval_err("inptus.x");
    assert_eq!(e.message, "unknown name `inptus` (did you mean `inputs`?)");
    assert_eq!((e.offset, e.len), (0, 6));
}

#[test]
fn logical_operators_return_the_deciding_operand() {
    assert_eq!(eval("'' && 'x'"), json!(""));
    assert_eq!(eval("0 && true"), json!(0));
    assert_eq!(eval("'a' || 'b'"), json!("a"));
    assert_eq!(eval("null || 0 || ''"), json!(""));
    assert_eq!(eval("1 && 'yes' && inputs.count"), json!(3));
    assert_eq!(eval("!fromJSON('[]')"), json!(false));
    assert_eq!(
        eval("fromJSON('{}') && 'objects are truthy'"),
        json!("objects are truthy")
    );
}

#[test]
fn object_filters_collect_values() {
    let mut c = ctx();
    c.needs = obj(json!({
        "a": {"result": "success", "outputs": {}},
        "b": {"result": "failure", "outputs": {}}
    }));
    let e = engine();
    assert_eq!(
        e.eval("needs.*.result", &c).unwrap(),
        json!(["success", "failure"])
    );
    assert_eq!(
        e.eval("contains(needs.*.result, 'FAILURE')", &c).unwrap(),
        json!(true)
    );
    assert_eq!(
        e.eval("join(needs.*.result, ' ')", &c).unwrap(),
        json!("success failure")
    );
    assert_eq!(e.eval("inputs.flags.*", &c).unwrap(), json!(["a", "b"]));
    assert_eq!(e.eval("inputs.profile.*", &c).unwrap(), json!([]));
}

#[test]
fn names_and_functions_ignore_case() {
    assert_eq!(eval("INPUTS.Profile"), json!("release"));
    assert_eq!(eval("TOJSON(matrix.SHARD)"), json!("2"));
    assert_eq!(eval("StartsWith(inputs.profile, 'REL')"), json!(true));
}

#[test]
fn contains_strings_and_arrays() {
    assert_eq!(eval("contains('Hello World', 'WORLD')"), json!(true));
    assert_eq!(eval("contains('Hello', 'bye')"), json!(false));
    assert_eq!(eval("contains(inputs.flags, 'b')"), json!(true));
    assert_eq!(eval("contains(inputs.flags, 'c')"), json!(false));
    assert_eq!(eval("contains(fromJSON('[1, 2]'), '2')"), json!(true));
}

#[test]
fn starts_and_ends_with_ignore_case() {
    assert_eq!(eval("startsWith('refs/heads/Main', 'REFS/')"), json!(true));
    assert_eq!(eval("startsWith('abc', 'b')"), json!(false));
    assert_eq!(eval("endsWith('app.TAR.gz', '.tar.GZ')"), json!(true));
    assert_eq!(eval("endsWith('abc', 'b')"), json!(false));
}

#[test]
fn format_join_and_json() {
    assert_eq!(
        eval("format('{0}-{1} {{literal}}', inputs.profile, matrix.shard)"),
        json!("release-2 {literal}")
    );
    let e = eval_err("format('{0} {1}', 'a')");
    assert_eq!(
        e.message,
        "format: placeholder `{1}` but only 1 argument given"
    );
    assert_eq!(e.offset, 0);

    assert_eq!(eval("join(inputs.flags)"), json!("a,b"));
    assert_eq!(eval("join(inputs.flags, ' + ')"), json!("a + b"));
    assert_eq!(eval("join('solo', '-')"), json!("solo"));

    assert_eq!(
        eval("toJSON(matrix)"),
        json!("{\n  \"os\": \"linux\",\n  \"shard\": 2\n}")
    );
    assert_eq!(eval("toJSON('x')"), json!("\"x\""));
    assert_eq!(
        eval("fromJSON(needs.build-app.outputs.list)"),
        json!([1, 2, 3])
    );
    assert_eq!(eval("fromJSON('{\"a\": {\"b\": true}}').a.b"), json!(true));
    assert_eq!(eval("fromJSON('3') == 3"), json!(true));
}

#[test]
fn fromjson_errors_point_at_the_call() {
    let e = eval_err("inputs.profile && fromJSON('nope')");
    assert_eq!(e.offset, 18);
    assert!(
        e.message.starts_with("fromJSON: 'nope' is not valid JSON"),
        "{}",
        e.message
    );
    // GitHub reads the argument as text: a number is valid JSON.
    assert_eq!(eval("fromJSON(inputs.count)"), json!(3));
    let e = eval_err("fromJSON(inputs.flags)");
    assert!(
        e.message.starts_with("fromJSON: 'Array' is not valid JSON"),
        "{}",
        e.message
    );
}

#[test]
fn status_functions_read_the_flags() {
    let mut c = ctx();
    let e = engine();
    assert_eq!(e.eval("success()", &c).unwrap(), json!(true));
    assert_eq!(e.eval("failure()", &c).unwrap(), json!(false));
    assert_eq!(e.eval("cancelled()", &c).unwrap(), json!(false));
    assert_eq!(e.eval("always()", &c).unwrap(), json!(true));
    c.status = StatusFlags {
        success: false,
        failure: true,
        cancelled: true,
    };
    assert_eq!(e.eval("success()", &c).unwrap(), json!(false));
    assert_eq!(e.eval("failure() && cancelled()", &c).unwrap(), json!(true));
}

#[test]
fn condition_defaults_to_success() {
    let e = engine();
    let mut c = ctx();
    assert!(e.condition("inputs.profile == 'release'", &c).unwrap());
    assert!(e
        .condition("${{ inputs.profile == 'release' }}", &c)
        .unwrap());
    assert!(e.condition("  ${{ matrix.os }} ", &c).unwrap());
    assert!(!e.condition("inputs.debug", &c).unwrap());
    assert!(!e.condition("inputs.profile == 'debug'", &c).unwrap());
    // Empty string, 0 and null are false; an empty-looking object is true.
    assert!(!e.condition("env.EMPTY", &c).unwrap());
    assert!(e.condition("fromJSON('{}')", &c).unwrap());

    c.status = StatusFlags {
        success: false,
        failure: true,
        cancelled: false,
    };
    // Implicit success() && …: false, and the expression is not even evaluated.
    assert!(!e.condition("inputs.profile == 'release'", &c).unwrap());
    assert!(!e.condition("fromJSON('not json')", &c).unwrap());
    assert!(e.condition("failure()", &c).unwrap());
    assert!(e.condition("${{ always() }}", &c).unwrap());
    assert!(e
        .condition("!cancelled() && inputs.profile == 'release'", &c)
        .unwrap());
    assert!(!e.condition("success()", &c).unwrap());
}

#[test]
fn condition_errors_are_located_in_the_original_text() {
    let e = engine()
        .condition("${{ fromJSON('x') }}", &ctx())
        .unwrap_err();
    assert_eq!((e.offset, e.len), (4, 13));
    let e = engine()
        .condition("${{ a }} && ${{ b }}", &ctx())
        .unwrap_err();
    assert!(e
        .message
        .starts_with("an `if:` condition must be a single expression"));
}

#[test]
fn render_stringifies_like_github() {
    let e = engine();
    let c = ctx();
    assert_eq!(
        e.render(
            "p=${{ inputs.profile }} d=${{ inputs.debug }} n=${{ inputs.count }} z=${{ null }} f=${{ inputs.flags }} o=${{ fromJSON('{\"k\":1}') }} h=${{ 1.5 }}",
            &c
        )
        .unwrap(),
        "p=release d=false n=3 z= f=Array o=Object h=1.5"
    );
    assert_eq!(e.render("no expressions", &c).unwrap(), "no expressions");
}

#[test]
fn render_errors_carry_offsets_into_the_whole_string() {
    let e = engine()
        .render(
            "echo ${{ inputs.profile }} ${{ format('{1}', 'a') }}",
            &ctx(),
        )
        .unwrap_err();
    assert_eq!((e.offset, e.len), (31, 18));
    assert_eq!(
        e.message,
        "format: placeholder `{1}` but only 1 argument given"
    );
}

#[test]
fn eval_value_keeps_types_for_a_lone_expression() {
    let e = engine();
    let c = ctx();
    assert_eq!(
        e.eval_value("${{ fromJSON(needs.build-app.outputs.list) }}", &c)
            .unwrap(),
        json!([1, 2, 3])
    );
    assert_eq!(e.eval_value("${{ inputs.count }}", &c).unwrap(), json!(3));
    assert_eq!(
        e.eval_value("n=${{ inputs.count }}", &c).unwrap(),
        json!("n=3")
    );
    assert_eq!(e.eval_value("plain", &c).unwrap(), json!("plain"));
}

#[test]
fn render_script_passes_values_through_the_environment() {
    let mut c = ctx();
    c.inputs
        .insert("msg".into(), json!("\"; rm -rf x; echo \""));
    let (script, vars) = engine()
        .render_script(
            "echo \"${{ inputs.msg }}\"\ncargo build --${{ inputs.profile }}",
            &c,
        )
        .unwrap();
    assert_eq!(
        script,
        "echo \"${TRUN_EXPR_0}\"\ncargo build --${TRUN_EXPR_1}"
    );
    assert_eq!(
        vars,
        vec![
            (
                "TRUN_EXPR_0".to_string(),
                "\"; rm -rf x; echo \"".to_string()
            ),
            ("TRUN_EXPR_1".to_string(), "release".to_string()),
        ]
    );
    assert!(!script.contains("rm -rf"));
}

#[test]
fn render_script_inside_single_quotes_still_expands() {
    let (script, vars) = engine()
        .render_script(
            "echo '${{ inputs.profile }}' \"it's ${{ matrix.os }}\" # don't ${{ matrix.shard }}\necho ${{ job.id }}",
            &ctx(),
        )
        .unwrap();
    assert_eq!(
        script,
        "echo ''\"${TRUN_EXPR_0}\"'' \"it's ${TRUN_EXPR_1}\" # don't ${TRUN_EXPR_2}\necho ${TRUN_EXPR_3}"
    );
    assert_eq!(vars.len(), 4);
}

#[test]
fn render_script_runs_safely_in_a_real_shell() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("x");
    std::fs::write(&victim, "keep me").unwrap();
    let mut c = ctx();
    c.inputs
        .insert("msg".into(), json!("\"; rm -rf x; echo \""));
    let (script, vars) = engine()
        .render_script("printf '%s|' \"${{ inputs.msg }}\" '${{ inputs.msg }}'", &c)
        .unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .envs(vars)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "\"; rm -rf x; echo \"|\"; rm -rf x; echo \"|"
    );
    assert!(victim.exists());
}

#[test]
fn check_validates_every_expression_in_a_string() {
    let scope = Scope {
        inputs: ["profile".to_string()].into(),
        ..Scope::default()
    };
    let e = engine();
    e.check("cargo build --profile ${{ inputs.profile }}", &scope)
        .unwrap();
    let err = e
        .check("a ${{ inputs.profile }} b ${{ inputs.profle }}", &scope)
        .unwrap_err();
    assert_eq!((err.offset, err.len), (37, 6));
    assert_eq!(
        err.message,
        "unknown input `profle` (did you mean `profile`?)"
    );

    let err = e.check("${{ inptus.profile }}", &scope).unwrap_err();
    assert_eq!(
        (err.offset, err.message.as_str()),
        (4, "unknown name `inptus` (did you mean `inputs`?)")
    );

    let err = e.check("${{ success() }}", &scope).unwrap_err();
    assert_eq!(
        err.message,
        "`success()` is only allowed in an `if:` condition"
    );
    e.check_condition("failure() && inputs.profile == 'x'", &scope)
        .unwrap();
    let err = e.check_condition("${{ matrix.os }}", &scope).unwrap_err();
    assert_eq!(err.offset, 4);

    let err = e
        .check("${{ toJSON(inputs) }} ${{ nope( }}", &scope)
        .unwrap_err();
    assert_eq!(
        (err.offset, err.message.as_str()),
        (26, "unknown function `nope`")
    );
}

#[test]
fn hash_files_from_an_expression() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Cargo.lock"), "lock").unwrap();
    std::fs::write(dir.path().join("a.txt"), "a").unwrap();
    let e = Engine::new(dir.path().to_path_buf());
    let c = ctx();
    let h = e.eval("hashFiles('**/Cargo.lock')", &c).unwrap();
    let expected = {
        use sha2::{Digest, Sha256};
        let mut outer = Sha256::new();
        outer.update(Sha256::digest(b"lock"));
        hex::encode(outer.finalize())
    };
    assert_eq!(h, json!(expected));
    assert_eq!(e.eval("hashFiles('*.nothing')", &c).unwrap(), json!(""));
    let both = e.eval("hashFiles('Cargo.lock', 'a.txt')", &c).unwrap();
    assert_ne!(both, h);
    assert_eq!(both.as_str().map(str::len), Some(64));
}

#[test]
fn engine_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
    assert_send_sync::<Context>();
}

#[test]
fn paths_after_a_computed_base_are_still_checked() {
    let scope = Scope {
        inputs: ["profile".to_string()].into(),
        ..Scope::default()
    };
    let e = engine()
        .check("${{ fromJSON('[1]')[inputs.nope] }}", &scope)
        .unwrap_err();
    assert_eq!(e.offset, 27);
}

#[test]
fn constant_errors_are_found_at_plan_time() {
    let scope = Scope::default();
    let e = engine().check("x ${{ format('{0') }}", &scope).unwrap_err();
    assert_eq!(e.offset, 6);
    assert!(e.message.starts_with("format: unclosed"), "{}", e.message);
    let e = engine().check("${{ fromJSON('{') }}", &scope).unwrap_err();
    assert!(e.message.starts_with("fromJSON:"), "{}", e.message);
    // Short-circuited constants are not evaluated, as at run time.
    engine()
        .check("${{ false && fromJSON('{') }}", &scope)
        .unwrap();
}

/// The 350-byte expression that grew to 5 GB: each level repeats the one inside
/// it ten times.
fn format_bomb() -> String {
    let mut e = "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'".to_string();
    for _ in 0..8 {
        e = format!("format('{}', {e})", "{0}".repeat(10));
    }
    e
}

#[test]
fn format_bomb_is_refused_before_it_grows() {
    let bomb = format_bomb();
    assert!(bomb.len() < 700, "{}", bomb.len());
    let started = std::time::Instant::now();
    let e = eval_err(&bomb);
    assert!(
        e.message.ends_with("the limit is 1048576 bytes (1 MiB)"),
        "{}",
        e.message
    );
    let e = engine()
        .check(&format!("${{{{ {bomb} }}}}"), &Scope::default())
        .unwrap_err();
    assert!(e.message.contains("limit"), "{}", e.message);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("${{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
    let e = engine().check(&deep, &Scope::default()).unwrap_err();
    assert_eq!(
        e.message,
        "expression nests more than 50 levels deep (the limit is 50)"
    );
    let e = engine().render(&deep, &ctx()).unwrap_err();
    assert!(e.message.contains("the limit is 50"));
}

#[test]
fn env_holds_only_what_the_caller_gives() {
    // `toJSON(env)` is the env context, never trun's own process environment.
    assert_eq!(
        eval("toJSON(env)"),
        json!("{\n  \"RUST_LOG\": \"info\",\n  \"EMPTY\": \"\"\n}")
    );
    assert_eq!(eval("env.HOME"), json!(null));
}

#[test]
fn secrets_context_reads_given_names_and_null_for_others() {
    assert_eq!(eval("secrets.token"), json!("hunter2"));
    assert_eq!(eval("secrets.NOT_GIVEN"), Json::Null);
    assert_eq!(eval("secrets.TOKEN == 'hunter2'"), json!(true));
}

#[test]
fn the_shared_event_reads_as_a_member_of_github() {
    let mut c = ctx();
    c.github = obj(json!({"job": "build", "ref": "refs/heads/main"}));
    c.github_event = Some(std::sync::Arc::new(
        json!({"number": 7, "pull_request": {"title": "fix"}}),
    ));
    let e = engine();
    let ev = |src: &str| e.eval(src, &c).unwrap_or_else(|err| panic!("{src}: {err}"));
    assert_eq!(ev("github.event.pull_request.title"), json!("fix"));
    assert_eq!(ev("github.EVENT.number"), json!(7));
    assert_eq!(ev("github['event']['number']"), json!(7));
    assert_eq!(ev("github.job"), json!("build"));
    assert_eq!(ev("github.missing"), Json::Null);
    // The whole object has every member, the event among them.
    assert_eq!(
        ev("github"),
        json!({"job": "build", "ref": "refs/heads/main", "event": {"number": 7, "pull_request": {"title": "fix"}}})
    );
    let text = ev("toJSON(github)");
    let back: Json = serde_json::from_str(text.as_str().unwrap()).unwrap();
    assert_eq!(back["event"]["number"], json!(7));
    assert_eq!(back["ref"], json!("refs/heads/main"));
    assert_eq!(ev("github.*.number"), json!([7]));
    // An object as ever: truthy, "Object" as text, equal only to itself.
    assert_eq!(ev("github && 'yes'"), json!("yes"));
    assert_eq!(ev("format('{0}', github)"), json!("Object"));
    assert_eq!(ev("join(github)"), json!(""));
    assert_eq!(ev("github == github"), json!(true));
    assert_eq!(ev("github == fromJSON('{}')"), json!(false));
}
