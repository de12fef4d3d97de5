//! The command line and `RGUNICORN_CMD_ARGS` (same flags, split like a shell): clap turns
//! them into raw values per setting. Clap only checks the shape of the arguments; every
//! value is taken as text and validated by `apply.rs`, so all value errors read the same
//! whichever source they came from.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{Arg, ArgAction, ArgMatches};

use super::apply::{Origin, Raw};
use super::spec::{ArgShape, Spec, SPECS};
use super::ConfigError;

/// One source of arguments, parsed but not validated.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    /// The settings given, in [`SPECS`] order.
    pub values: Vec<(&'static Spec, Raw)>,
    pub config_file: Option<PathBuf>,
    pub check_config: bool,
    pub print_config: bool,
}

const CONFIG: &str = "config";
const CHECK_CONFIG: &str = "check_config";
const PRINT_CONFIG: &str = "print_config";

fn command() -> clap::Command {
    let mut cmd = clap::Command::new("rgunicorn")
        .version(env!("CARGO_PKG_VERSION"))
        .about("gunicorn's pre-fork HTTP server, in Rust, with a TLS front built in")
        // gunicorn spells version -v; clap's default is -V.
        .disable_version_flag(true)
        // argparse semantics: a flag given twice keeps its last value.
        .args_override_self(true)
        .arg(
            Arg::new("version")
                .short('v')
                .long("version")
                .action(ArgAction::Version)
                .help("Print the version"),
        )
        .arg(
            Arg::new(CONFIG)
                .short('c')
                .long("config")
                .value_name("FILE")
                .help("TOML config file (settings use gunicorn's names; see conf/rgunicorn.toml)"),
        )
        .arg(
            Arg::new(CHECK_CONFIG)
                .long("check-config")
                .action(ArgAction::SetTrue)
                .help("Validate the configuration and exit"),
        )
        .arg(
            Arg::new(PRINT_CONFIG)
                .long("print-config")
                .action(ArgAction::SetTrue)
                .conflicts_with(CHECK_CONFIG)
                .help("Print the effective configuration as TOML and exit"),
        );
    for spec in SPECS {
        let mut arg = Arg::new(spec.name).help(spec.help);
        arg = match spec.shape {
            ArgShape::Positional => arg.value_name(spec.value_name).index(1),
            ArgShape::Switch => arg.long(spec.long).action(ArgAction::SetTrue),
            ArgShape::Value => arg
                .long(spec.long)
                .value_name(spec.value_name)
                // So `-t -1` reaches validation and gets its proper message.
                .allow_negative_numbers(true)
                .action(ArgAction::Set),
            ArgShape::Repeated => arg
                .long(spec.long)
                .value_name(spec.value_name)
                .action(ArgAction::Append),
        };
        if let Some(short) = spec.short {
            arg = arg.short(short);
        }
        for alias in spec.aliases {
            arg = arg.visible_alias(*alias);
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

/// Parse one argument list (argv[0] first). `--help`/`--version` come back as
/// [`ConfigError::Clap`]; any other clap error as a one-line [`ConfigError::Usage`].
pub(crate) fn parse(args: &[OsString], origin: Origin) -> Result<Parsed, ConfigError> {
    let matches = command()
        .try_get_matches_from(args)
        .map_err(|e| clap_error(e, origin))?;
    Ok(from_matches(&matches))
}

fn from_matches(m: &ArgMatches) -> Parsed {
    let mut values = Vec::new();
    for spec in SPECS {
        let raw = match spec.shape {
            ArgShape::Switch => m.get_flag(spec.name).then_some(Raw::Switch),
            ArgShape::Repeated => m
                .get_many::<String>(spec.name)
                .map(|v| Raw::Args(v.cloned().collect())),
            ArgShape::Value | ArgShape::Positional => {
                m.get_one::<String>(spec.name).cloned().map(Raw::Arg)
            }
        };
        if let Some(raw) = raw {
            values.push((spec, raw));
        }
    }
    Parsed {
        values,
        config_file: m.get_one::<String>(CONFIG).map(PathBuf::from),
        check_config: m.get_flag(CHECK_CONFIG),
        print_config: m.get_flag(PRINT_CONFIG),
    }
}

fn clap_error(e: clap::Error, origin: Origin) -> ConfigError {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => ConfigError::Clap(e),
        _ => {
            // clap's message spans several lines (usage, tips); keep the first, which says
            // what is wrong, and point at --help for the rest.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            ConfigError::Usage {
                origin,
                message: format!("{first} (see --help)"),
            }
        }
    }
}

/// Split `RGUNICORN_CMD_ARGS` into words as a POSIX shell would (gunicorn uses
/// `shlex.split`): whitespace separates, quotes group, backslash escapes.
pub(crate) fn shell_split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unterminated single quote".to_string()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        // Inside double quotes a backslash escapes only these.
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("unterminated double quote".to_string()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("unterminated double quote".to_string()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("trailing backslash".to_string()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn shell_split_follows_posix_quoting() {
        let split = |s| shell_split(s).unwrap();
        assert_eq!(split("  -w 3  --bind=x "), ["-w", "3", "--bind=x"]);
        assert_eq!(
            split(r#"-n 'my app' -e "A=b c""#),
            ["-n", "my app", "-e", "A=b c"]
        );
        assert_eq!(split(r#"a\ b "q\"x" 'n\o'"#), ["a b", "q\"x", r"n\o"]);
        assert_eq!(split(r#"''"#), [""]);
        assert!(split("").is_empty());
        assert!(shell_split("'open").is_err());
        assert!(shell_split("\"open").is_err());
    }
}
