//! Writes shell completions and man pages for `p` and `c` from their clap definitions, so they
//! never drift from the flags: `gen-docs completions DIR` (bash, zsh, fish) and
//! `gen-docs man DIR` (`p.1`, `c.1` and one page per subcommand of `p`). `make completions`,
//! `make man` and `make dist` run it. It is an example of the proxy crate because that crate
//! sees both command lines (the origin is one of its dev-dependencies), and it keeps
//! clap_complete and clap_mangen out of the binaries we ship.

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [what, dir] if what == "completions" => completions(Path::new(dir)),
        [what, dir] if what == "man" => man(Path::new(dir)),
        _ => {
            eprintln!("usage: gen-docs completions DIR | gen-docs man DIR");
            std::process::exit(common::cli::EX_USAGE);
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The two command lines, each named as its binary.
fn commands() -> [clap::Command; 2] {
    [proxy::config::Cli::command(), origin::config::Cli::command()]
}

fn completions(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for mut cmd in commands() {
        let name = cmd.get_name().to_owned();
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let path = clap_complete::generate_to(shell, &mut cmd, &name, dir)
                .with_context(|| format!("cannot write {shell} completions for {name} into {}", dir.display()))?;
            println!("{}", path.display());
        }
    }
    Ok(())
}

fn man(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for cmd in commands() {
        let name = cmd.get_name().to_owned();
        clap_mangen::generate_to(cmd, dir)
            .with_context(|| format!("cannot write the man pages of {name} into {}", dir.display()))?;
    }
    let mut pages: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    pages.sort();
    for page in pages {
        println!("{}", page.display());
    }
    Ok(())
}
