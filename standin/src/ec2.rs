//! EC2 Query API (Version 2016-11-15): DescribeInstances and DescribeInstanceConnectEndpoints.

use crate::world::{Endpoint, Faults, Instance, OwnNames, World};
use crate::Reply;
use std::collections::BTreeMap;
use std::fmt::Write;

const NS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// Answer one EC2 query call (`params` are the decoded form fields, `Action` included).
pub(crate) fn handle(
    world: &mut World,
    own: &OwnNames,
    params: &BTreeMap<String, String>,
    rid: &str,
) -> Reply {
    let action = params.get("Action").map(String::as_str).unwrap_or("");
    if Faults::take(&mut world.faults.internal_error) {
        return error(500, "InternalError", "An internal error has occurred", rid);
    }
    if Faults::take(&mut world.faults.request_limit_exceeded) {
        return error(503, "RequestLimitExceeded", "Request limit exceeded.", rid);
    }
    if world.faults.unauthorized.iter().any(|a| a == action) {
        let msg = format!(
            "You are not authorized to perform this operation. User: arn:aws:iam::{}:user/standin \
             is not authorized to perform: ec2:{action} because no identity-based policy allows \
             the ec2:{action} action",
            world.account_id
        );
        return error(403, "UnauthorizedOperation", &msg, rid);
    }
    let result = match action {
        "DescribeInstances" => describe_instances(world, params, rid),
        "DescribeInstanceConnectEndpoints" => describe_endpoints(world, own, params, rid),
        "" => Err((400, "MissingAction", "The request must contain the parameter Action".into())),
        other => Err((
            400,
            "InvalidAction",
            format!("The action {other} is not valid for this web service."),
        )),
    };
    match result {
        Ok(body) => Reply::new(200, "text/xml;charset=UTF-8", body),
        Err((status, code, msg)) => error(status, code, &msg, rid),
    }
}

type Fail = (u16, &'static str, String);

/// An EC2 XML error reply.
pub(crate) fn error(status: u16, code: &str, message: &str, rid: &str) -> Reply {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code>\
         <Message>{}</Message></Error></Errors><RequestID>{rid}</RequestID></Response>",
        esc(code),
        esc(message)
    );
    let mut r = Reply::new(status, "text/xml;charset=UTF-8", body);
    r.error_code = Some(code.to_string());
    r
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// `<name>value</name>` (nothing when value is empty).
fn el(out: &mut String, name: &str, value: &str) {
    if !value.is_empty() {
        let _ = write!(out, "<{name}>{}</{name}>", esc(value));
    }
}

/// Values of `Prefix.1`, `Prefix.2`, ... in numeric order.
fn list(params: &BTreeMap<String, String>, prefix: &str) -> Vec<String> {
    let mut v: Vec<(u32, String)> = params
        .iter()
        .filter_map(|(k, val)| {
            let n = k.strip_prefix(prefix)?.strip_prefix('.')?.parse().ok()?;
            Some((n, val.clone()))
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, s)| s).collect()
}

/// `Filter.N.Name` / `Filter.N.Value.M` pairs.
fn filters(params: &BTreeMap<String, String>) -> Vec<(String, Vec<String>)> {
    let mut ns: Vec<u32> = params
        .keys()
        .filter_map(|k| k.strip_prefix("Filter.")?.strip_suffix(".Name")?.parse().ok())
        .collect();
    ns.sort();
    ns.into_iter()
        .map(|n| {
            (
                params[&format!("Filter.{n}.Name")].clone(),
                list(params, &format!("Filter.{n}.Value")),
            )
        })
        .collect()
}

/// EC2 filter wildcards: `*` any run, `?` one character.
pub(crate) fn glob(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn any_match(values: &[String], field: Option<&str>) -> bool {
    field.is_some_and(|f| values.iter().any(|v| glob(v, f)))
}

fn is_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|h| {
        !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// (offset, page size) from MaxResults/NextToken and the page_size knob.
fn page(
    params: &BTreeMap<String, String>,
    range: std::ops::RangeInclusive<usize>,
    knob: Option<usize>,
) -> Result<(usize, usize), Fail> {
    let max = match params.get("MaxResults") {
        None => usize::MAX,
        Some(m) => m.parse().ok().filter(|m| range.contains(m)).ok_or_else(|| {
            (
                400,
                "InvalidParameterValue",
                format!(
                    "Value ( {m} ) for parameter maxResults is invalid. Expecting a value between {} and {}.",
                    range.start(),
                    range.end()
                ),
            )
        })?,
    };
    let offset = match params.get("NextToken") {
        None => 0,
        Some(t) => t
            .strip_prefix("standin-token-")
            .and_then(|o| o.parse().ok())
            .ok_or_else(|| (400, "InvalidParameterValue", format!("Invalid NextToken: {t}")))?,
    };
    Ok((offset, max.min(knob.unwrap_or(usize::MAX)).max(1)))
}

fn next_token(out: &mut String, offset: usize, size: usize, total: usize) {
    if offset + size < total {
        el(out, "nextToken", &format!("standin-token-{}", offset + size));
    }
}

fn instance_matches(i: &Instance, name: &str, values: &[String]) -> Result<bool, Fail> {
    let f = |v: Option<&str>| any_match(values, v);
    Ok(match name {
        "vpc-id" => f(Some(&i.vpc_id)),
        "subnet-id" => f(Some(&i.subnet_id)),
        "instance-state-name" => f(Some(&i.state)),
        "instance-id" => f(Some(&i.id)),
        "availability-zone" => f(Some(&i.availability_zone)),
        "private-ip-address" => f(i.private_ip.as_deref()),
        "ip-address" => f(i.public_ip.as_deref()),
        "tag-key" => i.tags.iter().any(|(k, _)| f(Some(k))),
        n if n.starts_with("tag:") => i.tags.iter().any(|(k, v)| k == &n[4..] && f(Some(v))),
        other => {
            return Err((400, "InvalidParameterValue", format!("The filter '{other}' is invalid")))
        }
    })
}

fn state_code(state: &str) -> u32 {
    match state {
        "running" => 16,
        "shutting-down" => 32,
        "terminated" => 48,
        "stopping" => 64,
        "stopped" => 80,
        _ => 0,
    }
}

fn describe_instances(
    world: &World,
    params: &BTreeMap<String, String>,
    rid: &str,
) -> Result<String, Fail> {
    let ids = list(params, "InstanceId");
    if let Some(bad) = ids.iter().find(|id| !is_id(id, "i-")) {
        return Err((400, "InvalidInstanceID.Malformed", format!("Invalid id: \"{bad}\"")));
    }
    let missing: Vec<&String> = ids.iter().filter(|id| world.find_instance(id).is_none()).collect();
    match missing.as_slice() {
        [] => {}
        [one] => {
            return Err((
                400,
                "InvalidInstanceID.NotFound",
                format!("The instance ID '{one}' does not exist"),
            ))
        }
        many => {
            let joined: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
            return Err((
                400,
                "InvalidInstanceID.NotFound",
                format!("The instance IDs '{}' do not exist", joined.join(", ")),
            ));
        }
    }
    if !ids.is_empty() && params.contains_key("MaxResults") {
        return Err((
            400,
            "InvalidParameterCombination",
            "The parameter instancesSet cannot be used with the parameter maxResults".into(),
        ));
    }
    let (offset, size) = page(params, 5..=1000, world.faults.page_size)?;
    let filters = filters(params);
    let mut selected = Vec::new();
    for i in &world.instances {
        if !ids.is_empty() && !ids.contains(&i.id) {
            continue;
        }
        let mut ok = true;
        for (name, values) in &filters {
            ok &= instance_matches(i, name, values)?;
        }
        if ok {
            selected.push(i);
        }
    }
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstancesResponse xmlns=\"{NS}\">\
         <requestId>{rid}</requestId><reservationSet>"
    );
    for i in selected.iter().skip(offset).take(size) {
        out.push_str("<item>");
        el(&mut out, "reservationId", &format!("r-{}", &i.id[2..]));
        el(&mut out, "ownerId", &world.account_id);
        out.push_str("<instancesSet><item>");
        instance_xml(&mut out, i);
        out.push_str("</item></instancesSet></item>");
    }
    out.push_str("</reservationSet>");
    next_token(&mut out, offset, size, selected.len());
    out.push_str("</DescribeInstancesResponse>");
    Ok(out)
}

fn instance_xml(out: &mut String, i: &Instance) {
    el(out, "instanceId", &i.id);
    el(out, "imageId", "ami-0123456789abcdef0");
    let _ = write!(
        out,
        "<instanceState><code>{}</code><name>{}</name></instanceState>",
        state_code(&i.state),
        esc(&i.state)
    );
    if let Some(ip) = &i.private_ip {
        el(out, "privateDnsName", &format!("ip-{}.ec2.internal", ip.replace('.', "-")));
    }
    el(out, "instanceType", "t3.micro");
    el(out, "launchTime", &i.launch_time);
    let _ = write!(
        out,
        "<placement><availabilityZone>{}</availabilityZone><tenancy>default</tenancy></placement>",
        esc(&i.availability_zone)
    );
    el(out, "subnetId", &i.subnet_id);
    el(out, "vpcId", &i.vpc_id);
    el(out, "privateIpAddress", i.private_ip.as_deref().unwrap_or(""));
    el(out, "ipAddress", i.public_ip.as_deref().unwrap_or(""));
    el(out, "ipv6Address", i.ipv6.as_deref().unwrap_or(""));
    out.push_str("<networkInterfaceSet><item>");
    el(out, "networkInterfaceId", &format!("eni-{}", &i.id[2..]));
    el(out, "subnetId", &i.subnet_id);
    el(out, "vpcId", &i.vpc_id);
    el(out, "privateIpAddress", i.private_ip.as_deref().unwrap_or(""));
    if let Some(v6) = &i.ipv6 {
        let _ = write!(
            out,
            "<ipv6AddressesSet><item><ipv6Address>{}</ipv6Address><isPrimaryIpv6>true</isPrimaryIpv6>\
             </item></ipv6AddressesSet>",
            esc(v6)
        );
    }
    out.push_str("</item></networkInterfaceSet>");
    if !i.tags.is_empty() {
        out.push_str("<tagSet>");
        for (k, v) in &i.tags {
            let _ = write!(out, "<item><key>{}</key><value>{}</value></item>", esc(k), esc(v));
        }
        out.push_str("</tagSet>");
    }
}

fn endpoint_matches(e: &Endpoint, name: &str, values: &[String]) -> Result<bool, Fail> {
    let f = |v: &str| any_match(values, Some(v));
    Ok(match name {
        "vpc-id" => f(&e.vpc_id),
        "subnet-id" => f(&e.subnet_id),
        "state" => f(&e.state),
        "instance-connect-endpoint-id" => f(&e.id),
        "availability-zone" => f(&e.availability_zone),
        other => {
            return Err((400, "InvalidParameterValue", format!("The filter '{other}' is invalid")))
        }
    })
}

fn describe_endpoints(
    world: &World,
    own: &OwnNames,
    params: &BTreeMap<String, String>,
    rid: &str,
) -> Result<String, Fail> {
    let ids = list(params, "InstanceConnectEndpointId");
    if let Some(bad) = ids.iter().find(|id| !is_id(id, "eice-")) {
        return Err((
            400,
            "InvalidInstanceConnectEndpointId.Malformed",
            format!("Invalid id: \"{bad}\""),
        ));
    }
    if let Some(missing) = ids.iter().find(|id| world.find_endpoint(id).is_none()) {
        return Err((
            400,
            "InvalidInstanceConnectEndpointId.NotFound",
            format!("The instanceConnectEndpoint ID '{missing}' does not exist"),
        ));
    }
    let (offset, size) = page(params, 1..=50, world.faults.page_size)?;
    let filters = filters(params);
    let mut selected = Vec::new();
    for e in &world.endpoints {
        if !ids.is_empty() && !ids.contains(&e.id) {
            continue;
        }
        let mut ok = true;
        for (name, values) in &filters {
            ok &= endpoint_matches(e, name, values)?;
        }
        if ok {
            selected.push(e);
        }
    }
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstanceConnectEndpointsResponse \
         xmlns=\"{NS}\"><requestId>{rid}</requestId><instanceConnectEndpointSet>"
    );
    for e in selected.iter().skip(offset).take(size) {
        let (dns, fips) = e.names(own);
        out.push_str("<item>");
        el(&mut out, "ownerId", &world.account_id);
        el(&mut out, "instanceConnectEndpointId", &e.id);
        el(
            &mut out,
            "instanceConnectEndpointArn",
            &format!(
                "arn:aws:ec2:{}:{}:instance-connect-endpoint/{}",
                world.region, world.account_id, e.id
            ),
        );
        el(&mut out, "state", &e.state);
        el(&mut out, "dnsName", &dns);
        el(&mut out, "fipsDnsName", &fips);
        out.push_str("<publicDnsNames><ipv4>");
        el(&mut out, "dnsName", &dns);
        el(&mut out, "fipsDnsName", &fips);
        out.push_str("</ipv4>");
        if let Some((dualstack, dualstack_fips)) = &e.dualstack {
            out.push_str("<dualstack>");
            el(&mut out, "dnsName", dualstack);
            el(&mut out, "fipsDnsName", dualstack_fips);
            out.push_str("</dualstack>");
        }
        out.push_str("</publicDnsNames>");
        let _ = write!(
            out,
            "<networkInterfaceIdSet><item>eni-{}</item></networkInterfaceIdSet>",
            esc(e.id.trim_start_matches("eice-"))
        );
        el(&mut out, "vpcId", &e.vpc_id);
        el(&mut out, "availabilityZone", &e.availability_zone);
        el(&mut out, "createdAt", "2024-01-01T00:00:00.000Z");
        el(&mut out, "subnetId", &e.subnet_id);
        el(&mut out, "preserveClientIp", "false");
        out.push_str("</item>");
    }
    out.push_str("</instanceConnectEndpointSet>");
    next_token(&mut out, offset, size, selected.len());
    out.push_str("</DescribeInstanceConnectEndpointsResponse>");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("web-*", "web-1"));
        assert!(glob("w?b-1", "web-1"));
        assert!(glob("*", ""));
        assert!(!glob("web", "web-1"));
        assert!(glob("*-1", "web-1"));
    }
}
