//! Property tests of every parser eic owns: hostile input never panics, and what is accepted
//! keeps its promises.

use eic::cli::{
    parse_dns_name, parse_eice_options, parse_endpoint_id, parse_host, parse_instance_id,
    parse_max_tunnel_duration, parse_name, parse_os_user, parse_port, EiceOptions,
};
use eic::install_ssh_config as install;
use eic::split_ssh_args;
use eic::{bypassed, HttpProxy as Proxy};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    // Bounded for CI; `PROPTEST_CASES=100000 cargo test --test properties` runs longer.
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn validators_never_panic(s in any::<String>()) {
        let _ = parse_instance_id(&s);
        let _ = parse_endpoint_id(&s);
        let _ = parse_dns_name(&s);
        let _ = parse_port(&s);
        let _ = parse_max_tunnel_duration(&s);
        let _ = parse_name(&s);
        let _ = parse_host(&s);
        let _ = parse_os_user(&s);
        let _ = parse_eice_options(&s);
        let _ = Proxy::parse(&s);
        let _ = bypassed(&s, &s);
    }

    #[test]
    fn accepted_ids_have_their_shape(s in "[a-z]{0,5}-?[0-9a-zA-Z;+:]{0,8}") {
        if let Ok(id) = parse_instance_id(&s) {
            prop_assert!(id.starts_with("i-") && id[2..].bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        if let Ok(id) = parse_endpoint_id(&s) {
            prop_assert!(id.starts_with("eice-") && id[5..].bytes().all(|b| b.is_ascii_alphanumeric()));
        }
    }

    #[test]
    fn accepted_dns_names_are_safe_in_a_url(s in "[a-zA-Z0-9.\\-_:/?#@ ]{0,40}") {
        if let Ok(dns) = parse_dns_name(&s).map(|d| d.to_string()) {
            let (host, port) = dns.split_once(':').map_or((dns.as_str(), None), |(h, p)| (h, Some(p)));
            prop_assert!(!host.is_empty());
            prop_assert!(host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'));
            if let Some(port) = port {
                prop_assert!(port.parse::<u16>().is_ok_and(|p| p > 0));
            }
        }
    }

    #[test]
    fn eice_options_shorthand_and_json_agree(
        id in "[0-9a-f]{17}",
        dns in proptest::option::of("[a-z0-9-]{1,10}(\\.[a-z0-9-]{1,10}){0,3}"),
        duration in proptest::option::of(1u32..=3600),
    ) {
        let endpoint_id = format!("eice-{id}");
        let mut short = vec![format!("endpointId={endpoint_id}")];
        let mut json = serde_json::json!({ "endpointId": endpoint_id });
        if let Some(dns) = &dns {
            short.push(format!("dnsName={dns}"));
            json["dnsName"] = dns.clone().into();
        }
        if let Some(d) = duration {
            short.push(format!("maxTunnelDuration={d}"));
            json["maxTunnelDuration"] = d.into();
        }
        let dns_name = dns.as_deref().map(|d| d.parse().unwrap());
        let want = EiceOptions { endpoint_id: Some(endpoint_id), dns_name, max_tunnel_duration: duration };
        prop_assert_eq!(parse_eice_options(&short.join(",")).unwrap(), want.clone());
        prop_assert_eq!(parse_eice_options(&json.to_string()).unwrap(), want);
    }

    #[test]
    fn out_of_range_durations_are_refused(d in prop_oneof![Just(0u64), 3601u64..u64::MAX]) {
        prop_assert!(parse_max_tunnel_duration(&d.to_string()).is_err());
        let refused = parse_eice_options(&format!("endpointId=eice-0123456789abcdef0,maxTunnelDuration={d}")).is_err();
        prop_assert!(refused);
    }

    #[test]
    fn accepted_names_and_hosts_are_plain(s in any::<String>()) {
        if let Ok(name) = parse_name(&s) {
            prop_assert!(!name.chars().any(char::is_control));
        }
        if let Ok(host) = parse_host(&s) {
            prop_assert!(!host.starts_with('-'), "a host must never look like an ssh option");
        }
        if let Ok(user) = parse_os_user(&s) {
            prop_assert!(!user.starts_with('-') && user.len() <= 32);
        }
    }

    #[test]
    fn ssh_arguments_split_without_loss(args in proptest::collection::vec("(-[a-zA-Z]{1,3}|--|[a-z=./]{1,6})", 0..8)) {
        let (options, command) = split_ssh_args(&args);
        let dashdash = usize::from(options.len() < args.len() && args[options.len()] == "--");
        prop_assert_eq!(options.len() + dashdash + command.len(), args.len());
        prop_assert_eq!(options, &args[..options.len()]);
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[cfg(unix)]
    #[test]
    fn shell_quoting_round_trips_through_sh(word in "[ -~]{0,20}") {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", eic::shell_quote(&word)))
            .output()
            .unwrap();
        prop_assert_eq!(String::from_utf8_lossy(&out.stdout), word);
    }

    #[test]
    fn installing_keeps_any_existing_config(existing in "(Host [a-z*]{1,6}\n(    [A-Za-z]{3,10} [a-z0-9.]{1,10}\n){0,3}|#[ -~]{0,30}\n|\n){0,6}") {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join(".ssh");
        std::fs::create_dir(&ssh).unwrap();
        std::fs::write(ssh.join("config"), &existing).unwrap();
        let block = "Host i-* *.eic\n    ProxyCommand eic proxy %h %p %r\n";
        install(&ssh, block).unwrap();
        let after = std::fs::read_to_string(ssh.join("config")).unwrap();
        prop_assert!(after.ends_with(&existing));
        let includes = |text: &str| text.lines().filter(|l| l.starts_with("Include ")).count();
        prop_assert_eq!(includes(&after), includes(&existing) + 1);
        let again = install(&ssh, block).unwrap();
        prop_assert_eq!(again, Default::default());
        prop_assert_eq!(std::fs::read_to_string(ssh.join("config")).unwrap(), after);
    }
}
