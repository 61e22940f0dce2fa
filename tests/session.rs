//! The run session as another face of trun would use it (grading, the
//! server): its own plan, its own reporters, no CLI in between. Real files,
//! real processes, a real SQLite store.

use std::sync::{Arc, Mutex};
use trun::event::{Event, Status};
use trun::lock::LockError;
use trun::plan::{self, Plan, Request};
use trun::report::Reporter;
use trun::session::{
    RunConfig, Session, SessionError, SessionOptions, StepHooksChoice, EXIT_FAILED, EXIT_OK,
};
use trun::workflow::WorkflowFile;

/// A reporter that keeps what it saw, for the test to read afterwards.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<(Vec<Event>, bool)>>);

impl Reporter for Collect {
    fn event(&mut self, ev: &Event) {
        self.0.lock().unwrap().0.push(ev.clone());
    }
    fn finish(&mut self) {
        self.0.lock().unwrap().1 = true;
    }
}

fn plan_in(dir: &std::path::Path, yaml: &str) -> Plan {
    let path = dir.join("trun.yaml");
    std::fs::write(&path, yaml).unwrap();
    let wf = WorkflowFile::load(&path).expect("workflow");
    plan::build(&wf, &Request::default()).expect("plan")
}

fn config(reporters: Vec<Box<dyn Reporter>>) -> RunConfig {
    RunConfig {
        workflow_path: "trun.yaml".into(),
        jobs: 2,
        fail_fast: false,
        hooks: StepHooksChoice::None,
        reporters,
        docker: None,
        grades: None,
        gate: None,
        queued_run: None,
        shared: None,
        dispatch: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_session_runs_a_plan_records_it_and_feeds_every_reporter() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let plan = plan_in(
        &root,
        "jobs:\n  a:\n    steps:\n      - run: echo hi > a.txt\n  b:\n    needs: a\n    steps:\n      - run: exit 3\n",
    );
    let options = SessionOptions {
        args: vec!["grade".into(), "repos/".into()],
        command_line: "trun grade repos/".into(),
        no_wait: true,
    };
    let session = Session::open(&root, &options).expect("open the session");
    // The workspace is held: a second session fails at once with no_wait.
    match Session::open(&root, &options) {
        Err(SessionError::Lock(LockError::Held { .. })) => {}
        Err(other) => panic!("expected the lock to be held, got {other}"),
        Ok(_) => panic!("two sessions held one workspace"),
    }
    let store = session.store();
    let (first, second) = (Collect::default(), Collect::default());
    let outcome = session
        .run(
            plan,
            runtime(),
            config(vec![Box::new(first.clone()), Box::new(second.clone())]),
        )
        .expect("run");
    assert_eq!(outcome.exit_code, EXIT_FAILED, "job b exits 3");
    assert!(outcome.record_error.is_none(), "{:?}", outcome.record_error);
    assert_eq!(std::fs::read_to_string(root.join("a.txt")).unwrap(), "hi\n");

    for seen in [&first, &second] {
        let (events, finished) = &*seen.0.lock().unwrap();
        assert!(finished, "finish() was called");
        assert!(matches!(events.first(), Some(Event::RunStarted { .. })));
        assert!(matches!(
            events.last(),
            Some(Event::RunFinished {
                status: Status::Failure,
                ..
            })
        ));
    }
    // Recorded through the same store, with the session's command line.
    let detail = store.run(outcome.run_id).unwrap().expect("recorded");
    assert_eq!(detail.run.status, Status::Failure);
    assert_eq!(detail.run.args, ["grade", "repos/"]);
    let statuses: Vec<_> = detail.jobs.iter().map(|j| j.status).collect();
    assert_eq!(statuses, [Status::Success, Status::Failure]);
    // The session is over: the workspace is free again, its tmp dir gone.
    assert!(!root.join(format!(".trun/tmp/{}", outcome.run_id)).exists());
    let again = Session::open(&root, &options).expect("the lock was released");
    let outcome = again
        .run(
            plan_in(&root, "jobs:\n  a:\n    steps:\n      - run: 'true'\n"),
            runtime(),
            config(Vec::new()),
        )
        .expect("second run");
    assert_eq!(outcome.exit_code, EXIT_OK);
    assert_eq!(outcome.run_id, detail.run.id + 1);
}
