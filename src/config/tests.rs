use std::collections::BTreeMap;

use clap::CommandFactory as _;

use super::*;

/// The settings whose values are secrets: hidden from `--help` and redacted in `Debug`.
const SECRETS: [&str; 6] = [
    "DATABASE_URL",
    "REDIS_URL",
    "TOKENWARDEN_KEYS",
    "TOKENWARDEN_BOOTSTRAP_ADMIN_KEY",
    "TIKTOK_CLIENT_SECRET",
    "INSTAGRAM_CLIENT_SECRET",
];

/// One row of `--help`: the section heading, the flag, the environment variable, the defaults.
struct Setting {
    heading: String,
    flag: String,
    env: String,
    defaults: Vec<String>,
    hidden_value: bool,
}

fn settings() -> Vec<Setting> {
    ConfigOnly::command()
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_str()?.to_owned();
            Some(Setting {
                heading: arg.get_help_heading().unwrap_or("Options").to_owned(),
                flag: format!("--{}", arg.get_long()?),
                env,
                defaults: arg
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect(),
                hidden_value: arg.is_hide_env_values_set(),
            })
        })
        .collect()
}

#[test]
fn every_setting_is_in_a_section_and_secrets_are_hidden() {
    let settings = settings();
    assert!(settings.len() > 40, "found {} settings", settings.len());
    for setting in &settings {
        assert_ne!(setting.heading, "Options", "{} has no section", setting.env);
        assert_eq!(
            setting.hidden_value,
            SECRETS.contains(&setting.env.as_str()),
            "{}: hide_env_values must be set exactly on secrets",
            setting.env
        );
    }
}

#[test]
fn debug_of_a_fully_populated_config_shows_no_secret() {
    // Every setting that takes free text gets a recognisable value; the others keep their
    // defaults. Then every non-secret value shows in `Debug` and no secret does.
    let mut args = vec!["tw".to_owned()];
    let mut values = Vec::new();
    for setting in settings() {
        let value = format!("value-of-{}", setting.env.to_lowercase());
        if Config::try_parse_from(["tw", &setting.flag, &value]).is_ok() {
            args.extend([setting.flag.clone(), value.clone()]);
            values.push((setting.env, value));
        }
    }
    assert!(
        values.iter().any(|(env, _)| env == "TIKTOK_CLIENT_KEY"),
        "free-text settings found: {values:?}"
    );
    let config = Config::try_parse_from(&args).expect("valid arguments");
    let shown = format!("{config:?}");
    for (env, value) in &values {
        if SECRETS.contains(&env.as_str()) {
            assert!(!shown.contains(value), "{env} leaked in {shown}");
        } else {
            assert!(shown.contains(value), "{env} is missing from {shown}");
        }
    }
    assert!(shown.contains("[REDACTED]"), "{shown}");

    // Passwords inside connection URLs are secrets too; the rest of the URL shows.
    let config = Config::try_parse_from([
        "tw",
        "--database-url",
        "postgres://u:dbpass@db.example/tw",
        "--redis-url",
        "redis://:redispass@redis.example:6379",
    ])
    .expect("valid arguments");
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("dbpass") && !shown.contains("redispass"),
        "{shown}"
    );
    assert!(
        shown.contains("db.example") && shown.contains("redis.example"),
        "{shown}"
    );
}

/// The settings tables of docs/configuration.md: environment variable → (section, flag,
/// default cell). A flag of `—` marks a variable that is not a flag (`RUST_LOG`).
fn documented() -> BTreeMap<String, (String, String, String)> {
    let doc = include_str!("../../docs/configuration.md");
    let mut rows = BTreeMap::new();
    let mut section = String::new();
    for line in doc.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading.trim().to_owned();
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| env | flag | default | meaning |` splits into six cells, empty at both ends.
        if cells.len() < 6 || !cells[1].starts_with('`') {
            continue;
        }
        let env = cells[1].trim_matches('`').to_owned();
        let flag = cells[2].trim_matches('`').to_owned();
        let previous = rows.insert(env.clone(), (section.clone(), flag, cells[3].to_owned()));
        assert!(previous.is_none(), "{env} is documented twice");
    }
    rows
}

#[test]
fn docs_configuration_md_lists_exactly_the_settings_of_help() {
    let documented = documented();
    let settings = settings();
    for setting in &settings {
        let Some((section, flag, default)) = documented.get(&setting.env) else {
            panic!(
                "{} ({}) is in --help but not in docs/configuration.md",
                setting.env, setting.flag
            );
        };
        assert_eq!(
            section, &setting.heading,
            "{}: docs/configuration.md section vs --help heading",
            setting.env
        );
        assert_eq!(flag, &setting.flag, "{}: documented flag", setting.env);
        for value in &setting.defaults {
            assert!(
                default.contains(&format!("`{value}`")),
                "{}: the documented default {default:?} does not name `{value}`",
                setting.env
            );
        }
    }
    for (env, (_, flag, _)) in &documented {
        let in_help = settings.iter().any(|s| &s.env == env);
        if flag == "—" {
            assert!(!in_help, "{env} is a flag now: document it as one");
        } else {
            assert!(in_help, "{env} is documented but not in --help");
        }
    }
}

#[test]
fn sqlite_path_is_read_from_the_url() {
    let config = Config::try_parse_from(["tw", "--database-url", "sqlite://data/tw.db?mode=rwc"])
        .expect("valid");
    assert_eq!(
        config.database.sqlite_path(),
        Some(PathBuf::from("data/tw.db"))
    );
    let config =
        Config::try_parse_from(["tw", "--database-url", "postgres://h/db"]).expect("valid");
    assert_eq!(config.database.sqlite_path(), None);
}

#[test]
fn production_disables_introspection_and_graphiql() {
    let config = Config::try_parse_from(["tw", "--production", "true"]).expect("valid");
    assert!(!config.introspection_enabled());
    assert!(!config.graphiql_enabled());
    let config = Config::try_parse_from(["tw", "--listen", "127.0.0.1:9000"]).expect("valid");
    assert!(config.introspection_enabled());
    assert_eq!(config.public_url(), "http://127.0.0.1:9000");
}
