//! AWS configuration, credentials, the EC2 lookups (instance, endpoint) and the key push.

use std::borrow::Cow;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::Filter;
use tokio::sync::Mutex;

use crate::cli::Global;
use crate::error;

/// Endpoint states in which the service accepts tunnels.
pub const USABLE_ENDPOINT_STATES: [&str; 4] = [
    "create-complete",
    "update-in-progress",
    "update-complete",
    "update-failed",
];

/// The resolved AWS configuration: region, credentials and the SDK clients.
pub struct Aws {
    pub region: String,
    pub fips: bool,
    pub ca_bundle: Option<PathBuf>,
    credentials: CredentialSource,
    sdk: Option<SdkConfig>,
}

impl Aws {
    /// Loads the configuration through aws-config's full chain (environment, profiles, SSO,
    /// credential_process, assume-role, IMDS) and resolves the credentials once.
    pub async fn load(global: &Global) -> anyhow::Result<Aws> {
        let ca_bundle = ca_bundle(global).await;
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        // CloudTrail records the SDK's User-Agent with `app/eic` in it.
        if let Ok(name) = aws_config::AppName::new("eic") {
            loader = loader.app_name(name);
        }
        if let Some(region) = &global.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &global.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &global.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(path) = &ca_bundle {
            loader = loader.http_client(http_client(path)?);
        }
        let sdk = loader.load().await;
        let region = sdk.region().map(|r| r.to_string()).ok_or_else(|| {
            error::config(
                "no AWS region configured: pass --region, set AWS_REGION, or set `region` in your profile",
            )
        })?;
        let provider = sdk
            .credentials_provider()
            .ok_or_else(|| error::config("no AWS credentials provider is configured"))?;
        let credentials = CredentialSource::resolve(provider).await?;
        Ok(Aws {
            region,
            fips: sdk.use_fips().unwrap_or(false),
            ca_bundle,
            credentials,
            sdk: Some(sdk),
        })
    }

    /// The fast path for a ProxyCommand child: credentials and region from the environment and
    /// the command line, no profile parsing, no provider chain. `None` when that is not enough.
    pub fn from_env(global: &Global) -> Option<Aws> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if global.profile.is_some() {
            return None;
        }
        let region = global
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
        let fips = var("AWS_USE_FIPS_ENDPOINT").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Some(Aws {
            region,
            fips,
            ca_bundle: named_ca_bundle(global),
            credentials: CredentialSource::fixed(credentials),
            sdk: None,
        })
    }

    /// Current credentials, refreshed through the provider chain when they are about to expire.
    pub async fn credentials(&self) -> anyhow::Result<Credentials> {
        self.credentials.get().await
    }

    fn sdk(&self) -> &SdkConfig {
        self.sdk
            .as_ref()
            .expect("API clients are only built from a loaded configuration")
    }

    pub async fn ec2(&self) -> anyhow::Result<aws_sdk_ec2::Client> {
        let config = aws_sdk_ec2::config::Builder::from(self.sdk())
            .credentials_provider(SharedCredentialsProvider::new(self.credentials().await?))
            .use_fips(self.fips && !self.custom_endpoint("EC2"))
            .build();
        Ok(aws_sdk_ec2::Client::from_conf(config))
    }

    pub async fn instance_connect(&self) -> anyhow::Result<aws_sdk_ec2instanceconnect::Client> {
        let config = aws_sdk_ec2instanceconnect::config::Builder::from(self.sdk())
            .credentials_provider(SharedCredentialsProvider::new(self.credentials().await?))
            .use_fips(self.fips && !self.custom_endpoint("EC2_INSTANCE_CONNECT"))
            .build();
        Ok(aws_sdk_ec2instanceconnect::Client::from_conf(config))
    }

    /// Whether API calls to `service` go to a URL the user gave. The SDKs refuse FIPS with a
    /// custom endpoint; the given URL then decides, and FIPS still picks the tunnel's DNS name.
    fn custom_endpoint(&self, service: &str) -> bool {
        self.sdk().endpoint_url().is_some()
            || std::env::var(format!("AWS_ENDPOINT_URL_{service}")).is_ok_and(|v| !v.is_empty())
    }
}

/// Credentials resolved once, and again only when they are about to expire.
struct CredentialSource {
    provider: Option<SharedCredentialsProvider>,
    current: Mutex<Credentials>,
}

impl CredentialSource {
    fn fixed(credentials: Credentials) -> Self {
        CredentialSource {
            provider: None,
            current: Mutex::new(credentials),
        }
    }

    async fn resolve(provider: SharedCredentialsProvider) -> anyhow::Result<Self> {
        let credentials = provide(&provider).await?;
        Ok(CredentialSource {
            provider: Some(provider),
            current: Mutex::new(credentials),
        })
    }

    async fn get(&self) -> anyhow::Result<Credentials> {
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

async fn provide(provider: &SharedCredentialsProvider) -> anyhow::Result<Credentials> {
    provider.provide_credentials().await.map_err(|e| {
        error::config(format!(
            "no usable AWS credentials ({}): run `aws configure` or `aws sso login`, set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --profile",
            aws_smithy_types::error::display::DisplayErrorContext(e)
        ))
    })
}

/// `--ca-bundle`, else `AWS_CA_BUNDLE`: the CA bundle named without reading the profile.
fn named_ca_bundle(global: &Global) -> Option<PathBuf> {
    global.ca_bundle.clone().or_else(|| {
        std::env::var_os("AWS_CA_BUNDLE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// `--ca-bundle`, else `AWS_CA_BUNDLE`, else the profile's `ca_bundle`, as the AWS CLI reads
/// them.
async fn ca_bundle(global: &Global) -> Option<PathBuf> {
    if let Some(path) = named_ca_bundle(global) {
        return Some(path);
    }
    let profiles = aws_config::profile::load(
        &aws_types::os_shim_internal::Fs::real(),
        &aws_types::os_shim_internal::Env::real(),
        &aws_runtime::env_config::file::EnvConfigFiles::default(),
        global.profile.clone().map(Cow::Owned),
    )
    .await
    .ok()?;
    profiles.get("ca_bundle").map(PathBuf::from)
}

/// The SDK's HTTPS client, trusting the given PEM bundle instead of the system store.
fn http_client(
    path: &PathBuf,
) -> anyhow::Result<aws_smithy_runtime_api::client::http::SharedHttpClient> {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let pem = std::fs::read(path)
        .map_err(|e| error::config(format!("cannot read the CA bundle {}: {e}", path.display())))?;
    let context = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(pem))
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
    pub launch_time: Option<String>,
}

impl Instance {
    /// An error naming the state when the instance is not running: 254, as the AWS CLI gets it
    /// (`EC2InstanceStateInvalidException` from SendSSHPublicKey).
    pub fn ensure_running(&self) -> anyhow::Result<()> {
        if self.state == "running" {
            return Ok(());
        }
        Err(error::aws(format!(
            "instance {} is {}, not running: start it (aws ec2 start-instances --instance-ids {}) and retry",
            self.id, self.state, self.id
        )))
    }

    /// The address an endpoint tunnels to: the private IPv4, else the IPv6.
    pub fn tunnel_address(&self) -> Option<IpAddr> {
        self.private_ipv4.or(self.ipv6)
    }

    fn from_sdk(i: &aws_sdk_ec2::types::Instance) -> Instance {
        let ip = |s: Option<&str>| s.and_then(|s| s.parse().ok());
        let ipv6 = ip(i.ipv6_address()).or_else(|| {
            i.network_interfaces()
                .iter()
                .flat_map(|n| n.ipv6_addresses())
                .find_map(|a| ip(a.ipv6_address()))
        });
        Instance {
            id: i.instance_id().unwrap_or_default().to_string(),
            state: i
                .state()
                .and_then(|s| s.name())
                .map_or("unknown", |n| n.as_str())
                .to_string(),
            private_ipv4: ip(i.private_ip_address()),
            public_ipv4: ip(i.public_ip_address()),
            ipv6,
            vpc_id: i.vpc_id().map(str::to_string),
            subnet_id: i.subnet_id().map(str::to_string),
            availability_zone: i
                .placement()
                .and_then(|p| p.availability_zone())
                .map(str::to_string),
            name: i
                .tags()
                .iter()
                .find(|t| t.key() == Some("Name"))
                .and_then(|t| t.value())
                .map(str::to_string),
            launch_time: i.launch_time().map(|t| t.to_string()),
        }
    }
}

/// An EC2 Instance Connect Endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub state: String,
    pub dns_name: Option<String>,
    pub fips_dns_name: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
}

impl Endpoint {
    fn from_sdk(e: &aws_sdk_ec2::types::Ec2InstanceConnectEndpoint) -> Endpoint {
        Endpoint {
            id: e
                .instance_connect_endpoint_id()
                .unwrap_or_default()
                .to_string(),
            state: e.state().map_or("unknown", |s| s.as_str()).to_string(),
            dns_name: e.dns_name().map(str::to_string),
            fips_dns_name: e.fips_dns_name().map(str::to_string),
            vpc_id: e.vpc_id().map(str::to_string),
            subnet_id: e.subnet_id().map(str::to_string),
        }
    }

    /// The DNS name to connect to: the FIPS one when FIPS endpoints are configured.
    pub fn host(&self, fips: bool) -> anyhow::Result<String> {
        let name = if fips {
            &self.fips_dns_name
        } else {
            &self.dns_name
        };
        name.clone().filter(|n| !n.is_empty()).ok_or_else(|| {
            if fips {
                error::config(format!(
                    "the endpoint {} has no FIPS DNS name, but use_fips_endpoint is set (AWS_USE_FIPS_ENDPOINT or the profile): unset it, or use an endpoint in a region with FIPS endpoints",
                    self.id
                ))
            } else {
                anyhow::anyhow!(
                    "the endpoint {} has no DNS name yet (state {}): wait until it is create-complete, or use another",
                    self.id,
                    self.state
                )
            }
        })
    }
}

/// Maps an SDK error: a service's answer is 254 with its code and a hint, the rest 255.
fn api_error<E, R>(err: SdkError<E, R>, what: &str, hint: impl Fn(&str) -> String) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("UnknownError");
            let message = e.message().unwrap_or("no message");
            let hint = hint(code);
            let hint = if hint.is_empty() {
                String::new()
            } else {
                format!(" - {hint}")
            };
            error::aws(format!("{what} failed: {code}: {message}{hint}"))
        }
        _ => anyhow::anyhow!(
            "{what} failed: {}",
            aws_smithy_types::error::display::DisplayErrorContext(err)
        ),
    }
}

fn iam_hint(code: &str, action: &str) -> Option<String> {
    matches!(
        code,
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" | "AuthFailure"
    )
    .then(|| format!("your credentials must be allowed to call {action}"))
}

/// Looks up one instance by id.
pub async fn describe_instance(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
    region: &str,
) -> anyhow::Result<Instance> {
    let out = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(|e| {
            api_error(e, &format!("DescribeInstances for {id}"), |code| {
                iam_hint(code, "ec2:DescribeInstances").unwrap_or_else(|| {
                    if code.starts_with("InvalidInstanceID") {
                        format!("check the instance id and the region ({region})")
                    } else {
                        String::new()
                    }
                })
            })
        })?;
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.instance_id() == Some(id))
        .map(Instance::from_sdk)
        .ok_or_else(|| {
            error::aws(format!(
                "instance {id} was not found in {region}: check the instance id and the region"
            ))
        })
}

/// How the user named the instance.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Id(&'a str),
    /// The value of its `Name` tag.
    Name(&'a str),
}

/// Looks up the instance by id, or the one running instance with that Name tag.
pub async fn find_instance(
    ec2: &aws_sdk_ec2::Client,
    target: Target<'_>,
    region: &str,
) -> anyhow::Result<Instance> {
    let name = match target {
        Target::Id(id) => return describe_instance(ec2, id, region).await,
        Target::Name(name) => name,
    };
    let mut found = running(ec2, Filter::builder().name("tag:Name").values(name), name).await?;
    if found.is_empty() {
        // EC2's tag filters are case-sensitive, and ssh lowercases host names (`ssh Web-1.eic`
        // looks for web-1): failing an exact match, the running instances' Name tags are
        // compared without case.
        found = running(ec2, Filter::builder().name("tag-key").values("Name"), name).await?;
        found.retain(|i| {
            i.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        });
    }
    match found.len() {
        0 => Err(error::usage(format!(
            "no running instance is named `{name}` in {region}: check the Name tag and the region"
        ))),
        1 => Ok(found.remove(0)),
        n => Err(error::usage(format!(
            "{n} running instances are named `{name}` in {region}; pick one with --instance-id:\n{}",
            instance_table(&found)
        ))),
    }
}

/// The running instances that match `filter`, through all pages.
async fn running(
    ec2: &aws_sdk_ec2::Client,
    filter: aws_sdk_ec2::types::builders::FilterBuilder,
    name: &str,
) -> anyhow::Result<Vec<Instance>> {
    let mut pages = ec2
        .describe_instances()
        .filters(filter.build())
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        )
        .into_paginator()
        .items()
        .send();
    let mut found = Vec::new();
    while let Some(reservation) = pages.next().await {
        let reservation = reservation.map_err(|e| {
            api_error(e, &format!("DescribeInstances for Name={name}"), |code| {
                iam_hint(code, "ec2:DescribeInstances").unwrap_or_default()
            })
        })?;
        found.extend(reservation.instances().iter().map(Instance::from_sdk));
    }
    Ok(found)
}

/// A small table of instances to choose from.
pub fn instance_table(instances: &[Instance]) -> String {
    let rows: Vec<[String; 6]> = instances
        .iter()
        .map(|i| {
            let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            [
                i.id.clone(),
                or_dash(&i.name),
                i.state.clone(),
                i.private_ipv4.map_or("-".into(), |ip| ip.to_string()),
                or_dash(&i.availability_zone),
                or_dash(&i.launch_time),
            ]
        })
        .collect();
    let header = [
        "INSTANCE ID",
        "NAME",
        "STATE",
        "PRIVATE IP",
        "AZ",
        "LAUNCHED",
    ]
    .map(String::from);
    let widths: Vec<usize> = (0..6)
        .map(|c| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|r| r[c].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:<w$}"))
                .collect();
            format!("  {}", cells.join("  ").trim_end())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The endpoint lookup's result before the instance is known. Listing needs no VPC, so the
/// lookup runs at the same time as DescribeInstances (one API round trip instead of two).
#[derive(Debug)]
pub enum Endpoints {
    /// The id and the DNS name were both given: nothing to look up.
    Given { id: String, dns_name: String },
    /// The endpoint with the given id.
    ById(Endpoint),
    /// The region's endpoints in a usable state, to pick from by the instance's subnet and VPC.
    Usable(Vec<Endpoint>),
}

/// Looks up the endpoint as far as it can be without the instance. Owns its arguments, so it
/// can be spawned next to the instance lookup.
pub async fn lookup_endpoints(
    ec2: aws_sdk_ec2::Client,
    id: Option<String>,
    dns_name: Option<String>,
) -> anyhow::Result<Endpoints> {
    match (id, dns_name) {
        (Some(id), Some(dns_name)) => Ok(Endpoints::Given { id, dns_name }),
        (Some(id), None) => Ok(Endpoints::ById(endpoint_by_id(&ec2, &id).await?)),
        (None, _) => Ok(Endpoints::Usable(usable_endpoints(&ec2).await?)),
    }
}

impl Endpoints {
    /// The endpoint id and the DNS name to tunnel through: as given; of the endpoint with the
    /// given id; or of the endpoint in the instance's subnet, else in its VPC. FIPS picks the
    /// FIPS name.
    pub fn choose(
        self,
        instance: Option<&Instance>,
        fips: bool,
        region: &str,
    ) -> anyhow::Result<(String, String)> {
        let endpoint = match (self, instance) {
            (Endpoints::Given { id, dns_name }, _) => return Ok((id, dns_name)),
            (Endpoints::ById(endpoint), _) => endpoint,
            (Endpoints::Usable(endpoints), Some(instance)) => {
                pick_endpoint(endpoints, instance, region)?
            }
            (Endpoints::Usable(_), None) => {
                unreachable!("validated: an endpoint id, or an instance")
            }
        };
        let host = endpoint.host(fips)?;
        Ok((endpoint.id, host))
    }
}

/// Looks up one endpoint by id.
pub async fn endpoint_by_id(ec2: &aws_sdk_ec2::Client, id: &str) -> anyhow::Result<Endpoint> {
    let out = ec2
        .describe_instance_connect_endpoints()
        .instance_connect_endpoint_ids(id)
        .send()
        .await
        .map_err(|e| {
            api_error(
                e,
                &format!("DescribeInstanceConnectEndpoints for {id}"),
                |code| iam_hint(code, "ec2:DescribeInstanceConnectEndpoints").unwrap_or_default(),
            )
        })?;
    let endpoint = out
        .instance_connect_endpoints()
        .iter()
        .find(|e| e.instance_connect_endpoint_id() == Some(id))
        .map(Endpoint::from_sdk)
        .ok_or_else(|| {
            error::usage(format!(
                "the endpoint {id} was not found: check the id and the region (aws ec2 describe-instance-connect-endpoints)"
            ))
        })?;
    if !USABLE_ENDPOINT_STATES.contains(&endpoint.state.as_str()) {
        return Err(error::usage(format!(
            "the endpoint {id} is in state {}, which accepts no tunnels (usable: {})",
            endpoint.state,
            USABLE_ENDPOINT_STATES.join(", ")
        )));
    }
    Ok(endpoint)
}

/// Every endpoint of the region in a usable state, through all pages.
async fn usable_endpoints(ec2: &aws_sdk_ec2::Client) -> anyhow::Result<Vec<Endpoint>> {
    let mut pages = ec2
        .describe_instance_connect_endpoints()
        .filters(
            Filter::builder()
                .name("state")
                .set_values(Some(USABLE_ENDPOINT_STATES.map(String::from).to_vec()))
                .build(),
        )
        .into_paginator()
        .items()
        .send();
    let mut usable = Vec::new();
    while let Some(endpoint) = pages.next().await {
        let endpoint = endpoint.map_err(|e| {
            api_error(e, "DescribeInstanceConnectEndpoints", |code| {
                iam_hint(code, "ec2:DescribeInstanceConnectEndpoints").unwrap_or_default()
            })
        })?;
        let endpoint = Endpoint::from_sdk(&endpoint);
        if USABLE_ENDPOINT_STATES.contains(&endpoint.state.as_str()) {
            usable.push(endpoint);
        }
    }
    Ok(usable)
}

/// The endpoint for an instance: the one in its subnet, else the first in its VPC. None is a
/// parameter error (252), as in the AWS CLI.
fn pick_endpoint(
    endpoints: Vec<Endpoint>,
    instance: &Instance,
    region: &str,
) -> anyhow::Result<Endpoint> {
    let vpc = instance.vpc_id.as_deref().ok_or_else(|| {
        error::usage(format!(
            "instance {} has no VPC, so no EC2 Instance Connect Endpoint can reach it",
            instance.id
        ))
    })?;
    let mut first = None;
    for endpoint in endpoints
        .into_iter()
        .filter(|e| e.vpc_id.as_deref() == Some(vpc))
    {
        if endpoint.subnet_id.is_some() && endpoint.subnet_id == instance.subnet_id {
            return Ok(endpoint);
        }
        first.get_or_insert(endpoint);
    }
    first.ok_or_else(|| {
        error::usage(format!(
            "no EC2 Instance Connect Endpoint in a usable state in {vpc} (searched for subnet {} first) in {region}: create one with `aws ec2 create-instance-connect-endpoint --subnet-id {}`, or pass the endpoint id",
            instance.subnet_id.as_deref().unwrap_or("none"),
            instance.subnet_id.as_deref().unwrap_or("SUBNET")
        ))
    })
}

/// Pushes a public key for `os_user` (valid for 60 s). The SDK's standard retry mode retries
/// `ThrottlingException` with jittered exponential backoff.
pub async fn send_ssh_public_key(
    client: &aws_sdk_ec2instanceconnect::Client,
    instance_id: &str,
    os_user: &str,
    public_key: &str,
    region: &str,
) -> anyhow::Result<()> {
    client
        .send_ssh_public_key()
        .instance_id(instance_id)
        .instance_os_user(os_user)
        .ssh_public_key(public_key)
        .send()
        .await
        .map_err(|e| {
            api_error(e, &format!("SendSSHPublicKey to {instance_id}"), |code| match code {
                "EC2InstanceNotFoundException" => {
                    format!("check the instance id and the region ({region})")
                }
                "EC2InstanceStateInvalidException" => "the instance must be running".into(),
                "EC2InstanceUnavailableException" => "the instance is not reachable yet; retry in a minute".into(),
                "AuthException" | "AccessDeniedException" | "AccessDenied" => format!(
                    "your IAM policy must allow ec2-instance-connect:SendSSHPublicKey on {instance_id}, with an ec2:osuser condition that permits `{os_user}`"
                ),
                "ThrottlingException" => "too many requests; retry in a few seconds".into(),
                "InvalidArgsException" => format!("check the user name `{os_user}` and the key"),
                _ => String::new(),
            })
        })?;
    Ok(())
}
