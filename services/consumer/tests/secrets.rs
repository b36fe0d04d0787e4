//! Secrets planted through every way in (flags, environment, files, URLs) never come out again:
//! not in logs (at trace level, so dependencies' own lines count), `--help`, metrics or HTTP
//! answers, not in the error of a failed start either.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const DB_SECRET: &str = "Db@Sec:ret,7f3a";
const DB_SECRET_ENCODED: &str = "Db%40Sec%3Aret%2C7f3a";
const SASL_FLAG: &str = "FlagSasl-91c2";
const SSL_ENV: &str = "EnvSsl-44ab";
const SASL_FILE: &str = "FileSasl-77de";
const REGISTRY_ENV: &str = "RegEnv-3d9f";
const REGISTRY_URL_SECRET: &str = "RegUrl-5e6f";

fn psql(sql: &str) {
    let status = Command::new("runuser")
        .args([
            "-u",
            "postgres",
            "--",
            "psql",
            "-p",
            "5432",
            "-h",
            "/var/run/postgresql",
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-qAt", "-d", "postgres", "-c", sql])
        .status()
        .expect("psql as postgres (the native stack, as root)");
    assert!(status.success(), "psql: {sql}");
}

fn leaks(text: &str) -> Vec<&'static str> {
    [
        DB_SECRET,
        DB_SECRET_ENCODED,
        SASL_FLAG,
        SSL_ENV,
        SASL_FILE,
        REGISTRY_ENV,
        REGISTRY_URL_SECRET,
    ]
    .into_iter()
    .filter(|secret| text.contains(secret))
    .collect()
}

#[tokio::test]
async fn planted_secrets_never_reach_logs_help_metrics_or_http() {
    let topics = fresh_topics("secrets");
    generate(&topics, 3, 10, 31).await;
    let role = format!("secret_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    psql(&format!("CREATE ROLE {role} LOGIN PASSWORD '{DB_SECRET}'"));
    psql(&format!("CREATE DATABASE {role} OWNER {role}"));
    let database_url = format!("postgres://{role}:{DB_SECRET_ENCODED}@127.0.0.1:5432/{role}");
    let dir = std::env::temp_dir().join(&role);
    std::fs::create_dir_all(&dir).unwrap();
    let properties = dir.join("kafka.properties");
    std::fs::write(&properties, format!("sasl.password={SASL_FILE}\n")).unwrap();
    let registry = registry_url().replacen("://", &format!("://u:{REGISTRY_URL_SECRET}@"), 1);
    let port = free_port();
    let args = |registry: &str| -> Vec<String> {
        let mut args = ledger_args(&topics, &database_url, &dir.join("tuples"), &[]);
        let at = args.iter().position(|a| a == "127.0.0.1:0").unwrap();
        args[at] = format!("127.0.0.1:{port}");
        let at = args.iter().position(|a| a == "-s").unwrap();
        args[at + 1] = registry.to_owned();
        args.extend(
            [
                "--kafka-config",
                &format!("sasl.password={SASL_FLAG}"),
                "--kafka-config-file",
                &properties.display().to_string(),
                "--schema-registry-user",
                "u",
            ]
            .map(String::from),
        );
        args
    };
    let command = |args: Vec<String>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_consumer"));
        command
            .args(args)
            .env("KAFKA_CONFIG", format!("ssl.key.password={SSL_ENV}"))
            .env("SCHEMA_REGISTRY_PASSWORD", REGISTRY_ENV)
            .env("DATABASE_URL", &database_url)
            // Every dependency's own lines too (sqlx, sea-orm, rdkafka, hyper, reqwest): the
            // ones that echo connection parameters are debug and trace lines.
            .env("RUST_LOG", "trace")
            .env("LOG_FORMAT", "json");
        command
    };

    let log = dir.join("stderr");
    let mut child = Reaped(
        command(args(&registry))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let http = |path: &'static str| async move {
        let url = format!("http://127.0.0.1:{port}{path}");
        match reqwest::get(url).await {
            Ok(response) => (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            ),
            Err(_) => (0, String::new()),
        }
    };
    wait_until("the ledger is ready", Duration::from_secs(90), || async {
        http("/readyz").await.0 == 200
    })
    .await;
    let mut answers = String::new();
    for path in ["/metrics", "/readyz", "/healthz"] {
        answers.push_str(&http(path).await.1);
    }
    let signalled = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A start that fails (a wrong registry path) names the URL: without its password.
    let wrong = registry.replace("/apis/ccompat/v7", "/no/such/api");
    let failed = command(args(&wrong)).output().unwrap();
    assert!(
        !failed.status.success(),
        "a wrong registry URL fails the start"
    );
    let help = command(vec!["ledger".into(), "--help".into()])
        .output()
        .unwrap();

    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("ledger database ready"), "{logs}");
    assert!(
        logs.contains("\"level\":\"TRACE\"") && logs.contains("\"level\":\"DEBUG\""),
        "trace and debug lines (dependencies' included) are in the log under test"
    );
    let failure = String::from_utf8_lossy(&failed.stderr).into_owned();
    assert!(
        failure.contains("/no/such/api"),
        "the error names the URL: {failure}"
    );
    for (what, text) in [
        ("logs", logs),
        ("metrics and HTTP", answers),
        ("the failed start", failure),
        ("--help", String::from_utf8_lossy(&help.stdout).into_owned()),
    ] {
        assert_eq!(
            leaks(&text),
            Vec::<&str>::new(),
            "secrets in {what}:\n{text}"
        );
    }
    psql(&format!("DROP DATABASE IF EXISTS {role} WITH (FORCE)"));
    psql(&format!("DROP ROLE IF EXISTS {role}"));
}
