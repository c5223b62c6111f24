//! `eic man [COMMAND]`: the man page (roff), generated from the same definitions as `--help`.

use crate::cli::Cli;

pub fn run(subcommand: Option<&str>) -> anyhow::Result<i32> {
    super::print_out(&man_page(subcommand)?)
}

/// The man page (roff) of eic, or of one of its subcommands. The examples keep their lines, as
/// in `--help`: clap_mangen would fill them into one paragraph.
fn man_page(subcommand: Option<&str>) -> std::io::Result<Vec<u8>> {
    let mut eic = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    eic.build();
    let command = match subcommand {
        Some(name) => eic
            .find_subcommand(name)
            .cloned()
            .ok_or_else(|| std::io::Error::other(format!("no man page for {name}")))?,
        None => eic,
    };
    let man = clap_mangen::Man::new(command.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if command.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if command.has_subcommands() {
        man.render_subcommands_section(&mut page)?;
    }
    if let Some(text) = command.get_after_help() {
        let text = text.to_string();
        let text = text.strip_prefix("Examples:\n").unwrap_or(&text);
        page.extend_from_slice(b".SH EXAMPLES\n.nf\n");
        for line in text.lines() {
            // Backslashes and minus signs as roff wants them; a leading dot is not a request.
            let line = line.replace('\\', "\\e").replace('-', "\\-");
            if line.starts_with(['.', '\'']) {
                page.extend_from_slice(b"\\&");
            }
            page.extend_from_slice(line.as_bytes());
            page.push(b'\n');
        }
        page.extend_from_slice(b".fi\n");
    }
    if command.get_version().is_some() {
        man.render_version_section(&mut page)?;
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{MAN_PAGES, TUNNEL_EXAMPLES};

    #[test]
    fn every_subcommand_has_a_man_page() {
        use clap::CommandFactory;
        let names: Vec<String> =
            Cli::command().get_subcommands().map(|c| c.get_name().to_owned()).collect();
        assert_eq!(names, MAN_PAGES);
        for name in MAN_PAGES {
            let page = String::from_utf8(man_page(Some(name)).unwrap()).unwrap();
            assert!(page.contains(&format!(".TH eic-{name} 1")), "{page}");
            assert!(!page.contains("EXTRA"), "{page}");
        }
        let main = String::from_utf8(man_page(None).unwrap()).unwrap();
        assert!(main.contains(".TH eic 1") && main.contains("eic\\-ssh(1)"), "{main}");
        assert!(!main.contains("eic\\-help(1)"), "{main}");
    }

    #[test]
    fn man_examples_are_not_filled() {
        let page = String::from_utf8(man_page(Some("open-tunnel")).unwrap()).unwrap();
        let examples = page.split(".SH EXAMPLES\n.nf\n").nth(1).expect("examples");
        let (examples, _) = examples.split_once(".fi\n").expect("end of examples");
        assert_eq!(examples.lines().count(), TUNNEL_EXAMPLES.lines().count() - 1);
        assert!(examples.contains(
            "    eic open\\-tunnel \\-\\-instance\\-connect\\-endpoint\\-id eice\\-0123456789abcdef0 \\e\n"
        ));
    }
}
