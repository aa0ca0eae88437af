//! The `--config` file and the `*_file` secrets. What the flags and the environment leave unset
//! is taken from them and handed to clap as extra arguments, so every value meets the same
//! parser and range check as on the command line, and a flag added to `Config` is a file key
//! without more code.

use std::any::TypeId;
use std::cmp::Ordering;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::error::ContextKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Args};

use super::Config;

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("the configuration file {} is larger than {limit}", path.display())]
    TooLarge { path: PathBuf, limit: &'static str },
    #[error("{} is not valid TOML: line {line}, column {column}: {reason}", path.display())]
    Syntax { path: PathBuf, line: usize, column: usize, reason: String },
    #[error("{}: unknown key `{key}`{hint}", path.display())]
    UnknownKey { path: PathBuf, key: String, hint: String },
    #[error("{}: `{key}`: {message}", path.display())]
    Invalid { path: PathBuf, key: String, message: String },
    #[error("`{key}` and `{key}_file` are both set {place}; set one of them")]
    SecretTwice { key: String, place: String },
    #[error("`{key}_file`: cannot read {}: {reason}", path.display())]
    SecretFile { key: String, path: PathBuf, reason: String },
}

/// The settings `serve` reads: `Config`'s arguments.
pub(super) fn settings() -> clap::Command {
    Config::augment_args(clap::Command::new("serve"))
}

/// A setting's key in the file: its long flag with `_` for `-`.
pub(super) fn key_of(arg: &Arg) -> Option<String> {
    arg.get_long().map(|long| long.replace('-', "_"))
}

/// `X_file` names the file that holds the secret X.
pub(super) fn secret_of_file<'a>(settings: &'a clap::Command, key: &str) -> Option<&'a Arg> {
    let secret = key.strip_suffix("_file")?;
    settings.get_arguments().find(|a| key_of(a).as_deref() == Some(secret))
}

/// A secret's value is never printed: the settings whose environment value `--help` hides and
/// those that can be read from a `*_file`.
pub(super) fn is_secret(settings: &clap::Command, arg: &Arg) -> bool {
    let twin = key_of(arg).map(|key| format!("{key}_file"));
    arg.is_hide_env_values_set() || settings.get_arguments().any(|a| key_of(a).is_some() && key_of(a) == twin)
}

/// What a setting's value is in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A flag without a value (`--s3-virtual-hosted`): `true` or `false`.
    Switch,
    Boolean,
    Integer,
    /// Strings, paths, addresses and the named choices (`log_format = "json"`).
    Text,
}

pub(super) fn kind(arg: &Arg) -> Kind {
    if !arg.get_action().takes_values() {
        return Kind::Switch;
    }
    let parsed = arg.get_value_parser().type_id();
    let integers = [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i8>(),
        TypeId::of::<i16>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
        TypeId::of::<isize>(),
    ];
    if integers.into_iter().any(|t| parsed == t) {
        Kind::Integer
    } else if parsed == TypeId::of::<bool>() {
        Kind::Boolean
    } else {
        Kind::Text
    }
}

/// Where a setting's value comes from, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Default,
    File,
    Environment,
    CommandLine,
}

/// What the `--config` file and the `*_file` secrets add below the flags and the environment.
#[derive(Debug, Default)]
pub struct FileLayer {
    path: PathBuf,
    /// `--flag=value` arguments to parse after the command line.
    args: Vec<OsString>,
    /// Keys whose value comes from the file, to name them when clap refuses the value.
    keys: Vec<String>,
}

impl FileLayer {
    /// Reads the `--config` file at `path` (if any) and the secret files, for the `serve`
    /// arguments `given` on the command line and in the environment.
    pub fn read(given: &ArgMatches, path: Option<&Path>) -> Result<Self, ConfigFileError> {
        let settings = settings();
        let table = match path {
            Some(path) => read_table(path)?,
            None => toml::Table::new(),
        };
        let path = path.map(Path::to_path_buf).unwrap_or_default();

        let mut from_file = Vec::new();
        for (key, value) in &table {
            let arg = settings.get_arguments().find(|a| key_of(a).as_deref() == Some(key)).ok_or_else(|| unknown_key(&path, key))?;
            let args = file_args(arg, value, is_secret(&settings, arg)).map_err(|message| ConfigFileError::Invalid { path: path.clone(), key: key.clone(), message })?;
            from_file.push((arg, key.clone(), args));
        }
        let level = |arg: &Arg| match given.value_source(arg.get_id().as_str()) {
            Some(ValueSource::CommandLine) => Level::CommandLine,
            Some(ValueSource::EnvVariable) => Level::Environment,
            _ if key_of(arg).is_some_and(|k| table.contains_key(&k)) => Level::File,
            _ => Level::Default,
        };

        // A secret and its file are one setting spelled two ways: the higher level wins.
        let mut secrets = Vec::new();
        let mut overridden = Vec::new();
        for file_arg in settings.get_arguments() {
            let Some(file_key) = key_of(file_arg) else { continue };
            let Some(secret) = secret_of_file(&settings, &file_key) else { continue };
            let secret_key = key_of(secret).unwrap_or_default();
            match level(secret).cmp(&level(file_arg)) {
                Ordering::Equal if level(secret) == Level::Default => {}
                Ordering::Equal => {
                    let place = match level(secret) {
                        Level::CommandLine => "on the command line".to_string(),
                        Level::Environment => format!("in the environment ({})", env_names(secret, file_arg)),
                        _ => format!("in {}", path.display()),
                    };
                    return Err(ConfigFileError::SecretTwice { key: secret_key, place });
                }
                Ordering::Greater => overridden.push(file_key),
                Ordering::Less => {
                    let secret_path = match level(file_arg) {
                        Level::File => table.get(&file_key).and_then(toml::Value::as_str).map(PathBuf::from),
                        _ => given.get_raw(file_arg.get_id().as_str()).and_then(|mut v| v.next()).map(PathBuf::from),
                    };
                    let secret_path = secret_path.unwrap_or_default();
                    let value = read_secret(&secret_path).map_err(|reason| ConfigFileError::SecretFile { key: secret_key.clone(), path: secret_path, reason })?;
                    let mut arg = OsString::from(format!("--{}=", secret.get_long().unwrap_or_default()));
                    arg.push(value);
                    secrets.push(arg);
                    overridden.push(secret_key);
                }
            }
        }

        let mut layer = FileLayer { path, ..FileLayer::default() };
        for (arg, key, args) in from_file {
            if level(arg) == Level::File && !overridden.contains(&key) {
                layer.args.extend(args);
                layer.keys.push(key);
            }
        }
        layer.args.extend(secrets);
        Ok(layer)
    }

    /// Arguments to parse after the command line's.
    pub fn args(&self) -> impl Iterator<Item = OsString> + '_ {
        self.args.iter().cloned()
    }

    /// The file's key when clap refused a value that came from the file.
    pub fn explain(&self, error: &clap::Error) -> Option<ConfigFileError> {
        let refused = error.get(ContextKind::InvalidArg)?.to_string();
        let flag = refused.split([' ', '=']).next()?;
        let key = flag.strip_prefix("--")?.replace('-', "_");
        if !self.keys.contains(&key) {
            return None;
        }
        let settings = settings();
        if settings.get_arguments().any(|a| key_of(a).as_deref() == Some(key.as_str()) && is_secret(&settings, a)) {
            // clap's words quote the value.
            let message = "invalid value (the value of a secret is not shown)".to_string();
            return Some(ConfigFileError::Invalid { path: self.path.clone(), key, message });
        }
        // clap's own words without its "error: " prefix and the usage that follows.
        let text = error.to_string();
        let text = text.strip_prefix("error: ").unwrap_or(&text);
        let message = text.split("\n\n").next().unwrap_or_default().replace("\n  ", " ");
        Some(ConfigFileError::Invalid { path: self.path.clone(), key, message })
    }
}

/// A configuration file is a page of settings; a bigger one (a device, a log by mistake) is
/// refused before it is held in memory.
const CONFIG_LIMIT: (u64, &str) = (1024 * 1024, "1 MiB");
const SECRET_LIMIT: (u64, &str) = (64 * 1024, "64 KiB");

/// The file's bytes, or `None` when it holds more than `limit`.
fn read_at_most(path: &Path, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(limit + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigFileError> {
    let unreadable = |source| ConfigFileError::Unreadable { path: path.to_path_buf(), source };
    let bytes = read_at_most(path, CONFIG_LIMIT.0).map_err(unreadable)?;
    let bytes = bytes.ok_or(ConfigFileError::TooLarge { path: path.to_path_buf(), limit: CONFIG_LIMIT.1 })?;
    let text = String::from_utf8(bytes).map_err(|_| unreadable(std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text")))?;
    text.parse().map_err(|e: toml::de::Error| syntax_error(path, &text, &e))
}

/// Where the file stops being TOML and toml's short reason: its full text quotes the line,
/// which may be an `admin_password = "...` one.
fn syntax_error(path: &Path, text: &str, error: &toml::de::Error) -> ConfigFileError {
    let at = error.span().map_or(0, |span| span.start).min(text.len());
    let before = &text.as_bytes()[..at];
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    let reason = error.message().trim().replace('\n', "; ");
    ConfigFileError::Syntax { path: path.to_path_buf(), line, column, reason }
}

fn unknown_key(path: &Path, key: &str) -> ConfigFileError {
    let hint = if key.contains('-') {
        format!(" (keys are written with `_`: `{}`)", key.replace('-', "_"))
    } else {
        " (keys are the long flags of `pulpish serve --help` with `_` for `-`)".to_string()
    };
    ConfigFileError::UnknownKey { path: path.to_path_buf(), key: key.to_string(), hint }
}

/// The command-line arguments that say what `value` says for `arg`; a refusal quotes the value
/// unless it is a `secret`.
fn file_args(arg: &Arg, value: &toml::Value, secret: bool) -> Result<Vec<OsString>, String> {
    let long = arg.get_long().unwrap_or_default();
    let text = match (kind(arg), value) {
        // A switch is given or not: `--flag` says the opposite of its default.
        (Kind::Switch, toml::Value::Boolean(on)) => {
            let given = match arg.get_action() {
                clap::ArgAction::SetTrue => true,
                clap::ArgAction::SetFalse => false,
                _ => return Err("cannot be set in a file".to_string()),
            };
            return Ok(if *on == given { vec![format!("--{long}").into()] } else { Vec::new() });
        }
        (Kind::Boolean, toml::Value::Boolean(on)) => on.to_string(),
        (Kind::Switch | Kind::Boolean, _) => return Err(format!("expected true or false, found {}", describe(value, secret))),
        (Kind::Integer, toml::Value::Integer(n)) => n.to_string(),
        (Kind::Integer, _) => return Err(format!("expected an integer, found {}", describe(value, secret))),
        (Kind::Text, toml::Value::String(s)) => s.clone(),
        (Kind::Text, _) => return Err(format!("expected a string, found {}", describe(value, secret))),
    };
    Ok(vec![format!("--{long}={text}").into()])
}

fn describe(value: &toml::Value, secret: bool) -> String {
    match value {
        toml::Value::Table(_) => "a table".to_string(),
        toml::Value::Array(_) => "an array".to_string(),
        other if secret => format!("{} (the value of a secret is not shown)", other.type_str()),
        other => format!("{} {other}", other.type_str()),
    }
}

fn env_names(secret: &Arg, file: &Arg) -> String {
    let name = |a: &Arg| a.get_env().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{} and {}", name(secret), name(file))
}

/// A secret file's contents without the trailing newline editors and `echo` add.
fn read_secret(path: &Path) -> Result<String, String> {
    let bytes = read_at_most(path, SECRET_LIMIT.0).map_err(|e| e.to_string())?;
    let bytes = bytes.ok_or_else(|| format!("the file is larger than {}", SECRET_LIMIT.1))?;
    let text = String::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_string())?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err("the file is empty".to_string());
    }
    Ok(secret.to_string())
}
