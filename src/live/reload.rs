//! Hot reload: re-read the YAML and hand it to the live gateway's owner,
//! which swaps it in in one step.
//!
//! A file that does not validate changes nothing: the running config stays,
//! the errors are logged, returned to `POST /reload`, and counted in
//! `sluice_config_reloads_total{result="failed"}`. What a reload cannot
//! change in a running process (listeners, the admin address, Pingora's
//! server keys, the access log) is reported as needing an upgrade, and the
//! rest of the file still takes effect.
//!
//! The last few outcomes are kept (a fixed number, oldest dropped) for
//! `/status` and the dashboard, so an operator sees that the edit they just
//! made was refused, and why, without reading the log.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::owner::Live;
use crate::config::{self, ConfigError};
use crate::filters::Registry;
use crate::telemetry::metrics::Metrics;

pub struct Reloader {
    path: String,
    registry: Registry,
    live: Live,
    metrics: Arc<Metrics>,
    /// Pingora's server settings the process started with, to tell the
    /// operator when an edit needs an upgrade rather than a reload.
    server_yaml: String,
    /// What the process bound and opened at start. Compared with this, not
    /// with the previous reload's file: an edit a reload could not apply is
    /// still pending after a second reload, and an edit undone is not.
    started: Started,
    /// One reload at a time: SIGHUP and `/reload` may race.
    lock: Mutex<()>,
    history: Mutex<VecDeque<Record>>,
}

/// The parts of the config only a restart or upgrade applies.
struct Started {
    listeners: Vec<config::ListenerSpec>,
    admin: Option<config::AdminSpec>,
    access_log: Option<config::AccessLogSpec>,
    h2_max_streams: u32,
}

/// How many reload outcomes `/status` shows.
pub const HISTORY: usize = 10;

/// One reload's outcome, for `/status`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Record {
    /// Seconds since the Unix epoch.
    pub at: f64,
    /// `ok` or `failed`.
    pub result: &'static str,
    /// The first error of a failed reload (the log and `POST /reload` have all).
    pub error: Option<String>,
    pub errors: usize,
    pub needs_upgrade: Vec<String>,
}

/// What a successful reload did.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Edits that only take effect after an upgrade or restart.
    pub needs_upgrade: Vec<String>,
}

impl Reloader {
    pub fn new(
        path: String,
        registry: Registry,
        live: Live,
        metrics: Arc<Metrics>,
        server_yaml: String,
    ) -> Self {
        let running = live.load();
        let started = Started {
            listeners: running.config.listeners.clone(),
            admin: running.config.admin.clone(),
            access_log: running.config.access_log.clone(),
            h2_max_streams: running.config.h2_max_streams,
        };
        drop(running);
        Reloader {
            started,
            path,
            registry,
            live,
            metrics,
            server_yaml,
            lock: Mutex::new(()),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    /// The last reloads, newest first.
    pub fn history(&self) -> Vec<Record> {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.iter().rev().cloned().collect()
    }

    pub fn reload(&self) -> Result<ReloadReport, Vec<ConfigError>> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let result = self.reload_locked();
        let record = match &result {
            Ok(outcome) => Record {
                at: unix_now(),
                result: "ok",
                error: None,
                errors: 0,
                needs_upgrade: outcome.needs_upgrade.clone(),
            },
            Err(errors) => Record {
                at: unix_now(),
                result: "failed",
                error: errors.first().map(|e| e.to_string()),
                errors: errors.len(),
                needs_upgrade: Vec::new(),
            },
        };
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(record);
        result
    }

    fn reload_locked(&self) -> Result<ReloadReport, Vec<ConfigError>> {
        let loaded = match config::load_file(&self.path, &self.registry) {
            Ok(l) => l,
            Err(errors) => {
                self.metrics.reloads.with_label_values(&["failed"]).inc();
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
        let new = loaded.gateway;
        let mut outcome = ReloadReport::default();
        if new.listeners != self.started.listeners {
            outcome.needs_upgrade.push("listen".into());
        }
        if new.admin != self.started.admin {
            outcome.needs_upgrade.push("admin".into());
        }
        // Pingora takes its HTTP/2 server settings once, with the listeners.
        if new.h2_max_streams != self.started.h2_max_streams {
            outcome.needs_upgrade.push("h2_max_streams".into());
        }
        if new.access_log != self.started.access_log {
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
        // The owner resolves the names this file adds before it goes live.
        if let Err(e) = self.live.install(new) {
            self.metrics.reloads.with_label_values(&["failed"]).inc();
            log::error!("reload of {} not applied: {e}", self.path);
            return Err(vec![ConfigError {
                path: String::new(),
                message: e.to_string(),
            }]);
        }
        self.metrics.reloads.with_label_values(&["ok"]).inc();
        log::info!("reloaded {}", self.path);
        Ok(outcome)
    }
}

fn unix_now() -> f64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    (secs * 1000.0).round() / 1000.0
}
