//! The admin CLI as a process, against an SQLite store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn admin(config: &Path, args: &[&str], password: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lifeline-broker"));
    command.arg("admin").arg("--config").arg(config).args(args).env_remove("LIFELINE_PASSWORD");
    if let Some(password) = password {
        command.env("LIFELINE_PASSWORD", password);
    }
    command.stdin(std::process::Stdio::null()).output().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn account_and_network_administration_from_the_command_line() {
    let dir = common::temp_dir("cli");
    let pki = common::pki_dir();
    let config = dir.join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nstore = \"sqlite:broker.db\"\n[tls]\ncert = \"{p}/broker.pem\"\n\
             key = \"{p}/broker.key\"\nca = \"{p}/ca.pem\"\n[tickets]\nsigning_key = \"{p}/ticket-signing.key\"\n",
            p = pki.display()
        ),
    )
    .unwrap();

    let weak = admin(&config, &["create-account", "--email", "ops@example.com", "--name", "Ops"], Some("password1"));
    assert_eq!(weak.status.code(), Some(1), "{}", text(&weak));
    assert!(text(&weak).contains("too common"));
    let created = admin(
        &config,
        &["create-account", "--email", "Ops@Example.com", "--name", "Ops", "--role", "account-admin"],
        Some(common::GOOD_PASSWORD),
    );
    assert!(created.status.success(), "{}", text(&created));
    let again =
        admin(&config, &["create-account", "--email", "ops@example.com", "--name", "Ops"], Some(common::GOOD_PASSWORD));
    assert!(!again.status.success());
    let listed = admin(&config, &["list-accounts"], None);
    let accounts: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(accounts[0]["email"], "ops@example.com");
    assert_eq!(accounts[0]["role"], "account_admin");
    assert!(accounts[0].get("password_hash").is_none(), "hashes are never printed");

    for args in [
        &["update-account", "--email", "ops@example.com", "--subscription", "enterprise"][..],
        &["unlock", "--email", "ops@example.com"],
        &["register-relay", "--name", "relay-a", "--address", "relay-a.example.net:8200"],
        &["rotate-relay-cert", "--name", "relay-a", "--cert", pki.join("relay-a.pem").to_str().unwrap()],
    ] {
        let output = admin(&config, args, None);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
    let relays: serde_json::Value = serde_json::from_slice(&admin(&config, &["list-relays"], None).stdout).unwrap();
    assert_eq!(relays[0]["name"], "relay-a");
    assert_eq!(relays[0]["cert_sha256"].as_str().unwrap().len(), 64);
    let audit = text(&admin(&config, &["audit", "--csv"], None));
    assert!(audit.starts_with("at,actor,source,action,target,outcome"));
    for action in ["account_create", "account_update", "account_unlock", "relay_register", "relay_cert_rotate"] {
        assert!(audit.contains(&format!("\"cli\",\"local\",\"{action}\"")), "{action} in {audit}");
    }
    let deleted = admin(&config, &["delete-account", "--email", "ops@example.com"], None);
    assert!(deleted.status.success());
    let missing = admin(&config, &["delete-relay", "--name", "nope"], None);
    assert_eq!(missing.status.code(), Some(1));
}
