//! Jobs spread over machines: one coordinating `trun run --dispatch` and
//! `trun worker` processes, each with a work dir of its own and no shared
//! files, meeting only in a real PostgreSQL database
//! (`TRUN_TEST_DATABASE_URL`, started by `.ci/postgres start`) and a real
//! cache server (`trun serve` on 127.0.0.1). Who ran what, and when, is read
//! from the job queue's rows. One test puts each worker in a network
//! namespace of its own, reaching the database and the cache over TCP only
//! (it needs root and iproute2's `ip`, and fails saying so without them).

mod common;

use common::netns::{self, Forward, Netns};
use common::server::Server;
use common::{fresh_database, invoke_in, wait_for, Running, Test};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A database, a cache server and the workers started on them.
struct Cluster {
    db: String,
    _cache_dir: Test,
    cache: Server,
    workers: Vec<(String, Test, Option<Running>)>,
}

/// One attempt of a job, as the queue recorded it.
#[derive(Debug, Clone)]
struct Attempt {
    run: i64,
    job: String,
    attempt: i32,
    state: String,
    worker: Option<String>,
    enqueued_at: i64,
    claimed_at: Option<i64>,
    finished_at: Option<i64>,
}

impl Cluster {
    fn new() -> Cluster {
        let db = fresh_database(None);
        // The team's server: the cache, and the list of workers.
        let cache_dir = Test::new().workflow("jobs: { noop: { steps: [ { run: 'true' } ] } }");
        let cache = Server::start(&cache_dir, &["--db", &db]);
        Cluster {
            db,
            _cache_dir: cache_dir,
            cache,
            workers: Vec::new(),
        }
    }

    /// Starts `trun worker` named `name` in a directory of its own.
    fn worker(&mut self, name: &str, extra: &[&str]) {
        let (db, cache) = (self.db.clone(), self.cache.base.clone());
        self.worker_via(name, &db, &cache, &[], extra, &[]);
    }

    /// [`Cluster::worker`] with `env` set for the worker.
    fn worker_with_env(&mut self, name: &str, extra: &[&str], env: &[(&str, &str)]) {
        let (db, cache) = (self.db.clone(), self.cache.base.clone());
        self.worker_via(name, &db, &cache, &[], extra, env);
    }

    /// Starts `trun worker` named `name` in a directory of its own, reaching
    /// the database at `db` and the cache at `cache`, run through `prefix`
    /// (`ip netns exec NAME`) when it is not empty, with `env` set.
    fn worker_via(
        &mut self,
        name: &str,
        db: &str,
        cache: &str,
        prefix: &[String],
        extra: &[&str],
        env: &[(&str, &str)],
    ) {
        let home = Test::new();
        let mut args = vec![
            "worker",
            "--db",
            db,
            "--remote-cache",
            cache,
            "--workdir",
            "work",
            "--name",
            name,
            "--lease",
            "1s",
        ];
        args.extend_from_slice(extra);
        let mut invocation = invoke_in(home.path(), &args).through(prefix);
        for (k, v) in env {
            invocation = invocation.env(k, v);
        }
        let running = invocation.spawn();
        wait_for(
            "the worker to wait for jobs",
            Duration::from_secs(30),
            || running.stderr_so_far().contains("waiting for jobs"),
        );
        self.workers.push((name.to_string(), home, Some(running)));
    }

    /// The directory worker `name` runs in (its `--workdir` is `work` there).
    fn home(&self, name: &str) -> &std::path::Path {
        self.workers
            .iter()
            .find(|(n, ..)| n == name)
            .map(|(_, home, _)| home.path())
            .expect("a worker of that name")
    }

    fn running(&self, name: &str) -> &Running {
        self.workers
            .iter()
            .find(|(n, ..)| n == name)
            .and_then(|(_, _, r)| r.as_ref())
            .expect("a running worker")
    }

    fn stderr_of_workers(&self) -> String {
        self.workers
            .iter()
            .map(|(n, _, r)| {
                format!(
                    "--- worker {n} ---\n{}",
                    r.as_ref().map(|r| r.stderr_so_far()).unwrap_or_default()
                )
            })
            .collect()
    }

    /// `trun run --dispatch` in `t`, to its successful end.
    fn dispatch_ok(&self, t: &Test) -> common::Output {
        let out = self.coordinate(t).wait(Duration::from_secs(180));
        assert_eq!(
            out.code,
            Some(0),
            "{}\n{}",
            out.all(),
            self.stderr_of_workers()
        );
        out
    }

    /// `trun run --dispatch` in `t`, started in the background.
    fn coordinate(&self, t: &Test) -> Running {
        t.args(&[
            "run",
            "--progress",
            "plain",
            "--db",
            &self.db,
            "--remote-cache",
            &self.cache.base,
            "--dispatch",
        ])
        .spawn()
    }

    fn attempts(&self) -> Vec<Attempt> {
        let mut c = postgres::Client::connect(&self.db, postgres::NoTls).expect("connect");
        let rows = c.query(
            "SELECT job_key, attempt, state, worker, claimed_at, finished_at, enqueued_at, run_id FROM job_queue
             ORDER BY job_key, attempt",
            &[],
        );
        match rows {
            // No trun has connected yet: nothing queued.
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => Vec::new(),
            rows => rows.expect("read the job queue"),
        }
        .iter()
        .map(|r| Attempt {
            job: r.get(0),
            attempt: r.get(1),
            state: r.get(2),
            worker: r.get(3),
            claimed_at: r.get(4),
            finished_at: r.get(5),
            enqueued_at: r.get(6),
            run: r.get(7),
        })
        .collect()
    }
}

/// The outputs of every job of the latest run in `t`'s history (in `db`, or the workspace's).
fn job_outputs(t: &Test, db: Option<&str>) -> BTreeMap<String, (String, Value)> {
    let mut args = vec!["show", "--json"];
    if let Some(db) = db {
        args.extend(["--db", db]);
    }
    let show = t.run(&args).success().json();
    show["jobs"]
        .as_array()
        .expect("jobs in show --json")
        .iter()
        .map(|j| {
            (
                j["key"].as_str().unwrap().to_string(),
                (
                    j["status"].as_str().unwrap().to_string(),
                    j["outputs"].clone(),
                ),
            )
        })
        .collect()
}

/// Twelve jobs: a seed, a fan-out of four, four jobs each reading one of
/// those, a fan-in, a check, and a report reading files written three and
/// five jobs up the graph. Every job writes a file and outputs its digest,
/// after sleeping `pause` seconds: while the four fan-out jobs sleep, an idle
/// worker has that long to claim the one that is left for it.
fn dag(pause: f64) -> String {
    let mut y = String::from("jobs:\n");
    let job = |y: &mut String, name: &str, needs: &[&str], script: &str| {
        y.push_str(&format!("  {name}:\n"));
        if !needs.is_empty() {
            y.push_str(&format!("    needs: [{}]\n", needs.join(", ")));
        }
        y.push_str(&format!(
            "    outputs: {{ digest: \"${{{{ steps.s.outputs.digest }}}}\" }}\n    steps:\n      - id: s\n        run: |\n          mkdir -p gen\n          sleep {pause}\n{}          echo \"digest=$(cat gen/{name}.txt | sha256sum | cut -c1-16)\" >> \"$TRUN_OUTPUT\"\n",
            script
                .lines()
                .map(|l| format!("          {l}\n"))
                .collect::<String>()
        ));
    };
    job(
        &mut y,
        "seed",
        &[],
        "cat src/input.txt > gen/seed.txt\necho seeded >> gen/seed.txt",
    );
    for i in 1..=4 {
        job(
            &mut y,
            &format!("fan{i}"),
            &["seed"],
            &format!("{{ cat gen/seed.txt; echo fan {i}; }} > gen/fan{i}.txt"),
        );
    }
    for i in 1..=4 {
        job(
            &mut y,
            &format!("work{i}"),
            &[&format!("fan{i}")],
            &format!("{{ cat gen/fan{i}.txt; echo work {i}; }} | tr a-z A-Z > gen/work{i}.txt"),
        );
    }
    job(
        &mut y,
        "merge",
        &["work1", "work2", "work3", "work4"],
        "cat gen/work1.txt gen/work2.txt gen/work3.txt gen/work4.txt > gen/merge.txt",
    );
    job(
        &mut y,
        "check",
        &["merge"],
        "test \"$(grep -c WORK gen/merge.txt)\" = 4\nsort gen/merge.txt > gen/check.txt",
    );
    job(
        &mut y,
        "report",
        &["check"],
        "cat gen/check.txt gen/fan2.txt gen/seed.txt > gen/report.txt",
    );
    y
}

fn dag_workspace(pause: f64) -> Test {
    Test::new()
        .workflow(&dag(pause))
        .file("src/input.txt", "the input\n")
        .file(".gitignore", "gen/\nscratch/\n")
        // Ignored by git: never part of the snapshot.
        .file("scratch/big.bin", "not for the workers\n")
}

#[test]
fn twelve_jobs_on_three_workers_match_a_local_run() {
    let mut cluster = Cluster::new();
    for w in ["w1", "w2", "w3"] {
        cluster.worker(w, &[]);
    }
    let by_job = the_dag_matches_a_local_run(&cluster, 0.3);
    let used: BTreeSet<&str> = by_job.values().map(String::as_str).collect();
    assert!(used.len() >= 2, "one worker ran everything: {by_job:?}");
}

/// Runs [`dag`] (each job sleeping `pause` s) locally and then on the
/// cluster's workers, and checks that the two agree, that every job ran once
/// on a worker and none on the coordinator, and that the fan-in read files
/// other workers wrote. Returns which worker ran each job.
fn the_dag_matches_a_local_run(cluster: &Cluster, pause: f64) -> BTreeMap<String, String> {
    let local = dag_workspace(pause);
    local.run(&["run", "--progress", "plain"]).success();
    let expected = job_outputs(&local, None);
    assert_eq!(expected.len(), 12, "{expected:?}");

    let coordinator = dag_workspace(pause);
    let out = cluster
        .coordinate(&coordinator)
        .wait(Duration::from_secs(120));
    let workers_err = cluster.stderr_of_workers();
    assert_eq!(out.code, Some(0), "{}\n{workers_err}", out.all());
    // The coordinator shows each step's end as for a local run, not "not run".
    assert!(!out.stderr.contains("not run"), "{}", out.stderr);
    // Nothing ran in the coordinator's workspace.
    assert!(!coordinator.exists("gen"), "a job ran on the coordinator");

    let got = job_outputs(&coordinator, Some(&cluster.db));
    assert_eq!(got, expected, "{workers_err}");

    let attempts = cluster.attempts();
    assert_eq!(attempts.len(), 12, "{attempts:?}");
    let by_job: BTreeMap<String, String> = attempts
        .iter()
        .map(|a| (a.job.clone(), a.worker.clone().unwrap_or_default()))
        .collect();
    assert!(attempts.iter().all(|a| a.state == "done" && a.attempt == 1));
    // The fan-in read files that other workers wrote.
    let merge = &by_job["merge"];
    assert!(
        (1..=4).any(|i| &by_job[&format!("work{i}")] != merge),
        "{by_job:?}"
    );
    // The steps were recorded in the coordinator's run, as for a local run.
    let show = coordinator
        .run(&["show", "--json", "--db", &cluster.db])
        .success()
        .json();
    for j in show["jobs"].as_array().unwrap() {
        for s in j["steps"].as_array().unwrap() {
            assert_eq!(s["status"], "success", "{s}");
        }
    }
    by_job
}

/// A machine of its own for a worker: a network namespace whose one link is
/// a veth pair to the host, and forwarders on the host's end of it to the
/// database and the cache, which listen on the host's 127.0.0.1 only.
struct Machine {
    ns: Netns,
    db: Forward,
    cache: Forward,
}

#[test]
fn twelve_jobs_on_three_workers_in_network_namespaces_match_a_local_run() {
    netns::require();
    let mut cluster = Cluster::new();
    let db_at = address_of(&cluster.db);
    let cache_at = address_of(&cluster.cache.base);
    let machines: Vec<Machine> = (0..3)
        .map(|_| {
            let ns = Netns::create();
            Machine {
                db: Forward::start(ns.host_addr, db_at),
                cache: Forward::start(ns.host_addr, cache_at),
                ns,
            }
        })
        .collect();

    for (i, m) in machines.iter().enumerate() {
        let other = &machines[(i + 1) % machines.len()];
        // Inside, 127.0.0.1 is the namespace's own loopback: the services
        // are not there, nor on the host's end of the link (they listen on
        // the host's loopback only), and nothing beyond the link is routed.
        for to in [
            db_at,
            cache_at,
            SocketAddr::from((m.ns.host_addr, db_at.port())),
            SocketAddr::from((m.ns.host_addr, cache_at.port())),
            other.db.addr,
        ] {
            let refused = m.ns.connect_from_inside(to);
            assert!(refused.is_err(), "{} reached {to}", m.ns.name);
        }
        // The forwarders are the way out.
        for to in [m.db.addr, m.cache.addr] {
            m.ns.connect_from_inside(to)
                .unwrap_or_else(|e| panic!("{} cannot reach {to}: {e}", m.ns.name));
        }
    }

    let names = ["n1", "n2", "n3"];
    for (name, m) in names.iter().zip(&machines) {
        let db = cluster
            .db
            .replacen(&format!("@{db_at}/"), &format!("@{}/", m.db.addr), 1);
        assert_ne!(db, cluster.db, "the database URL names {db_at}");
        let cache = format!("http://{}", m.cache.addr);
        cluster.worker_via(name, &db, &cache, &m.ns.exec_prefix(), &[], &[]);
    }

    // Every worker must run a job: the fan-out jobs run long enough that
    // one slow to wake on a loaded machine still claims one.
    let by_job = the_dag_matches_a_local_run(&cluster, 1.0);
    for name in names {
        assert!(
            by_job.values().any(|w| w == name),
            "worker {name} ran no job: {by_job:?}\n{}",
            cluster.stderr_of_workers()
        );
    }
    // The worker connected to the database and the cache through its
    // forwarders (besides the test's own probe, the first connection), and
    // every connection came over the link.
    for m in &machines {
        for (what, fwd) in [("database", &m.db), ("cache", &m.cache)] {
            let peers = fwd.peers();
            assert!(
                peers.len() > 1 && peers.iter().all(|p| *p == m.ns.inside_addr),
                "{what} connections through {}: {peers:?}",
                m.ns.name
            );
        }
    }

    // `ip netns exec` execs trun: the pid the test holds is the worker's, and
    // what else runs inside is its guard (a child). Two workers drain on
    // SIGTERM, the third is killed outright; either way, once it has gone
    // its guard follows and nothing is left inside.
    let trun = std::fs::canonicalize(common::TRUN).unwrap();
    for ((name, _home, running), m) in cluster.workers.drain(..).zip(&machines) {
        let running = running.unwrap();
        let pid = running.pid();
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
            trun,
            "{name}"
        );
        let inside = m.ns.pids_inside();
        assert!(
            inside.contains(&pid)
                && inside
                    .iter()
                    .all(|p| *p == pid || common::parent_pid(*p) == Some(pid)),
            "{name} is {pid}; inside: {}",
            command_lines(&inside)
        );
        let out = if name == "n3" {
            running.signal(nix::sys::signal::Signal::SIGKILL);
            let out = running.wait(Duration::from_secs(30));
            assert_eq!(out.code, Some(128 + 9), "{}", out.all());
            out
        } else {
            running.signal(nix::sys::signal::Signal::SIGTERM);
            let out = running.wait(Duration::from_secs(30));
            assert_eq!(out.code, Some(0), "{}", out.all());
            out.stderr_has("stopped");
            out
        };
        let limit = Duration::from_secs(10);
        let left = m.ns.wait_until_empty(limit);
        assert!(
            left.is_empty(),
            "{limit:?} after {name} ended, {} still holds {}\n{}",
            m.ns.name,
            command_lines(&left),
            out.all()
        );
    }
}

#[test]
fn a_dropped_namespace_takes_its_link_address_and_processes_with_it() {
    netns::require();
    let ns = Netns::create();
    let (name, link, addr) = (ns.name.clone(), ns.host_link.clone(), ns.host_addr);
    let mut inside = std::process::Command::new("ip")
        .args(["netns", "exec", &name, "sleep", "300"])
        .spawn()
        .unwrap();
    wait_for("the sleep to run inside", Duration::from_secs(10), || {
        ns.pids_inside() == vec![inside.id() as i32]
    });
    let _reaper = common::Reaper(
        common::Process::find(inside.id() as i32)
            .into_iter()
            .collect(),
    );
    drop(ns);
    wait_for(
        "the sleep inside to be killed",
        Duration::from_secs(10),
        || inside.try_wait().unwrap().is_some(),
    );
    assert!(!std::path::Path::new(&format!("/run/netns/{name}")).exists());
    let links = std::process::Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains(&link) && !links.contains(&format!("inet {addr}/")),
        "{links}"
    );
}

/// The command lines of `pids`, for a message.
fn command_lines(pids: &[i32]) -> String {
    pids.iter()
        .map(|pid| {
            let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!(
                "{pid}: {}\n",
                String::from_utf8_lossy(&argv).replace('\0', " ")
            )
        })
        .collect()
}

/// The `host:port` of a URL such as `postgres://trun@127.0.0.1:5432/db`.
fn address_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host_port
        .parse()
        .unwrap_or_else(|e| panic!("no address in {url}: {e}"))
}

#[test]
fn a_killed_workers_job_runs_again_on_another_worker() {
    let mut cluster = Cluster::new();
    cluster.worker("doomed", &[]);
    let t = Test::new().workflow(
        "
        jobs:
          slow:
            steps:
              - run: |
                  mkdir -p gen
                  echo started > gen/started
                  sleep 4
                  echo done > gen/slow.txt
          after:
            needs: slow
            steps:
              - run: cat gen/slow.txt
        ",
    );
    let coordinator = cluster.coordinate(&t);
    wait_for(
        "the doomed worker to claim",
        Duration::from_secs(30),
        || {
            cluster
                .attempts()
                .iter()
                .any(|a| a.job == "slow" && a.state == "running")
        },
    );
    // Once the step has started (on a loaded machine that can take a while
    // after the claim), kill the worker outright.
    let work = cluster.home("doomed").join("work");
    wait_for(
        "the doomed worker's step to start",
        Duration::from_secs(30),
        || {
            std::fs::read_dir(&work)
                .into_iter()
                .flatten()
                .flatten()
                .any(|job| job.path().join("gen/started").exists())
        },
    );
    cluster
        .running("doomed")
        .signal(nix::sys::signal::Signal::SIGKILL);
    let killed_at = now_ms();
    cluster.worker("rescuer", &[]);
    let out = coordinator.wait(Duration::from_secs(90));
    let workers_err = cluster.stderr_of_workers();
    assert_eq!(out.code, Some(0), "{}\n{workers_err}", out.all());
    // The coordinator shows each step's end as for a local run, not "not run".
    assert!(!out.stderr.contains("not run"), "{}", out.stderr);

    let slow: Vec<Attempt> = cluster
        .attempts()
        .into_iter()
        .filter(|a| a.job == "slow")
        .collect();
    assert_eq!(slow.len(), 2, "{slow:?}");
    assert_eq!(
        (slow[0].state.as_str(), slow[0].worker.as_deref()),
        ("expired", Some("doomed"))
    );
    assert_eq!(
        (
            slow[1].attempt,
            slow[1].state.as_str(),
            slow[1].worker.as_deref()
        ),
        (2, "done", Some("rescuer"))
    );
    // The second attempt began after the first was declared dead, and the
    // dead worker's step was stopped: it never finished its `sleep`.
    let expired_at = slow[0].finished_at.unwrap();
    assert!(slow[1].claimed_at.unwrap() >= expired_at, "{slow:?}");
    assert!(expired_at >= killed_at, "{slow:?}");
    assert!(
        workers_err.contains("stopped") && workers_err.contains("left running"),
        "the dead worker's step was not stopped:\n{workers_err}"
    );
    // `trun show` says where each job ran, and which attempt finished it.
    let show = t
        .run(&["show", "--json", "--db", &cluster.db])
        .success()
        .json();
    let slow_job = show["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["key"] == "slow")
        .unwrap()
        .clone();
    assert_eq!(
        (&slow_job["worker"], &slow_job["attempt"]),
        (&Value::from("rescuer"), &Value::from(2)),
        "{show}"
    );
    t.run(&["show", "--db", &cluster.db])
        .success()
        .stdout_has("on worker rescuer, attempt 2");
}

#[test]
fn a_late_worker_picks_up_queued_work_within_a_second() {
    let mut cluster = Cluster::new();
    let t = Test::new().workflow(
        "
        jobs:
          one:
            steps:
              - run: echo one
        ",
    );
    let coordinator = cluster.coordinate(&t);
    wait_for("the job to be queued", Duration::from_secs(30), || {
        !cluster.attempts().is_empty()
    });
    // Queued for a while with no worker; then one starts.
    std::thread::sleep(Duration::from_millis(500));
    cluster.worker("late", &[]);
    let ready = Instant::now();
    let started_ms = now_ms();
    wait_for("the late worker to claim", Duration::from_secs(10), || {
        cluster.attempts().iter().any(|a| a.claimed_at.is_some())
    });
    let claimed = cluster.attempts()[0].claimed_at.unwrap();
    assert!(
        claimed - started_ms < 1000 && ready.elapsed() < Duration::from_secs(2),
        "claimed {} ms after the worker was ready",
        claimed - started_ms
    );
    coordinator.wait(Duration::from_secs(60)).success();

    // A worker that was waiting (LISTEN) when work arrives: woken, not polling.
    let t2 = Test::new().workflow(
        "
        jobs:
          two:
            steps:
              - run: echo two
        ",
    );
    cluster
        .coordinate(&t2)
        .wait(Duration::from_secs(60))
        .success();
    let two = cluster
        .attempts()
        .into_iter()
        .find(|a| a.job == "two")
        .unwrap();
    assert!(two.claimed_at.unwrap() - two.enqueued_at < 500, "{two:?}");
}

#[test]
fn a_concurrency_group_holds_across_workers() {
    let mut cluster = Cluster::new();
    for w in ["c1", "c2", "c3"] {
        cluster.worker(w, &["-j", "2"]);
    }
    let mut y = String::from("jobs:\n");
    for i in 1..=6 {
        y.push_str(&format!(
            "  j{i}:\n    concurrency: {{ group: deploy, max: 2 }}\n    steps:\n      - run: sleep 0.6\n"
        ));
    }
    let t = Test::new().workflow(&y);
    cluster.dispatch_ok(&t);
    let attempts = cluster.attempts();
    assert_eq!(attempts.len(), 6);
    let used: BTreeSet<&str> = attempts
        .iter()
        .filter_map(|a| a.worker.as_deref())
        .collect();
    assert!(used.len() >= 2, "{attempts:?}");
    // At no instant did more than two attempts run.
    for a in &attempts {
        let at = a.claimed_at.unwrap();
        let overlapping = attempts
            .iter()
            .filter(|b| b.claimed_at.unwrap() <= at && at < b.finished_at.unwrap())
            .count();
        assert!(overlapping <= 2, "{overlapping} at once: {attempts:?}");
    }
}

#[test]
fn a_worker_drains_on_sigterm() {
    let mut cluster = Cluster::new();
    cluster.worker("drainer", &[]);
    let t = Test::new().workflow(
        "
        jobs:
          long:
            steps:
              - run: sleep 1.5 && echo finished
        ",
    );
    let coordinator = cluster.coordinate(&t);
    wait_for("the worker to claim", Duration::from_secs(30), || {
        cluster.attempts().iter().any(|a| a.state == "running")
    });
    // The server lists the worker with the job it runs.
    let workers = workers_of(&cluster);
    let w = &workers["workers"][0];
    assert_eq!(w["name"], "drainer", "{workers}");
    assert!(
        w["jobs"][0].as_str().unwrap().ends_with(":long:1"),
        "{workers}"
    );
    assert!(
        now_ms() - w["heartbeat_at"].as_i64().unwrap() < 5000,
        "{workers}"
    );
    assert!(w["stopped_at"].is_null(), "{workers}");
    cluster
        .running("drainer")
        .signal(nix::sys::signal::Signal::SIGTERM);
    coordinator.wait(Duration::from_secs(60)).success();
    let (_, _, running) = cluster.workers.pop().unwrap();
    let out = running.unwrap().wait(Duration::from_secs(30));
    assert_eq!(out.code, Some(0), "{}", out.all());
    out.stderr_has("draining").stderr_has("stopped");
    assert_eq!(cluster.attempts()[0].state, "done");
    let workers = workers_of(&cluster);
    assert!(workers["workers"][0]["stopped_at"].is_i64(), "{workers}");
}

/// `GET /api/v1/workers` of the cluster's server.
fn workers_of(cluster: &Cluster) -> Value {
    cluster
        .cache
        .client
        .get(cluster.cache.url("/api/v1/workers"))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn runs_on_routes_jobs_to_workers_with_those_labels() {
    let mut cluster = Cluster::new();
    cluster.worker("plain", &[]);
    cluster.worker("gpu", &["--labels", "gpu,linux"]);
    let t = Test::new().workflow(
        "
        jobs:
          train:
            runs-on: [gpu]
            steps:
              - run: echo training
          any:
            steps:
              - run: echo anywhere
        ",
    );
    cluster.dispatch_ok(&t);
    let train = cluster
        .attempts()
        .into_iter()
        .find(|a| a.job == "train")
        .unwrap();
    assert_eq!(train.worker.as_deref(), Some("gpu"));
}

#[test]
fn a_server_with_no_local_exec_sends_every_job_to_the_workers() {
    let mut cluster = Cluster::new();
    for w in ["w1", "w2"] {
        cluster.worker(w, &[]);
    }
    let t = Test::new().file(
        "flow.yaml",
        &common::unindent(
            r#"
            inputs:
              word: { type: string, default: hi }
            jobs:
              make:
                outputs: { made: "${{ steps.m.outputs.made }}" }
                steps:
                  - id: m
                    run: |
                      mkdir -p gen && echo "${{ inputs.word }}" > gen/word
                      echo "made=yes" >> "$GITHUB_OUTPUT"
                      echo "made it on a worker"
              use:
                needs: make
                outputs: { read: "${{ steps.r.outputs.read }}" }
                steps:
                  - id: r
                    run: echo "read=$(cat gen/word)-${{ needs.make.outputs.made }}" >> "$GITHUB_OUTPUT"
            "#,
        ),
    );
    let s = Server::start(
        &t,
        &[
            "--db",
            &cluster.db,
            "--no-local-exec",
            "--remote-cache",
            &cluster.cache.base,
        ],
    );
    let id = s.create(&serde_json::json!({"workflow": "flow.yaml", "inputs": {"word": "moved"}}));
    let run = s.wait_done(&id);
    assert_eq!(
        run["status"],
        "success",
        "{run}\n{}",
        cluster.stderr_of_workers()
    );
    let outputs: BTreeMap<String, Value> = run["run"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["key"].as_str().unwrap().to_string(), j["outputs"].clone()))
        .collect();
    assert_eq!(outputs["use"]["read"], "moved-yes", "{outputs:?}");
    // Nothing ran in the server's root; each job ran once, on a worker.
    assert!(!t.exists("gen"), "a job ran on the server");
    let attempts = cluster.attempts();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    for a in &attempts {
        assert_eq!((a.state.as_str(), a.attempt), ("done", 1), "{a:?}");
        assert!(matches!(a.worker.as_deref(), Some("w1" | "w2")), "{a:?}");
    }

    // /metrics says, per worker, what the database says it did.
    let done: f64 = ["w1", "w2"]
        .iter()
        .map(|w| {
            s.metric_or(&format!(
                "trun_worker_attempts{{state=\"done\",worker=\"{w}\"}}"
            ))
            .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(done, 2.0);
    for w in ["w1", "w2"] {
        assert_eq!(
            s.metric(&format!("trun_worker_running_jobs{{worker=\"{w}\"}}")),
            0.0
        );
        assert!(
            s.metric(&format!(
                "trun_worker_heartbeat_age_seconds{{worker=\"{w}\"}}"
            )) < 30.0
        );
    }

    // The step's log went to the cache: the API and `trun logs` read it there.
    let r = s.get(&format!("/api/v1/runs/{id}/logs/make/1"));
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().unwrap(), "made it on a worker\n");
    let store_run = run["store_run_id"].as_i64().unwrap().to_string();
    let elsewhere = Test::new();
    elsewhere
        .run(&[
            "logs",
            &store_run,
            "make.1",
            "--db",
            &cluster.db,
            "--remote-cache",
            &cluster.cache.base,
        ])
        .success()
        .stdout_is("made it on a worker\n");
    elsewhere
        .run(&["logs", &store_run, "make.1", "--db", &cluster.db])
        .success()
        .stdout_has("this step ran on a trun worker, which put its log in the remote cache: give --remote-cache URL");

    // Inline YAML has no file a worker could read: the run fails, saying why.
    let id =
        s.create(&serde_json::json!({"yaml": "jobs:\n  a:\n    steps:\n      - run: 'true'\n"}));
    let run = s.wait_done(&id);
    assert_eq!(run["status"], "failure", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or("")
            .contains("inline YAML cannot run on workers"),
        "{run}"
    );
}

/// The steps of the latest run in `t`'s history (in `db`): (job.step, status, reason).
fn step_results(t: &Test, db: &str) -> Vec<(String, String, String)> {
    let show = t.run(&["show", "--json", "--db", db]).success().json();
    let mut out = Vec::new();
    for j in show["jobs"].as_array().unwrap() {
        for s in j["steps"].as_array().unwrap() {
            out.push((
                format!(
                    "{}.{}",
                    j["key"].as_str().unwrap(),
                    s["id"].as_str().unwrap_or("")
                ),
                s["status"].as_str().unwrap_or("").to_string(),
                s["reason"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

/// How many times each step ran, counted in `dir` (outside every workspace).
fn runs_counted(dir: &Test, name: &str) -> usize {
    std::fs::read_to_string(dir.path().join(name))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn steps_on_workers_are_restored_when_their_inputs_did_not_change() {
    let mut cluster = Cluster::new();
    for w in ["w1", "w2"] {
        cluster.worker(w, &[]);
    }
    let count = Test::new();
    let flow = common::unindent(&format!(
        r#"
        env: {{ COUNT: "{}" }}
        jobs:
          gen:
            steps:
              - id: sort
                sources: [src/a.txt]
                generates: [out/a.gen]
                run: mkdir -p out && sort -u src/a.txt > out/a.gen && echo ran >> "$COUNT/gen"
          use:
            needs: gen
            steps:
              # Its sources do not name out/a.gen: what gen hands on keys it.
              - id: read
                sources: [src/b.txt]
                generates: [out/b.gen]
                run: cat out/a.gen src/b.txt > out/b.gen && echo ran >> "$COUNT/use"
          check:
            needs: use
            steps:
              - id: look
                sources: [out/b.gen]
                run: grep -q banana out/b.gen && echo ran >> "$COUNT/check"
        "#,
        count.path().display()
    ));
    let ws = Test::new()
        .workflow(&flow)
        .file("src/a.txt", "banana\napple\n")
        .file("src/b.txt", "b\n");
    let run = |expect: &[(&str, usize)]| {
        let out = cluster.coordinate(&ws).wait(Duration::from_secs(120));
        assert_eq!(
            out.code,
            Some(0),
            "{}\n{}",
            out.all(),
            cluster.stderr_of_workers()
        );
        for (name, n) in expect {
            assert_eq!(
                runs_counted(&count, name),
                *n,
                "{name}: {:?}\n{}",
                step_results(&ws, &cluster.db),
                cluster.stderr_of_workers()
            );
        }
        step_results(&ws, &cluster.db)
    };

    // First run: everything runs.
    run(&[("gen", 1), ("use", 1), ("check", 1)]);
    // Same source again, on whichever worker: every step is restored from
    // the cache and nothing runs, yet each job hands on its files.
    let steps = run(&[("gen", 1), ("use", 1), ("check", 1)]);
    for (step, status, reason) in &steps {
        assert_eq!(status, "skipped", "{step}: {steps:?}");
        // A step with files to hand on gets them from the cache; one
        // without is simply up to date (the store is shared).
        let expected = if step == "check.look" {
            "up to date"
        } else {
            "restored from remote cache"
        };
        assert_eq!(reason, expected, "{step}: {steps:?}");
    }
    // A line sort -u drops: gen runs, writes the same file, and nothing behind it runs.
    ws.write("src/a.txt", "banana\napple\napple\n");
    run(&[("gen", 2), ("use", 1), ("check", 1)]);
    // A real change: gen's file changes, so use runs although its own
    // sources did not change, and check reads use's new file.
    ws.write("src/a.txt", "banana\ncherry\n");
    run(&[("gen", 3), ("use", 2), ("check", 2)]);
}

#[test]
fn workers_hold_the_secrets_and_the_coordinator_sends_none() {
    let mut cluster = Cluster::new();
    cluster.worker_with_env(
        "keeper",
        &["--secret", "DEPLOY_TOKEN"],
        &[("DEPLOY_TOKEN", "s3cr3t-on-the-worker")],
    );
    let ws = Test::new().workflow(&common::unindent(
        r#"
        jobs:
          deploy:
            steps:
              - id: use
                run: |
                  test "${{ secrets.DEPLOY_TOKEN }}" = s3cr3t-on-the-worker
                  echo "token is ${{ secrets.DEPLOY_TOKEN }}"
        "#,
    ));
    cluster.dispatch_ok(&ws);
    // Masked in the log the worker put in the cache.
    let run = ws
        .run(&["show", "--json", "--db", &cluster.db])
        .success()
        .json();
    let id = run["id"].as_i64().unwrap().to_string();
    ws.run(&[
        "logs",
        &id,
        "deploy.use",
        "--db",
        &cluster.db,
        "--remote-cache",
        &cluster.cache.base,
    ])
    .success()
    .stdout_is("token is ***\n");
    // Nothing in the database holds it.
    let mut c = postgres::Client::connect(&cluster.db, postgres::NoTls).expect("connect");
    let tables: Vec<String> = c
        .query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in tables {
        let hit: i64 = c
            .query_one(
                &format!("SELECT count(*) FROM \"{t}\" x WHERE x::text LIKE '%s3cr3t%'"),
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(hit, 0, "table {t} holds the secret");
    }

    // A coordinator given a secret refuses: it would never reach a worker.
    let out = ws
        .args(&[
            "run",
            "--db",
            &cluster.db,
            "--remote-cache",
            &cluster.cache.base,
            "--dispatch",
            "--secret",
            "X=y",
        ])
        .run();
    assert_eq!(out.code, Some(2), "{}", out.all());
    assert!(
        out.stderr.contains("secrets are not sent to workers"),
        "{}",
        out.all()
    );
}

#[test]
fn legs_of_a_computed_matrix_run_on_the_workers() {
    let mut cluster = Cluster::new();
    for w in ["w1", "w2"] {
        cluster.worker(w, &[]);
    }
    let ws = Test::new().workflow(&common::unindent(
        r#"
        jobs:
          setup:
            outputs: { targets: "${{ steps.list.outputs.targets }}" }
            steps:
              - id: list
                run: echo 'targets=["x86", "arm", "riscv"]' >> "$TRUN_OUTPUT"
          build:
            needs: setup
            strategy:
              max-parallel: 2
              matrix:
                target: ${{ fromJSON(needs.setup.outputs.targets) }}
            steps:
              - run: mkdir -p gen && echo "built ${{ matrix.target }}" > "gen/${{ matrix.target }}"
          pack:
            needs: build
            outputs: { all: "${{ steps.cat.outputs.all }}" }
            steps:
              - id: cat
                run: echo "all=$(cat gen/* | sort | tr '\n' ,)" >> "$TRUN_OUTPUT"
        "#,
    ));
    cluster.dispatch_ok(&ws);
    assert!(!ws.exists("gen"), "a leg ran on the coordinator");
    // Each leg was a job of the queue, run by a worker.
    let attempts = cluster.attempts();
    let jobs: BTreeSet<&str> = attempts.iter().map(|a| a.job.as_str()).collect();
    assert_eq!(
        jobs,
        BTreeSet::from([
            "build (arm)",
            "build (riscv)",
            "build (x86)",
            "pack",
            "setup"
        ]),
        "{attempts:?}"
    );
    assert!(attempts
        .iter()
        .all(|a| a.state == "done" && a.worker.is_some()));
    // The job after the matrix got every leg's file, from whichever worker.
    let outputs = job_outputs(&ws, Some(&cluster.db));
    assert_eq!(
        outputs["pack"].1["all"], "built arm,built riscv,built x86,",
        "{outputs:?}"
    );
    assert_eq!(outputs["build"].0, "success", "{outputs:?}");
}

/// The fan-out example's pipeline, each job counting its runs in `count`
/// (outside every workspace), and `summary` handing on what it read.
fn fan_out_workspace(count: &Test) -> Test {
    let flow = common::unindent(&format!(
        r#"
        env: {{ COUNT: "{}" }}
        jobs:
          start:
            steps:
              - sources: [inputs/**]
                run: |
                  echo start >> "$COUNT/start"
                  for f in inputs/*; do
                    case "$f" in
                      *.txt) cp "$f" "$TRUN_EMIT/process/" ;;
                      *.list) cp "$f" "$TRUN_EMIT/transform/" ;;
                    esac
                  done
          process:
            fed-by: start
            steps:
              - sources: [scripts/upper.sh]
                run: |
                  echo "$TRUN_INPUT_NAME" >> "$COUNT/process"
                  sh scripts/upper.sh < "$TRUN_INPUT_FILE" > "$TRUN_EMIT/report/upper-$TRUN_INPUT_NAME"
          transform:
            fed-by: start
            steps:
              - run: |
                  echo "$TRUN_INPUT_NAME" >> "$COUNT/transform"
                  sort < "$TRUN_INPUT_FILE" > "$TRUN_EMIT/report/sorted-$TRUN_INPUT_NAME"
          report:
            fed-by: [process, transform]
            steps:
              - run: |
                  echo "$TRUN_INPUT_NAME" >> "$COUNT/report"
                  mkdir -p reports && cat "$TRUN_INPUT_FILE" > "reports/$TRUN_INPUT_NAME"
          summary:
            needs: report
            outputs: {{ all: "${{{{ steps.s.outputs.all }}}}" }}
            steps:
              - id: s
                run: echo "all=$(ls reports | tr '\n' ' ')$(cat reports/* | tr '\n' ' ')" >> "$TRUN_OUTPUT"
        "#,
        count.path().display()
    ));
    Test::example("fan-out").workflow(&flow)
}

#[test]
fn a_fan_out_over_produced_files_runs_its_instances_on_the_workers() {
    let local_count = Test::new();
    let local = fan_out_workspace(&local_count);
    local.run(&["run", "--progress", "plain"]).success();
    let expected = job_outputs(&local, None)["summary"].1["all"].clone();
    assert!(expected.as_str().unwrap().contains("HELLO"), "{expected}");

    let mut cluster = Cluster::new();
    for w in ["w1", "w2", "w3"] {
        cluster.worker(w, &[]);
    }
    let count = Test::new();
    let ws = fan_out_workspace(&count);
    let run = |what: &str, expected: &Value| {
        let out = cluster.coordinate(&ws).wait(Duration::from_secs(180));
        assert_eq!(
            out.code,
            Some(0),
            "{what}: {}\n{}",
            out.all(),
            cluster.stderr_of_workers()
        );
        assert!(!ws.exists("reports"), "a job ran on the coordinator");
        let outputs = job_outputs(&ws, Some(&cluster.db));
        if &outputs["summary"].1["all"] != expected {
            let mut c = postgres::Client::connect(&cluster.db, postgres::NoTls).unwrap();
            for r in c
                .query(
                    "SELECT job_key, payload::text, result::text FROM job_queue",
                    &[],
                )
                .unwrap()
            {
                let (k, p, res): (String, String, Option<String>) = (r.get(0), r.get(1), r.get(2));
                eprintln!("{k}\n  {p}\n  {res:?}");
            }
            eprintln!("STEPS {:?}", step_results(&ws, &cluster.db));
            eprintln!(
                "COUNT {:?}",
                std::fs::read_to_string(count.path().join("process"))
            );
        }
        assert_eq!(
            &outputs["summary"].1["all"], expected,
            "{what}: {outputs:?}"
        );
        let attempts = cluster.attempts();
        assert!(
            attempts
                .iter()
                .all(|a| a.state == "done" && a.attempt == 1 && a.worker.is_some()),
            "{what}: {attempts:?}"
        );
        let last = attempts.iter().map(|a| a.run).max();
        let mut queued: Vec<String> = attempts
            .iter()
            .filter(|a| Some(a.run) == last)
            .map(|a| a.job.clone())
            .collect();
        queued.sort();
        queued
    };
    let counted = |name: &str| {
        let mut v: Vec<String> = std::fs::read_to_string(count.path().join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };

    // Every instance is a job of the queue, run by a worker; `summary`
    // reads files that instances on other workers wrote.
    let queued = run("first run", &expected);
    assert_eq!(
        queued,
        [
            "process[hello.txt]",
            "process[notes.txt]",
            "report[sorted-fruits.list]",
            "report[upper-hello.txt]",
            "report[upper-notes.txt]",
            "start",
            "summary",
            "transform[fruits.list]",
        ]
    );
    assert_eq!(counted("process"), ["hello.txt", "notes.txt"]);
    assert_eq!(counted("report").len(), 3);
    let workers: BTreeSet<String> = cluster
        .attempts()
        .iter()
        .filter_map(|a| a.worker.clone())
        .collect();
    assert!(workers.len() >= 2, "one worker ran everything: {workers:?}");

    // Again: the coordinator finds every instance up to date and queues
    // none; what they wrote still reaches `summary`.
    let queued = run("second run", &expected);
    assert!(
        queued.iter().all(|j| !j.contains('[')),
        "instances ran again: {queued:?}"
    );
    assert_eq!(counted("process"), ["hello.txt", "notes.txt"]);
    assert_eq!(counted("report").len(), 3);

    // An edited `process` script: its instances and the reports they feed
    // run again, and nothing else.
    let edited = "tr a-z A-Z | sed 's/$/!/'\n";
    local.write("scripts/upper.sh", edited);
    local.run(&["run", "--progress", "plain"]).success();
    let expected = job_outputs(&local, None)["summary"].1["all"].clone();
    assert!(expected.as_str().unwrap().contains("HELLO!"), "{expected}");
    ws.write("scripts/upper.sh", edited);
    let queued = run("after editing upper.sh", &expected);
    let instances: Vec<&String> = queued.iter().filter(|j| j.contains('[')).collect();
    assert_eq!(
        instances,
        [
            "process[hello.txt]",
            "process[notes.txt]",
            "report[upper-hello.txt]",
            "report[upper-notes.txt]",
        ]
    );
    assert_eq!(counted("transform"), ["fruits.list"]);
}
