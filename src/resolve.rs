//! The one resolver, for every command: which instance (by id, or by Name tag), which endpoint
//! (given, or the one in the instance's subnet, else its VPC; FIPS), and which address (the
//! connection types of `eic ssh`).

use std::net::IpAddr;

use crate::aws::{Aws, Endpoint, Instance, Instances, USABLE_ENDPOINT_STATES};
use crate::error;
use crate::target::{ChosenEndpoint, DnsName, TunnelTarget};

/// How the user named the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceRef {
    Id(String),
    /// The value of its `Name` tag.
    Name(String),
    /// Neither, on a terminal: the user picks one from the list.
    Pick,
}

impl InstanceRef {
    /// ssh's `%h` for `eic proxy`: an instance id, else a Name tag, optionally as `NAME.eic`.
    pub fn from_host(host: &str) -> InstanceRef {
        if crate::aws::is_instance_id(host) {
            InstanceRef::Id(host.to_string())
        } else {
            InstanceRef::Name(host.strip_suffix(".eic").unwrap_or(host).to_string())
        }
    }
}

/// An endpoint the user named: its id, and its DNS name when that was given too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenEndpoint {
    pub id: String,
    pub dns_name: Option<DnsName>,
}

/// Where `open-tunnel` goes, as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelTo {
    /// An instance, through the given endpoint or the one that reaches it.
    Instance { instance: InstanceRef, endpoint: Option<GivenEndpoint> },
    /// An address, through the given endpoint: the instance is not looked up, as in the AWS CLI.
    Address { ip: IpAddr, endpoint: GivenEndpoint },
}

/// How `eic ssh` reaches the instance (`--connection-type`, as the AWS CLI defines them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Public IPv4 directly, else private IPv4 through the endpoint, else IPv6 directly.
    Auto,
    /// Directly: `ip`, else public IPv4, else IPv6, else private IPv4.
    Direct { ip: Option<IpAddr> },
    /// Through an endpoint: `ip`, else private IPv4, else IPv6.
    Eice { ip: Option<IpAddr>, endpoint: Option<GivenEndpoint>, max_tunnel_duration: Option<u32> },
}

impl Via {
    /// The endpoint named with `--eice-options`, if any.
    pub fn given_endpoint(&self) -> Option<GivenEndpoint> {
        match self {
            Via::Eice { endpoint, .. } => endpoint.clone(),
            _ => None,
        }
    }

    /// `maxTunnelDuration` of `--eice-options`, if any.
    pub fn max_tunnel_duration(&self) -> Option<u32> {
        match self {
            Via::Eice { max_tunnel_duration, .. } => *max_tunnel_duration,
            _ => None,
        }
    }
}

/// Where ssh connects: straight to an address, or through an endpoint to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Direct(IpAddr),
    Endpoint(IpAddr),
}

/// Picks the address as the AWS CLI defines the connection types. None is a parameter error.
pub fn route(instance: &Instance, via: &Via) -> anyhow::Result<Route> {
    let route = match via {
        Via::Eice { ip, .. } => ip.or(instance.private_ipv4).or(instance.ipv6).map(Route::Endpoint),
        Via::Direct { ip } => ip
            .or(instance.public_ipv4)
            .or(instance.ipv6)
            .or(instance.private_ipv4)
            .map(Route::Direct),
        Via::Auto => instance
            .public_ipv4
            .map(Route::Direct)
            .or(instance.private_ipv4.map(Route::Endpoint))
            .or(instance.ipv6.map(Route::Direct)),
    };
    route.ok_or_else(|| {
        error::usage(format!(
            "instance {} has no IP address to connect to with --connection-type {}",
            instance.id,
            match via {
                Via::Eice { .. } => "eice (it needs a private IPv4 or an IPv6 address)",
                Via::Direct { .. } => "direct",
                Via::Auto => "auto",
            }
        ))
    })
}

/// The address an endpoint tunnels to: the private IPv4, else the IPv6.
pub fn tunnel_address(instance: &Instance) -> anyhow::Result<IpAddr> {
    instance.private_ipv4.or(instance.ipv6).ok_or_else(|| {
        error::usage(format!(
            "instance {} has no private IPv4 or IPv6 address to tunnel to",
            instance.id
        ))
    })
}

/// The running instance: by id, or the one running instance with that Name tag (failing an
/// exact match, compared without case).
pub async fn instance(aws: &Aws, which: &InstanceRef) -> anyhow::Result<Instance> {
    let instance = match which {
        InstanceRef::Id(id) => {
            let found = aws.instances(Instances::Id(id)).await?;
            found.into_iter().find(|i| i.id == *id).ok_or_else(|| {
                error::aws(format!(
                    "instance {id} was not found in {}: check the instance id and the region",
                    aws.region
                ))
            })?
        }
        InstanceRef::Name(name) => by_name(aws, name).await?,
        InstanceRef::Pick => crate::picker::pick(aws).await?,
    };
    // 254, as the AWS CLI gets it (`EC2InstanceStateInvalidException` from SendSSHPublicKey).
    if instance.state != "running" {
        return Err(error::aws(format!(
            "instance {} is {}, not running: start it (aws ec2 start-instances --instance-ids {}) and retry",
            instance.id, instance.state, instance.id
        )));
    }
    Ok(instance)
}

/// Which instances `eic exec` and `eic list` take: the union of these, each instance once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub ids: Vec<String>,
    /// Every instance with this Name tag, exactly.
    pub names: Vec<String>,
    /// The instances that carry every one of these tags.
    pub tags: Vec<(String, String)>,
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.names.is_empty() && self.tags.is_empty()
    }
}

/// What a selection found: the instances, and what was named but cannot be reached.
#[derive(Debug, Default)]
pub struct Fleet {
    pub instances: Vec<Instance>,
    pub missing: Vec<Missing>,
}

/// An instance named by id or Name that is missing or not running.
#[derive(Debug)]
pub struct Missing {
    pub instance_id: Option<String>,
    pub name: Option<String>,
    pub why: String,
}

/// The instances of `selection` (running ones unless `any_state`), found with one
/// DescribeInstances per kind of selector, never one per instance. An empty selection is every
/// instance. A tag set that matches nothing is an error (254) before anything runs.
pub async fn fleet(aws: &Aws, selection: &Selection, any_state: bool) -> anyhow::Result<Fleet> {
    let Selection { ids, names, tags } = selection;
    let (by_id, by_name, by_tag, every) = tokio::join!(
        look(aws, Instances::Ids(ids), !ids.is_empty()),
        look(aws, Instances::Names(names), !names.is_empty()),
        look(aws, Instances::Tagged(tags), !tags.is_empty()),
        look(aws, Instances::All, selection.is_empty()),
    );
    let (by_id, by_name, by_tag, every) = (by_id?, by_name?, by_tag?, every?);
    let usable = |i: &Instance| any_state || i.state == "running";
    let mut fleet = Fleet::default();
    let add = |fleet: &mut Fleet, instance: &Instance| {
        if !fleet.instances.iter().any(|i| i.id == instance.id) {
            fleet.instances.push(instance.clone());
        }
    };
    let region = &aws.region;
    for id in ids {
        match by_id.iter().find(|i| i.id == *id) {
            Some(instance) if usable(instance) => add(&mut fleet, instance),
            found => fleet.missing.push(Missing {
                instance_id: Some(id.clone()),
                name: found.and_then(|i| i.name.clone()),
                why: match found {
                    Some(i) => format!("instance {id} is {}, not running", i.state),
                    None => format!("instance {id} was not found in {region}"),
                },
            }),
        }
    }
    for name in names {
        // EC2's tag filters take `*` and `?` as wildcards: only exact matches count.
        let named: Vec<&Instance> =
            by_name.iter().filter(|i| i.name.as_deref() == Some(name.as_str())).collect();
        let running: Vec<&Instance> = named.iter().copied().filter(|i| usable(i)).collect();
        if running.is_empty() {
            let why = match named.first() {
                Some(i) => {
                    format!("the instance named `{name}` ({}) is {}, not running", i.id, i.state)
                }
                None => format!("no instance is named `{name}` in {region}"),
            };
            fleet.missing.push(Missing { instance_id: None, name: Some(name.clone()), why });
        }
        running.into_iter().for_each(|i| add(&mut fleet, i));
    }
    if !tags.is_empty() {
        // EC2's tag filters take `*` and `?` as wildcards: only exact matches count.
        let carries = |i: &Instance| tags.iter().all(|t| i.tags.contains(t));
        let tagged: Vec<&Instance> = by_tag.iter().filter(|i| usable(i) && carries(i)).collect();
        if tagged.is_empty() {
            let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            return Err(error::aws(format!(
                "no {}instance in {region} carries {}: check the tags and the region",
                if any_state { "" } else { "running " },
                tags.join(" and ")
            )));
        }
        tagged.into_iter().for_each(|i| add(&mut fleet, i));
    }
    every.iter().filter(|i| usable(i)).for_each(|i| add(&mut fleet, i));
    Ok(fleet)
}

/// How eic reaches an instance with the route asked for.
#[derive(Debug)]
pub enum Reach {
    Endpoint {
        endpoint: ChosenEndpoint,
        ip: IpAddr,
    },
    Direct(IpAddr),
    /// Not at all, and why.
    No(String),
}

/// How eic would reach `instance` with `via`, the region's endpoints at hand: as `eic ssh`
/// would, from the same route and endpoint choice.
pub fn reach(instance: &Instance, via: &Via, endpoints: &Endpoints, aws: &Aws) -> Reach {
    match route(instance, via) {
        Err(e) => Reach::No(format!("{e:#}")),
        Ok(Route::Direct(ip)) => Reach::Direct(ip),
        Ok(Route::Endpoint(ip)) => match endpoints.clone().choose(instance, aws) {
            Ok(endpoint) => Reach::Endpoint { endpoint, ip },
            Err(e) => Reach::No(format!("{e:#}")),
        },
    }
}

/// DescribeInstances, when `wanted`.
async fn look(aws: &Aws, which: Instances<'_>, wanted: bool) -> anyhow::Result<Vec<Instance>> {
    if wanted {
        aws.instances(which).await
    } else {
        Ok(Vec::new())
    }
}

async fn by_name(aws: &Aws, name: &str) -> anyhow::Result<Instance> {
    let region = &aws.region;
    // EC2's tag filters take `*` and `?` as wildcards: only exact matches count.
    let mut found = aws.instances(Instances::Named(name)).await?;
    found.retain(|i| i.name.as_deref() == Some(name));
    if found.is_empty() {
        // EC2's tag filters are case-sensitive, and ssh lowercases host names (`ssh Web-1.eic`
        // looks for web-1).
        found = aws.instances(Instances::AnyNamed(name)).await?;
        found.retain(|i| i.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)));
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

/// A small table of instances to choose from.
fn instance_table(instances: &[Instance]) -> String {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let header = ["INSTANCE ID", "NAME", "STATE", "PRIVATE IP", "AZ", "LAUNCHED"].map(String::from);
    let rows: Vec<[String; 6]> = std::iter::once(header)
        .chain(instances.iter().map(|i| {
            [
                i.id.clone(),
                i.name.as_deref().map_or("-".into(), error::printable),
                i.state.clone(),
                i.private_ipv4.map_or("-".into(), |ip| ip.to_string()),
                or_dash(&i.availability_zone),
                or_dash(&i.launch_time),
            ]
        }))
        .collect();
    let widths: Vec<usize> =
        (0..6).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> =
                row.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
            format!("  {}", cells.join("  ").trim_end())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The endpoint lookup's result before the instance is known. Listing needs no VPC, so the
/// lookup runs at the same time as DescribeInstances (one round trip instead of two).
#[derive(Debug, Clone)]
pub enum Endpoints {
    /// The endpoint the user named.
    Chosen(ChosenEndpoint),
    /// The region's endpoints in a usable state, to pick from by the instance's subnet and VPC.
    Usable(Vec<Endpoint>),
}

/// Looks up the endpoint as far as it can be without the instance. Owns its arguments, so it
/// can be spawned next to the instance lookup.
pub async fn endpoints(aws: Aws, given: Option<GivenEndpoint>) -> anyhow::Result<Endpoints> {
    Ok(match given {
        Some(given) => Endpoints::Chosen(given_endpoint(&aws, given).await?),
        None => {
            let mut usable = aws.endpoints(None).await?;
            usable.retain(Endpoint::usable);
            Endpoints::Usable(usable)
        }
    })
}

impl Endpoints {
    /// The endpoint id and DNS name to tunnel through: the one named, or the one in the
    /// instance's subnet, else the first in its VPC.
    pub fn choose(self, instance: &Instance, aws: &Aws) -> anyhow::Result<ChosenEndpoint> {
        match self {
            Endpoints::Chosen(chosen) => Ok(chosen),
            Endpoints::Usable(endpoints) => {
                let endpoint = pick_endpoint(endpoints, instance, &aws.region)?;
                let dns_name = dns_name(&endpoint, aws)?;
                Ok(ChosenEndpoint { id: endpoint.id, dns_name })
            }
        }
    }
}

/// The named endpoint's id and DNS name: as given, else looked up by id.
async fn given_endpoint(aws: &Aws, given: GivenEndpoint) -> anyhow::Result<ChosenEndpoint> {
    match given.dns_name {
        Some(dns_name) => Ok(ChosenEndpoint { id: given.id, dns_name }),
        None => {
            let id = &given.id;
            let found = aws.endpoints(Some(id)).await?;
            let endpoint = found.into_iter().find(|e| e.id == *id).ok_or_else(|| {
                error::usage(format!(
                    "the endpoint {id} was not found: check the id and the region (aws ec2 describe-instance-connect-endpoints)"
                ))
            })?;
            if !endpoint.usable() {
                return Err(error::usage(format!(
                    "the endpoint {id} is in state {}, which accepts no tunnels (usable: {})",
                    endpoint.state,
                    USABLE_ENDPOINT_STATES.join(", ")
                )));
            }
            Ok(ChosenEndpoint { dns_name: dns_name(&endpoint, aws)?, id: endpoint.id })
        }
    }
}

/// The DNS name to connect to: the FIPS one when FIPS endpoints are configured, the dual-stack
/// one (IPv4 and IPv6) when dual-stack endpoints are and the endpoint has one. It is checked
/// like `--instance-connect-endpoint-dns-name`: it goes into the URL, SNI and CONNECT line.
fn dns_name(endpoint: &Endpoint, aws: &Aws) -> anyhow::Result<DnsName> {
    let fips = aws.fips;
    let (name, dual_stack) = if fips {
        (&endpoint.fips_dns_name, &endpoint.dualstack_fips_dns_name)
    } else {
        (&endpoint.dns_name, &endpoint.dualstack_dns_name)
    };
    let dual_stack = dual_stack.as_deref().filter(|n| aws.dual_stack && !n.is_empty());
    let name = dual_stack.or(name.as_deref()).filter(|n| !n.is_empty()).ok_or_else(|| {
        if fips {
            error::config(format!(
                "the endpoint {} has no FIPS DNS name, but use_fips_endpoint is set (AWS_USE_FIPS_ENDPOINT or the profile): unset it, or use an endpoint in a region with FIPS endpoints",
                endpoint.id
            ))
        } else {
            anyhow::anyhow!(
                "the endpoint {} has no DNS name yet (state {}): wait until it is create-complete, or use another",
                endpoint.id,
                endpoint.state
            )
        }
    })?;
    name.parse().map_err(|e| {
        error::aws(format!("the endpoint {} has an invalid DNS name {:?}: {e}", endpoint.id, name))
    })
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
    for endpoint in endpoints.into_iter().filter(|e| e.vpc_id.as_deref() == Some(vpc)) {
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

/// The instance, and the endpoint that reaches it, looked up side by side.
pub async fn instance_and_endpoint(
    aws: &Aws,
    which: &InstanceRef,
    given: Option<GivenEndpoint>,
) -> anyhow::Result<(Instance, ChosenEndpoint)> {
    let (instance, endpoints) = tokio::join!(instance(aws, which), endpoints(aws.clone(), given));
    // The instance's error comes first: a stopped or missing instance is named as such.
    let instance = instance?;
    let endpoint = endpoints?.choose(&instance, aws)?;
    Ok((instance, endpoint))
}

/// What `open-tunnel` connects to.
pub async fn tunnel(
    aws: &Aws,
    to: TunnelTo,
    remote_port: u16,
    max_tunnel_duration: Option<u32>,
) -> anyhow::Result<TunnelTarget> {
    match to {
        TunnelTo::Address { ip, endpoint } => {
            let endpoint = given_endpoint(aws, endpoint).await?;
            Ok(TunnelTarget::new(endpoint, ip, remote_port, max_tunnel_duration))
        }
        TunnelTo::Instance { instance, endpoint } => {
            let found = instance_tunnel(aws, &instance, endpoint, remote_port, max_tunnel_duration);
            Ok(found.await?.1)
        }
    }
}

/// The instance and the tunnel to it: through the endpoint given, else the one that reaches
/// it, to its private address.
pub async fn instance_tunnel(
    aws: &Aws,
    which: &InstanceRef,
    endpoint: Option<GivenEndpoint>,
    remote_port: u16,
    max_tunnel_duration: Option<u32>,
) -> anyhow::Result<(Instance, TunnelTarget)> {
    let (instance, endpoint) = instance_and_endpoint(aws, which, endpoint).await?;
    let private_ip = tunnel_address(&instance)?;
    Ok((instance, TunnelTarget::new(endpoint, private_ip, remote_port, max_tunnel_duration)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(public: Option<&str>, private: Option<&str>, ipv6: Option<&str>) -> Instance {
        let ip = |s: Option<&str>| s.map(|s| s.parse().unwrap());
        Instance {
            id: "i-0123456789abcdef0".into(),
            state: "running".into(),
            private_ipv4: ip(private),
            public_ipv4: ip(public),
            ipv6: ip(ipv6),
            vpc_id: Some("vpc-1".into()),
            subnet_id: Some("subnet-1".into()),
            availability_zone: None,
            name: None,
            tags: Vec::new(),
            launch_time: None,
        }
    }

    #[test]
    fn connection_types_pick_addresses_like_the_aws_cli() {
        let all = instance(Some("3.3.3.3"), Some("10.0.0.5"), Some("fd00::5"));
        let private_only = instance(None, Some("10.0.0.5"), None);
        let ipv6_only = instance(None, None, Some("fd00::5"));
        let none = instance(None, None, None);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let direct = |i: Option<&str>| Via::Direct { ip: i.map(ip) };
        let eice = |i: Option<&str>| Via::Eice {
            ip: i.map(ip),
            endpoint: None,
            max_tunnel_duration: None,
        };
        let cases = [
            (&all, Via::Auto, Some(Route::Direct(ip("3.3.3.3")))),
            (&private_only, Via::Auto, Some(Route::Endpoint(ip("10.0.0.5")))),
            (&ipv6_only, Via::Auto, Some(Route::Direct(ip("fd00::5")))),
            (&all, direct(None), Some(Route::Direct(ip("3.3.3.3")))),
            (&ipv6_only, direct(None), Some(Route::Direct(ip("fd00::5")))),
            (&private_only, direct(None), Some(Route::Direct(ip("10.0.0.5")))),
            (&all, eice(None), Some(Route::Endpoint(ip("10.0.0.5")))),
            (&ipv6_only, eice(None), Some(Route::Endpoint(ip("fd00::5")))),
            (&all, eice(Some("10.0.0.9")), Some(Route::Endpoint(ip("10.0.0.9")))),
            (&all, direct(Some("1.2.3.4")), Some(Route::Direct(ip("1.2.3.4")))),
            (&none, Via::Auto, None),
            (&none, eice(None), None),
        ];
        for (instance, via, want) in cases {
            let got = route(instance, &via).ok();
            assert_eq!(got, want, "{via:?}");
        }
        let err = route(&none, &Via::Auto).unwrap_err();
        assert_eq!(error::exit_code(&err), error::USAGE);
    }

    #[test]
    fn hosts_name_instances_by_id_or_name_tag() {
        let id = |s: &str| InstanceRef::Id(s.into());
        let name = |s: &str| InstanceRef::Name(s.into());
        assert_eq!(InstanceRef::from_host("i-0123456789abcdef0"), id("i-0123456789abcdef0"));
        assert_eq!(InstanceRef::from_host("web-1.eic"), name("web-1"));
        assert_eq!(InstanceRef::from_host("web-1"), name("web-1"));
        assert_eq!(InstanceRef::from_host("i-bad.eic"), name("i-bad"));
    }
}
