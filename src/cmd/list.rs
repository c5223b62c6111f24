//! `eic list`: the instances (running ones unless `--all`) and how eic would reach each with
//! the connection type given, from the same resolver as `eic ssh`.

use crate::aws::{Aws, Instance, Settings};
use crate::cli::{ListPlan, Output};
use crate::error;
use crate::resolve::{self, Reach};

pub async fn run(settings: &Settings, plan: ListPlan) -> anyhow::Result<i32> {
    let aws = Aws::load(settings).await?;
    let (fleet, endpoints) = tokio::join!(
        resolve::fleet(&aws, &plan.selection, plan.any_state),
        resolve::endpoints(aws.clone(), None),
    );
    let (mut fleet, endpoints) = (fleet?, endpoints?);
    fleet.instances.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    let rows: Vec<(&Instance, Reach)> = fleet
        .instances
        .iter()
        .map(|i| (i, resolve::reach(i, &plan.via, &endpoints, &aws)))
        .collect();
    for missing in &fleet.missing {
        crate::say::warn(&missing.why);
    }
    let printed = match plan.output {
        Output::Text => table(&rows),
        Output::Json => {
            let all: Vec<serde_json::Value> = rows.iter().map(|(i, r)| json(i, r)).collect();
            format!("{}\n", serde_json::Value::Array(all))
        }
    };
    super::print_out(printed.as_bytes())?;
    Ok(if fleet.missing.is_empty() { 0 } else { error::AWS })
}

/// `eic ssh`'s way there, in words: `eice eice-... 10.0.0.5`, `direct 203.0.113.7`, `none: why`.
fn reach_text(reach: &Reach) -> String {
    match reach {
        Reach::Endpoint { endpoint, ip } => format!("eice {} {ip}", endpoint.id),
        Reach::Direct(ip) => format!("direct {ip}"),
        Reach::No(why) => format!("none: {why}"),
    }
}

fn table(rows: &[(&Instance, Reach)]) -> String {
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let header = ["NAME", "INSTANCE ID", "STATE", "PRIVATE IP", "PUBLIC IP", "AZ", "REACHED"]
        .map(String::from);
    let cells: Vec<[String; 7]> = std::iter::once(header)
        .chain(rows.iter().map(|(i, reach)| {
            [
                or_dash(i.name.as_deref().map(error::printable)),
                i.id.clone(),
                i.state.clone(),
                or_dash(i.private_ipv4.map(|ip| ip.to_string())),
                or_dash(i.public_ipv4.map(|ip| ip.to_string())),
                or_dash(i.availability_zone.clone()),
                reach_text(reach),
            ]
        }))
        .collect();
    let widths: Vec<usize> =
        (0..7).map(|c| cells.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    cells
        .iter()
        .map(|row| {
            let padded: Vec<String> =
                row.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
            format!("{}\n", padded.join("  ").trim_end())
        })
        .collect()
}

/// One instance for scripts; the keys are documented in docs/fleets.md.
fn json(instance: &Instance, reach: &Reach) -> serde_json::Value {
    let (route, endpoint_id, address, why) = match reach {
        Reach::Endpoint { endpoint, ip } => {
            ("eice", Some(endpoint.id.clone()), Some(ip.to_string()), None)
        }
        Reach::Direct(ip) => ("direct", None, Some(ip.to_string()), None),
        Reach::No(why) => ("none", None, None, Some(why.clone())),
    };
    serde_json::json!({
        "instance_id": instance.id,
        "name": instance.name.as_deref().map(error::printable),
        "state": instance.state,
        "private_ip": instance.private_ipv4.map(|ip| ip.to_string()),
        "public_ip": instance.public_ipv4.map(|ip| ip.to_string()),
        "ipv6": instance.ipv6.map(|ip| ip.to_string()),
        "availability_zone": instance.availability_zone,
        "route": route,
        "endpoint_id": endpoint_id,
        "address": address,
        "why": why,
    })
}
