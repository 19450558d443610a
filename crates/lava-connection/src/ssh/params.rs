//! Where and how to connect: [`SshParams`].
//!
//! A device's `actions.deploy.methods.ssh` block gives `host`, `port`, `user`,
//! `identity_file` and `options`, the extra arguments LAVA puts on its `ssh` and `scp`
//! command lines (typically `-o Compression=yes -o PasswordAuthentication=no
//! -o LogLevel=FATAL`, to which LAVA adds `-o UserKnownHostsFile=/dev/null
//! -o StrictHostKeyChecking=no`). [`SshParams::apply_options`] reads that list the way
//! `ssh` does (`-o Key=Value`, `-oKey=Value`, `-o Key Value`, `-p`, `-l`, `-i`, `-C`;
//! keys case-insensitive; the first value given for a key wins) and keeps what means
//! something to this client: `Port`, `User`, `IdentityFile`, `ConnectTimeout`,
//! `Compression`, `ServerAliveInterval`, `ServerAliveCountMax`,
//! `StrictHostKeyChecking` and `UserKnownHostsFile`. Everything else is reported back
//! as an [`IgnoredOption`] for the caller to log at debug level.
//!
//! The parameters are a plain struct so a connection can also be opened to a host and
//! port learnt at run time (a MultiNode secondary connection), not only from a device.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use super::error::SshError;

/// OpenSSH's port.
pub const DEFAULT_SSH_PORT: u16 = 22;

/// OpenSSH's default `ServerAliveCountMax`.
pub const DEFAULT_SERVER_ALIVE_COUNT_MAX: usize = 3;

/// How the server's host key is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Any key is accepted (and logged): LAVA's `StrictHostKeyChecking=no` with
    /// `UserKnownHostsFile=/dev/null`. Devices are reinstalled and get new keys all
    /// the time; the identity of a lab device is the lab's business.
    AcceptAny,
    /// The key must be listed for the host in this `known_hosts` file
    /// (`StrictHostKeyChecking=yes`).
    KnownHosts(PathBuf),
}

/// Everything needed to open an SSH connection. No secret is held here: the private
/// key stays in its file until [`crate::SshClient::connect`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshParams {
    /// Host name or address.
    pub host: String,
    /// TCP port (the device's `ssh` `port`, 22 by default).
    pub port: u16,
    /// The user to log in as (the device's `ssh` `user`).
    pub user: String,
    /// The private key (OpenSSH or PEM format, without a passphrase, as LAVA requires).
    pub identity_file: PathBuf,
    /// Bound on reaching the server and completing the handshake (`ConnectTimeout`);
    /// the caller's deadline applies in any case.
    pub connect_timeout: Option<Duration>,
    /// Offer zlib compression (`Compression=yes`).
    pub compression: bool,
    /// Send a keepalive after this much silence from the server (`ServerAliveInterval`).
    pub keepalive_interval: Option<Duration>,
    /// Unanswered keepalives before the connection is declared lost.
    pub keepalive_max: usize,
    /// What to do with the server's host key (`StrictHostKeyChecking`).
    pub host_key_policy: HostKeyPolicy,
}

/// An option of the `options` list that has no effect on this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredOption {
    /// The option as written (`-o LogLevel=FATAL`, `-t`).
    pub option: String,
    /// Why it changes nothing.
    pub reason: &'static str,
}

impl std::fmt::Display for IgnoredOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ignoring ssh option '{}': {}", self.option, self.reason)
    }
}

/// `ssh` flags that take no argument.
const FLAGS: &str = "46AaCfGgKkMNnqsTtVvXxYy";
/// `ssh` flags that take an argument.
const FLAGS_WITH_ARGUMENT: &str = "BbcDEeFIiJLlmOopQRSWw";

impl SshParams {
    /// Parameters with OpenSSH's defaults and LAVA's host key policy.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        identity_file: impl Into<PathBuf>,
    ) -> Self {
        SshParams {
            host: host.into(),
            port,
            user: user.into(),
            identity_file: identity_file.into(),
            connect_timeout: None,
            compression: false,
            keepalive_interval: None,
            keepalive_max: DEFAULT_SERVER_ALIVE_COUNT_MAX,
            host_key_policy: HostKeyPolicy::AcceptAny,
        }
    }

    /// `host:port` (IPv6 literals in brackets), as errors name the server.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `user@host:port`.
    pub fn describe(&self) -> String {
        format!("{}@{}", self.user, self.address())
    }

    /// Applies a device's `options` list (see the module documentation). Returns the
    /// options that change nothing here, to be logged.
    pub fn apply_options<S: AsRef<str>>(
        &mut self,
        options: &[S],
    ) -> Result<Vec<IgnoredOption>, SshError> {
        let mut ignored = Vec::new();
        let mut seen = HashSet::new();
        let mut known_hosts_file: Option<PathBuf> = None;
        let mut strict: Option<bool> = None;
        let mut args = options.iter().map(AsRef::as_ref);
        while let Some(arg) = args.next() {
            let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) else {
                ignored.push(IgnoredOption {
                    option: arg.to_string(),
                    reason: "not an ssh option (the destination comes from the device)",
                });
                continue;
            };
            let flag = flags.chars().next().unwrap_or_default();
            if FLAGS_WITH_ARGUMENT.contains(flag) {
                let inline = &flags[flag.len_utf8()..];
                let value = if inline.is_empty() {
                    args.next().ok_or_else(|| SshError::InvalidOption {
                        option: arg.to_string(),
                        reason: "the option needs a value".into(),
                    })?
                } else {
                    inline
                };
                let (key, value, written) = match flag {
                    'o' => split_config_option(arg, value, &mut args)?,
                    'p' | 'l' | 'i' => {
                        let key = match flag {
                            'p' => "port",
                            'l' => "user",
                            _ => "identityfile",
                        };
                        (
                            key.to_string(),
                            value.to_string(),
                            format!("-{flag} {value}"),
                        )
                    }
                    _ => {
                        ignored.push(IgnoredOption {
                            option: format!("-{flag} {value}"),
                            reason: "has no meaning for a direct SSH connection",
                        });
                        continue;
                    }
                };
                // ssh: the first value obtained for a key is the one used.
                if !seen.insert(key.clone()) {
                    ignored.push(IgnoredOption {
                        option: written,
                        reason: "an earlier value of this option is used",
                    });
                    continue;
                }
                if let Some(reason) =
                    self.apply_config(&key, &value, &written, &mut strict, &mut known_hosts_file)?
                {
                    ignored.push(IgnoredOption {
                        option: written,
                        reason,
                    });
                }
            } else if flags.chars().all(|c| FLAGS.contains(c)) {
                for flag in flags.chars() {
                    if flag == 'C' {
                        if seen.insert("compression".into()) {
                            self.compression = true;
                        }
                    } else {
                        ignored.push(IgnoredOption {
                            option: format!("-{flag}"),
                            reason: "has no meaning for this client (it always opens a pty shell or an exec channel itself)",
                        });
                    }
                }
            } else {
                ignored.push(IgnoredOption {
                    option: arg.to_string(),
                    reason: "unknown ssh option",
                });
            }
        }
        match strict {
            Some(true) => {
                let file = known_hosts_file
                    .or_else(|| {
                        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh/known_hosts"))
                    })
                    .unwrap_or_else(|| PathBuf::from("/dev/null"));
                self.host_key_policy = HostKeyPolicy::KnownHosts(file);
            }
            Some(false) => self.host_key_policy = HostKeyPolicy::AcceptAny,
            None => {}
        }
        Ok(ignored)
    }

    /// Applies one `-o Key=Value` (key lower-cased). `Ok(Some(reason))` when it is
    /// ignored.
    fn apply_config(
        &mut self,
        key: &str,
        value: &str,
        written: &str,
        strict: &mut Option<bool>,
        known_hosts_file: &mut Option<PathBuf>,
    ) -> Result<Option<&'static str>, SshError> {
        let invalid = |reason: &str| SshError::InvalidOption {
            option: written.to_string(),
            reason: reason.to_string(),
        };
        match key {
            "port" => {
                self.port = value
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| invalid("not a port number"))?;
            }
            "user" => self.user = value.to_string(),
            "identityfile" => self.identity_file = PathBuf::from(value),
            "connecttimeout" => {
                let seconds: u64 = value
                    .parse()
                    .map_err(|_| invalid("not a number of seconds"))?;
                self.connect_timeout = (seconds > 0).then(|| Duration::from_secs(seconds));
            }
            "compression" => {
                self.compression = yes_no(value).ok_or_else(|| invalid("expected yes or no"))?
            }
            "serveraliveinterval" => {
                let seconds: u64 = value
                    .parse()
                    .map_err(|_| invalid("not a number of seconds"))?;
                self.keepalive_interval = (seconds > 0).then(|| Duration::from_secs(seconds));
            }
            "serveralivecountmax" => {
                self.keepalive_max = value.parse().map_err(|_| invalid("not a number"))?;
            }
            "stricthostkeychecking" => {
                *strict = Some(match value.to_ascii_lowercase().as_str() {
                    "yes" | "ask" => true,
                    "no" | "off" | "accept-new" => false,
                    _ => return Err(invalid("expected yes, ask, accept-new, no or off")),
                });
            }
            "userknownhostsfile" => {
                let first = value.split_whitespace().next().unwrap_or("/dev/null");
                *known_hosts_file = Some(PathBuf::from(first));
            }
            "passwordauthentication"
            | "kbdinteractiveauthentication"
            | "challengeresponseauthentication"
            | "pubkeyauthentication"
            | "identitiesonly"
            | "batchmode"
            | "preferredauthentications" => {
                return Ok(Some("this client only ever offers the identity file"));
            }
            "loglevel" => return Ok(Some("this client logs what it does to the job log")),
            _ => return Ok(Some("not used by this client")),
        }
        Ok(None)
    }
}

/// Splits the value of `-o`: `Key=Value`, `Key Value`, or a key whose value is the
/// next argument. Returns the lower-cased key, the value and the option as written.
fn split_config_option<'a>(
    arg: &str,
    value: &str,
    rest: &mut impl Iterator<Item = &'a str>,
) -> Result<(String, String, String), SshError> {
    let value = value.trim();
    let (key, rest_value) = match value.find(['=', ' ', '\t']) {
        Some(at) => (
            &value[..at],
            value[at + 1..].trim_start_matches(['=', ' ', '\t']),
        ),
        None => (value, ""),
    };
    let rest_value = if rest_value.is_empty() {
        rest.next().unwrap_or("")
    } else {
        rest_value
    };
    if key.is_empty() || rest_value.is_empty() {
        return Err(SshError::InvalidOption {
            option: format!("{arg} {value}"),
            reason: "expected Key=Value".into(),
        });
    }
    let rest_value = rest_value.trim();
    Ok((
        key.to_ascii_lowercase(),
        rest_value.to_string(),
        format!("-o {key}={rest_value}"),
    ))
}

fn yes_no(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" => Some(true),
        "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SshParams {
        SshParams::new("dut", 22, "root", "/keys/lava")
    }

    #[test]
    fn lava_default_options() {
        let mut p = params();
        let ignored = p
            .apply_options(&[
                "-o",
                "Compression=yes",
                "-o",
                "PasswordAuthentication=no",
                "-o",
                "LogLevel=FATAL",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=no",
            ])
            .unwrap();
        assert!(p.compression);
        assert_eq!(p.host_key_policy, HostKeyPolicy::AcceptAny);
        let names: Vec<_> = ignored.iter().map(|i| i.option.as_str()).collect();
        assert_eq!(names, ["-o PasswordAuthentication=no", "-o LogLevel=FATAL"]);
    }

    #[test]
    fn values_that_matter_are_kept_and_the_first_wins() {
        let mut p = params();
        let ignored = p
            .apply_options(&[
                "-oConnectTimeout=7",
                "-o",
                "Port 2222",
                "-p",
                "2022",
                "-o",
                "ServerAliveInterval",
                "5",
                "-l",
                "lava",
                "-t",
            ])
            .unwrap();
        assert_eq!(p.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(p.port, 2222);
        assert_eq!(p.keepalive_interval, Some(Duration::from_secs(5)));
        assert_eq!(p.user, "lava");
        assert_eq!(p.describe(), "lava@dut:2222");
        assert_eq!(ignored.len(), 2, "{ignored:?}");
        assert_eq!(ignored[0].reason, "an earlier value of this option is used");
        assert_eq!(ignored[1].option, "-t");
    }

    #[test]
    fn strict_checking_uses_the_known_hosts_file() {
        let mut p = params();
        p.apply_options(&[
            "-o",
            "UserKnownHostsFile=/etc/lava/known_hosts",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .unwrap();
        assert_eq!(
            p.host_key_policy,
            HostKeyPolicy::KnownHosts("/etc/lava/known_hosts".into())
        );
    }

    #[test]
    fn invalid_values_are_configuration_errors() {
        for options in [
            &["-o", "Port=eighty"][..],
            &["-o", "ConnectTimeout=soon"],
            &["-o"],
            &["-o", "Compression=maybe"],
            &["-o", "StrictHostKeyChecking=perhaps"],
        ] {
            let err = params().apply_options(options).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Configuration, "{options:?}");
        }
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        let p = SshParams::new("::1", 2222, "root", "/k");
        assert_eq!(p.address(), "[::1]:2222");
    }
}
