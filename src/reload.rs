//! Hot reload: re-read the YAML and swap the live gateway in one step.
//!
//! A file that does not validate changes nothing: the running config stays,
//! the errors are logged, returned to `POST /reload`, and counted in
//! `sluice_config_reloads_total{result="failed"}`. What a reload cannot
//! change in a running process (listeners, the admin address, Pingora's
//! server keys, the access log) is reported as needing an upgrade, and the
//! rest of the file still takes effect.

use std::sync::{Arc, Mutex};

use crate::config::{self, ConfigError};
use crate::filters::Registry;
use crate::gateway::{Gateway, Shared};

pub struct Reloader {
    path: String,
    registry: Registry,
    shared: Arc<Shared>,
    /// Pingora's server settings the process started with, to tell the
    /// operator when an edit needs an upgrade rather than a reload.
    server_yaml: String,
    /// One reload at a time: SIGHUP and `/reload` may race.
    lock: Mutex<()>,
}

/// What a successful reload did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Edits that only take effect after an upgrade or restart.
    pub needs_upgrade: Vec<String>,
}

impl Reloader {
    pub fn new(path: String, registry: Registry, shared: Arc<Shared>, server_yaml: String) -> Self {
        Reloader {
            path,
            registry,
            shared,
            server_yaml,
            lock: Mutex::new(()),
        }
    }

    pub fn reload(&self) -> Result<Outcome, Vec<ConfigError>> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let loaded = match config::load_file(&self.path, &self.registry) {
            Ok(l) => l,
            Err(errors) => {
                self.shared
                    .metrics
                    .reloads
                    .with_label_values(&["failed"])
                    .inc();
                log::error!(
                    "reload of {} rejected, the running config stays: {}",
                    self.path,
                    errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                return Err(errors);
            }
        };
        let old = self.shared.load();
        let new = loaded.gateway;
        let mut outcome = Outcome::default();
        if new.listeners != old.config.listeners {
            outcome.needs_upgrade.push("listen".into());
        }
        if new.admin != old.config.admin {
            outcome.needs_upgrade.push("admin".into());
        }
        // Pingora takes its HTTP/2 server settings once, with the listeners.
        if new.h2_max_streams != old.config.h2_max_streams {
            outcome.needs_upgrade.push("h2_max_streams".into());
        }
        if new.access_log != old.config.access_log {
            outcome.needs_upgrade.push("access_log".into());
        }
        if loaded.server.to_yaml() != self.server_yaml {
            outcome.needs_upgrade.push("Pingora server settings".into());
        }
        for what in &outcome.needs_upgrade {
            log::warn!(
                "reload: the change to `{what}` takes effect at the next upgrade or restart"
            );
        }
        self.shared.store(Gateway::rebuild(
            new,
            Some(&old),
            self.shared.now_nanos(),
            &self.shared.metrics,
        ));
        self.shared.metrics.reloads.with_label_values(&["ok"]).inc();
        log::info!("reloaded {}", self.path);
        Ok(outcome)
    }
}
