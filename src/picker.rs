//! The instance picker of `eic ssh` and `eic open-tunnel` given neither `--instance-id` nor
//! `--name`, on a terminal: the region's running instances (Name, id, private IP, AZ, whether
//! an endpoint serves their VPC), filtered by typing and chosen with the arrow keys (inquire;
//! drawn on stderr, so stdout stays the command's).

use std::fmt;

use crate::aws::{Aws, Instance, Instances};

/// At most this many instances are listed to pick from.
const PICKER_MOST: usize = 1000;
use crate::error;

/// One line of the list.
struct Choice {
    instance: Instance,
    endpoint: bool,
    name_width: usize,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.instance;
        let width = self.name_width;
        let name: String =
            error::printable(i.name.as_deref().unwrap_or("-")).chars().take(width).collect();
        let ip = i.private_ipv4.map_or("-".into(), |ip| ip.to_string());
        let az = i.availability_zone.as_deref().unwrap_or("-");
        let endpoint = if self.endpoint { "endpoint" } else { "no endpoint" };
        write!(f, "{name:<width$}  {:<19}  {ip:<15}  {az:<12}  {endpoint}", i.id)
    }
}

/// Lets the user choose a running instance. Esc or Ctrl-C ends eic (130).
pub async fn pick(aws: &Aws) -> anyhow::Result<Instance> {
    let (found, endpoints) = tokio::join!(
        aws.instances(Instances::Running { filter: None, most: PICKER_MOST }),
        aws.endpoints(None)
    );
    let mut found = found?;
    if found.len() > PICKER_MOST {
        // A large account: the server filters first, by id or by Name.
        let text = prompt(inquire::Text::new("Instance id or part of a Name:").prompt())?;
        let text = text.trim();
        let filter = if text.starts_with("i-") {
            ("instance-id", format!("{text}*"))
        } else {
            ("tag:Name", format!("*{text}*"))
        };
        found = aws
            .instances(Instances::Running {
                filter: Some((filter.0, &filter.1)),
                most: PICKER_MOST,
            })
            .await?;
    }
    if found.is_empty() {
        return Err(error::usage(format!(
            "no running instance in {} to choose from: check the region",
            aws.region
        )));
    }
    let vpcs: Vec<String> =
        endpoints?.into_iter().filter(|e| e.usable()).filter_map(|e| e.vpc_id).collect();
    found.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    let name_width = found.iter().map(|i| i.name.as_deref().map_or(1, |n| n.chars().count())).max();
    let choices: Vec<Choice> = found
        .into_iter()
        .map(|instance| Choice {
            endpoint: instance.vpc_id.as_ref().is_some_and(|v| vpcs.contains(v)),
            instance,
            name_width: name_width.unwrap_or(1).min(40),
        })
        .collect();
    // At most a screen: 15 lines and the prompt fit a 24-line terminal.
    let choice = tokio::task::spawn_blocking(move || {
        inquire::Select::new("Instance (type to filter):", choices).with_page_size(15).prompt()
    })
    .await?;
    Ok(prompt(choice)?.instance)
}

/// A prompt's answer; Esc and Ctrl-C end eic as an interrupt does.
fn prompt<T>(answer: Result<T, inquire::InquireError>) -> anyhow::Result<T> {
    use inquire::InquireError::{OperationCanceled, OperationInterrupted};
    match answer {
        Ok(value) => Ok(value),
        Err(OperationCanceled | OperationInterrupted) => Err(error::interrupted()),
        Err(e) => Err(anyhow::anyhow!("the instance picker failed: {e}")),
    }
}
