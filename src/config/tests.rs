//! Tests of the settings: defaults, layers, values and errors. The table in docs/settings.md is
//! checked against the declarations by tests/it/docs.rs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;

fn layers(env: &[(&str, &str)]) -> Layers {
    Layers {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Layers::default()
    }
}

#[test]
fn defaults_match_the_spec() {
    let s = Settings::default();
    assert_eq!(s.redis.host, "localhost");
    assert_eq!(s.redis.port, 6379);
    assert_eq!(s.worker_channel, "redis.lib.server.lobby");
    assert!(s.clean_routine);
    assert_eq!(s.logger_module, LoggerModule::Default);
    assert_eq!(s.websocket_port, 5678);
    assert_eq!(s.lobby_timeout, Duration::from_secs(5));
    assert_eq!(s.turn_timeout, Duration::from_secs(10));
    assert_eq!(s.max_turns, 1000);
    assert_eq!(s.client_games, Some(10));
    assert_eq!(
        s.output_dir,
        crate::config::OutputDir::Folder(PathBuf::from("./data"))
    );
    assert_eq!(s.ack_timeout, Duration::from_secs(30));
    assert_eq!(s.worker_id.len(), 12);
    assert!(s.metrics_addr.is_none());
    assert_eq!(s.max_connections, 1024);
    assert_eq!(s.idle_timeout, Duration::from_secs(30));
}

#[test]
fn connection_limits_must_be_positive() {
    let s = Settings::from_layers(layers(&[
        ("MAX_CONNECTIONS", "50"),
        ("IDLE_TIMEOUT", "1.5"),
    ]))
    .unwrap();
    assert_eq!(s.max_connections, 50);
    assert_eq!(s.idle_timeout, Duration::from_millis(1500));
    for (name, bad) in [
        ("MAX_CONNECTIONS", "0"),
        ("MAX_CONNECTIONS", "-1"),
        ("MAX_CONNECTIONS", "many"),
        ("MAX_CONNECTIONS", "99999999999"),
        ("IDLE_TIMEOUT", "0"),
        ("IDLE_TIMEOUT", "-1"),
        ("IDLE_TIMEOUT", "soon"),
    ] {
        let err = Settings::from_layers(layers(&[(name, bad)])).unwrap_err();
        assert!(err.to_string().contains(name), "{name}={bad}: {err}");
    }
}

#[test]
fn settings_that_cannot_work_are_refused_naming_the_variable() {
    for (env, name) in [
        (&[("ACK_TIMEOUT", "0")][..], "ACK_TIMEOUT"),
        (&[("ACK_TIMEOUT", "0.5")][..], "ACK_TIMEOUT"),
        (&[("WRITE_TIMEOUT", "30")][..], "WRITE_TIMEOUT"),
        (
            &[("ACK_TIMEOUT", "5"), ("WRITE_TIMEOUT", "6")][..],
            "WRITE_TIMEOUT",
        ),
        (&[("WRITE_TIMEOUT", "0")][..], "WRITE_TIMEOUT"),
        (&[("MAX_DELIVERIES", "0")][..], "MAX_DELIVERIES"),
        (&[("MAX_TURNS", "0")][..], "MAX_TURNS"),
        (&[("DEAD_LETTERS_MAX", "0")][..], "DEAD_LETTERS_MAX"),
        (&[("REDIS_DB", "-1")][..], "REDIS_DB"),
        (
            &[("REDIS_CLUSTER_NODES", "127.0.0.1")][..],
            "REDIS_CLUSTER_NODES",
        ),
        (
            &[("REDIS_CLUSTER_NODES", "a:7000,,b:7001")][..],
            "REDIS_CLUSTER_NODES",
        ),
        (
            &[("REDIS_CLUSTER_NODES", "a:70000")][..],
            "REDIS_CLUSTER_NODES",
        ),
        (
            &[("REDIS_CLUSTER_NODES", "redis://a:7000")][..],
            "REDIS_CLUSTER_NODES",
        ),
        (
            &[("REDIS_CLUSTER_NODES", "a:7000"), ("REDIS_DB", "2")][..],
            "REDIS_DB",
        ),
        (
            &[("REDIS_URL", "http://:hunter2@example/0")][..],
            "REDIS_URL",
        ),
        (&[("WAIT_REPLICAS", "-1")][..], "WAIT_REPLICAS"),
        (&[("WAIT_REPLICAS", "one")][..], "WAIT_REPLICAS"),
        (&[("WAIT_MS", "0")][..], "WAIT_MS"),
        (&[("WAIT_MS", "60001")][..], "WAIT_MS"),
        (&[("WAIT_MS", "0.5")][..], "WAIT_MS"),
        // At or above the lease: 5 s, or ACK_TIMEOUT / 2 when shorter.
        (&[("WAIT_MS", "5000")][..], "WAIT_MS"),
        (&[("ACK_TIMEOUT", "2"), ("WAIT_MS", "1000")][..], "WAIT_MS"),
    ] {
        let err = Settings::from_layers(layers(env)).unwrap_err().to_string();
        assert!(err.contains(&format!("error: {name}: ")), "{env:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    // Unset, WRITE_TIMEOUT follows ACK_TIMEOUT.
    let s = Settings::from_layers(layers(&[("ACK_TIMEOUT", "4")])).unwrap();
    assert_eq!(s.write_timeout, Duration::from_secs(2));
    let s =
        Settings::from_layers(layers(&[("ACK_TIMEOUT", "4"), ("WRITE_TIMEOUT", "3.5")])).unwrap();
    assert_eq!(s.write_timeout, Duration::from_millis(3500));
    // WAIT is off unless asked for; WAIT_MS is whole milliseconds below the lease.
    let s = Settings::from_layers(layers(&[])).unwrap();
    assert_eq!(
        (s.wait_replicas, s.wait_ms),
        (0, Duration::from_millis(100))
    );
    let s = Settings::from_layers(layers(&[("WAIT_REPLICAS", "2"), ("WAIT_MS", "4999")])).unwrap();
    assert_eq!(
        (s.wait_replicas, s.wait_ms),
        (2, Duration::from_millis(4999))
    );
}

#[test]
fn bad_port_names_the_variable() {
    let err = Settings::from_layers(layers(&[("REDIS_PORT", "abc")])).unwrap_err();
    assert!(err.to_string().contains("REDIS_PORT"), "{err}");
}

#[test]
fn booleans_accept_python_spellings() {
    for (text, want) in [("False", false), ("TRUE", true), ("1", true), ("no", false)] {
        let s = Settings::from_layers(layers(&[("CLEAN_ROUTINE", text)])).unwrap();
        assert_eq!(s.clean_routine, want, "{text}");
    }
    assert!(Settings::from_layers(layers(&[("CLEAN_ROUTINE", "maybe")])).is_err());
}

#[test]
fn levels_map_python_names() {
    assert_eq!(parse_level("warning"), Some(tracing::Level::WARN));
    assert_eq!(parse_level("CRITICAL"), Some(tracing::Level::ERROR));
    assert_eq!(parse_level("loud"), None);
}

#[test]
fn precedence_is_file_dotenv_env_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "redis_host = \"from-file\"\nREDIS_PORT = 1111\nREDIS_DB = 3\nMAX_TURNS = 7\n",
    )
    .unwrap();
    let mut l = layers(&[("REDIS_PORT", "3333"), ("MAX_TURNS", "9")]);
    l.config_file = Some(file);
    l.dotenv.insert("REDIS_PORT".into(), "2222".into());
    l.dotenv.insert("REDIS_DB".into(), "4".into());
    l.flags.insert("MAX_TURNS".into(), "11".into());
    let s = Settings::from_layers(l).unwrap();
    assert_eq!(s.redis.host, "from-file");
    assert_eq!(s.redis.db, 4);
    assert_eq!(s.redis.port, 3333);
    assert_eq!(s.max_turns, 11);
}

#[test]
fn client_games_minus_one_is_unlimited() {
    let s = Settings::from_layers(layers(&[("CLIENT_GAMES", "-1")])).unwrap();
    assert_eq!(s.client_games, None);
    assert!(Settings::from_layers(layers(&[("CLIENT_GAMES", "-2")])).is_err());
}

#[test]
fn password_is_masked_in_the_description() {
    let s = Settings::from_layers(layers(&[
        ("REDIS_PASSWORD", "hunter2"),
        ("REDIS_URL", "redis://:hunter2@example:6379/0"),
    ]))
    .unwrap();
    assert!(!s.describe().contains("hunter2"), "{}", s.describe());
    assert!(!s.redis.display_addr().contains("hunter2"));
}

#[test]
fn worker_ids_are_restricted() {
    assert!(validate_worker_id("worker-1.a_b").is_ok());
    for bad in ["", "../x", "a/b", ".hidden", "a b"] {
        assert!(validate_worker_id(bad).is_err(), "{bad}");
    }
}

fn one(layer: fn(&mut Layers) -> &mut BTreeMap<String, String>, var: &str, value: &str) -> Layers {
    let mut l = Layers::default();
    layer(&mut l).insert(var.into(), value.into());
    l
}

#[test]
fn a_bad_value_names_its_variable_and_its_layer() {
    let err = Settings::from_layers(one(|l| &mut l.env, "REDIS_PORT", "abc")).unwrap_err();
    let err = err.to_string();
    assert!(err.contains("REDIS_PORT: invalid value \"abc\""), "{err}");
    assert!(
        err.contains("(from environment variable REDIS_PORT)"),
        "{err}"
    );

    let mut l = one(|l| &mut l.dotenv, "CLEAN_ROUTINE", "perhaps");
    l.dotenv_file = Some(PathBuf::from("/srv/app/.env"));
    let err = Settings::from_layers(l).unwrap_err().to_string();
    assert!(
        err.contains("CLEAN_ROUTINE: invalid value \"perhaps\""),
        "{err}"
    );
    assert!(err.contains("(from .env file /srv/app/.env)"), "{err}");

    let err = Settings::from_layers(one(|l| &mut l.flags, "LOBBY_TIMEOUT", "soon"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("LOBBY_TIMEOUT: invalid value \"soon\""),
        "{err}"
    );
    assert!(
        err.contains("(from command-line flag --lobby-timeout)"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "log_level = \"LOUD\"\nREDIS_PORT = 70000\n").unwrap();
    let l = Layers {
        config_file: Some(file.clone()),
        ..Layers::default()
    };
    let err = Settings::from_layers(l).unwrap_err().to_string();
    assert!(err.contains("TOML file"), "{err}");
    assert!(err.contains("c.toml"), "{err}");
    assert!(
        err.contains("LOG_LEVEL") || err.contains("REDIS_PORT"),
        "{err}"
    );
}

#[test]
fn a_broken_rule_names_the_layer_too() {
    let err = Settings::from_layers(one(|l| &mut l.flags, "MAX_TURNS", "0"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("MAX_TURNS: invalid value \"0\""), "{err}");
    assert!(
        err.contains("(from command-line flag --max-turns)"),
        "{err}"
    );
    let err = Settings::from_layers(one(|l| &mut l.env, "HOSTNAME", "a/b"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("HOSTNAME: invalid worker id"), "{err}");
    assert!(
        err.contains("(from environment variable HOSTNAME)"),
        "{err}"
    );
    let err = Settings::from_layers(one(|l| &mut l.dotenv, "REDIS_DB", "-1"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("REDIS_DB") && err.contains(".env file"),
        "{err}"
    );
}

#[test]
fn digits_stay_text_where_text_is_meant() {
    for layer in [
        (|l: &mut Layers| &mut l.env) as fn(&mut Layers) -> &mut BTreeMap<String, String>,
        |l| &mut l.dotenv,
        |l| &mut l.flags,
    ] {
        let mut l = one(layer, "REDIS_PASSWORD", "0012345");
        layer(&mut l).insert("HOSTNAME".into(), "1234".into());
        layer(&mut l).insert("REDIS_HOST".into(), "true".into());
        let s = Settings::from_layers(l).unwrap();
        assert_eq!(s.redis.password.as_deref(), Some("0012345"));
        assert_eq!(s.worker_id, "1234");
        assert_eq!(s.redis.host, "true");
    }
    // A TOML number or boolean where text is meant is taken as its text too.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "REDIS_PASSWORD = 12345\nhostname = 42\n").unwrap();
    let s = Settings::from_layers(Layers {
        config_file: Some(file),
        ..Layers::default()
    })
    .unwrap();
    assert_eq!(s.redis.password.as_deref(), Some("12345"));
    assert_eq!(s.worker_id, "42");
}

#[test]
fn toml_values_keep_their_types_and_rules() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "CLEAN_ROUTINE = false\nserver_sleep = 0.25\nCLIENT_GAMES = -1\nlog_level = \"warning\"\n\
         METRICS_ADDR = \"127.0.0.1:9100\"\n",
    )
    .unwrap();
    let s = Settings::from_layers(Layers {
        config_file: Some(file),
        ..Layers::default()
    })
    .unwrap();
    assert!(!s.clean_routine);
    assert_eq!(s.server_sleep, Duration::from_millis(250));
    assert_eq!(s.client_games, None);
    assert_eq!(s.log_level, tracing::Level::WARN);
    assert_eq!(s.metrics_addr, Some("127.0.0.1:9100".parse().unwrap()));
}

#[test]
fn an_empty_value_unsets_an_optional_setting_of_a_lower_layer() {
    let mut l = one(|l| &mut l.dotenv, "REDIS_PASSWORD", "secret");
    l.env.insert("REDIS_PASSWORD".into(), String::new());
    assert_eq!(Settings::from_layers(l).unwrap().redis.password, None);
    let err = Settings::from_layers(one(|l| &mut l.env, "REDIS_HOST", " "))
        .unwrap_err()
        .to_string();
    assert!(err.contains("REDIS_HOST: must not be empty"), "{err}");
}

#[test]
fn booleans_accept_on_and_off() {
    for (text, want) in [("On", true), ("OFF", false), ("Yes", true)] {
        let s = Settings::from_layers(layers(&[("CLEAN_ROUTINE", text)])).unwrap();
        assert_eq!(s.clean_routine, want, "{text}");
    }
}

#[test]
fn cluster_seeds_are_read_and_unset_means_one_redis() {
    let s = Settings::from_layers(layers(&[])).unwrap();
    assert!(!s.redis.is_cluster());
    assert_eq!(s.redis.display_addr(), "localhost:6379");
    let s = Settings::from_layers(layers(&[(
        "REDIS_CLUSTER_NODES",
        " 10.0.0.1:7000, redis-b:7001 ,[::1]:7002",
    )]))
    .unwrap();
    let seeds: Vec<String> = s
        .redis
        .cluster_nodes
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(seeds, ["10.0.0.1:7000", "redis-b:7001", "[::1]:7002"]);
    assert_eq!(s.redis.cluster_nodes[2].host, "::1");
    assert_eq!(
        s.redis.display_addr(),
        "cluster 10.0.0.1:7000,redis-b:7001,[::1]:7002"
    );
    let s = Settings::from_layers(layers(&[("REDIS_CLUSTER_NODES", "")])).unwrap();
    assert!(!s.redis.is_cluster());
}
