//! Filter kinds by name, and the built-in ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::headers::HeadersFilter;
use super::hook::Filter;
use super::request_id::RequestIdFilter;

/// Builds a filter from its YAML settings (the filter's mapping without `type`,
/// or `null` when a route names a filter kind directly).
pub type Factory = Arc<dyn Fn(&serde_yaml::Value) -> Result<Arc<dyn Filter>, String> + Send + Sync>;

/// Filter kinds by name. `Registry::builtin()` knows `request_id` and `headers`;
/// embedders add their own with [`Registry::register`].
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, Factory>,
}

impl Registry {
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn builtin() -> Self {
        let mut r = Self::empty();
        r.register("request_id", |settings| {
            RequestIdFilter::from_settings(settings).map(|f| Arc::new(f) as Arc<dyn Filter>)
        });
        r.register("headers", |settings| {
            HeadersFilter::from_settings(settings).map(|f| Arc::new(f) as Arc<dyn Filter>)
        });
        r
    }

    /// Adds (or replaces) a filter kind.
    pub fn register<F>(&mut self, kind: &str, factory: F)
    where
        F: Fn(&serde_yaml::Value) -> Result<Arc<dyn Filter>, String> + Send + Sync + 'static,
    {
        self.factories.insert(kind.to_string(), Arc::new(factory));
    }

    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    pub fn build(
        &self,
        kind: &str,
        settings: &serde_yaml::Value,
    ) -> Result<Arc<dyn Filter>, String> {
        match self.factories.get(kind) {
            Some(factory) => factory(settings),
            None => Err(format!(
                "unknown filter type `{kind}` (registered: {})",
                self.kinds().collect::<Vec<_>>().join(", ")
            )),
        }
    }

    pub fn contains(&self, kind: &str) -> bool {
        self.factories.contains_key(kind)
    }
}
