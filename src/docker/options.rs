//! `docker run`-style option strings (`container.options`, `docker/run` `params`)
//! parsed into the Engine API's container configuration.
//!
//! Users already know these flags from the CLI, so we accept the common ones
//! rather than inventing YAML for each. This is a deliberately small subset with no
//! shell quoting (values are split on whitespace); an unknown flag is an error that
//! names it, never silently ignored.

use super::error::DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use std::collections::HashMap;

/// Flags understood by [`RunOptions::parse`], for error messages and docs.
pub const KNOWN_FLAGS: &[&str] = &[
    "--add-host",
    "--cap-add",
    "--cap-drop",
    "--cpus",
    "--dns",
    "--entrypoint",
    "--env",
    "--hostname",
    "--init",
    "--label",
    "--memory",
    "--network",
    "--pids-limit",
    "--privileged",
    "--publish",
    "--read-only",
    "--security-opt",
    "--shm-size",
    "--tmpfs",
    "--user",
    "--volume",
    "--workdir",
];

/// Parsed `docker run` flags, merged into a container configuration by [`RunOptions::apply`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunOptions {
    pub env: Vec<String>,
    pub binds: Vec<String>,
    pub ports: Vec<String>,
    pub labels: HashMap<String, String>,
    pub network: Option<String>,
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub hostname: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub tmpfs: HashMap<String, String>,
    pub shm_size: Option<i64>,
    pub privileged: bool,
    pub read_only: bool,
    pub init: bool,
}

impl RunOptions {
    pub fn parse(options: &[String]) -> Result<RunOptions, DockerError> {
        let tokens: Vec<&str> = options.iter().flat_map(|o| o.split_whitespace()).collect();
        let mut out = RunOptions::default();
        let mut i = 0;
        while i < tokens.len() {
            let token = tokens[i];
            i += 1;
            let (flag, inline) = match token.split_once('=') {
                Some((f, v)) if f.starts_with('-') => (f, Some(v.to_string())),
                _ => (token, None),
            };
            let flag = match flag {
                "-e" => "--env",
                "-v" => "--volume",
                "-p" => "--publish",
                "-l" => "--label",
                "-m" => "--memory",
                "-u" => "--user",
                "-w" => "--workdir",
                "-h" => "--hostname",
                "--net" => "--network",
                f => f,
            };
            let boolean = matches!(flag, "--privileged" | "--read-only" | "--init");
            if boolean {
                let on = match inline.as_deref() {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(v) => {
                        return Err(invalid(token, format!("expected true or false, got `{v}`")))
                    }
                };
                match flag {
                    "--privileged" => out.privileged = on,
                    "--read-only" => out.read_only = on,
                    _ => out.init = on,
                }
                continue;
            }
            if !KNOWN_FLAGS.contains(&flag) {
                let hint = crate::diag::did_you_mean_suffix(flag, KNOWN_FLAGS.iter().copied());
                return Err(invalid(
                    token,
                    format!(
                        "unsupported flag{hint}; supported: {}",
                        KNOWN_FLAGS.join(", ")
                    ),
                ));
            }
            let value = match inline {
                Some(v) => v,
                None => {
                    let v = tokens
                        .get(i)
                        .ok_or_else(|| invalid(token, "missing value".to_string()))?;
                    i += 1;
                    v.to_string()
                }
            };
            match flag {
                "--env" => out.env.push(value),
                "--volume" => out.binds.push(value),
                "--publish" => {
                    parse_port(&value)?;
                    out.ports.push(value)
                }
                "--label" => {
                    let (k, v) = value.split_once('=').unwrap_or((value.as_str(), ""));
                    out.labels.insert(k.to_string(), v.to_string());
                }
                "--network" => out.network = Some(value),
                "--memory" => out.memory = Some(size(token, &value)?),
                "--cpus" => out.nano_cpus = Some(parse_cpus(&value)?),
                "--pids-limit" => {
                    out.pids_limit = Some(
                        value
                            .parse()
                            .map_err(|_| invalid(token, format!("`{value}` is not a number")))?,
                    )
                }
                "--user" => out.user = Some(value),
                "--workdir" => out.workdir = Some(value),
                "--hostname" => out.hostname = Some(value),
                "--entrypoint" => out.entrypoint = Some(vec![value]),
                "--cap-add" => out.cap_add.push(value),
                "--cap-drop" => out.cap_drop.push(value),
                "--security-opt" => out.security_opt.push(value),
                "--add-host" => out.extra_hosts.push(value),
                "--dns" => out.dns.push(value),
                "--tmpfs" => {
                    let (path, opts) = value.split_once(':').unwrap_or((value.as_str(), ""));
                    out.tmpfs.insert(path.to_string(), opts.to_string());
                }
                "--shm-size" => out.shm_size = Some(size(token, &value)?),
                _ => unreachable!("every flag of KNOWN_FLAGS is handled above"),
            }
        }
        Ok(out)
    }

    /// Merges the flags into `body`; flags win over what the caller set before,
    /// the way a later CLI flag wins over an earlier one.
    pub fn apply(&self, body: &mut ContainerCreateBody) -> Result<(), DockerError> {
        let host = body.host_config.get_or_insert_with(HostConfig::default);
        extend(&mut body.env, &self.env);
        extend(&mut host.binds, &self.binds);
        extend(&mut host.cap_add, &self.cap_add);
        extend(&mut host.cap_drop, &self.cap_drop);
        extend(&mut host.security_opt, &self.security_opt);
        extend(&mut host.extra_hosts, &self.extra_hosts);
        extend(&mut host.dns, &self.dns);
        if !self.tmpfs.is_empty() {
            host.tmpfs
                .get_or_insert_with(HashMap::new)
                .extend(self.tmpfs.clone());
        }
        for port in &self.ports {
            let (container_port, binding) = parse_port(port)?;
            body.exposed_ports
                .get_or_insert_with(Vec::new)
                .push(container_port.clone());
            host.port_bindings
                .get_or_insert_with(HashMap::new)
                .entry(container_port)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(binding);
        }
        if !self.labels.is_empty() {
            body.labels
                .get_or_insert_with(HashMap::new)
                .extend(self.labels.clone());
        }
        set(&mut host.network_mode, &self.network);
        set(&mut host.memory, &self.memory);
        set(&mut host.nano_cpus, &self.nano_cpus);
        set(&mut host.pids_limit, &self.pids_limit);
        set(&mut host.shm_size, &self.shm_size);
        if self.privileged {
            host.privileged = Some(true);
        }
        if self.read_only {
            host.readonly_rootfs = Some(true);
        }
        if self.init {
            host.init = Some(true);
        }
        set(&mut body.user, &self.user);
        set(&mut body.working_dir, &self.workdir);
        set(&mut body.hostname, &self.hostname);
        set(&mut body.entrypoint, &self.entrypoint);
        Ok(())
    }
}

fn extend(target: &mut Option<Vec<String>>, items: &[String]) {
    if !items.is_empty() {
        target
            .get_or_insert_with(Vec::new)
            .extend(items.iter().cloned());
    }
}

fn set<T: Clone>(target: &mut Option<T>, value: &Option<T>) {
    if value.is_some() {
        target.clone_from(value);
    }
}

fn invalid(option: &str, reason: String) -> DockerError {
    DockerError::InvalidOption {
        option: option.to_string(),
        reason,
    }
}

/// `--memory 512m`, `--shm-size 1g`: the crate's one size parser (binary
/// units, as Docker reads them), as the API's signed byte count.
fn size(option: &str, value: &str) -> Result<i64, DockerError> {
    crate::size::parse(value)
        .map(|b| b as i64)
        .map_err(|e| invalid(option, e.to_string()))
}

/// `--cpus 1.5` as the API's nano-CPUs.
pub fn parse_cpus(value: &str) -> Result<i64, DockerError> {
    match value.parse::<f64>() {
        Ok(c) if c > 0.0 && c.is_finite() => Ok((c * 1e9).round() as i64),
        _ => Err(invalid(
            "--cpus",
            format!("`{value}` is not a positive number of CPUs"),
        )),
    }
}

/// A port publication as the CLI writes it: `80`, `8080:80`, `127.0.0.1:8080:80`,
/// optionally with `/udp`. Returns the container port key (`80/tcp`) and binding.
pub fn parse_port(spec: &str) -> Result<(String, PortBinding), DockerError> {
    let bad = || {
        invalid(
            spec,
            "expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]".to_string(),
        )
    };
    let (addr, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    let parts: Vec<&str> = addr.rsplitn(3, ':').collect();
    let (container, host_port, host_ip) = match parts.as_slice() {
        [c] => (*c, "", ""),
        [c, h] => (*c, *h, ""),
        [c, h, ip] => (*c, *h, *ip),
        _ => return Err(bad()),
    };
    let is_port = |p: &str| p.parse::<u16>().is_ok();
    if !is_port(container) || !(host_port.is_empty() || is_port(host_port)) {
        return Err(bad());
    }
    Ok((
        format!("{container}/{proto}"),
        PortBinding {
            host_ip: (!host_ip.is_empty()).then(|| host_ip.to_string()),
            host_port: Some(host_port.to_string()),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &[&str]) -> Result<RunOptions, DockerError> {
        RunOptions::parse(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_common_flags_in_both_forms() {
        let o = opts(&[
            "--cap-add SYS_PTRACE",
            "--memory=256m",
            "-e A=1 --init",
            "--cpus 0.5",
        ])
        .unwrap();
        assert_eq!(o.cap_add, vec!["SYS_PTRACE"]);
        assert_eq!(o.memory, Some(256 * 1024 * 1024));
        assert_eq!(o.env, vec!["A=1"]);
        assert!(o.init);
        assert_eq!(o.nano_cpus, Some(500_000_000));
    }

    #[test]
    fn unknown_flag_is_named_with_a_suggestion() {
        let err = opts(&["--cap-ad", "X"]).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "invalid container option `--cap-ad`: unsupported flag (did you mean `--cap-add`?)"
            ),
            "{err}"
        );
    }

    #[test]
    fn sizes_are_binary_and_nonsense_is_named() {
        assert_eq!(opts(&["--memory 1MB"]).unwrap().memory, Some(1 << 20));
        assert_eq!(
            opts(&["--shm-size=64KiB"]).unwrap().shm_size,
            Some(64 << 10)
        );
        assert_eq!(
            opts(&["--memory 1e400"]).unwrap_err().to_string(),
            "invalid container option `--memory`: `1e400` is not a size: write e.g. 512m, 64KiB, 2g or 1048576 (units are binary: 1m = 1MiB = 1048576 bytes)"
        );
    }

    #[test]
    fn missing_value_is_an_error() {
        let err = opts(&["--network"]).unwrap_err().to_string();
        assert_eq!(err, "invalid container option `--network`: missing value");
    }

    #[test]
    fn ports_parse_like_the_cli() {
        let (k, b) = parse_port("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(k, "80/udp");
        assert_eq!(b.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(b.host_port.as_deref(), Some("8080"));
        let (k, b) = parse_port("80").unwrap();
        assert_eq!((k.as_str(), b.host_port.as_deref()), ("80/tcp", Some("")));
        assert!(parse_port("x:80").is_err());
        assert!(parse_port("80/icmp").is_err());
    }
}
