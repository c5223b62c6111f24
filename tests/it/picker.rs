//! The instance picker, on a real pseudo-terminal: type a filter, an arrow key, Enter, and
//! `eic ssh` logs in to the instance chosen.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Lab, INSTANCE};
use eic_standin::Instance;

const LIMIT: Duration = Duration::from_secs(30);

/// Everything the terminal has shown so far, read on a thread of its own.
struct Screen {
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Screen {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Waits until the terminal has shown `what` (after `from` bytes), and returns where.
    fn wait_for(&self, what: &str, from: usize) -> usize {
        let started = Instant::now();
        loop {
            let seen = self.seen.lock().unwrap().clone();
            let shown = String::from_utf8_lossy(&seen[from.min(seen.len())..]).into_owned();
            if shown.contains(what) {
                return seen.len();
            }
            assert!(started.elapsed() < LIMIT, "{what:?} never shown:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_an_arrow_and_enter_choose_the_instance() {
    let lab = Lab::start_with(|world| {
        let sshd = world.instances[0].targets[&22];
        let api = |id: &str, ip: &str| {
            let mut i = Instance::new(id, ip).tag("Name", "api").az("us-east-1b");
            i.targets.insert(22, sshd);
            i
        };
        world
            .instance(api("i-0aaaaaaaaaaaaaaa1", "10.0.0.6"))
            .instance(api("i-0aaaaaaaaaaaaaaa2", "10.0.0.7"))
    })
    .await;
    let size = nix::pty::Winsize { ws_row: 24, ws_col: 120, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(&size, None).unwrap();
    let options = lab.ssh_options();
    let mut args = vec!["ssh", "--no-reuse", "--os-user", lab.sshd.user(), "--"];
    args.extend(options.iter().map(String::as_str));
    args.push("echo logged-in-as-picked");
    let mut cmd = lab.eic(&args);
    let slave = || std::process::Stdio::from(std::fs::File::from(pty.slave.try_clone().unwrap()));
    cmd.stdin(slave()).stdout(slave()).stderr(slave());
    let mut eic = cmd.spawn().unwrap();
    drop(pty.slave);

    let mut master = std::fs::File::from(pty.master);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut reader = master.try_clone().unwrap();
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let screen = Screen { seen };
    let at = tokio::task::block_in_place(|| screen.wait_for("Instance (type to filter)", 0));
    let screen_text = screen.text();
    for shown in ["web-1", INSTANCE, "10.0.0.5", "api", "i-0aaaaaaaaaaaaaaa2", "endpoint"] {
        assert!(screen_text.contains(shown), "{shown} not listed:\n{screen_text}");
    }
    // Type a filter: only the two `api` instances are left, the first one selected.
    master.write_all(b"api").unwrap();
    tokio::task::block_in_place(|| screen.wait_for("api", at));
    // Down to the second, and Enter.
    master.write_all(b"\x1b[B").unwrap();
    master.write_all(b"\r").unwrap();
    let status = tokio::time::timeout(LIMIT, eic.wait()).await.unwrap().unwrap();
    tokio::task::block_in_place(|| screen.wait_for("logged-in-as-picked", 0));
    assert_eq!(status.code(), Some(0), "{}", screen.text());
    let pushed = lab.standin.calls_of("SendSSHPublicKey");
    assert_eq!(pushed.len(), 1);
    let params = &pushed[0].params;
    assert_eq!(
        params.get("InstanceId").map(String::as_str),
        Some("i-0aaaaaaaaaaaaaaa2"),
        "{params:?}"
    );
}
