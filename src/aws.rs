//! AWS configuration and credentials, the API calls eic makes (DescribeInstances,
//! DescribeInstanceConnectEndpoints, SendSSHPublicKey), and how their errors are reported.

use std::borrow::Cow;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::describe_instances::builders::DescribeInstancesFluentBuilder as DescribeInstances;
use aws_sdk_ec2::types::Filter;
use aws_smithy_types::error::display::DisplayErrorContext;
use tokio::sync::Mutex;

use crate::error;

/// Endpoint states in which the service accepts tunnels ([`Endpoint::usable`]).
pub const USABLE_ENDPOINT_STATES: [&str; 4] =
    ["create-complete", "update-in-progress", "update-complete", "update-failed"];

/// What the user chose for every AWS call (the AWS CLI's global options).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub ca_bundle: Option<PathBuf>,
}

/// A CA bundle (PEM) trusted instead of the system's store, read once for the APIs and tunnels.
#[derive(Debug, Clone)]
pub struct CaBundle {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

impl CaBundle {
    fn read(path: &Path) -> anyhow::Result<CaBundle> {
        let pem = std::fs::read(path).map_err(|e| {
            error::config(format!("cannot read the CA bundle {}: {e}", path.display()))
        })?;
        Ok(CaBundle { path: path.to_path_buf(), pem })
    }

    /// `--ca-bundle`, else `AWS_CA_BUNDLE`: the bundle named without reading the profile.
    pub fn named(settings: &Settings) -> anyhow::Result<Option<CaBundle>> {
        let path = settings.ca_bundle.clone().or_else(|| {
            std::env::var_os("AWS_CA_BUNDLE").filter(|v| !v.is_empty()).map(PathBuf::from)
        });
        path.map(|p| CaBundle::read(&p)).transpose()
    }
}

/// The region and the credentials: all that presigning a tunnel needs. The credentials are
/// resolved once, and again only when they are about to expire.
pub struct Signing {
    pub region: String,
    provider: Option<SharedCredentialsProvider>,
    current: Mutex<Credentials>,
}

impl Signing {
    /// The fast path when no API call is needed: credentials and region from the environment
    /// and the command line, no profile parsing, no provider chain. `None` when that is not
    /// enough.
    pub fn from_env(settings: &Settings) -> Option<Signing> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if settings.profile.is_some() {
            return None;
        }
        let region = settings
            .region
            .clone()
            .or_else(|| var("AWS_REGION"))
            .or_else(|| var("AWS_DEFAULT_REGION"))?;
        let credentials = Credentials::new(
            var("AWS_ACCESS_KEY_ID")?,
            var("AWS_SECRET_ACCESS_KEY")?,
            var("AWS_SESSION_TOKEN"),
            None,
            "Environment",
        );
        Some(Signing { region, provider: None, current: Mutex::new(credentials) })
    }

    /// Current credentials, refreshed through the provider chain when they are about to expire.
    pub async fn credentials(&self) -> anyhow::Result<Credentials> {
        let mut current = self.current.lock().await;
        let soon = SystemTime::now() + Duration::from_secs(60);
        if let (Some(provider), Some(expiry)) = (&self.provider, current.expiry()) {
            if expiry <= soon {
                tracing::debug!("credentials expire soon; refreshing them");
                *current = provide(provider).await?;
            }
        }
        Ok(current.clone())
    }
}

/// The API clients' credentials: [`Signing`]'s, refreshed when they are about to expire.
struct Refreshing(Arc<Signing>);

impl std::fmt::Debug for Refreshing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Refreshing(credentials not shown)")
    }
}

impl ProvideCredentials for Refreshing {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            self.0.credentials().await.map_err(|e| {
                aws_credential_types::provider::error::CredentialsError::provider_error(Box::<
                    dyn std::error::Error + Send + Sync,
                >::from(
                    format!(
                    "{e:#}"
                )
                ))
            })
        })
    }
}

/// The loaded configuration and the API clients. Cheap to clone: lookups run side by side.
#[derive(Clone)]
pub struct Aws {
    pub region: String,
    pub fips: bool,
    /// `use_dualstack_endpoint`: the tunnel goes to the endpoint's dual-stack name when it has
    /// one, as the SDKs do for API endpoints.
    pub dual_stack: bool,
    pub ca_bundle: Option<CaBundle>,
    /// See [`Configured::identity`].
    pub identity: String,
    pub signing: Arc<Signing>,
    ec2: aws_sdk_ec2::Client,
    instance_connect: aws_sdk_ec2instanceconnect::Client,
}

/// The configuration as the environment, the profile files and the command line give it: no
/// credential resolved yet and no API called (a region not configured is asked of IMDS, as the
/// SDKs do).
#[derive(Clone)]
pub struct Configured {
    sdk: aws_config::SdkConfig,
    pub region: String,
    pub fips: bool,
    pub dual_stack: bool,
    pub ca_bundle: Option<CaBundle>,
    /// Who the calls are made as, by the configuration's word: the profile and its credential
    /// sources (an access key id, a role's ARN, an SSO account and role, a credential_process
    /// command), never a secret and never a temporary key that changes per process.
    pub identity: String,
    /// Endpoint URLs given for the APIs (`--endpoint-url`, `AWS_ENDPOINT_URL*`).
    pub endpoint_urls: String,
}

impl Configured {
    /// Loads the configuration. With no region, or no credential source at all, it is a
    /// configuration error (253), as for the AWS CLI.
    pub async fn load(settings: &Settings) -> anyhow::Result<Configured> {
        let profiles = aws_config::profile::load(
            &aws_types::os_shim_internal::Fs::real(),
            &aws_types::os_shim_internal::Env::real(),
            &aws_runtime::env_config::file::EnvConfigFiles::default(),
            settings.profile.clone().map(Cow::Owned),
        )
        .await
        .ok();
        let ca_bundle = match CaBundle::named(settings)? {
            Some(bundle) => Some(bundle),
            None => profiles
                .as_ref()
                .and_then(|p| p.get("ca_bundle"))
                .map(|p| CaBundle::read(Path::new(p)))
                .transpose()?,
        };
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        // CloudTrail records the SDK's User-Agent with `app/eic` in it.
        if let Ok(name) = aws_config::AppName::new("eic") {
            loader = loader.app_name(name);
        }
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(bundle) = &ca_bundle {
            loader = loader.http_client(http_client(bundle)?);
        }
        let sdk = loader.load().await;
        let region = sdk.region().map(|r| r.to_string()).ok_or_else(no_region)?;
        let profile = match &profiles {
            Some(profiles) => Some(profiles.selected_profile().to_string()),
            None => settings.profile.clone().or_else(|| env_var("AWS_PROFILE")),
        };
        let identity =
            identity(profile.as_deref(), profiles.as_ref(), env_var).ok_or_else(no_credentials)?;
        let mut endpoint_urls: Vec<String> =
            sdk.endpoint_url().map(String::from).into_iter().collect();
        for service in ["EC2", "EC2_INSTANCE_CONNECT"] {
            let name = format!("AWS_ENDPOINT_URL_{service}");
            endpoint_urls.extend(env_var(&name).map(|url| format!("{name}={url}")));
        }
        Ok(Configured {
            fips: sdk.use_fips().unwrap_or(false),
            dual_stack: sdk.use_dual_stack().unwrap_or(false),
            sdk,
            region,
            ca_bundle,
            identity,
            endpoint_urls: endpoint_urls.join(" "),
        })
    }
}

/// An environment variable; empty counts as unset, as for the AWS SDKs.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A profile's settings that say where its credentials come from (never a secret).
const CREDENTIAL_KEYS: [&str; 14] = [
    "aws_access_key_id",
    "role_arn",
    "source_profile",
    "credential_source",
    "role_session_name",
    "external_id",
    "web_identity_token_file",
    "sso_session",
    "sso_start_url",
    "sso_account_id",
    "sso_role_name",
    "credential_process",
    "login_session",
    "mfa_serial",
];

/// Who the calls are made as, from configuration alone (see [`Configured::identity`]), in the
/// SDKs' chain order; `None` when nothing in it can give credentials.
fn identity(
    profile: Option<&str>,
    profiles: Option<&aws_config::profile::ProfileSet>,
    env: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let profile = profile.unwrap_or("default");
    let mut sources = Vec::new();
    if let Some(id) = env("AWS_ACCESS_KEY_ID") {
        sources.push(format!("env:{id}"));
    }
    // The profile and the profiles it takes its credentials from.
    let mut name = Some(profile.to_string());
    for _ in 0..5 {
        let Some(section) = name.take().and_then(|n| profiles?.get_profile(&n).cloned()) else {
            break;
        };
        for key in CREDENTIAL_KEYS {
            if let Some(value) = section.get(key) {
                sources.push(format!("[{}]{key}={value}", section.name()));
            }
        }
        name = section.get("source_profile").filter(|n| *n != section.name()).map(String::from);
    }
    for name in ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"] {
        sources.extend(env(name).map(|v| format!("{name}={v}")));
    }
    for name in ["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"] {
        sources.extend(env(name).map(|v| format!("{name}={v}")));
    }
    let imds = !env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if imds {
        sources.push("imds".into());
    }
    (!sources.is_empty()).then(|| format!("profile={profile}\n{}", sources.join("\n")))
}

fn no_credentials() -> anyhow::Error {
    error::config(
        "no AWS credentials configured: run `aws configure` or `aws sso login`, set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --profile",
    )
}

impl Aws {
    /// Loads the configuration and resolves the credentials once (see [`Aws::connect`]).
    pub async fn load(settings: &Settings) -> anyhow::Result<Aws> {
        Aws::connect(Configured::load(settings).await?).await
    }

    /// Resolves the credentials through aws-config's full chain (environment, profiles, SSO,
    /// credential_process, assume-role, IMDS) once, and makes the API clients.
    pub async fn connect(configured: Configured) -> anyhow::Result<Aws> {
        let Configured { sdk, region, fips, dual_stack, ca_bundle, identity, .. } = configured;
        let provider = sdk
            .credentials_provider()
            .ok_or_else(|| error::config("no AWS credentials provider is configured"))?;
        let credentials = provide(&provider).await?;
        // The SDKs refuse FIPS and dual-stack with a custom endpoint: the URL given then
        // decides, and they still pick the tunnel's DNS name.
        let custom = |service: &str| {
            sdk.endpoint_url().is_some()
                || std::env::var(format!("AWS_ENDPOINT_URL_{service}")).is_ok_and(|v| !v.is_empty())
        };
        let signing = Arc::new(Signing {
            region: region.clone(),
            provider: Some(provider),
            current: Mutex::new(credentials),
        });
        // The clients take the same credentials, refreshed before they expire: a session that
        // outlives them (eic ssh --reconnect, a long eic exec) goes on calling the APIs.
        let fixed = SharedCredentialsProvider::new(Refreshing(signing.clone()));
        let ec2 = aws_sdk_ec2::config::Builder::from(&sdk)
            .credentials_provider(fixed.clone())
            .use_fips(fips && !custom("EC2"))
            .use_dual_stack(dual_stack && !custom("EC2"))
            .build();
        let instance_connect = aws_sdk_ec2instanceconnect::config::Builder::from(&sdk)
            .credentials_provider(fixed)
            .use_fips(fips && !custom("EC2_INSTANCE_CONNECT"))
            .use_dual_stack(dual_stack && !custom("EC2_INSTANCE_CONNECT"))
            .build();
        Ok(Aws {
            signing,
            region,
            fips,
            dual_stack,
            ca_bundle,
            identity,
            ec2: aws_sdk_ec2::Client::from_conf(ec2),
            instance_connect: aws_sdk_ec2instanceconnect::Client::from_conf(instance_connect),
        })
    }

    /// DescribeInstances, through all pages.
    pub async fn instances(&self, which: Instances<'_>) -> anyhow::Result<Vec<Instance>> {
        let filter = |name: &str, value: &str| Filter::builder().name(name).values(value).build();
        let running = filter("instance-state-name", "running");
        let request = self.ec2.describe_instances();
        let (request, what) = match which {
            Instances::Id(id) => (request.instance_ids(id), id.to_string()),
            Instances::Named(name) => {
                (request.filters(filter("tag:Name", name)).filters(running), format!("Name={name}"))
            }
            Instances::AnyNamed(name) => (
                request.filters(filter("tag-key", "Name")).filters(running),
                format!("Name={name}"),
            ),
            Instances::Running { filter: None, .. } => {
                (request.filters(running), "the running ones".into())
            }
            Instances::Running { filter: Some((key, value)), .. } => {
                (request.filters(filter(key, value)).filters(running), format!("{key}={value}"))
            }
            // By the instance-id filter: one unknown id does not fail the whole call.
            Instances::Ids(ids) => {
                let values = Some(ids.to_vec());
                let by_id = Filter::builder().name("instance-id").set_values(values).build();
                (request.filters(by_id), ids.join(", "))
            }
            Instances::Names(names) => {
                let values = Some(names.to_vec());
                let by_name = Filter::builder().name("tag:Name").set_values(values).build();
                (request.filters(by_name), format!("Name={}", names.join(",")))
            }
            Instances::Tagged(tags) => {
                let tagged = |r: DescribeInstances, (k, v): &(String, String)| {
                    r.filters(filter(&format!("tag:{k}"), v))
                };
                let what: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (tags.iter().fold(request, tagged), what.join(" and "))
            }
            Instances::All => (request, "every instance".into()),
        };
        // The picker needs no more than it can show: a few pages at most.
        let most = match which {
            Instances::Running { most, .. } => most,
            _ => usize::MAX,
        };
        let mut pages = request.into_paginator().items().send();
        let mut found = Vec::new();
        while let Some(reservation) = pages.next().await.filter(|_| found.len() <= most) {
            let reservation = reservation.map_err(|e| {
                let what = format!("DescribeInstances for {what}");
                api_error(e, &what, "ec2:DescribeInstances", |code| {
                    code.starts_with("InvalidInstanceID")
                        .then(|| format!("check the instance id and the region ({})", self.region))
                })
            })?;
            for instance in reservation.instances().iter().map(Instance::from_sdk) {
                check_id(&instance.id, is_instance_id, "DescribeInstances")?;
                found.push(instance);
            }
        }
        Ok(found)
    }

    /// DescribeInstanceConnectEndpoints, through all pages: the endpoint `id`, else every
    /// endpoint in a usable state.
    pub async fn endpoints(&self, id: Option<&str>) -> anyhow::Result<Vec<Endpoint>> {
        let request = self.ec2.describe_instance_connect_endpoints();
        let request = match id {
            Some(id) => request.instance_connect_endpoint_ids(id),
            None => request.filters(
                Filter::builder()
                    .name("state")
                    .set_values(Some(USABLE_ENDPOINT_STATES.map(String::from).to_vec()))
                    .build(),
            ),
        };
        let what = match id {
            Some(id) => format!("DescribeInstanceConnectEndpoints for {id}"),
            None => "DescribeInstanceConnectEndpoints".into(),
        };
        let mut pages = request.into_paginator().items().send();
        let mut found = Vec::new();
        while let Some(endpoint) = pages.next().await {
            let endpoint = endpoint.map_err(|e| {
                api_error(e, &what, "ec2:DescribeInstanceConnectEndpoints", |_| None)
            })?;
            let endpoint = Endpoint::from_sdk(&endpoint);
            check_id(&endpoint.id, is_endpoint_id, "DescribeInstanceConnectEndpoints")?;
            found.push(endpoint);
        }
        Ok(found)
    }

    /// Pushes a public key for `os_user` (valid for 60 s). The SDK's standard retry mode
    /// retries `ThrottlingException` with jittered exponential backoff.
    pub async fn send_ssh_public_key(
        &self,
        instance_id: &str,
        os_user: &str,
        public_key: &str,
    ) -> anyhow::Result<()> {
        let region = &self.region;
        let what = format!("SendSSHPublicKey to {instance_id}");
        let action = "ec2-instance-connect:SendSSHPublicKey";
        let request = self.instance_connect.send_ssh_public_key();
        let request = request.instance_id(instance_id).instance_os_user(os_user);
        request.ssh_public_key(public_key).send().await.map_err(|e| {
            api_error(e, &what, action, |code| Some(match code {
                "EC2InstanceNotFoundException" => {
                    format!("check the instance id and the region ({region})")
                }
                "EC2InstanceStateInvalidException" => "the instance must be running".into(),
                "EC2InstanceUnavailableException" => "the instance is not reachable yet; retry in a minute".into(),
                "AuthException" | "AccessDeniedException" | "AccessDenied" => format!(
                    "your IAM policy must allow {action} on {instance_id}, with an ec2:osuser condition that permits `{os_user}`"
                ),
                "ThrottlingException" => "too many requests; retry in a few seconds".into(),
                "InvalidArgsException" => format!("check the user name `{os_user}` and the key"),
                _ => return None,
            }))
        })?;
        Ok(())
    }

    /// Pushes a public key for the instance's serial console (valid for 60 s).
    pub async fn send_serial_console_ssh_public_key(
        &self,
        instance_id: &str,
        serial_port: u16,
        public_key: &str,
    ) -> anyhow::Result<()> {
        let region = &self.region;
        let what = format!("SendSerialConsoleSSHPublicKey to {instance_id}");
        let action = "ec2-instance-connect:SendSerialConsoleSSHPublicKey";
        let request = self.instance_connect.send_serial_console_ssh_public_key();
        let request = request.instance_id(instance_id).serial_port(serial_port.into());
        request.ssh_public_key(public_key).send().await.map_err(|e| {
            api_error(e, &what, action, |code| Some(match code {
                "SerialConsoleAccessDisabledException" => format!(
                    "serial console access is off for this account in {region}: turn it on with `aws ec2 enable-serial-console-access --region {region}` (needs ec2:EnableSerialConsoleAccess)"
                ),
                "SerialConsoleSessionLimitExceededException" => format!(
                    "{instance_id} already has a serial console session (one at a time): end the other one, or wait a minute if it just ended"
                ),
                "SerialConsoleSessionUnavailableException" => {
                    "the service could not start a session: retry in a minute".into()
                }
                "SerialConsoleSessionUnsupportedException" => format!(
                    "the BIOS of {instance_id} does not support the serial console: reboot the instance to update it, then retry"
                ),
                "EC2InstanceTypeInvalidException" => format!(
                    "the serial console needs a Nitro instance type (or bare metal): {instance_id}'s type is not one; stop it and change its type (aws ec2 modify-instance-attribute --instance-id {instance_id} --instance-type ...), or reach it another way"
                ),
                "EC2InstanceNotFoundException" => {
                    format!("check the instance id and the region ({region})")
                }
                "EC2InstanceStateInvalidException" => format!(
                    "the instance must be running: start it (aws ec2 start-instances --instance-ids {instance_id}) and retry"
                ),
                "EC2InstanceUnavailableException" => "the instance is not reachable yet; retry in a minute".into(),
                "AuthException" | "AccessDeniedException" | "AccessDenied" => format!(
                    "your IAM policy must allow {action} on {instance_id}"
                ),
                "ThrottlingException" => "too many requests; retry in a few seconds".into(),
                "InvalidArgsException" => format!(
                    "check the serial port ({serial_port}; the service has only port 0) and the key (an RSA key of yours may be pushed instead with --private-key-file)"
                ),
                "ServiceException" => "the service failed; retry in a minute".into(),
                _ => return None,
            }))
        })?;
        Ok(())
    }
}

/// An instance id as EC2 makes them: `i-` and 8 or 17 lowercase hex digits. The command line
/// and the API's answers are both held to it.
pub fn is_instance_id(value: &str) -> bool {
    value.strip_prefix("i-").is_some_and(|hex| matches!(hex.len(), 8 | 17) && is_hex(hex))
}

/// An endpoint id as EC2 makes them: `eice-` and 17 lowercase hex digits.
pub fn is_endpoint_id(value: &str) -> bool {
    value.strip_prefix("eice-").is_some_and(|hex| hex.len() == 17 && is_hex(hex))
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An id in an API answer that is not of its kind's shape: the answer is not trusted (254).
fn check_id(id: &str, ok: fn(&str) -> bool, what: &str) -> anyhow::Result<()> {
    if ok(id) {
        return Ok(());
    }
    Err(error::aws(format!("{what} answered with a malformed id `{id}`: check --endpoint-url")))
}

/// Which instances DescribeInstances asks for.
#[derive(Debug, Clone, Copy)]
pub enum Instances<'a> {
    Id(&'a str),
    /// The running instances whose Name tag is exactly this.
    Named(&'a str),
    /// The running instances with any Name tag, to compare with this one.
    AnyNamed(&'a str),
    /// Running instances, all or those matching a filter (`instance-id` or `tag:Name`, with
    /// EC2's wildcards), up to `most` and the rest of that page (so that more are seen).
    Running {
        filter: Option<(&'a str, &'a str)>,
        most: usize,
    },
    /// These instances, in any state.
    Ids(&'a [String]),
    /// The instances, in any state, whose Name tag is one of these.
    Names(&'a [String]),
    /// The instances, in any state, that carry every one of these tags.
    Tagged(&'a [(String, String)]),
    /// Every instance, in any state.
    All,
}

fn no_region() -> anyhow::Error {
    error::config(
        "no AWS region configured: pass --region, set AWS_REGION, or set `region` in your profile",
    )
}

async fn provide(provider: &SharedCredentialsProvider) -> anyhow::Result<Credentials> {
    provider.provide_credentials().await.map_err(|e| {
        tracing::debug!("loading credentials: {}", DisplayErrorContext(&e));
        error::config(format!(
            "no usable AWS credentials ({}): run `aws configure` or `aws sso login`, set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --profile",
            root_cause(&e)
        ))
    })
}

/// The innermost cause of an error, for one line a person can read (the SDK's whole chain,
/// with its debug forms, goes to the --debug log).
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    error::printable(&cause.to_string())
}

/// The SDK's HTTPS client, trusting the given bundle instead of the system store.
fn http_client(
    bundle: &CaBundle,
) -> anyhow::Result<aws_smithy_runtime_api::client::http::SharedHttpClient> {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let context = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(bundle.pem.clone()))
        .build()?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https())
}

/// What eic needs to know about an instance.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub state: String,
    pub private_ipv4: Option<IpAddr>,
    pub public_ipv4: Option<IpAddr>,
    pub ipv6: Option<IpAddr>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub availability_zone: Option<String>,
    pub name: Option<String>,
    /// Every tag, as it came (for exact matches; shown only through `error::printable`).
    pub tags: Vec<(String, String)>,
    pub launch_time: Option<String>,
}

impl Instance {
    fn from_sdk(i: &aws_sdk_ec2::types::Instance) -> Instance {
        let ip = |s: Option<&str>| s.and_then(|s| s.parse().ok());
        let ipv6 = ip(i.ipv6_address()).or_else(|| {
            i.network_interfaces()
                .iter()
                .flat_map(|n| n.ipv6_addresses())
                .find_map(|a| ip(a.ipv6_address()))
        });
        // Everything shown as it came is made printable; the Name tag is kept as it is for
        // matching, and shown through `error::printable`.
        let text = |s: Option<&str>| s.map(error::printable);
        Instance {
            id: error::printable(i.instance_id().unwrap_or_default()),
            state: error::printable(
                i.state().and_then(|s| s.name()).map_or("unknown", |n| n.as_str()),
            ),
            private_ipv4: ip(i.private_ip_address()),
            public_ipv4: ip(i.public_ip_address()),
            ipv6,
            vpc_id: text(i.vpc_id()),
            subnet_id: text(i.subnet_id()),
            availability_zone: text(i.placement().and_then(|p| p.availability_zone())),
            name: i
                .tags()
                .iter()
                .find(|t| t.key() == Some("Name"))
                .and_then(|t| t.value())
                .map(str::to_string),
            tags: i
                .tags()
                .iter()
                .filter_map(|t| {
                    Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))
                })
                .collect(),
            launch_time: i.launch_time().map(|t| error::printable(&t.to_string())),
        }
    }
}

/// An EC2 Instance Connect Endpoint, as the API describes it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub state: String,
    pub dns_name: Option<String>,
    pub fips_dns_name: Option<String>,
    /// `PublicDnsNames.Dualstack`'s names (IPv4 and IPv6), when the endpoint has them.
    pub dualstack_dns_name: Option<String>,
    pub dualstack_fips_dns_name: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
}

impl Endpoint {
    /// Whether the service accepts tunnels through it in its state.
    pub fn usable(&self) -> bool {
        USABLE_ENDPOINT_STATES.contains(&self.state.as_str())
    }

    fn from_sdk(e: &aws_sdk_ec2::types::Ec2InstanceConnectEndpoint) -> Endpoint {
        let dualstack = e.public_dns_names().and_then(|n| n.dualstack());
        Endpoint {
            id: error::printable(e.instance_connect_endpoint_id().unwrap_or_default()),
            state: error::printable(e.state().map_or("unknown", |s| s.as_str())),
            dns_name: e.dns_name().map(str::to_string),
            fips_dns_name: e.fips_dns_name().map(str::to_string),
            dualstack_dns_name: dualstack.and_then(|d| d.dns_name()).map(str::to_string),
            dualstack_fips_dns_name: dualstack.and_then(|d| d.fips_dns_name()).map(str::to_string),
            vpc_id: e.vpc_id().map(error::printable),
            subnet_id: e.subnet_id().map(error::printable),
        }
    }
}

/// Maps an SDK error: a service's answer is 254 with its code and a hint (`hint`'s, else which
/// IAM `action` to allow when access was denied), the rest 255.
fn api_error<E, R>(
    err: SdkError<E, R>,
    what: &str,
    action: &str,
    hint: impl Fn(&str) -> Option<String>,
) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let SdkError::ServiceError(service) = &err else {
        tracing::debug!("{what}: {}", DisplayErrorContext(&err));
        let why = match &err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                "could not connect to the API endpoint (check the network, HTTPS_PROXY, or --endpoint-url)"
            }
            _ => "no valid answer from the API endpoint (check --endpoint-url)",
        };
        return anyhow::anyhow!("{what} failed: {why}: {}", root_cause(&err));
    };
    let e = service.err();
    let code = e.code().unwrap_or("UnknownError");
    let message = error::printable(e.message().unwrap_or("no message"));
    let denied = ["UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "AuthFailure"];
    let hint = hint(code).or_else(|| {
        denied.contains(&code).then(|| format!("your credentials must be allowed to call {action}"))
    });
    let hint = hint.map(|h| format!(" - {h}")).unwrap_or_default();
    error::aws(format!("{what} failed: {}: {message}{hint}", error::printable(code)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
    use aws_types::os_shim_internal::{Env, Fs};

    const CONFIG: &str = "\
[default]
region = eu-west-1
aws_access_key_id = AKIADEFAULT
aws_secret_access_key = secret-default

[profile dev]
role_arn = arn:aws:iam::111122223333:role/dev
source_profile = default

[profile sso]
sso_account_id = 111122223333
sso_role_name = Admin
sso_session = corp

[profile proc]
credential_process = /usr/bin/fetch-creds --account 1

[profile bare]
region = us-east-1
";

    async fn profiles() -> aws_config::profile::ProfileSet {
        let files =
            EnvConfigFiles::builder().with_contents(EnvConfigFileKind::Config, CONFIG).build();
        aws_config::profile::load(&Fs::from_slice(&[]), &Env::from_slice(&[]), &files, None)
            .await
            .unwrap()
    }

    /// The identity for `profile` with `vars` as the whole environment.
    async fn of(profile: &str, vars: &[(&str, &str)]) -> Option<String> {
        let profiles = profiles().await;
        let env = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
        identity(Some(profile), Some(&profiles), env)
    }

    #[tokio::test]
    async fn the_identity_names_the_source_and_never_a_secret() {
        let no_imds = ("AWS_EC2_METADATA_DISABLED", "true");
        let default = of("default", &[no_imds]).await.unwrap();
        assert!(default.contains("AKIADEFAULT") && !default.contains("secret"), "{default}");
        let dev = of("dev", &[no_imds]).await.unwrap();
        assert!(dev.contains("role/dev") && dev.contains("AKIADEFAULT"), "{dev}");
        let sso = of("sso", &[no_imds]).await.unwrap();
        assert!(sso.contains("111122223333") && sso.contains("Admin"), "{sso}");
        let process = of("proc", &[no_imds]).await.unwrap();
        assert!(process.contains("fetch-creds --account 1"), "{process}");
        // Each differs from every other; the same configuration gives the same identity.
        let all = [&default, &dev, &sso, &process];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(of("dev", &[no_imds]).await.unwrap(), dev);
        // Temporary keys in the environment: the key id counts, the secret and token do not.
        let temporary = |token: &'static str| {
            [no_imds, ("AWS_ACCESS_KEY_ID", "ASIATEMP"), ("AWS_SESSION_TOKEN", token)]
        };
        let one = of("bare", &temporary("token-1")).await.unwrap();
        assert_eq!(one, of("bare", &temporary("token-2")).await.unwrap());
        assert!(!one.contains("token"), "{one}");
    }

    #[tokio::test]
    async fn no_credential_source_is_none() {
        let no_imds = ("AWS_EC2_METADATA_DISABLED", "true");
        assert_eq!(of("bare", &[no_imds]).await, None);
        assert_eq!(of("missing", &[no_imds]).await, None);
        assert!(of("bare", &[]).await.unwrap().contains("imds"), "IMDS is a source");
        let container = ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/x");
        assert!(of("bare", &[no_imds, container]).await.is_some());
    }
}
