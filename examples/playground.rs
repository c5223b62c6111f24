//! Try eic without an AWS account: starts the local AWS stand-in and a real sshd, then prints
//! the environment and the `eic ssh` command to paste into another terminal.
//!
//! Run it with `cargo run --example playground`; stop it with Ctrl-C.

#[cfg(unix)]
use eic_standin::{StandIn, TYPICAL_ENDPOINT_ID, TYPICAL_INSTANCE_ID};

#[cfg(not(unix))]
fn main() {
    eprintln!("the playground runs a real sshd: Linux and macOS only");
    std::process::exit(1);
}

#[cfg(unix)]
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (standin, sshd) = StandIn::with_sshd().await?;
    let eic = std::env::current_exe()?
        .parent()
        .and_then(|examples| examples.parent())
        .map(|debug| debug.join("eic"))
        .filter(|p| p.exists())
        .map_or_else(|| "cargo run -q --".to_string(), |p| p.display().to_string());
    let user = sshd.user().to_string();

    println!("The stand-in is serving a world with one private instance and its endpoint:");
    println!("  instance {TYPICAL_INSTANCE_ID} (10.0.0.5, no public IP, Name=web-1), running");
    println!("  endpoint {TYPICAL_ENDPOINT_ID}, DNS name {}", standin.eice_dns_name());
    println!("  EC2 and EC2 Instance Connect APIs at {}", standin.api_url());
    println!("  a real sshd on 127.0.0.1:{} behind the endpoint (user {user})", sshd.port());
    println!("  a serial console on {} (it echoes what you type)", standin.serial_console_addr());
    println!();
    println!("In another terminal, paste:");
    println!();
    for (key, value) in standin.env().into_iter().chain(standin.serial_console_env()) {
        println!("  export {key}='{value}'");
    }
    println!("  unset AWS_PROFILE");
    println!();
    println!("  {eic} ssh --instance-id {TYPICAL_INSTANCE_ID} --os-user {user}");
    println!("  {eic} ssh --instance-id {TYPICAL_INSTANCE_ID} --os-user {user} -- uname -a");
    println!("  {eic} serial-console --instance-id {TYPICAL_INSTANCE_ID}    # ~. to leave");
    println!();
    println!("(ssh asks once to trust the instance's host key, as with any new host.)");
    println!("Press Ctrl-C here to stop.");

    // Ctrl-C or SIGTERM: either way the stand-in's and sshd's temporary files are removed.
    eic::Signals::catch()?.recv().await;
    println!();
    println!("Calls served:");
    for call in standin.calls() {
        println!("  {} -> HTTP {}", call.action, call.status);
    }
    drop(sshd);
    Ok(())
}
