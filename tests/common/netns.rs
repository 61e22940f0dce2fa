//! Network namespaces that make one machine look like several: each
//! [`Netns`] is a namespace of its own, joined to the host only by a veth pair
//! in a /30 of 10.213.0.0/16 (no default route, so the link is all it has),
//! and [`Forward`] is a TCP forwarder on the host's end of such a link, so a
//! process inside reaches a service that listens on the host's 127.0.0.1 (the
//! test PostgreSQL, a `trun serve`) over TCP through that link and no other way.
//!
//! It needs root and iproute2's `ip`; a test that uses it fails, saying so,
//! where they are missing. It is test plumbing, not a sandbox: nothing here
//! limits what a process inside may do besides reach the network.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Fails the test, saying what it needs, unless it runs as root with `ip`.
pub fn require() {
    let need = "this test puts processes in network namespaces of their own (`ip netns add`, \
                veth pairs): it needs root and iproute2's `ip`";
    assert!(
        nix::unistd::geteuid().is_root(),
        "{need}; run it as root (e.g. `sudo -E cargo test --test workers`)"
    );
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "{need}; `ip -V` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("{need}; `ip` cannot run ({e}): apt-get install iproute2"),
    }
}

/// A network namespace linked to the host by a veth pair; removed, with
/// every process still inside it, when dropped.
pub struct Netns {
    /// `trun-t<pid>-<k>`, unique on the machine while this test process lives.
    pub name: String,
    /// The veth end left in the host's namespace.
    pub host_link: String,
    /// The host's address on the link: what a process inside connects to.
    pub host_addr: Ipv4Addr,
    /// The namespace's own address on the link.
    pub inside_addr: Ipv4Addr,
}

/// Namespaces and links are named after the test process's pid; a second
/// namespace of the same process takes the next number.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The /30s of 10.213.0.0/16, numbered 0..16384.
const SLOTS: u32 = 1 << 14;

impl Netns {
    pub fn create() -> Netns {
        let pid = std::process::id();
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        // Test processes on one machine pick their /30s one at a time.
        let _lock = AllocationLock::take();
        sweep_dead_namespaces();
        let slot = free_slot(pid);
        let base = u32::from(Ipv4Addr::new(10, 213, 0, 0)) + slot * 4;
        let ns = Netns {
            name: format!("trun-t{pid}-{k}"),
            // Interface names hold 15 bytes: "trt" + 7-digit pid + "h" + k.
            host_link: format!("trt{pid}h{k}"),
            host_addr: Ipv4Addr::from(base + 1),
            inside_addr: Ipv4Addr::from(base + 2),
        };
        ip(&["netns", "add", &ns.name]);
        // From here on a failure drops `ns`, which removes what was made.
        let inside_link = format!("trt{pid}n{k}");
        ip(&[
            "link",
            "add",
            &ns.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &inside_link,
            "netns",
            &ns.name,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_addr),
            "dev",
            &ns.host_link,
        ]);
        ip(&["link", "set", &ns.host_link, "up"]);
        let n = ns.name.as_str();
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{}/30", ns.inside_addr),
            "dev",
            &inside_link,
        ]);
        ip(&["-n", n, "link", "set", &inside_link, "up"]);
        ip(&["-n", n, "link", "set", "lo", "up"]);
        ns
    }

    /// The command prefix that runs a program inside: `ip netns exec NAME`
    /// (which execs the program, so its pid is the one spawned).
    pub fn exec_prefix(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.name.clone(),
        ]
    }

    /// Opens a TCP connection to `to` from inside the namespace (on a thread
    /// that joins it) and closes it again.
    pub fn connect_from_inside(&self, to: SocketAddr) -> io::Result<()> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let handle = fs::File::open(&path)?;
                use std::os::fd::AsRawFd;
                // SAFETY: setns on a namespace file we hold open; it moves
                // only this short-lived thread into the namespace.
                if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                TcpStream::connect_timeout(&to, Duration::from_secs(5)).map(drop)
            })
            .join()
            .expect("the connecting thread panicked")
        })
    }

    /// The pids of the processes inside the namespace (from /proc).
    pub fn pids_inside(&self) -> Vec<i32> {
        let Ok(meta) = fs::metadata(format!("/run/netns/{}", self.name)) else {
            return Vec::new();
        };
        let want = format!("net:[{}]", meta.ino());
        fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                fs::read_link(format!("/proc/{pid}/ns/net"))
                    .is_ok_and(|l| l.to_string_lossy() == want)
                    && super::Process::find(*pid).is_some()
            })
            .collect()
    }

    /// Waits up to `limit` for the namespace to hold no process; returns
    /// what is still inside.
    pub fn wait_until_empty(&self, limit: Duration) -> Vec<i32> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = self.pids_inside();
            if left.is_empty() || std::time::Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Whatever still runs inside was started by this test.
        for pid in self.pids_inside() {
            if let Some(p) = super::Process::find(pid) {
                p.kill();
            }
        }
        // Deleting one end of a veth deletes both, even while a process
        // still holds the namespace.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Runs `ip ARGS`, failing the test with its stderr.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An exclusive lock on a file in /run, held while a /30 is chosen and assigned.
struct AllocationLock(fs::File);

impl AllocationLock {
    fn take() -> AllocationLock {
        let f = fs::File::create("/run/trun-test-netns.lock")
            .unwrap_or_else(|e| panic!("create /run/trun-test-netns.lock: {e}"));
        f.lock().expect("lock /run/trun-test-netns.lock");
        AllocationLock(f)
    }
}

/// A /30 of 10.213.0.0/16 no address of the host's is in, looked for from a
/// place that depends on the pid so that runs seldom even look at the same one.
fn free_slot(pid: u32) -> u32 {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .expect("ip -o -4 addr show");
    let used: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let addr = l.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
            let ip: Ipv4Addr = addr.split('/').next()?.parse().ok()?;
            let [a, b, c, d] = ip.octets();
            ((a, b) == (10, 213)).then_some((u32::from(c) * 256 + u32::from(d)) / 4)
        })
        .collect();
    (0..SLOTS)
        .map(|i| (pid + i) % SLOTS)
        .find(|s| !used.contains(s))
        .expect("every /30 of 10.213.0.0/16 is taken")
}

/// Removes the namespaces of test processes that died without dropping them
/// (killed outright), with their links and whatever those tests left running
/// inside, so their /30s come free.
fn sweep_dead_namespaces() {
    for e in fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((pid, k)) = name
            .strip_prefix("trun-t")
            .and_then(|rest| rest.split_once('-'))
        else {
            continue;
        };
        let alive = pid
            .parse::<i32>()
            .is_ok_and(|p| super::Process::find(p).is_some());
        if !alive {
            drop(Netns {
                host_link: format!("trt{pid}h{k}"),
                name,
                host_addr: Ipv4Addr::UNSPECIFIED,
                inside_addr: Ipv4Addr::UNSPECIFIED,
            });
        }
    }
}

/// A TCP forwarder: listens on an address of the host and copies each
/// connection to and from `target`, remembering who connected.
pub struct Forward {
    pub addr: SocketAddr,
    peers: Arc<Mutex<Vec<IpAddr>>>,
    stop: Arc<AtomicBool>,
}

impl Forward {
    pub fn start(listen: Ipv4Addr, target: SocketAddr) -> Forward {
        let listener = TcpListener::bind((listen, 0))
            .unwrap_or_else(|e| panic!("listen on {listen} to forward to {target}: {e}"));
        let addr = listener.local_addr().unwrap();
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopping) = (peers.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                if let Ok(peer) = client.peer_addr() {
                    seen.lock().unwrap().push(peer.ip());
                }
                // A refused target drops the client, as a refused connection would.
                if let Ok(upstream) = TcpStream::connect(target) {
                    pipe(client, upstream);
                }
            }
        });
        Forward { addr, peers, stop }
    }

    /// The addresses connections came from, in order.
    pub fn peers(&self) -> Vec<IpAddr> {
        self.peers.lock().unwrap().clone()
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accepting thread so it sees `stop` and closes the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Copies bytes both ways until each side has closed its half.
fn pipe(a: TcpStream, b: TcpStream) {
    let one_way = |from: TcpStream, to: TcpStream| {
        std::thread::spawn(move || {
            let _ = io::copy(&mut &from, &mut &to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        })
    };
    one_way(a.try_clone().unwrap(), b.try_clone().unwrap());
    one_way(b, a);
}
