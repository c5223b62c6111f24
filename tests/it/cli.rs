//! Black-box tests of the command line: validation exits 252 with one line naming the option,
//! before any network call.

use std::process::{Command, Output, Stdio};

fn eic(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eic"))
        .args(args)
        // Nothing may be reached: a real call would fail differently (and slowly).
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDCLITEST")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .stdin(Stdio::null())
        .output()
        .expect("eic runs")
}

#[test]
fn bad_parameters_exit_252_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["ssh", "--instance-id", "a-123"], "--instance-id"),
        (&["ssh", "--instance-id", "i-12+3:4;5"], "--instance-id"),
        (&["open-tunnel", "--instance-id", "a-123"], "--instance-id"),
        (
            &[
                "open-tunnel",
                "--instance-connect-endpoint-id",
                "aeice-1",
                "--private-ip-address",
                "10.0.0.1",
            ],
            "--instance-connect-endpoint-id",
        ),
        (
            &[
                "open-tunnel",
                "--instance-connect-endpoint-id",
                "eice-12;3",
                "--private-ip-address",
                "10.0.0.1",
            ],
            "--instance-connect-endpoint-id",
        ),
        (
            &[
                "open-tunnel",
                "--instance-id",
                "i-0123456789abcdef0",
                "--instance-connect-endpoint-id",
                "eice-0123456789abcdef0",
                "--instance-connect-endpoint-dns-name",
                "bad_name.example.com",
            ],
            "--instance-connect-endpoint-dns-name",
        ),
        (
            &[
                "open-tunnel",
                "--instance-id",
                "i-0123456789abcdef0",
                "--instance-connect-endpoint-id",
                "eice-0123456789abcdef0",
                "--instance-connect-endpoint-dns-name",
                "a.example.com:99999",
            ],
            "--instance-connect-endpoint-dns-name",
        ),
        (
            &[
                "ssh",
                "--instance-id",
                "i-0123456789abcdef0",
                "--eice-options",
                "endpointId=eice-0123456789abcdef0,colour=blue",
            ],
            "unknown key `colour`",
        ),
        (
            &[
                "ssh",
                "--instance-id",
                "i-0123456789abcdef0",
                "--eice-options",
                r#"{"endpointId":"eice-0123456789abcdef0","colour":"blue"}"#,
            ],
            "--eice-options",
        ),
        (
            &[
                "ssh",
                "--instance-id",
                "i-0123456789abcdef0",
                "--eice-options",
                "dnsName=a.example.com",
            ],
            "dnsName needs endpointId",
        ),
        (
            &[
                "ssh",
                "--instance-id",
                "i-0123456789abcdef0",
                "--eice-options",
                "endpointId=eice-0123456789abcdef0",
                "--connection-type",
                "direct",
            ],
            "--eice-options cannot be used with --connection-type direct",
        ),
        (
            &["ssh", "--instance-id", "i-0123456789abcdef0", "--instance-ip", "10.0.0.1"],
            "--instance-ip needs an explicit --connection-type",
        ),
        (
            &[
                "ssh",
                "--instance-id",
                "i-0123456789abcdef0",
                "--eice-options",
                "endpointId=eice-0123456789abcdef0,maxTunnelDuration=0",
            ],
            "maxTunnelDuration",
        ),
        (
            &[
                "ssh",
                "--instance-id",
                "i-0123456789abcdef0",
                "--eice-options",
                "endpointId=eice-0123456789abcdef0,maxTunnelDuration=3601",
            ],
            "maxTunnelDuration",
        ),
        (
            &[
                "ssh",
                "--instance-id",
                "i-0123456789abcdef0",
                "--eice-options",
                "endpointId=eice-0123456789abcdef0,maxTunnelDuration=ten",
            ],
            "maxTunnelDuration",
        ),
        (
            &["open-tunnel", "--instance-id", "i-0123456789abcdef0", "--max-tunnel-duration", "0"],
            "--max-tunnel-duration",
        ),
        (
            &[
                "open-tunnel",
                "--instance-id",
                "i-0123456789abcdef0",
                "--max-tunnel-duration",
                "3601",
            ],
            "--max-tunnel-duration",
        ),
        (
            &[
                "open-tunnel",
                "--instance-id",
                "i-0123456789abcdef0",
                "--max-tunnel-duration",
                "1.5",
            ],
            "--max-tunnel-duration",
        ),
        (&["ssh", "--instance-id", "i-0123456789abcdef0", "--ssh-port", "0"], "--ssh-port"),
        (&["ssh", "--instance-id", "i-0123456789abcdef0", "--ssh-port", "65536"], "--ssh-port"),
        (
            &["ssh", "--instance-id", "i-0123456789abcdef0", "--ssh-port", "twenty-two"],
            "--ssh-port",
        ),
        (
            &["open-tunnel", "--instance-id", "i-0123456789abcdef0", "--remote-port", "70000"],
            "--remote-port",
        ),
        (
            &["open-tunnel", "--instance-id", "i-0123456789abcdef0", "--local-port", "70000"],
            "--local-port",
        ),
        (&["open-tunnel", "--remote-port", "22"], "specify --instance-id"),
        (
            &["open-tunnel", "--private-ip-address", "10.0.0.1"],
            "--private-ip-address needs --instance-connect-endpoint-id",
        ),
        (
            &[
                "open-tunnel",
                "--instance-id",
                "i-0123456789abcdef0",
                "--instance-connect-endpoint-dns-name",
                "a.example.com",
            ],
            "--instance-connect-endpoint-dns-name needs --instance-connect-endpoint-id",
        ),
        (
            &["ssh", "--instance-id", "i-0123456789abcdef0", "--connection-type", "tunnel"],
            "--connection-type",
        ),
        // Negative numbers are values, not unknown options.
        (&["ssh", "--instance-id", "i-0123456789abcdef0", "--ssh-port", "-1"], "--ssh-port"),
        (
            &["open-tunnel", "--instance-id", "i-0123456789abcdef0", "--remote-port", "-1"],
            "--remote-port",
        ),
        (
            &["open-tunnel", "--instance-id", "i-0123456789abcdef0", "--local-port", "-1"],
            "--local-port",
        ),
        (
            &["open-tunnel", "--instance-id", "i-0123456789abcdef0", "--max-tunnel-duration", "-1"],
            "--max-tunnel-duration",
        ),
        (
            &["open-tunnel", "--instance-id", "i-0123456789abcdef0", "--connect-timeout", "-5"],
            "--connect-timeout",
        ),
        (&["proxy", "i-0123456789abcdef0", "-22", "ec2-user"], "<PORT>"),
    ];
    for (args, needle) in cases {
        let out = eic(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(252), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: want {needle:?} in {stderr:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: not one line: {stderr:?}");
        assert!(out.stdout.is_empty(), "{args:?}: stdout {:?}", out.stdout);
    }
}

#[test]
fn clap_usage_errors_exit_252() {
    for args in [&["ssh"][..], &["ssh", "--bogus"], &["frobnicate"], &[], &["man", "help"]] {
        let out = eic(args);
        assert_eq!(out.status.code(), Some(252), "{args:?}");
    }
}

#[test]
fn help_and_version() {
    let out = eic(&["ssh", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--instance-id",
        "--instance-ip",
        "--private-key-file",
        "--os-user",
        "--ssh-port",
        "--local-forwarding",
        "--connection-type",
        "--eice-options",
        "--region",
        "--profile",
        "--endpoint-url",
        "--debug",
        "Examples:",
    ] {
        assert!(help.contains(option), "ssh --help lacks {option}");
    }
    let out = eic(&["open-tunnel", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--instance-connect-endpoint-id",
        "--instance-connect-endpoint-dns-name",
        "--private-ip-address",
        "--remote-port",
        "--local-port",
        "--max-tunnel-duration",
        "--max-websocket-connections",
    ] {
        assert!(help.contains(option), "open-tunnel --help lacks {option}");
    }
    let out = eic(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("eic "));
}

#[test]
fn man_pages() {
    for (args, title) in [
        (&["man"][..], ".TH eic 1"),
        (&["man", "ssh"], ".TH eic-ssh 1"),
        (&["man", "open-tunnel"], ".TH eic-open-tunnel 1"),
    ] {
        let out = eic(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let page = String::from_utf8_lossy(&out.stdout);
        assert!(page.starts_with(".ie") && page.contains(title), "{page}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn open_tunnel_from_a_terminal_needs_a_local_port() {
    // `script` gives eic a pseudo-terminal as stdin, as an interactive shell would.
    let command =
        format!("{} open-tunnel --instance-id i-0123456789abcdef0", env!("CARGO_BIN_EXE_eic"));
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    assert_eq!(out.status.code(), Some(252), "{}", String::from_utf8_lossy(&out.stdout));
    // script merges the terminal's output into its stdout.
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("--local-port is required when stdin is a terminal"), "{said}");
}

/// `eic ARGS` with exactly `vars` of AWS's (nothing of this machine's), no profile files and
/// no IMDS.
fn eic_with(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eic"));
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") || key.to_ascii_lowercase().ends_with("_proxy") {
            cmd.env_remove(key);
        }
    }
    cmd.env("AWS_CONFIG_FILE", "/nonexistent/config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(vars.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("eic runs")
}

#[test]
fn a_new_user_gets_errors_to_act_on_not_debug_dumps() {
    let ssh = ["ssh", "--no-reuse", "--instance-id", "i-0123456789abcdef0", "--dry-run"];
    let keys = [("AWS_ACCESS_KEY_ID", "AKIDCLITEST"), ("AWS_SECRET_ACCESS_KEY", "secret")];
    // (what, environment, exit code, what the message says)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, i32, &'a str);
    let cases: [Case; 4] = [
        ("no credentials", vec![("AWS_REGION", "us-east-1")], 253, "no AWS credentials configured"),
        ("an empty AWS_REGION", [&keys[..], &[("AWS_REGION", "")]].concat(), 253, "no AWS region"),
        ("no region at all", keys.to_vec(), 253, "no AWS region"),
        (
            "the API unreachable",
            [&keys[..], &[("AWS_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", "http://127.0.0.1:9")]]
                .concat(),
            255,
            "could not connect to the API endpoint",
        ),
    ];
    for (what, vars, code, says) in cases {
        let out = eic_with(&ssh, &vars);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{what}: {stderr}");
        assert!(stderr.contains(says), "{what}: {stderr}");
        assert!(stderr.lines().count() <= 2, "{what}: more than two lines:\n{stderr}");
        for dump in ["{ ", "DispatchFailure", "ConnectorError", "CredentialsNotLoaded", "Some("] {
            assert!(!stderr.contains(dump), "{what}: a debug form ({dump}):\n{stderr}");
        }
        assert!(stderr.starts_with("eic: error: "), "{what}: {stderr}");
    }
}
