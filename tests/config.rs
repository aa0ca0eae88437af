//! `pulpish serve --config`: every setting from a TOML file, precedence flags > environment >
//! file > defaults, refusals that name the key, secrets from files, and a real server run from
//! a file alone.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::replica::{wait_exit, Replica};
use support::Backend;

/// `pulpish` in `dir` with none of the caller's PULPISH_* variables.
fn pulpish(dir: &Path) -> Command {
    let mut cmd = support::replica::pulpish();
    cmd.current_dir(dir);
    cmd
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn outcome(cmd: &mut Command) -> Outcome {
    let out = cmd.output().expect("run pulpish");
    Outcome { code: out.status.code(), stdout: String::from_utf8_lossy(&out.stdout).into(), stderr: String::from_utf8_lossy(&out.stderr).into() }
}

/// A scratch directory with `pulpish.toml` holding `toml`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(toml: &str) -> Self {
        let setup = Setup { dir: tempfile::tempdir().unwrap() };
        std::fs::write(setup.config(), toml).unwrap();
        setup
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("pulpish.toml")
    }

    /// A file named `name` in the scratch directory holding `text`.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// `serve --config pulpish.toml --check-config` with `env` and the extra `args`.
    fn check(&self, env: &[(&str, &str)], args: &[&str]) -> Outcome {
        let mut cmd = pulpish(self.dir.path());
        cmd.args(["serve", "--check-config", "--config"]).arg(self.config()).args(args).envs(env.iter().copied());
        outcome(&mut cmd)
    }

    /// The effective settings, which must have been accepted.
    fn effective(&self, env: &[(&str, &str)], args: &[&str]) -> toml::Table {
        let out = self.check(env, args);
        assert_eq!(out.code, Some(0), "refused:\n{}", out.stderr);
        out.stdout.parse().unwrap_or_else(|e| panic!("--check-config printed no TOML: {e}\n{}", out.stdout))
    }

    /// The refusal of these settings: exit code 2 before anything started, stderr's text.
    fn refused(&self, env: &[(&str, &str)], args: &[&str]) -> String {
        let out = self.check(env, args);
        assert_eq!(out.code, Some(2), "not refused; stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
        assert!(out.stdout.is_empty(), "{}", out.stdout);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        out.stderr
    }
}

const EVERY_SETTING: &str = r#"
bind = "127.0.0.1:4000"
data_dir = "/srv/pulpish"
database_url = "postgres://pulpish:db-secret@db.example/pulpish"
admin_password = "admin-secret"
workers = 5
log_format = "json"
upload_expiry = 600
shutdown_timeout = 12
metrics = "admin"
tls_cert = "/etc/pulpish/cert.pem"
tls_key = "/etc/pulpish/key.pem"
storage = "s3"
s3_endpoint = "http://127.0.0.1:3900"
s3_bucket = "artifacts"
s3_region = "garage"
s3_access_key_id = "GK123"
s3_secret_access_key = "s3-secret"
s3_prefix = "pulpish/"
s3_virtual_hosted = true
redirect_blobs = true
redirect_expiry = 60
advertise_url = "http://10.0.0.1:4000"
lease_seconds = 20
"#;

#[test]
fn every_setting_in_the_file_is_the_effective_setting() {
    let setup = Setup::new(EVERY_SETTING);
    let out = setup.check(&[], &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for secret in ["db-secret", "admin-secret", "s3-secret", "GK123"] {
        assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret), "{secret} printed:\n{}", out.stdout);
    }
    let effective: toml::Table = out.stdout.parse().unwrap();
    let mut expected: toml::Table = EVERY_SETTING.parse().unwrap();
    expected.insert("database_url".into(), "postgres://pulpish:<redacted>@db.example/pulpish".into());
    expected.insert("admin_password".into(), "<redacted>".into());
    expected.insert("s3_access_key_id".into(), "<redacted>".into());
    expected.insert("s3_secret_access_key".into(), "<redacted>".into());
    // A serve setting added later shows up here with its default until this test sets it.
    for (key, value) in &effective {
        assert_eq!(Some(value), expected.get(key), "`{key}` in the effective settings:\n{}", out.stdout);
    }
    for key in expected.keys() {
        assert!(effective.contains_key(key), "`{key}` missing from the effective settings:\n{}", out.stdout);
    }
}

#[test]
fn without_a_file_the_effective_settings_are_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let out = outcome(pulpish(dir.path()).args(["serve", "--check-config"]));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let effective: toml::Table = out.stdout.parse().unwrap();
    assert_eq!(effective["bind"].as_str(), Some("127.0.0.1:24817"));
    assert_eq!(effective["data_dir"].as_str(), Some("./data"));
    assert_eq!(effective["workers"].as_integer(), Some(2));
    assert_eq!(effective["s3_virtual_hosted"].as_bool(), Some(false));
    assert!(out.stdout.contains("# database_url: not set"), "{}", out.stdout);
    assert!(!effective.contains_key("admin_password"));
    assert!(!dir.path().join("data").exists(), "--check-config created the data dir");
}

#[test]
fn flags_beat_the_environment_which_beats_the_file_which_beats_the_defaults() {
    let setup = Setup::new("workers = 3\ns3_virtual_hosted = true\nlease_seconds = 30\n");
    let workers = |env: &[(&str, &str)], args: &[&str]| setup.effective(env, args)["workers"].as_integer();
    assert_eq!(workers(&[("PULPISH_WORKERS", "5")], &["--workers", "7"]), Some(7));
    assert_eq!(workers(&[("PULPISH_WORKERS", "5")], &[]), Some(5));
    assert_eq!(workers(&[], &[]), Some(3));

    let effective = setup.effective(&[("PULPISH_S3_VIRTUAL_HOSTED", "false")], &[]);
    assert_eq!(effective["s3_virtual_hosted"].as_bool(), Some(false), "the environment's false beats the file's true");
    assert_eq!(effective["lease_seconds"].as_integer(), Some(30));
    assert_eq!(effective["redirect_expiry"].as_integer(), Some(300), "unset everywhere: the default");

    // PULPISH_CONFIG names the file as --config does.
    let mut cmd = pulpish(setup.dir.path());
    let out = outcome(cmd.args(["serve", "--check-config"]).env("PULPISH_CONFIG", setup.config()));
    assert_eq!(out.stdout.parse::<toml::Table>().unwrap()["workers"].as_integer(), Some(3), "{}", out.stderr);
}

#[test]
fn secrets_come_from_files_at_every_level() {
    let setup = Setup::new("");
    let id_file = setup.file("key-id", "GK-from-a-file\n");
    let secret_file = setup.file("secret", "s3-secret-from-a-file\n");
    let url_file = setup.file("url", "postgres://pulpish:url-secret@db.example/pulpish\n");
    let password_file = setup.file("password", "admin-secret\r\n");
    std::fs::write(
        setup.config(),
        format!(
            "s3_access_key_id_file = {id_file:?}\ns3_secret_access_key_file = {secret_file:?}\ndatabase_url_file = {url_file:?}\nadmin_password_file = {password_file:?}\n"
        ),
    )
    .unwrap();
    let out = setup.check(&[], &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for secret in ["GK-from-a-file", "s3-secret-from-a-file", "url-secret", "admin-secret"] {
        assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret), "{secret} printed:\n{}", out.stdout);
    }
    let effective: toml::Table = out.stdout.parse().unwrap();
    assert_eq!(effective["s3_access_key_id"].as_str(), Some("<redacted>"), "a setting with a *_file twin is a secret");
    assert_eq!(effective["s3_secret_access_key"].as_str(), Some("<redacted>"));
    assert_eq!(effective["admin_password"].as_str(), Some("<redacted>"));
    let url = effective["database_url"].as_str();
    assert_eq!(url, Some("postgres://pulpish:<redacted>@db.example/pulpish"), "the trailing newline is trimmed");
    assert!(!effective.keys().any(|k| k.ends_with("_file")), "a *_file shows as its secret:\n{}", out.stdout);

    // A secret and its file are one setting: the higher level wins, whichever spelling it uses.
    // (database_url shows where it points, so the winner can be seen.)
    let env_file = setup.file("env-url", "postgres://pulpish@env-file.example/pulpish");
    let url = |env: &[(&str, &str)], args: &[&str]| setup.effective(env, args)["database_url"].as_str().map(String::from);
    let (from_env, from_flag) = ("postgres://pulpish@env.example/pulpish", "postgres://pulpish@flag.example/pulpish");
    assert_eq!(url(&[("PULPISH_DATABASE_URL", from_env)], &[]).as_deref(), Some(from_env));
    assert_eq!(url(&[("PULPISH_DATABASE_URL_FILE", &env_file)], &[]).as_deref(), Some("postgres://pulpish@env-file.example/pulpish"));
    assert_eq!(url(&[("PULPISH_DATABASE_URL_FILE", &env_file)], &["--database-url", from_flag]).as_deref(), Some(from_flag));
    assert_eq!(
        url(&[("PULPISH_DATABASE_URL", from_env)], &["--database-url-file", &env_file]).as_deref(),
        Some("postgres://pulpish@env-file.example/pulpish")
    );
}

#[test]
fn passwords_in_database_urls_are_redacted_wherever_they_are() {
    let setup = Setup::new("");
    let cases = [
        ("postgres://pulpish:hunter2@db.example/pulpish", "postgres://pulpish:<redacted>@db.example/pulpish"),
        (
            "postgresql://pulpish@db.example/pulpish?sslmode=require&password=hunter2",
            "postgresql://pulpish@db.example/pulpish?sslmode=require&password=<redacted>",
        ),
        (
            "postgres://pulpish:hunter2@db.example:5433/pulpish?sslpassword=hunter2&PASSWORD=hunter2&application_name=pulpish",
            "postgres://pulpish:<redacted>@db.example:5433/pulpish?sslpassword=<redacted>&PASSWORD=<redacted>&application_name=pulpish",
        ),
        ("postgres://pulpish@db.example/pulpish?pass%77ord=hunter2", "postgres://pulpish@db.example/pulpish?pass%77ord=<redacted>"),
        // libpq's keyword form is no URL: nothing of it can be shown.
        ("host=db.example user=pulpish password=hunter2", "<redacted>"),
    ];
    for (url, shown) in cases {
        for (env, args) in [(vec![("PULPISH_DATABASE_URL", url)], vec![]), (vec![], vec!["--database-url", url])] {
            let out = setup.check(&env, &args);
            assert_eq!(out.code, Some(0), "{}", out.stderr);
            assert!(!out.stdout.contains("hunter2") && !out.stderr.contains("hunter2"), "a password printed:\n{}", out.stdout);
            let effective: toml::Table = out.stdout.parse().unwrap();
            assert_eq!(effective["database_url"].as_str(), Some(shown), "{url}");
        }
    }
}

#[test]
fn serve_help_does_not_show_secrets_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        ("PULPISH_DATABASE_URL", "postgres://pulpish:hunter2@db.example/pulpish"),
        ("PULPISH_ADMIN_PASSWORD", "hunter3"),
        ("PULPISH_S3_ACCESS_KEY_ID", "GK-hunter4"),
        ("PULPISH_S3_SECRET_ACCESS_KEY", "hunter5"),
    ];
    let out = outcome(pulpish(dir.path()).args(["serve", "--help"]).envs(secrets).env("PULPISH_S3_BUCKET", "a-visible-bucket"));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // clap shows the environment's values: a non-secret one is there.
    assert!(out.stdout.contains("PULPISH_S3_BUCKET=a-visible-bucket"), "{}", out.stdout);
    for (name, value) in secrets {
        assert!(out.stdout.contains(name), "{name} is not in the help:\n{}", out.stdout);
        assert!(!out.stdout.contains(value) && !out.stderr.contains(value), "{name}'s value printed:\n{}", out.stdout);
    }
}

#[test]
fn refusals_do_not_print_secrets() {
    let refusal = |toml: &str| {
        let setup = Setup::new(toml);
        let err = setup.refused(&[], &[]);
        assert!(err.contains(&setup.config().display().to_string()), "the file is not named: {err}");
        assert!(!err.contains("hunter2"), "a secret printed: {err}");
        err
    };
    // toml's own message quotes the line it stopped on.
    let err = refusal("workers = 2\nadmin_password = \"hunter2\n");
    assert!(err.contains("is not valid TOML: line 2, column "), "{err}");
    let err = refusal("s3_secret_access_key = hunter2\n");
    assert!(err.contains("is not valid TOML: line 1, column "), "{err}");
    let err = refusal("database_url = \"postgres://pulpish:hunter2@db/pulpish\" hunter2\n");
    assert!(err.contains("is not valid TOML: line 1, column "), "{err}");
    // A value of the wrong type is described, not quoted.
    let err = refusal("admin_password = 987654321\n");
    assert!(err.contains("`admin_password`: expected a string, found integer") && !err.contains("987654321"), "{err}");
    let err = refusal("s3_access_key_id = 271828.5\n");
    assert!(err.contains("`s3_access_key_id`: expected a string, found float") && !err.contains("271828"), "{err}");
    // A non-secret value is still quoted: the refusal says what was wrong.
    let err = refusal("data_dir = 5\n");
    assert!(err.contains("found integer 5"), "{err}");
}

/// `serve` with the data dir in `dir` refused: exit code 2, no data dir, stderr's text.
fn serve_refused(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let data = dir.join("data");
    let mut cmd = pulpish(dir);
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"]).arg(&data).args(args).envs(env.iter().copied());
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(60)).expect("pulpish serve with refused settings kept running");
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!data.exists(), "a data dir was created: {err}");
    err
}

#[test]
fn numbers_out_of_range_and_oversized_files_are_refused_before_anything_starts() {
    let setup = Setup::new("");
    let config = setup.config().display().to_string();
    let from_file = |toml: &str| {
        std::fs::write(setup.config(), toml).unwrap();
        serve_refused(setup.dir.path(), &[], &["--config", &config])
    };
    let err = from_file("workers = 100000\n");
    assert!(err.contains(&format!("{config}: `workers`")) && err.contains("0..=64"), "{err}");
    let err = from_file("upload_expiry = 0\n");
    assert!(err.contains(&format!("{config}: `upload_expiry`")) && err.contains("1..=31536000"), "{err}");
    let err = from_file("upload_expiry = 9223372036854775807\n");
    assert!(err.contains("`upload_expiry`") && err.contains("1..=31536000"), "{err}");

    let err = serve_refused(setup.dir.path(), &[], &["--workers", "100000"]);
    assert!(err.contains("--workers") && err.contains("0..=64"), "{err}");
    let err = serve_refused(setup.dir.path(), &[("PULPISH_UPLOAD_EXPIRY", "18446744073709551615")], &[]);
    assert!(err.contains("--upload-expiry"), "{err}");

    // A device or a huge file in place of a configuration or a secret file.
    let err = serve_refused(setup.dir.path(), &[], &["--config", "/dev/zero"]);
    assert!(err.contains("the configuration file /dev/zero is larger than 1 MiB"), "{err}");
    let big = setup.file("big.toml", &format!("# {}\n", "x".repeat(2 * 1024 * 1024)));
    let err = serve_refused(setup.dir.path(), &[], &["--config", &big]);
    assert!(err.contains(&format!("the configuration file {big} is larger than 1 MiB")), "{err}");
    let err = serve_refused(setup.dir.path(), &[], &["--admin-password-file", "/dev/zero"]);
    assert!(err.contains("`admin_password_file`: cannot read /dev/zero: the file is larger than 64 KiB"), "{err}");
    std::fs::write(setup.config(), "s3_secret_access_key_file = \"/dev/zero\"\n").unwrap();
    let err = serve_refused(setup.dir.path(), &[], &["--config", &config]);
    assert!(err.contains("`s3_secret_access_key_file`: cannot read /dev/zero: the file is larger than 64 KiB"), "{err}");

    // The ends of the ranges are accepted; 0 workers is a replica that only serves.
    std::fs::write(setup.config(), "workers = 0\nupload_expiry = 1\n").unwrap();
    let effective = setup.effective(&[], &[]);
    assert_eq!((effective["workers"].as_integer(), effective["upload_expiry"].as_integer()), (Some(0), Some(1)));
    let effective = setup.effective(&[], &["--workers", "64", "--upload-expiry", "31536000"]);
    assert_eq!((effective["workers"].as_integer(), effective["upload_expiry"].as_integer()), (Some(64), Some(31_536_000)));
    let secret = setup.file("a-long-password", &"p".repeat(64 * 1024));
    assert_eq!(setup.check(&[], &["--admin-password-file", &secret]).code, Some(0), "a 64 KiB secret file is refused");
}

#[test]
fn a_secret_and_its_file_at_one_level_are_refused() {
    let setup = Setup::new("");
    let password_file = setup.file("password", "from-a-file\n");
    std::fs::write(setup.config(), format!("admin_password = \"pw\"\nadmin_password_file = {password_file:?}\n")).unwrap();
    let err = setup.refused(&[], &[]);
    assert!(err.contains("`admin_password` and `admin_password_file` are both set in") && err.contains("pulpish.toml"), "{err}");

    std::fs::write(setup.config(), "").unwrap();
    let err = setup.refused(&[], &["--admin-password", "pw", "--admin-password-file", &password_file]);
    assert!(err.contains("are both set on the command line"), "{err}");
    let err = setup.refused(&[("PULPISH_ADMIN_PASSWORD", "pw"), ("PULPISH_ADMIN_PASSWORD_FILE", &password_file)], &[]);
    assert!(err.contains("PULPISH_ADMIN_PASSWORD and PULPISH_ADMIN_PASSWORD_FILE"), "{err}");
    assert!(!err.contains("from-a-file"), "{err}");
}

#[test]
fn unreadable_or_empty_secret_files_are_refused_by_name() {
    let setup = Setup::new("");
    let empty = setup.file("empty", "\n");
    let err = setup.refused(&[], &["--s3-secret-access-key-file", &empty]);
    assert!(err.contains("`s3_secret_access_key_file`") && err.contains(&empty) && err.contains("empty"), "{err}");
    let missing = setup.dir.path().join("missing").display().to_string();
    let err = setup.refused(&[("PULPISH_DATABASE_URL_FILE", &missing)], &[]);
    assert!(err.contains("`database_url_file`") && err.contains(&missing), "{err}");
}

#[test]
fn unknown_keys_and_wrong_values_are_refused_naming_the_key() {
    let refusal = |toml: &str| {
        let setup = Setup::new(toml);
        let err = setup.refused(&[], &[]);
        assert!(err.contains(&setup.config().display().to_string()), "the file is not named: {err}");
        err
    };
    let err = refusal("colour = \"blue\"\n");
    assert!(err.contains("unknown key `colour`"), "{err}");
    let err = refusal("data-dir = \"/srv\"\n");
    assert!(err.contains("unknown key `data-dir`") && err.contains("`data_dir`"), "{err}");
    let err = refusal("[storage]\ns3_bucket = \"x\"\n");
    assert!(err.contains("`storage`") && err.contains("a table"), "{err}");
    let err = refusal("workers = \"many\"\n");
    assert!(err.contains("`workers`: expected an integer, found string"), "{err}");
    let err = refusal("s3_virtual_hosted = \"yes\"\n");
    assert!(err.contains("`s3_virtual_hosted`: expected true or false"), "{err}");
    let err = refusal("data_dir = 5\n");
    assert!(err.contains("`data_dir`: expected a string, found integer 5"), "{err}");
    // Values clap refuses on the command line are refused from the file, with the key named.
    let err = refusal("shutdown_timeout = 99999\n");
    assert!(err.contains("`shutdown_timeout`") && err.contains("99999") && err.contains("0..=3600"), "{err}");
    let err = refusal("metrics = \"everyone\"\n");
    assert!(err.contains("`metrics`") && err.contains("public, admin, off"), "{err}");
    let err = refusal("bind = \"nowhere\"\n");
    assert!(err.contains("`bind`") && err.contains("'nowhere'"), "{err}");
    let err = refusal("workers = \n");
    assert!(err.contains("is not valid TOML") && err.contains("line 1"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.toml");
    let out = outcome(pulpish(dir.path()).args(["serve", "--check-config", "--config"]).arg(&missing));
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains(&format!("cannot read the configuration file {}", missing.display())), "{}", out.stderr);
}

#[test]
fn a_refused_file_starts_nothing() {
    let setup = Setup::new("");
    let data = setup.dir.path().join("data-from-file");
    std::fs::write(setup.config(), format!("data_dir = {:?}\nbind = \"127.0.0.1:0\"\nworkres = 4\n", data.display().to_string())).unwrap();
    let mut child = pulpish(setup.dir.path()).arg("serve").arg("--config").arg(setup.config()).stderr(Stdio::piped()).spawn().unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30)).expect("pulpish serve with a refused file kept running");
    assert_eq!(status.code(), Some(2));
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("unknown key `workres`"), "{err}");
    assert!(!data.exists() && !setup.dir.path().join("data").exists(), "a data dir was created");
}

/// `pulpish serve --config FILE` with nothing else: the file alone says where it listens, where
/// its data lives, which database it uses and the admin password (from a secret file).
async fn a_server_runs_from_its_config_file(backend: Backend) {
    let setup = Setup::new("");
    let port = support::free_port();
    let data = setup.dir.path().join("store");
    let password_file = setup.file("admin-password", "from-a-file\n");
    let mut toml = format!(
        "bind = \"127.0.0.1:{port}\"\ndata_dir = {:?}\nadmin_password_file = {password_file:?}\nworkers = 1\nlog_format = \"json\"\n",
        data.display().to_string()
    );
    let database_url = (backend == Backend::Postgres).then(|| support::fresh_database(backend, setup.dir.path()));
    if let Some(url) = &database_url {
        let url_file = setup.file("database-url", &format!("{url}\n"));
        toml.push_str(&format!("database_url_file = {url_file:?}\n"));
    }
    std::fs::write(setup.config(), toml).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let mut cmd = pulpish(elsewhere.path());
    cmd.arg("serve").arg("--config").arg(setup.config());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut serve = Replica::spawn(cmd, elsewhere, format!("127.0.0.1:{port}"), "http", &client).await;
    let base = serve.base.clone();
    let repositories = format!("{base}/pulp/api/v3/repositories/container/container/");
    let as_admin = |password: &'static str| client.get(&repositories).basic_auth("admin", Some(password)).send();
    assert_eq!(as_admin("from-a-file").await.unwrap().status(), 200, "the password from admin_password_file");
    assert_eq!(as_admin("from-a-file\n").await.unwrap().status(), 401, "the file's newline is not part of the password");

    match &database_url {
        None => assert!(data.join("pulpish.db").exists(), "the SQLite database lives in the file's data_dir"),
        Some(url) => {
            assert!(!data.join("pulpish.db").exists(), "database_url_file was ignored");
            let db = pulpish_server::db::Db::connect(url).unwrap();
            let mut conn = db.get().unwrap();
            let hash = pulpish_server::models::admin::password_hash(&mut conn, pulpish_server::models::admin::ADMIN).unwrap();
            assert!(hash.is_some(), "the admin account is in the database from database_url_file");
        }
    }
    assert!(!serve.data.path().join("data").exists(), "the default ./data was used");

    serve.kill();
    let logs = serve.log();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no logs");
    for line in lines {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "log_format = \"json\" from the file, yet: {line}");
    }
}

on_databases!(a_server_runs_from_its_config_file);

/// docs/operations.md's reference lists every setting of `serve --help` with its variable.
#[test]
fn the_operations_guide_lists_every_setting() {
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md")).unwrap();
    let start = docs.find("## Configuration file").expect("a Configuration file section");
    let section = &docs[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];
    let flags = |args: &[&str]| -> Vec<String> {
        let help = outcome(pulpish(Path::new(".")).args(args)).stdout;
        let lines = help.lines().map(str::trim_start).filter(|l| l.starts_with("--"));
        lines.map(|l| l[2..].split([' ', '=']).next().unwrap().to_string()).collect()
    };
    // serve's own flags: not the global ones (`--server`, `--format`, ...) every command has.
    let global = flags(&["--help"]);
    let mut checked = 0;
    for long in flags(&["serve", "--help"]) {
        if global.contains(&long) || ["config", "check-config"].contains(&long.as_str()) {
            continue;
        }
        let key = long.replace('-', "_");
        let env = format!("PULPISH_{}", key.to_uppercase());
        assert!(section.contains(&format!("| `{key}` | `{env}` |")), "docs/operations.md has no row for `{key}` (`{env}`)");
        checked += 1;
    }
    assert!(checked >= 20, "read only {checked} settings from `pulpish serve --help`");
}
