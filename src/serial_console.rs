//! The EC2 serial console's SSH endpoint for a region, and its host key: read with ssh-keyscan
//! and checked against the fingerprint AWS publishes before anything is pushed. ssh then trusts
//! that one key only (its own known_hosts file, `StrictHostKeyChecking=yes`), which works with
//! every OpenSSH since 7.x, Windows' 8.1 included (no `KnownHostsCommand` needed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use data_encoding::{BASE64, BASE64_NOPAD};
use sha2::{Digest, Sha256};

use crate::error;

/// Where AWS publishes the serial console's endpoints and host key fingerprints. [`PUBLISHED`]
/// was copied from it on 2026-12-06 (the page shows no revision date).
const PUBLISHED_PAGE: &str = "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/connect-to-serial-console.html#sc-endpoints-and-fingerprints";

/// How the region's endpoint is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `serial-console.ec2-instance-connect.REGION.aws`: the older commercial regions.
    InstanceConnect,
    /// `ec2-serial-console.REGION.api.aws`: the newer regions, and AWS's dual-stack form.
    ApiAws,
    /// `ec2-serial-console.REGION.api.amazonwebservices.com.cn`
    China,
    /// `serial-console.ec2-instance-connect.REGION.amazonaws.com`
    GovCloud,
}

impl Form {
    fn name(self, region: &str) -> String {
        match self {
            Form::InstanceConnect => format!("serial-console.ec2-instance-connect.{region}.aws"),
            Form::ApiAws => format!("ec2-serial-console.{region}.api.aws"),
            Form::China => format!("ec2-serial-console.{region}.api.amazonwebservices.com.cn"),
            Form::GovCloud => format!("serial-console.ec2-instance-connect.{region}.amazonaws.com"),
        }
    }

    /// A region AWS's table does not list: the form of its partition (new commercial regions
    /// get `api.aws` names). None for the partitions AWS documents no serial console for (the
    /// ISO regions, the European Sovereign Cloud), whose names live under other domains.
    fn of_partition(region: &str) -> Option<Form> {
        if region.starts_with("cn-") {
            Some(Form::China)
        } else if region.starts_with("us-gov-") {
            Some(Form::GovCloud)
        } else if ["us-iso", "eu-iso", "eusc-"].iter().any(|p| region.starts_with(p)) {
            None
        } else {
            Some(Form::ApiAws)
        }
    }
}

use Form::{ApiAws, China, GovCloud, InstanceConnect};

/// AWS's table ([`PUBLISHED_PAGE`]): each region's endpoint and the SHA256 fingerprint of its
/// host key. The page gives no key type: the scanned key that matches sets it.
const PUBLISHED: [(&str, Form, &str); 36] = [
    ("us-east-2", InstanceConnect, "EhwPkTzRtTY7TRSzz26XbB0/HvV9jRM7mCZN0xw/d/0"),
    ("us-east-1", InstanceConnect, "dXwn5ma/xadVMeBZGEru5l2gx+yI5LDiJaLUcz0FMmw"),
    ("us-west-1", InstanceConnect, "OHldlcMET8u7QLSX3jmRTRAPFHVtqbyoLZBMUCqiH3Y"),
    ("us-west-2", InstanceConnect, "EMCIe23TqKaBI6yGHainqZcMwqNkDhhAVHa1O2JxVUc"),
    ("af-south-1", ApiAws, "RMWWZ2fVePeJUqzjO5jL2KIgXsczoHlz21Ed00biiWI"),
    ("ap-east-1", ApiAws, "T0Q1lpiXxChoZHplnAkjbP7tkm2xXViC9bJFsjYnifk"),
    ("ap-south-2", ApiAws, "WJgPBSwV4/shN+OPITValoewAuYj15DVW845JEhDKRs"),
    ("ap-southeast-3", ApiAws, "5ZwgrCh+lfns32XITqL/4O0zIfbx4bZgsYFqy3o8mIk"),
    ("ap-southeast-5", ApiAws, "cQXTHQMRcqRdIjmAGoAMBSExeoRobYyRwT67yTjnEiA"),
    ("ap-southeast-4", ApiAws, "Avaq27hFgLvjn5gTSShZ0oV7h90p0GG46wfOeT6ZJvM"),
    ("ap-south-1", InstanceConnect, "oBLXcYmklqHHEbliARxEgH8IsO51rezTPiSM35BsU40"),
    ("ap-northeast-3", ApiAws, "Am0/jiBKBnBuFnHr9aXsgEV3G8Tu/vVHFXE/3UcyjsQ"),
    ("ap-northeast-2", InstanceConnect, "FoqWXNX+DZ++GuNTztg9PK49WYMqBX+FrcZM2dSrqrI"),
    ("ap-southeast-1", InstanceConnect, "PLFNn7WnCQDHx3qmwLu1Gy/O8TUX7LQgZuaC6L45CoY"),
    ("ap-southeast-2", InstanceConnect, "yFvMwUK9lEUQjQTRoXXzuN+cW9/VSe9W984Cf5Tgzo4"),
    ("ap-southeast-7", ApiAws, "KCAZiRYrR1Q2lqsg7vTwixWmvc2wmjVT31XRgSdEfDY"),
    ("ap-northeast-1", InstanceConnect, "RQfsDCZTOfQawewTRDV1t9Em/HMrFQe+CRlIOT5um4k"),
    ("ca-central-1", InstanceConnect, "P2O2jOZwmpMwkpO6YW738FIOTHdUTyEv2gczYMMO7s4"),
    ("ca-west-1", ApiAws, "s3rc8lI2xhbhr3iedjJNxGAFLPGOLjx7IxxXrGckk6Q"),
    ("cn-north-1", China, "2gHVFy4H7uU3+WaFUxD28v/ggMeqjvSlgngpgLgGT+Y"),
    ("cn-northwest-1", China, "TdgrNZkiQOdVfYEBUhO4SzUA09VWI5rYOZGTogpwmiM"),
    ("eu-central-1", InstanceConnect, "aCMFS/yIcOdOlkXvOl8AmZ1Toe+bBnrJJ3Fy0k0De2c"),
    ("eu-west-1", InstanceConnect, "h2AaGAWO4Hathhtm6ezs3Bj7udgUxi2qTrHjZAwCW6E"),
    ("eu-west-2", InstanceConnect, "a69rd5CE/AEG4Amm53I6lkD1ZPvS/BCV3tTPW2RnJg8"),
    ("eu-south-1", ApiAws, "lC0kOVJnpgFyBVrxn0A7n99ecLbXSX95cuuS7X7QK30"),
    ("eu-west-3", InstanceConnect, "q8ldnAf9pymeNe8BnFVngY3RPAr/kxswJUzfrlxeEWs"),
    ("eu-south-2", ApiAws, "GoCW2DFRlu669QNxqFxEcsR6fZUz/4F4n7T45ZcwoEc"),
    ("eu-north-1", InstanceConnect, "tkGFFUVUDvocDiGSS3Cu8Gdl6w2uI32EPNpKFKLwX84"),
    ("eu-central-2", ApiAws, "8Ppx2mBMf6WdCw0NUlzKfwM4/IfRz4OaXFutQXWp6mk"),
    ("il-central-1", ApiAws, "JR6q8v6kNNPi8+QSFQ4dj5dimNmZPTgwgsM1SNvtYyU"),
    ("mx-central-1", ApiAws, "BCuVl13iQNk+CcVnt18Ef4p2ZHUrBBAOxlFetB32GS0"),
    ("me-south-1", ApiAws, "nPjLLKHu2QnLdUq2kVArsoK5xvPJOMRJKCBzCDqC3k8"),
    ("me-central-1", ApiAws, "zpb5duKiBZ+l0dFwPeyykB4MPBYhI/XzXNeFSDKBvLE"),
    ("sa-east-1", InstanceConnect, "rd2+/32Ognjew1yVIemENaQzC+Botbih62OqAPDq1dI"),
    ("us-gov-east-1", GovCloud, "tIwe19GWsoyLClrtvu38YEEh+DHIkqnDcZnmtebvF28"),
    ("us-gov-west-1", GovCloud, "kfOFRWLaOZfB+utbd3bRf8OlPf8nGO2YZLqXZiIw5DQ"),
];

/// Sets where ssh connects instead of the region's endpoint: `HOST[:PORT]` (for tests, or a
/// relay you run). The host key is then checked against [`FINGERPRINT_VARIABLE`], or else left
/// to ssh's own known-hosts policy.
pub(crate) const ENDPOINT_VARIABLE: &str = "EIC_SERIAL_CONSOLE_ENDPOINT";
/// The `SHA256:...` fingerprint of the host key at [`ENDPOINT_VARIABLE`].
pub(crate) const FINGERPRINT_VARIABLE: &str = "EIC_SERIAL_CONSOLE_FINGERPRINT";

/// Where ssh connects for an instance's serial console, and the key its host must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Console {
    pub host: String,
    pub port: u16,
    /// The region's endpoint name: the name ssh knows the host key by (`HostKeyAlias`), also
    /// when [`ENDPOINT_VARIABLE`] sends ssh elsewhere.
    pub alias: String,
    /// The host key's fingerprint, `SHA256:` and unpadded base64, and who says so. None: ssh's
    /// own known-hosts policy decides.
    pub pin: Option<(String, &'static str)>,
}

/// [`ENDPOINT_VARIABLE`] and [`FINGERPRINT_VARIABLE`], checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Override {
    pub host: String,
    pub port: u16,
    pub fingerprint: Option<String>,
}

impl Override {
    pub fn from_env() -> anyhow::Result<Option<Override>> {
        let read = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        Override::parse(read(ENDPOINT_VARIABLE).as_deref(), read(FINGERPRINT_VARIABLE).as_deref())
    }

    fn parse(endpoint: Option<&str>, fingerprint: Option<&str>) -> anyhow::Result<Option<Self>> {
        let Some(endpoint) = endpoint else {
            return match fingerprint {
                Some(_) => Err(error::usage(format!(
                    "{FINGERPRINT_VARIABLE} is set without {ENDPOINT_VARIABLE}: the region's endpoint is checked against AWS's own fingerprint; unset it"
                ))),
                None => Ok(None),
            };
        };
        let bad = || {
            error::usage(format!(
                "{ENDPOINT_VARIABLE}={endpoint}: expected HOST or HOST:PORT (an IPv6 address in brackets)"
            ))
        };
        let (host, port) = match endpoint.strip_prefix('[') {
            Some(rest) => match rest.split_once(']').ok_or_else(bad)? {
                (host, "") => (host, None),
                (host, after) => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
            },
            None if endpoint.matches(':').count() == 1 => {
                endpoint.split_once(':').map(|(h, p)| (h, Some(p))).ok_or_else(bad)?
            }
            None => (endpoint, None),
        };
        let name = |c: char| c.is_ascii_alphanumeric() || ".-:".contains(c);
        if host.is_empty() || host.starts_with('-') || !host.chars().all(name) {
            return Err(bad());
        }
        let port = match port {
            Some(p) => p.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?,
            None => 22,
        };
        let fingerprint = fingerprint
            .map(|f| {
                valid_fingerprint(f).then(|| f.to_string()).ok_or_else(|| {
                    error::usage(format!(
                        "{FINGERPRINT_VARIABLE}={f}: expected SHA256: and 43 base64 characters, as `ssh-keygen -lf` prints"
                    ))
                })
            })
            .transpose()?;
        Ok(Some(Override { host: host.to_string(), port, fingerprint }))
    }
}

fn valid_fingerprint(text: &str) -> bool {
    text.strip_prefix("SHA256:")
        .is_some_and(|b| BASE64_NOPAD.decode(b.as_bytes()).is_ok_and(|d| d.len() == 32))
}

/// The serial console for `region`: AWS's endpoint and its published fingerprint, or the
/// override's. With `dual_stack`, a region AWS lists under an IPv4-only name goes to its
/// `api.aws` name, for which AWS publishes no fingerprint: ssh's policy decides there.
pub(crate) fn console(
    region: &str,
    dual_stack: bool,
    over: Option<Override>,
) -> anyhow::Result<Console> {
    if let Some(over) = over {
        // Known by its own name, so that a key accepted for it is never taken for AWS's.
        let alias = match over.port {
            22 => over.host.clone(),
            port => format!("[{}]:{port}", over.host),
        };
        let pin = over.fingerprint.map(|f| (f, FINGERPRINT_VARIABLE));
        return Ok(Console { host: over.host, port: over.port, alias, pin });
    }
    let published = PUBLISHED.iter().find(|(r, ..)| *r == region);
    let (form, fingerprint) = match published {
        Some((_, InstanceConnect, _)) if dual_stack => (ApiAws, None),
        Some((_, form, fingerprint)) => (*form, Some(*fingerprint)),
        None => (Form::of_partition(region).ok_or_else(|| error::config(format!(
            "AWS documents no serial console endpoint for {region}'s partition: set {ENDPOINT_VARIABLE} to the endpoint you were given"
        )))?, None),
    };
    let host = form.name(region);
    let pin = fingerprint.map(|f| (format!("SHA256:{f}"), "AWS"));
    Ok(Console { alias: host.clone(), host, port: 22, pin })
}

/// A host key as ssh-keyscan prints it: its type and its base64 blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostKey {
    pub key_type: String,
    pub blob: String,
}

impl HostKey {
    /// `SHA256:` and the unpadded base64 of the blob's digest, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> Option<String> {
        let blob = BASE64.decode(self.blob.as_bytes()).ok()?;
        Some(format!("SHA256:{}", BASE64_NOPAD.encode(&Sha256::digest(blob))))
    }

    /// Its line in a known_hosts file, under `alias`.
    pub fn known_hosts_line(&self, alias: &str) -> String {
        format!("{alias} {} {}\n", self.key_type, self.blob)
    }

    /// ssh's `HostKeyAlgorithms` for this key only: an RSA key is signed with SHA-2.
    pub fn host_key_algorithms(&self) -> String {
        match self.key_type.as_str() {
            "ssh-rsa" => "rsa-sha2-512,rsa-sha2-256".into(),
            other => other.into(),
        }
    }
}

/// The keys in ssh-keyscan's output (comments and other lines skipped).
fn scanned(output: &str) -> Vec<HostKey> {
    let key = |line: &str| {
        let mut fields = line.split_whitespace();
        let (_host, key_type, blob) = (fields.next()?, fields.next()?, fields.next()?);
        Some(HostKey { key_type: key_type.into(), blob: blob.into() })
    };
    output.lines().filter(|l| !l.starts_with('#')).filter_map(key).collect()
}

/// The scanned key whose fingerprint is `pin`'s; none is a refusal (255). `said`:
/// ssh-keyscan's last word, shown when it found no key at all.
fn matching(
    console: &Console,
    (pinned, source): &(String, &str),
    keys: Vec<HostKey>,
    said: Option<&str>,
) -> anyhow::Result<HostKey> {
    let at = format!("{}:{}", console.host, console.port);
    if keys.is_empty() {
        let said = said.map(|s| format!(": {}", error::printable(s))).unwrap_or_default();
        anyhow::bail!(
            "could not read the serial console's host key at {at} (ssh-keyscan got none{said}): check the network; the serial console is reached over the internet on port 22"
        );
    }
    let mut seen = Vec::new();
    for key in keys {
        let fingerprint = key.fingerprint();
        if fingerprint.as_deref() == Some(pinned.as_str()) {
            return Ok(key);
        }
        seen.push(format!("{} {}", key.key_type, fingerprint.as_deref().unwrap_or("?")));
    }
    let check = match *source {
        "AWS" => format!("AWS's fingerprints: {PUBLISHED_PAGE}"),
        _ => format!("check {source}"),
    };
    anyhow::bail!(
        "the serial console at {at} presented a host key ({}) that is not {pinned}, the fingerprint {source} gives for {}: not connecting, and nothing was pushed ({check})",
        seen.join(", "),
        console.alias
    )
}

/// Reads the console's host keys with ssh-keyscan and returns the one `pin` (its
/// [`Console::pin`]) names.
pub(crate) async fn verified_host_key(
    keyscan: &Path,
    console: &Console,
    pin: &(String, &'static str),
) -> anyhow::Result<HostKey> {
    let mut command = tokio::process::Command::new(keyscan);
    command.args(["-T", "10", "-p", &console.port.to_string(), &console.host]);
    command.stdin(std::process::Stdio::null()).kill_on_drop(true);
    tracing::debug!(?command, "reading the serial console's host key");
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .map_err(|_| anyhow::anyhow!("ssh-keyscan {}: no answer in 30 s", console.host))?
        .with_context(|| format!("cannot run {}", keyscan.display()))?;
    let keys = scanned(&String::from_utf8_lossy(&output.stdout));
    // What ssh-keyscan said, for when it found nothing (a refused connection, no common key
    // exchange): its last line.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut said = stderr.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    matching(console, pin, keys, said.next_back())
}

/// ssh-keyscan: beside the ssh that runs, else on PATH (253 when there is none).
pub(crate) fn keyscan(ssh: &Path) -> anyhow::Result<PathBuf> {
    let name = if cfg!(windows) { "ssh-keyscan.exe" } else { "ssh-keyscan" };
    let beside = ssh.with_file_name(name);
    let found = Some(beside).filter(|p| p.is_file()).or_else(|| crate::ssh_argv::on_path(name));
    found.ok_or_else(|| {
        error::config(format!(
            "{name} not found beside {} or on PATH: it comes with the OpenSSH client; install that (e.g. `apt-get install openssh-client`)",
            ssh.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_region_gets_its_published_name_and_fingerprint() {
        let table = [
            ("us-east-1", false, "serial-console.ec2-instance-connect.us-east-1.aws", true),
            ("eu-south-2", false, "ec2-serial-console.eu-south-2.api.aws", true),
            (
                "cn-north-1",
                false,
                "ec2-serial-console.cn-north-1.api.amazonwebservices.com.cn",
                true,
            ),
            (
                "us-gov-west-1",
                false,
                "serial-console.ec2-instance-connect.us-gov-west-1.amazonaws.com",
                true,
            ),
            // Dual-stack: the api.aws name, whose key AWS does not publish for this region.
            ("us-east-1", true, "ec2-serial-console.us-east-1.api.aws", false),
            ("eu-south-2", true, "ec2-serial-console.eu-south-2.api.aws", true),
            (
                "cn-north-1",
                true,
                "ec2-serial-console.cn-north-1.api.amazonwebservices.com.cn",
                true,
            ),
            // Not in the table: the partition's form, no fingerprint.
            ("xx-new-1", false, "ec2-serial-console.xx-new-1.api.aws", false),
            ("cn-new-1", false, "ec2-serial-console.cn-new-1.api.amazonwebservices.com.cn", false),
            (
                "us-gov-new-1",
                false,
                "serial-console.ec2-instance-connect.us-gov-new-1.amazonaws.com",
                false,
            ),
        ];
        for (region, dual_stack, host, pinned) in table {
            let c = console(region, dual_stack, None).unwrap();
            assert_eq!((c.host.as_str(), c.port, c.alias.as_str()), (host, 22, host), "{region}");
            assert_eq!(c.pin.is_some(), pinned, "{region} dual-stack={dual_stack}");
        }
        let pin = console("us-east-1", false, None).unwrap().pin.unwrap();
        for region in ["us-iso-east-1", "us-isob-east-1", "eu-isoe-west-1", "eusc-de-east-1"] {
            let refused = console(region, false, None).unwrap_err();
            assert_eq!(error::exit_code(&refused), error::CONFIG, "{region}");
            let over = Override::parse(Some("console.example"), None).unwrap();
            assert_eq!(console(region, false, over).unwrap().host, "console.example");
        }
        assert_eq!(pin, ("SHA256:dXwn5ma/xadVMeBZGEru5l2gx+yI5LDiJaLUcz0FMmw".into(), "AWS"));
        for (region, _, fingerprint) in PUBLISHED {
            assert!(valid_fingerprint(&format!("SHA256:{fingerprint}")), "{region}");
        }
    }

    #[test]
    fn the_override_keeps_the_alias_and_pins_only_its_own_fingerprint() {
        let fp = "SHA256:dXwn5ma/xadVMeBZGEru5l2gx+yI5LDiJaLUcz0FMmw";
        let over = Override::parse(Some("127.0.0.1:2222"), Some(fp)).unwrap();
        let c = console("us-east-1", false, over).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 2222));
        // Known by its own name: a key accepted for it is never taken for AWS's.
        assert_eq!(c.alias, "[127.0.0.1]:2222");
        assert_eq!(c.pin, Some((fp.into(), FINGERPRINT_VARIABLE)));
        let relay = Override::parse(Some("relay"), None).unwrap();
        let c = console("us-east-1", false, relay).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.alias.as_str(), c.pin),
            ("relay", 22, "relay", None)
        );
        let v6 = Override::parse(Some("[::1]:9"), None).unwrap().unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9));
        assert_eq!(Override::parse(None, None).unwrap(), None);
        for (endpoint, fingerprint) in [
            (Some("h:0"), None),
            (Some("h:x"), None),
            (Some("-oProxyCommand=x"), None),
            (Some("a b"), None),
            (Some("[::1"), None),
            (Some("[::1]junk"), None),
            (Some("[::1]:"), None),
            (Some("h"), Some("SHA256:short")),
            (Some("h"), Some("MD5:00")),
            (None, Some(fp)),
        ] {
            let e = Override::parse(endpoint, fingerprint).unwrap_err();
            assert_eq!(error::exit_code(&e), error::USAGE, "{endpoint:?} {fingerprint:?}");
        }
    }

    #[test]
    fn only_the_key_with_the_pinned_fingerprint_is_taken() {
        // ssh-keygen -lf of this key prints this fingerprint.
        let blob = "AAAAC3NzaC1lZDI1NTE5AAAAIG8s8bUUqMv3LmuJO6X0iAq8PrqT6GWFqkWW6/mQd5ln";
        let key = HostKey { key_type: "ssh-ed25519".into(), blob: blob.into() };
        let fp = "SHA256:YtWCLAztVziqP85NIqgXOS/PDuIOxDWHFpR/Sw3dXJk".to_string();
        assert_eq!(key.fingerprint().unwrap(), fp);
        let output = format!(
            "# host:22 SSH-2.0-OpenSSH_9.6\nhost ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ\nhost ssh-ed25519 {blob}\n"
        );
        let keys = scanned(&output);
        assert_eq!(keys.len(), 2);
        let c = console("us-east-1", false, None).unwrap();
        assert_eq!(matching(&c, &(fp, "AWS"), keys.clone(), None).unwrap(), key);
        assert_eq!(key.host_key_algorithms(), "ssh-ed25519");
        assert_eq!(key.known_hosts_line("alias"), format!("alias ssh-ed25519 {blob}\n"));
        let rsa = HostKey { key_type: "ssh-rsa".into(), blob: String::new() };
        assert_eq!(rsa.host_key_algorithms(), "rsa-sha2-512,rsa-sha2-256");

        let aws = console("us-east-1", false, None).unwrap();
        let pin = aws.pin.clone().unwrap();
        let refused = matching(&aws, &pin, keys, None).unwrap_err().to_string();
        assert!(refused.contains("not SHA256:dXwn5ma") && refused.contains("nothing was pushed"));
        let none = matching(&aws, &pin, Vec::new(), Some("choose_kex: unsupported KEX method\x1b"));
        let none = none.unwrap_err().to_string();
        assert!(none.contains("got none: choose_kex: unsupported KEX method\\u{1b})"), "{none}");
    }
}
