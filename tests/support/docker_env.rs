//! Test images and a test registry, made on the spot: this machine has a Docker
//! daemon but no registry and no images.
//!
//! `ensure_busybox_image` builds a rootfs tarball from Debian's `busybox-static`
//! (`/bin/busybox` plus its applet links) and `docker import`s it as
//! `trun-test/busybox:latest`. `LocalRegistry` runs Debian's `docker-registry` on a
//! free 127.0.0.1 port (the daemon allows 127.0.0.0/8 registries without TLS).
//! The `docker` CLI is used here for setup only; trun itself talks to the API.
//! Both need `apt-get install busybox-static docker-registry` (done by `.ci/run`).
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const BUSYBOX_IMAGE: &str = "trun-test/busybox:latest";
const BUSYBOX_BIN: &str = "/bin/busybox";

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `docker {}`: {e} (is the docker CLI installed?)",
                args.join(" ")
            )
        })
}

/// Fails the test with one clear line when the daemon cannot be reached.
pub fn require_daemon() {
    let out = docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(
        out.status.success(),
        "the Docker daemon is not reachable (DOCKER_HOST={}): {} — these tests need a running Docker daemon",
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unset".into()),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn image_present(image: &str) -> bool {
    docker(&["image", "inspect", "--format", "{{.Id}}", image])
        .status
        .success()
}

/// Makes sure `trun-test/busybox:latest` exists and returns its name. Idempotent
/// and safe from parallel tests: threads serialize on a mutex, processes on an
/// exclusive lock file.
pub fn ensure_busybox_image() -> String {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    require_daemon();
    if image_present(BUSYBOX_IMAGE) {
        return BUSYBOX_IMAGE.to_string();
    }
    let _file_lock = FileLock::acquire(&std::env::temp_dir().join("trun-test-busybox-image.lock"));
    if !image_present(BUSYBOX_IMAGE) {
        import_busybox();
    }
    BUSYBOX_IMAGE.to_string()
}

fn import_busybox() {
    assert!(
        Path::new(BUSYBOX_BIN).exists(),
        "{BUSYBOX_BIN} is missing: install Debian's busybox-static (apt-get install busybox-static)"
    );
    let list = Command::new(BUSYBOX_BIN)
        .arg("--list-full")
        .output()
        .expect("busybox --list-full");
    let applets = String::from_utf8_lossy(&list.stdout).to_string();
    let mut tar = tar::Builder::new(Vec::new());
    let dir = |tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        tar.append_data(&mut h, path, std::io::empty())
            .expect("tar dir");
    };
    for d in [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "home",
    ] {
        dir(&mut tar, d, 0o755);
    }
    dir(&mut tar, "tmp", 0o1777);
    let body = std::fs::read(BUSYBOX_BIN).expect("read busybox");
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(body.len() as u64);
    tar.append_data(&mut h, "bin/busybox", body.as_slice())
        .expect("tar busybox");
    for file in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/sh\n",
        ),
        ("etc/group", "root:x:0:\nnobody:x:65534:\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(file.1.len() as u64);
        tar.append_data(&mut h, file.0, file.1.as_bytes())
            .expect("tar file");
    }
    for applet in applets
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "bin/busybox")
    {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        tar.append_link(&mut h, applet, "/bin/busybox")
            .expect("tar link");
    }
    let bytes = tar.into_inner().expect("tar");
    let mut child = Command::new("docker")
        .args(["import", "-", BUSYBOX_IMAGE])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker import");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&bytes)
        .expect("write rootfs");
    let out = child.wait_with_output().expect("docker import");
    assert!(
        out.status.success(),
        "docker import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An exclusive lock file held for the guard's lifetime; a lock older than two
/// minutes is taken to be left by a killed test process.
struct FileLock(PathBuf);

impl FileLock {
    fn acquire(path: &Path) -> FileLock {
        let start = Instant::now();
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(_) => return FileLock(path.to_path_buf()),
                Err(_) => {
                    let stale = std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(120));
                    if stale {
                        let _ = std::fs::remove_file(path);
                    }
                    assert!(
                        start.elapsed() < Duration::from_secs(180),
                        "timed out waiting for {}",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Debian's `docker-registry` on 127.0.0.1, storing into a temp dir; stopped on drop.
pub struct LocalRegistry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl LocalRegistry {
    pub fn start() -> LocalRegistry {
        require_daemon();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let storage = dir.path().join("storage");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .expect("registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start docker-registry: {e} (apt-get install docker-registry)")
            });
        let mut registry = LocalRegistry {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited early with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on 127.0.0.1:{port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// `127.0.0.1:PORT`, to prefix image names with.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Tags `image` as `<addr>/<name>`, pushes it, and removes the local tag so a
    /// later pull really goes to the registry. Returns the registry reference.
    pub fn push(&self, image: &str, name: &str) -> String {
        let reference = format!("{}/{name}", self.addr());
        for args in [
            vec!["tag", image, &reference],
            vec!["push", &reference],
            vec!["rmi", &reference],
        ] {
            let out = docker(&args);
            assert!(
                out.status.success(),
                "docker {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        reference
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes a run's labelled containers and networks (through the CLI) when a test
/// panics before its own cleanup, so one failure does not leak into the next run.
pub struct CleanupOnPanic(pub i64);

impl Drop for CleanupOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let label = format!("label=trun.run={}", self.0);
        for (list, rm) in [
            (vec!["ps", "-aq", "--filter", &label], vec!["rm", "-f"]),
            (
                vec!["network", "ls", "-q", "--filter", &label],
                vec!["network", "rm"],
            ),
        ] {
            let ids = String::from_utf8_lossy(&docker(&list).stdout).to_string();
            for id in ids.split_whitespace() {
                let mut args = rm.clone();
                args.push(id);
                let _ = docker(&args);
            }
        }
    }
}
