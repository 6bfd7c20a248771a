//! `--config FILE`: a command's options in a TOML file, under the same names
//! as its long flags, so the mapping is the clap definition itself and
//! cannot drift from it.
//!
//! A flag `--flow-capacity N` is the key `flow-capacity = N`; a dot in a
//! flag's name is a TOML table, so `--web.listen-address` is
//! `web.listen-address = "…"` or `listen-address` under `[web]`. A flag
//! without a value is a boolean, a repeatable flag an array, a number a
//! TOML integer, everything else a string; durations take a string
//! (`"10s"`) or an integer of seconds. Every value goes through the flag's
//! own parser. A flag given on the command line replaces the file's value
//! (a repeatable one, the whole array).
//!
//! How: the command line is parsed once with every argument optional, to
//! find `--config` and which flags were given; the file's settings for the
//! others become `--name=value` arguments, and the command line with them
//! is parsed as usual.

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory};
use egresswatch::policy::diag::{suggest, Diagnostic, Diagnostics, Kind};
use std::any::TypeId;
use std::ffi::OsString;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The argument that names the file.
const CONFIG: &str = "config";

/// `argv` with the settings of its `--config` file added, or the problems
/// of that file. Without `--config` (or when the command line itself is
/// wrong, which the caller's parse then reports), `argv` unchanged.
pub fn merged_args<C: CommandFactory>(argv: Vec<OsString>) -> Result<Vec<OsString>, Diagnostics> {
    let relaxed = C::command().mut_subcommands(|s| s.mut_args(|a| a.required(false)));
    let Ok(top) = relaxed.try_get_matches_from(&argv) else {
        return Ok(argv);
    };
    let Some((name, sub)) = top.subcommand() else {
        return Ok(argv);
    };
    let Some(path) = sub.try_get_one::<PathBuf>(CONFIG).ok().flatten() else {
        return Ok(argv);
    };
    let source = egresswatch::policy::load::read_source(path)?;
    let mut command = C::command();
    command.build();
    let Some(schema) = command.find_subcommand(name) else {
        return Ok(argv);
    };
    let settings = settings(schema, &source.text)
        .map_err(|diags| Diagnostics::new(diags, vec![source.clone()]))?;
    let given = |id: &str| [&top, sub].iter().any(|m| given_on_command_line(m, id));
    let extra: Vec<OsString> = settings
        .into_iter()
        .filter(|s| !given(&s.id))
        .flat_map(|s| s.args)
        .collect();
    Ok(insert_before_escape(argv, extra))
}

fn given_on_command_line(m: &ArgMatches, id: &str) -> bool {
    m.try_contains_id(id).unwrap_or(false) && m.value_source(id) == Some(ValueSource::CommandLine)
}

/// The arguments put after the command line's own, but before a `--`
/// (after which everything is a positional value).
fn insert_before_escape(mut argv: Vec<OsString>, extra: Vec<OsString>) -> Vec<OsString> {
    let at = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    argv.splice(at..at, extra);
    argv
}

/// One key of the file, as the arguments it stands for.
#[derive(Debug, PartialEq)]
struct Setting {
    id: String,
    args: Vec<OsString>,
}

/// Every key of `text` checked against `command`'s long flags; all the
/// problems, each at its place (source index 0).
fn settings(command: &clap::Command, text: &str) -> Result<Vec<Setting>, Vec<Diagnostic>> {
    let doc = DeTable::parse(text).map_err(|err| {
        let span = err.span().unwrap_or(0..0);
        vec![Diagnostic::error(
            Kind::Syntax,
            format!("TOML syntax error: {}", err.message()),
        )
        .at(0, span)]
    })?;
    let mut keys = Vec::new();
    flatten(doc.get_ref(), "", &mut keys);
    let known: Vec<&str> = command
        .get_arguments()
        .filter(|a| in_file(a))
        .filter_map(Arg::get_long)
        .collect();
    let mut diags = Vec::new();
    let mut out = Vec::new();
    for (name, key_span, value) in keys {
        let arg = command
            .get_arguments()
            .find(|a| in_file(a) && a.get_long() == Some(name.as_str()));
        let Some(arg) = arg else {
            diags.push(unknown_key(&name, key_span, &known));
            continue;
        };
        match setting(arg, value) {
            Ok(s) => out.push(s),
            Err(d) => diags.push(d),
        }
    }
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(diags)
    }
}

/// Whether a flag can be set in the file: any long option but `--config`
/// and clap's own `--help` and `--version`.
fn in_file(arg: &Arg) -> bool {
    let id = arg.get_id().as_str();
    arg.get_long().is_some() && !matches!(id, CONFIG | "help" | "version")
}

type Val<'i> = Spanned<DeValue<'i>>;

/// The leaves of a table as dotted names (`web.listen-address`), with the
/// span of the key and the value.
fn flatten<'t, 'i>(
    table: &'t DeTable<'i>,
    prefix: &str,
    out: &mut Vec<(String, Range<usize>, &'t Val<'i>)>,
) {
    for (key, value) in table.iter() {
        let name = format!("{prefix}{}", key.get_ref());
        match value.get_ref() {
            DeValue::Table(inner) => flatten(inner, &format!("{name}."), out),
            _ => out.push((name, key.span(), value)),
        }
    }
}

fn unknown_key(name: &str, span: Range<usize>, known: &[&str]) -> Diagnostic {
    let d = Diagnostic::error(Kind::UnknownKey, format!("unknown setting `{name}`")).at(0, span);
    match suggest(name, known) {
        Some(s) => d.label(format!("did you mean `{s}`?")),
        None => d.note(format!("settings are the long flags: {}", known.join(", "))),
    }
}

/// What a flag's value is written as in TOML.
#[derive(Copy, Clone, Debug, PartialEq)]
enum Shape {
    /// A flag without a value: `true` or `false`.
    Switch,
    Integer,
    /// A string, or an integer of seconds.
    Duration,
    String,
}

impl Shape {
    fn of(arg: &Arg) -> Shape {
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            return Shape::Switch;
        }
        let ty = arg.get_value_parser().type_id();
        let integers = [
            TypeId::of::<u8>(),
            TypeId::of::<u16>(),
            TypeId::of::<u32>(),
            TypeId::of::<u64>(),
            TypeId::of::<usize>(),
            TypeId::of::<i64>(),
        ];
        if integers.iter().any(|t| ty == *t) {
            Shape::Integer
        } else if ty == TypeId::of::<Duration>() {
            Shape::Duration
        } else {
            Shape::String
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Shape::Switch => "a boolean",
            Shape::Integer => "an integer",
            Shape::Duration => "a duration string such as \"10s\" or an integer of seconds",
            Shape::String => "a string",
        }
    }

    /// The value's text for the flag's parser, if it has this shape.
    fn text(self, v: &DeValue<'_>) -> Option<String> {
        match (self, v) {
            (Shape::Integer | Shape::Duration, DeValue::Integer(i)) => Some(i.to_string()),
            (Shape::Duration | Shape::String, DeValue::String(s)) => Some(s.to_string()),
            _ => None,
        }
    }
}

fn setting(arg: &Arg, value: &Val<'_>) -> Result<Setting, Diagnostic> {
    let long = arg.get_long().unwrap_or_default();
    let shape = Shape::of(arg);
    let id = arg.get_id().to_string();
    let flag = format!("--{long}");
    if shape == Shape::Switch {
        return match value.get_ref() {
            DeValue::Boolean(on) => Ok(Setting {
                id,
                args: if *on { vec![flag.into()] } else { vec![] },
            }),
            _ => Err(wrong_type(long, value, shape.expected())),
        };
    }
    let repeated = matches!(arg.get_action(), ArgAction::Append);
    let items: Vec<&Val<'_>> = match (repeated, value.get_ref()) {
        (true, DeValue::Array(items)) => items.iter().collect(),
        (true, _) => {
            let what = format!("an array of {}s", shape.expected().trim_start_matches("a "));
            return Err(wrong_type(long, value, &what)
                .note(format!("e.g. {long} = [{}]", example(arg, shape))));
        }
        (false, _) => vec![value],
    };
    let mut args = Vec::new();
    for item in items {
        let text = shape
            .text(item.get_ref())
            .ok_or_else(|| wrong_type(long, item, shape.expected()))?;
        check_value(arg, &text).map_err(|why| {
            Diagnostic::error(Kind::BadValue, format!("invalid value for `{long}`"))
                .at(0, item.span())
                .label(why)
        })?;
        args.push(format!("{flag}={text}").into());
    }
    Ok(Setting { id, args })
}

fn wrong_type(long: &str, v: &Val<'_>, expected: &str) -> Diagnostic {
    Diagnostic::error(
        Kind::WrongType,
        format!(
            "`{long}` must be {expected}, found {}",
            v.get_ref().type_str()
        ),
    )
    .at(0, v.span())
}

fn example(arg: &Arg, shape: Shape) -> String {
    let name = arg
        .get_value_names()
        .and_then(|n| n.first())
        .map_or("VALUE".to_string(), |n| n.to_lowercase());
    match shape {
        Shape::Integer => "1".into(),
        _ => format!("\"{name}\""),
    }
}

/// Runs the flag's own value parser on `text` (a command of that one
/// flag parses `--flag=text`); `Err` says why it refuses.
fn check_value(arg: &Arg, text: &str) -> Result<(), String> {
    let long = arg.get_long().unwrap_or_default();
    let one = clap::Command::new("config")
        .no_binary_name(true)
        .disable_help_flag(true)
        .arg(arg.clone().required(false).global(false));
    match one.try_get_matches_from([format!("--{long}={text}")]) {
        Ok(_) => Ok(()),
        Err(err) => Err(refusal(&err)),
    }
}

/// The reason in a clap value error, without its usage text.
fn refusal(err: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    use std::error::Error as _;
    if let Some(source) = err.source() {
        return source.to_string();
    }
    if let Some(ContextValue::Strings(valid)) = err.get(ContextKind::ValidValue) {
        return format!("expected one of: {}", valid.join(", "));
    }
    let text = err.to_string();
    let first = text.lines().next().unwrap_or("invalid value");
    first.trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use egresswatch::policy::diag::SourceFile;
    use std::io::Write;

    fn capture_schema() -> clap::Command {
        let mut c = Cli::command();
        c.build();
        c.find_subcommand("capture").unwrap().clone()
    }

    fn rendered(text: &str) -> String {
        let diags = settings(&capture_schema(), text).unwrap_err();
        let source = SourceFile {
            name: "egresswatch.toml".into(),
            text: text.into(),
        };
        Diagnostics::new(diags, vec![source]).render()
    }

    fn parse(file: &str, args: &[&str]) -> crate::cli::CaptureArgs {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(file.as_bytes()).unwrap();
        let mut argv: Vec<OsString> = ["egresswatch", "capture", "--config"]
            .iter()
            .map(OsString::from)
            .collect();
        argv.push(f.path().into());
        argv.extend(args.iter().map(OsString::from));
        let merged = merged_args::<Cli>(argv).unwrap_or_else(|d| panic!("{d}"));
        match Cli::try_parse_from(merged).unwrap().command {
            Command::Capture(c) => c,
            other => panic!("{other:?}"),
        }
    }

    const FILE: &str = r#"
interface = ["eth1", "eth2"]
flow-capacity = 100000
no-promiscuous = true
immediate-mode = false
idle-timeout = ["udp=30"]
log-level = "info"
[web]
listen-address = "127.0.0.1:9000"
read-header-timeout = "5s"
write-timeout = 3
"#;

    #[test]
    fn the_file_sets_what_the_command_line_does_not() {
        let c = parse(FILE, &[]);
        assert_eq!(c.interfaces, ["eth1", "eth2"]);
        assert_eq!(c.analysis.flow_capacity, 100_000);
        assert!(c.no_promiscuous);
        assert!(!c.immediate_mode);
        assert_eq!(c.analysis.idle_timeouts, ["udp=30"]);
        assert_eq!(c.web_listen_address, "127.0.0.1:9000");
        assert_eq!(c.web_read_header_timeout, Duration::from_secs(5));
        assert_eq!(c.web_write_timeout, Duration::from_secs(3));
        // Untouched: the flag's default.
        assert_eq!(c.snaplen, 65_535);
    }

    #[test]
    fn flags_override_the_file_and_lists_are_replaced_whole() {
        let c = parse(
            FILE,
            &[
                "-i",
                "lo",
                "--flow-capacity=7",
                "--web.listen-address",
                "none",
            ],
        );
        assert_eq!(c.interfaces, ["lo"]);
        assert_eq!(c.analysis.flow_capacity, 7);
        assert_eq!(c.web_listen_address, "none");
        assert_eq!(c.web_write_timeout, Duration::from_secs(3));
    }

    #[test]
    fn global_flags_can_be_set_and_overridden() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"log-level = \"debug\"\ninterface = [\"lo\"]\n")
            .unwrap();
        let path = f.path().to_str().unwrap().to_string();
        let argv = |extra: &[&str]| -> Vec<OsString> {
            let mut v = vec!["egresswatch"];
            v.extend_from_slice(extra);
            v.extend(["capture", "--config", &path]);
            v.into_iter().map(OsString::from).collect()
        };
        let cli = Cli::try_parse_from(merged_args::<Cli>(argv(&[])).unwrap()).unwrap();
        assert_eq!(cli.log_level, "debug");
        let args = argv(&["--log-level", "trace"]);
        let cli = Cli::try_parse_from(merged_args::<Cli>(args).unwrap()).unwrap();
        assert_eq!(cli.log_level, "trace");
    }

    #[test]
    fn every_problem_is_reported_at_its_place() {
        let text = "flow-capacity = \"many\"\nsnaplenn = 10\ninterface = \"eth0\"\nlog-format = \"xml\"\n[web]\nlisten-adress = \"x\"\nwrite-timeout = \"10h\"\nno-promiscuous = true\n";
        let out = rendered(text);
        for want in [
            "error[wrong-type]: `flow-capacity` must be an integer, found string\n --> egresswatch.toml:1:17",
            "error[unknown-key]: unknown setting `snaplenn`\n --> egresswatch.toml:2:1",
            "did you mean `snaplen`?",
            "error[wrong-type]: `interface` must be an array of strings, found string\n --> egresswatch.toml:3:13",
            "error[bad-value]: invalid value for `log-format`\n --> egresswatch.toml:4:14",
            "expected one of: text, json",
            "error[unknown-key]: unknown setting `web.listen-adress`\n --> egresswatch.toml:6:1",
            "did you mean `web.listen-address`?",
            "error[bad-value]: invalid value for `web.write-timeout`\n --> egresswatch.toml:7:17",
            "unknown unit `h` (ms, s or m)",
            "error[unknown-key]: unknown setting `web.no-promiscuous`\n --> egresswatch.toml:8:1",
            "7 errors, 0 warnings",
        ] {
            assert!(out.contains(want), "missing {want:?} in:\n{out}");
        }
    }

    #[test]
    fn shapes_are_checked() {
        let out = rendered("interface = \"eth0\"\nimmediate-mode = \"yes\"\nsnaplen = 1.5\n");
        assert!(
            out.contains(
                "`interface` must be an array of strings, found string\n --> egresswatch.toml:1:13"
            ),
            "{out}"
        );
        assert!(out.contains("e.g. interface = [\"iface\"]"), "{out}");
        assert!(
            out.contains("`immediate-mode` must be a boolean, found string"),
            "{out}"
        );
        assert!(
            out.contains("`snaplen` must be an integer, found float"),
            "{out}"
        );
        let out = rendered("snaplen = 70000000000\n");
        assert!(out.contains("invalid value for `snaplen`"), "{out}");
        let out = rendered("web.max-connections = 0\n");
        assert!(
            out.contains("invalid value for `web.max-connections`"),
            "{out}"
        );
    }

    #[test]
    fn the_config_flag_itself_and_help_are_not_settings() {
        for key in ["config", "help", "version"] {
            let out = rendered(&format!("{key} = \"x\"\n"));
            assert!(out.contains(&format!("unknown setting `{key}`")), "{out}");
        }
    }

    #[test]
    fn syntax_errors_have_a_place() {
        let out = rendered("flow-capacity = 1\nflow-capacity = 2\n");
        assert!(out.contains("error[syntax]"), "{out}");
        assert!(out.contains("egresswatch.toml:2:1"), "{out}");
    }

    #[test]
    fn a_missing_file_is_an_error_and_no_config_changes_nothing() {
        let argv: Vec<OsString> = [
            "egresswatch",
            "capture",
            "-i",
            "lo",
            "--config",
            "/nonexistent/x.toml",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let err = merged_args::<Cli>(argv).unwrap_err().render();
        assert!(
            err.contains("error[io]: cannot read `/nonexistent/x.toml`"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut argv: Vec<OsString> = ["egresswatch", "capture", "--config"]
            .iter()
            .map(OsString::from)
            .collect();
        argv.push(dir.path().into());
        let err = merged_args::<Cli>(argv).unwrap_err().render();
        assert!(
            err.contains("is a directory, not a regular file") && !err.contains("rule"),
            "{err}"
        );
        let argv: Vec<OsString> = ["egresswatch", "capture", "-i", "lo"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(merged_args::<Cli>(argv.clone()).unwrap(), argv);
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let text = include_str!("../docs/egresswatch.toml.example");
        let c = parse(text, &[]);
        assert_eq!(c.interfaces, ["eth1"]);
        assert_eq!(c.web_listen_address, "127.0.0.1:8463");
        // Every key it shows, commented out or not, is a setting.
        let all: String = text
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|l| l.contains(" = "))
                    .unwrap_or(l)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        settings(&capture_schema(), &all).unwrap_or_else(|d| {
            let source = SourceFile {
                name: "example".into(),
                text: all.clone(),
            };
            panic!("{}", Diagnostics::new(d, vec![source]))
        });
    }

    #[test]
    fn settings_go_before_an_escape() {
        let argv: Vec<OsString> = ["a", "--", "b"].iter().map(OsString::from).collect();
        let got = insert_before_escape(argv, vec!["--x=1".into()]);
        assert_eq!(got, ["a", "--x=1", "--", "b"]);
    }
}
