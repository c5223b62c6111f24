//! EC2 Instance Connect JSON 1.1 API: SendSSHPublicKey, installing keys for the sshd fixture,
//! and SendSerialConsoleSSHPublicKey, for the serial console's SSH server (`serial.rs`).

use crate::sigv4::utc_parts;
use crate::world::{Faults, World};
use crate::Reply;
use base64::Engine as _;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

/// The `X-Amz-Target` of SendSSHPublicKey.
pub const TARGET: &str = "AWSEC2InstanceConnectService.SendSSHPublicKey";
/// The `X-Amz-Target` of SendSerialConsoleSSHPublicKey.
pub const SERIAL_TARGET: &str = "AWSEC2InstanceConnectService.SendSerialConsoleSSHPublicKey";

/// The shortest SSHPublicKey the service takes (its API model's `min`): an Ed25519 key line
/// without a comment is exactly this long.
pub const MIN_PUBLIC_KEY_LEN: usize = 80;

/// The JSON body's string fields, for the call record.
pub(crate) fn fields(body: &[u8]) -> BTreeMap<String, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// A JSON 1.1 error reply.
pub(crate) fn error(status: u16, code: &str, message: &str) -> Reply {
    let body = serde_json::json!({ "__type": code, "Message": message }).to_string();
    let mut r = Reply::new(status, "application/x-amz-json-1.1", body);
    r.error_code = Some(code.to_string());
    r
}

/// Answer a SendSSHPublicKey call.
pub(crate) fn handle(world: &mut World, body: &[u8], rid: &str) -> Reply {
    if Faults::take(&mut world.faults.internal_error) {
        return error(500, "ServiceException", "An internal error occurred.");
    }
    if Faults::take(&mut world.faults.throttle_send_key) {
        return error(400, "ThrottlingException", "Rate exceeded");
    }
    if let Some(code) = world.faults.deny_send_key.clone() {
        let msg = format!(
            "User: arn:aws:iam::{}:user/standin is not authorized to perform: \
             ec2-instance-connect:SendSSHPublicKey",
            world.account_id
        );
        let status = if code == "AccessDeniedException" { 403 } else { 400 };
        return error(status, &code, &msg);
    }
    let f = fields(body);
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let (id, user, key) = (get("InstanceId"), get("InstanceOSUser"), get("SSHPublicKey"));
    if id.is_empty() || user.is_empty() || key.is_empty() {
        return error(
            400,
            "InvalidArgsException",
            "InstanceId, InstanceOSUser and SSHPublicKey are required",
        );
    }
    if !valid_user(user) {
        return error(
            400,
            "InvalidArgsException",
            "Invalid value for InstanceOSUser: must match ^[A-Za-z_][A-Za-z0-9._-]{0,31}$",
        );
    }
    if let Err(why) = check_key(key) {
        return error(400, "InvalidArgsException", &format!("Invalid SSHPublicKey: {why}"));
    }
    let instance = match running(world, id) {
        Ok(instance) => instance,
        Err(reply) => return reply,
    };
    let az = get("AvailabilityZone");
    if !az.is_empty() && az != instance.availability_zone {
        return error(
            400,
            "InvalidArgsException",
            &format!("Instance {id} is not in availability zone {az}"),
        );
    }
    if let Some(dir) = &world.authorized_keys_dir {
        let expiry = SystemTime::now() + world.key_validity;
        if let Err(e) = install_key(dir, user, key.trim(), expiry) {
            return error(
                500,
                "ServiceException",
                &format!("stand-in could not write the key: {e}"),
            );
        }
    }
    let body = serde_json::json!({ "RequestId": rid, "Success": true }).to_string();
    Reply::new(200, "application/x-amz-json-1.1", body)
}

/// Answer a SendSerialConsoleSSHPublicKey call as the service does: the account's access, the
/// key, the instance (found, running), one session per instance; then the key is valid for
/// `key_validity` on the serial console's SSH server.
pub(crate) fn handle_serial(world: &mut World, body: &[u8], rid: &str) -> Reply {
    if Faults::take(&mut world.faults.throttle_send_key) {
        return error(400, "ThrottlingException", "Rate exceeded");
    }
    if let Some(code) = world.faults.serial_console_error.clone() {
        return error(400, &code, &format!("stand-in fault: {code}"));
    }
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let id = value["InstanceId"].as_str().unwrap_or("");
    let key = value["SSHPublicKey"].as_str().unwrap_or("");
    let port = match &value["SerialPort"] {
        Value::Null => Some(0),
        v => v.as_u64(),
    };
    if id.is_empty() || key.is_empty() {
        return error(400, "InvalidArgsException", "InstanceId and SSHPublicKey are required");
    }
    if key.len() < MIN_PUBLIC_KEY_LEN {
        return error(400, "InvalidArgsException", "SSHPublicKey is too short");
    }
    if let Err(why) = check_key(key) {
        return error(400, "InvalidArgsException", &format!("Invalid SSHPublicKey: {why}"));
    }
    let Some(port) = port.filter(|p| *p == 0) else {
        return error(400, "InvalidArgsException", "Only serial port 0 is supported");
    };
    if !world.serial_console_access {
        return error(
            400,
            "SerialConsoleAccessDisabledException",
            "Your AWS account is not authorized to use the EC2 Serial Console.",
        );
    }
    if let Err(reply) = running(world, id) {
        return reply;
    }
    if world.serial_sessions.contains(id) {
        return error(
            400,
            "SerialConsoleSessionLimitExceededException",
            "The instance currently has 1 active serial console session.",
        );
    }
    let now = SystemTime::now();
    world.serial_keys.retain(|k| k.expires > now);
    world.serial_keys.push(crate::world::SerialKey {
        instance_id: id.to_string(),
        serial_port: port as u32,
        key: key.trim().to_string(),
        expires: now + world.key_validity,
    });
    let body = serde_json::json!({ "RequestId": rid, "Success": true }).to_string();
    Reply::new(200, "application/x-amz-json-1.1", body)
}

/// The instance, found and running, as both pushes require.
fn running<'w>(world: &'w World, id: &str) -> Result<&'w crate::world::Instance, Reply> {
    let Some(instance) = world.find_instance(id) else {
        return Err(error(
            400,
            "EC2InstanceNotFoundException",
            &format!("Instance {id} not found"),
        ));
    };
    if instance.state != "running" {
        return Err(error(
            400,
            "EC2InstanceStateInvalidException",
            &format!("Instance {id} is not in a valid state ({})", instance.state),
        ));
    }
    Ok(instance)
}

/// `^[A-Za-z_][A-Za-z0-9._-]{0,31}$`
pub fn valid_user(user: &str) -> bool {
    let b = user.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Check an OpenSSH public key line: known type, base64 blob whose inner type matches.
pub fn check_key(line: &str) -> Result<(), String> {
    let line = line.trim();
    if line.contains(['\n', '\r']) {
        return Err("must be a single line".into());
    }
    let mut parts = line.split_whitespace();
    let ty = parts.next().unwrap_or("");
    let known = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
    ];
    if !known.contains(&ty) {
        return Err(format!("unsupported key type '{ty}'"));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(parts.next().unwrap_or(""))
        .map_err(|e| format!("bad base64: {e}"))?;
    let len = blob
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .ok_or("key blob too short")?;
    let inner = blob.get(4..4 + len).ok_or("key blob truncated")?;
    if inner != ty.as_bytes() {
        return Err("key type does not match the key blob".into());
    }
    if blob.len() < 4 + len + 16 {
        return Err("key blob too short".into());
    }
    Ok(())
}

/// `YYYYMMDDHHMMSSZ` as used by OpenSSH's `expiry-time` option.
pub fn expiry_stamp(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(t);
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z")
}

/// Append `expiry-time="..." key` to `<dir>/<user>`, dropping lines that already expired.
pub fn install_key(dir: &Path, user: &str, key: &str, expiry: SystemTime) -> std::io::Result<()> {
    let path = dir.join(user);
    let now = expiry_stamp(SystemTime::now());
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut text: String = old
        .lines()
        .filter(|l| {
            // Stamps have a fixed width, so string order is time order.
            l.strip_prefix("expiry-time=\"")
                .and_then(|r| r.get(..15))
                .is_none_or(|stamp| stamp > now.as_str())
        })
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!("expiry-time=\"{}\" {key}\n", expiry_stamp(expiry)));
    let tmp = dir.join(format!(".{user}.tmp"));
    std::fs::write(&tmp, text)?;
    #[cfg(unix)]
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        for ok in ["ec2-user", "root", "_x", "a.b-c_d", "u23456789012345678901234567890ab"] {
            assert!(valid_user(ok), "{ok}");
        }
        for bad in ["", "1abc", "-x", "a b", "a;b", "u234567890123456789012345678901234"] {
            assert!(!valid_user(bad), "{bad}");
        }
    }

    #[test]
    fn keys() {
        let ok =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8s8bUUqMv3LmuJO6X0iAq8PrqT6GWFqkWW6/mQd5ln c";
        assert!(check_key(ok).is_ok());
        assert!(check_key(
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIG8s8bUUqMv3LmuJO6X0iAq8PrqT6GWFqkWW6/mQd5ln"
        )
        .is_err());
        assert!(check_key("ssh-dss AAAA").is_err());
        assert!(check_key("ssh-ed25519 !!!").is_err());
        assert!(check_key("ssh-ed25519").is_err());
    }

    #[test]
    fn install_prunes_expired() {
        let dir = tempfile::tempdir().unwrap();
        let past = SystemTime::now() - std::time::Duration::from_secs(5);
        let future = SystemTime::now() + std::time::Duration::from_secs(60);
        install_key(dir.path(), "u", "ssh-ed25519 OLD", past).unwrap();
        install_key(dir.path(), "u", "ssh-ed25519 NEW1", future).unwrap();
        install_key(dir.path(), "u", "ssh-ed25519 NEW2", future).unwrap();
        let text = std::fs::read_to_string(dir.path().join("u")).unwrap();
        assert!(!text.contains("OLD"));
        assert!(text.contains("NEW1") && text.contains("NEW2"));
        assert!(text.starts_with("expiry-time=\"20"));
    }
}
