//! Plain OpenSSH tools through `eic ssh-config` and `eic proxy`: ssh, scp, sftp and rsync with a
//! generated ssh_config in a temporary HOME, and Name-tag targets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{run, text, Lab, INSTANCE};
use eic_standin::{Endpoint, Instance, Sshd, StandIn, World, TYPICAL_ENDPOINT_ID};
use tokio::process::Command;

const LIMIT: Duration = Duration::from_secs(60);

/// Installs the block into the lab's HOME and returns the config path.
async fn installed(lab: &Lab) -> PathBuf {
    let out = run(&mut lab.eic(&["ssh-config", "--install"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let config = lab.home.path().join(".ssh/config");
    let key = lab.home.path().join(".ssh/eic_ed25519");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    config
}

/// ssh's options for the generated config, isolated from the real ~/.ssh.
fn options(lab: &Lab, config: &Path) -> Vec<String> {
    vec![
        "-F".into(),
        config.display().to_string(),
        "-o".into(),
        format!("UserKnownHostsFile={}", lab.known_hosts().display()),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        "BatchMode=yes".into(),
    ]
}

fn tool(lab: &Lab, program: &str, config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(options(lab, config)).args(args);
    lab.isolate(&mut cmd);
    cmd
}

#[tokio::test]
async fn ssh_scp_sftp_and_rsync_through_the_generated_config() {
    let lab = Lab::start().await;
    let config = installed(&lab).await;
    let user = lab.sshd.user().to_string();
    let by_id = format!("{user}@{INSTANCE}");
    let by_name = format!("{user}@web-1.eic");

    // ssh, by id and by Name tag.
    let out = run(&mut tool(&lab, "ssh", &config, &[&by_id, "echo id-ok"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "id-ok\n");
    let out = run(&mut tool(&lab, "ssh", &config, &[&by_name, "uname"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Linux\n");

    // scp both ways (the "instance" is this machine, so its files are ours to check).
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("up.bin");
    let payload = crate::common::payload(300_000, 7);
    std::fs::write(&local, &payload).unwrap();
    let remote_path = work.path().join("remote.bin");
    let remote = format!("{by_id}:{}", remote_path.display());
    let out =
        run(&mut tool(&lab, "scp", &config, &[local.to_str().unwrap(), &remote]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "scp up: {}", text(&out.stderr));
    assert_eq!(std::fs::read(&remote_path).unwrap(), payload);
    let back = work.path().join("down.bin");
    let out = run(&mut tool(&lab, "scp", &config, &[&remote, back.to_str().unwrap()]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "scp down: {}", text(&out.stderr));
    assert_eq!(std::fs::read(&back).unwrap(), payload);

    // sftp in batch mode.
    let batch = work.path().join("batch");
    let via_sftp = work.path().join("via-sftp.bin");
    let fetched = work.path().join("fetched.bin");
    std::fs::write(
        &batch,
        format!(
            "put {} {}\nget {} {}\n",
            local.display(),
            via_sftp.display(),
            via_sftp.display(),
            fetched.display()
        ),
    )
    .unwrap();
    let out =
        run(&mut tool(&lab, "sftp", &config, &["-b", batch.to_str().unwrap(), &by_name]), LIMIT)
            .await;
    assert_eq!(out.status.code(), Some(0), "sftp: {}", text(&out.stderr));
    assert_eq!(std::fs::read(&fetched).unwrap(), payload);

    // rsync -a of a directory tree.
    let tree = work.path().join("tree");
    for (path, seed) in [("a.txt", 1u64), ("sub/b.bin", 2), ("sub/deeper/c.bin", 3)] {
        let file = tree.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, crate::common::payload(20_000 + seed as usize, seed)).unwrap();
    }
    let copy = work.path().join("copy");
    let rsh = format!(
        "ssh {}",
        options(&lab, &config).iter().map(|o| eic::shell_quote(o)).collect::<Vec<_>>().join(" ")
    );
    let mut rsync = Command::new("rsync");
    rsync
        .args(["-a", "-e", &rsh])
        .arg(format!("{}/", tree.display()))
        .arg(format!("{by_id}:{}/", copy.display()));
    lab.isolate(&mut rsync);
    let out = run(&mut rsync, LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "rsync: {}", text(&out.stderr));
    for path in ["a.txt", "sub/b.bin", "sub/deeper/c.bin"] {
        assert_eq!(
            std::fs::read(copy.join(path)).unwrap(),
            std::fs::read(tree.join(path)).unwrap(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn ten_concurrent_ssh_runs_push_the_key_once() {
    let lab = Lab::start().await;
    let config = installed(&lab).await;
    let by_id = format!("{}@{INSTANCE}", lab.sshd.user());
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..10 {
        let mut cmd = tool(&lab, "ssh", &config, &[&by_id, &format!("echo run-{i}")]);
        runs.spawn(async move { (i, run(&mut cmd, LIMIT).await) });
    }
    while let Some(done) = runs.join_next().await {
        let (i, out) = done.unwrap();
        assert_eq!(out.status.code(), Some(0), "run {i}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("run-{i}\n"));
    }
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 1);
    assert_eq!(lab.standin.count("OpenTunnel"), 10);
}

#[tokio::test]
async fn install_leaves_the_users_config_alone_and_is_idempotent() {
    let lab = Lab::start().await;
    let ssh_dir = lab.home.path().join(".ssh");
    let mine = "Host bastion\n    HostName bastion.example.com\n    User me\n";
    std::fs::write(ssh_dir.join("config"), mine).unwrap();
    let config = installed(&lab).await;
    let after_first = std::fs::read_to_string(&config).unwrap();
    assert!(after_first.starts_with("# Added by `eic ssh-config --install`"));
    assert!(after_first.ends_with(mine));
    assert_eq!(std::fs::read_to_string(ssh_dir.join("config.eic-backup")).unwrap(), mine);

    let out = run(&mut lab.eic(&["ssh-config", "--install"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("already installed"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), after_first);

    // Printing the block changes nothing.
    // The proxy is told the key that ssh offers.
    let out = run(&mut lab.eic(&["ssh-config"]), LIMIT).await;
    let key = ssh_dir.join("eic_ed25519").display().to_string();
    let block = text(&out.stdout);
    assert!(
        block.contains(&format!(" proxy --key-file {key} -- '%h' %p '%r'"))
            && block.contains(&format!("IdentityFile {key}\n")),
        "{block}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), after_first);
}

#[tokio::test]
async fn name_tags_one_several_or_none() {
    let sshd = tokio::task::spawn_blocking(Sshd::start).await.unwrap().unwrap();
    let world = World::new()
        .instance(Instance::new(INSTANCE, "10.0.0.5").tag("Name", "web-1").target(22, sshd.addr()))
        .instance(
            Instance::new("i-0aaaaaaaaaaaaaaa1", "10.0.0.6").tag("Name", "api").az("us-east-1a"),
        )
        .instance(
            Instance::new("i-0aaaaaaaaaaaaaaa2", "10.0.0.7").tag("Name", "api").az("us-east-1b"),
        )
        .instance(
            Instance::new("i-0aaaaaaaaaaaaaaa3", "10.0.0.8").tag("Name", "old").state("stopped"),
        )
        .endpoint(Endpoint::new(TYPICAL_ENDPOINT_ID))
        .authorized_keys_dir(sshd.authorized_keys_dir());
    let lab = Lab::with(StandIn::start(world).await.unwrap(), sshd);
    let user = lab.sshd.user().to_string();

    // One match: go.
    let mut args = vec!["ssh", "--name", "web-1", "--no-reuse", "--os-user", &user, "--"];
    let options = lab.ssh_options();
    args.extend(options.iter().map(String::as_str));
    args.push("echo by-name");
    let out = run(&mut lab.eic(&args), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "by-name\n");

    // Failing an exact match, case is ignored (ssh lowercases `Web-1.eic`): one more lookup.
    let described = lab.standin.count("DescribeInstances");
    args[2] = "WEB-1";
    let out = run(&mut lab.eic(&args), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "by-name\n");
    assert_eq!(lab.standin.count("DescribeInstances"), described + 2);

    // Several: 252 and a table to choose from.
    for sub in [&["ssh", "--name", "api"][..], &["open-tunnel", "--name", "api"]] {
        let out = run(&mut lab.eic(sub), LIMIT).await;
        assert_eq!(out.status.code(), Some(252), "{sub:?}");
        let stderr = text(&out.stderr);
        for needle in [
            "2 running instances are named `api`",
            "INSTANCE ID",
            "PRIVATE IP",
            "i-0aaaaaaaaaaaaaaa1",
            "i-0aaaaaaaaaaaaaaa2",
            "10.0.0.7",
            "us-east-1b",
        ] {
            assert!(stderr.contains(needle), "{needle} missing:\n{stderr}");
        }
    }

    // None running (or none at all): 252, naming the region searched.
    for name in ["old", "nope"] {
        let out = run(&mut lab.eic(&["ssh", "--name", name]), LIMIT).await;
        assert_eq!(out.status.code(), Some(252), "{name}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("no running instance is named `{name}` in us-east-1")),
            "{stderr}"
        );
    }
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 2);

    // --name and --instance-id together are refused.
    let out = run(&mut lab.eic(&["ssh", "--name", "api", "--instance-id", INSTANCE]), LIMIT).await;
    assert_eq!(out.status.code(), Some(252));
}

#[tokio::test]
async fn completions_and_man_page() {
    let lab = Lab::start().await;
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = run(&mut lab.eic(&["completions", shell]), LIMIT).await;
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(text(&out.stdout).contains("open-tunnel"), "{shell}");
    }
    let out = run(&mut lab.eic(&["man"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with(".ie") && text(&out.stdout).contains(".TH eic 1"));
}

#[tokio::test]
async fn the_push_cache_is_private_and_only_ever_saves_pushes() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let lab = Lab::start().await;
    let config = installed(&lab).await;
    let by_id = format!("{}@{INSTANCE}", lab.sshd.user());
    let login = |env: &[(&str, &Path)]| {
        let mut cmd = tool(&lab, "ssh", &config, &[&by_id, "echo ok"]);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd
    };
    let pushes = || lab.standin.count("SendSSHPublicKey");
    let cache = lab.home.path().join(".cache/eic");

    // Another user got to the old predictable name first (/tmp/eic-cache-UID), and
    // XDG_RUNTIME_DIR is a directory others can write to: neither is used.
    let tmp = tempfile::tempdir().unwrap();
    let uid = std::fs::metadata(lab.home.path()).unwrap().uid();
    std::fs::write(tmp.path().join(format!("eic-cache-{uid}")), "squatted").unwrap();
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    for env in [&[("TMPDIR", tmp.path())][..], &[("XDG_RUNTIME_DIR", shared.path())]] {
        let out = run(&mut login(env), LIMIT).await;
        assert_eq!(out.status.code(), Some(0), "{env:?}: {}", text(&out.stderr));
    }
    assert_eq!(std::fs::read_dir(shared.path()).unwrap().count(), 0, "nothing in a shared dir");
    assert_eq!(std::fs::metadata(&cache).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(pushes(), 1, "the second login used the cache in ~/.cache/eic");
    let entry = std::fs::read_dir(&cache).unwrap().next().unwrap().unwrap().path();

    // A link planted in place of the cache file is not followed: its target stays untouched,
    // and the login goes on with one warning and a push.
    std::fs::remove_file(&entry).unwrap();
    let victim = tmp.path().join("victim");
    std::os::unix::fs::symlink(&victim, &entry).unwrap();
    let out = run(&mut login(&[]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("warning: pushing the key without the push cache"));
    assert!(!victim.exists(), "the link was followed");
    assert_eq!(pushes(), 2);

    // A push recorded in the future (the clock was stepped back since) is not trusted.
    std::fs::remove_file(&entry).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    std::fs::write(&entry, format!("{}\n", now.as_secs() + 3600)).unwrap();
    let out = run(&mut login(&[]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(pushes(), 3, "a push from the future was reused");
}

#[tokio::test]
async fn install_refuses_to_override_the_users_own_settings() {
    let lab = Lab::start().await;
    let config = lab.home.path().join(".ssh/config");
    // AWS's documented Session Manager snippet, and a per-host user.
    let users = "Host work\n    HostName work.example.com\n\nHost i-* mi-*\n    ProxyCommand sh -c \"aws ssm start-session --target %h --document-name AWS-StartSSHSession --parameters 'portNumber=%p'\"\n\nHost web.eic\n    User admin\n";
    std::fs::write(&config, users).unwrap();
    let out = run(&mut lab.eic(&["ssh-config", "--install"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(253), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let at = |line: u32| format!("{} line {line}: ", config.display());
    assert!(stderr.contains(&format!("{}ProxyCommand sh -c", at(5))), "{stderr}");
    assert!(stderr.contains(&format!("{}User admin (for web.eic)", at(8))), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), users, "nothing was changed");

    let out = run(&mut lab.eic(&["ssh-config", "--install", "--force"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("warning: your ssh config already sets"));
    assert!(std::fs::read_to_string(&config).unwrap().contains("Include "));
    // Once installed, eic's own Include is not taken for the user's setting; the user's still is.
    let out = run(&mut lab.eic(&["ssh-config", "--install"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(253), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("eic_config"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn a_key_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::start().await;
    let key = lab.home.path().join("shared_key");
    let proxy = |key: &Path| {
        let mut cmd = lab.eic(&["proxy", "--key-file", key.to_str().unwrap(), "--", INSTANCE]);
        cmd.args(["22", lab.sshd.user()]);
        cmd
    };
    // Made on first use, 0600: accepted (the tunnel then ends with stdin).
    let out = run(&mut proxy(&key), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pushes = lab.standin.count("SendSSHPublicKey");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&mut proxy(&key), LIMIT).await;
    assert_eq!(out.status.code(), Some(252), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("readable by you only"), "{}", text(&out.stderr));
    assert_eq!(lab.standin.count("SendSSHPublicKey"), pushes, "nothing is pushed for it");
}

#[tokio::test]
async fn thirty_ssh_share_an_endpoint_that_allows_twenty_tunnels() {
    // The endpoint refuses a 21st tunnel with HTTP 429: eic proxy waits for a free one.
    let lab = Lab::start_with(|world| {
        let faults = eic_standin::Faults { max_tunnels: Some(20), ..Default::default() };
        world.faults(faults)
    })
    .await;
    let config = installed(&lab).await;
    let by_id = format!("{}@{INSTANCE}", lab.sshd.user());
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..30 {
        let remote = format!("sleep 1; echo run-{i}");
        let mut cmd = tool(&lab, "ssh", &config, &[&by_id, &remote]);
        runs.spawn(async move { (i, run(&mut cmd, LIMIT).await) });
    }
    let mut waited = 0;
    while let Some(done) = runs.join_next().await {
        let (i, out) = done.unwrap();
        assert_eq!(out.status.code(), Some(0), "run {i}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("run-{i}\n"));
        waited += usize::from(text(&out.stderr).contains("has no free tunnel"));
    }
    let refused = lab.standin.calls_of("OpenTunnel").iter().filter(|c| c.status == 429).count();
    assert!(refused > 0 && waited > 0, "the limit was never reached: {refused} refusals");
    // Each tunnel ends with its ssh (the stand-in counts it out a moment later).
    let all_closed = async {
        while lab.standin.live_tunnels() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(LIMIT, all_closed).await.expect("every tunnel closes");
}
