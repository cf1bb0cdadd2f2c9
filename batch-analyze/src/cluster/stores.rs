//! How the processes of a cluster open the lake.
//!
//! A query names its files by URL (`file:///…`, `s3://bucket/…`); each process that runs a
//! task needs a store for that URL. Local lakes need nothing (a directory every executor
//! sees at the same path). For S3 the client sends the YAML's `lake.s3` settings (endpoint,
//! region, plain HTTP) with every query as [`LakeS3Options`], so executors reach the same
//! endpoint the client does; credentials never travel: each process takes them from its own
//! `AWS_*` variables, as `object_store` reads them.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::prelude::SessionConfig;
use object_store::ObjectStore;
use shared::config::S3Config;
use url::Url;

/// The `lake.s3` settings of the pipeline a query comes from, as session options
/// (`lake_s3.endpoint`, `lake_s3.region`, `lake_s3.allow_http`), which Ballista sends with
/// every task. Written by hand: DataFusion's `extensions_options!` lists its entries
/// without the prefix, and Ballista sends entries by their keys.
#[derive(Debug, Clone, Default)]
pub struct LakeS3Options(pub S3Config);

impl ConfigExtension for LakeS3Options {
    const PREFIX: &'static str = "lake_s3";
}

impl ExtensionOptions for LakeS3Options {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let s3 = &mut self.0;
        match key {
            "endpoint" => s3.endpoint = Some(value.to_string()),
            "region" => s3.region = Some(value.to_string()),
            "allow_http" => {
                let allow = value.parse().map_err(|_| {
                    DataFusionError::Configuration(format!(
                        "lake_s3.allow_http: `{value}` is not true or false"
                    ))
                })?;
                s3.allow_http = Some(allow);
            }
            _ => {
                return Err(DataFusionError::Configuration(format!(
                    "no option `{key}` in lake_s3 (endpoint, region, allow_http)"
                )));
            }
        }
        Ok(())
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        let s3 = &self.0;
        let entry = |key: &str, value: Option<String>, description| ConfigEntry {
            key: format!("{}.{key}", Self::PREFIX),
            value,
            description,
        };
        vec![
            entry("endpoint", s3.endpoint.clone(), "lake.s3.endpoint"),
            entry("region", s3.region.clone(), "lake.s3.region"),
            entry(
                "allow_http",
                s3.allow_http.map(|a| a.to_string()),
                "lake.s3.allow_http",
            ),
        ]
    }
}

impl LakeS3Options {
    /// The settings a session's options carry (none when it has no such extension).
    pub fn of(session: &SessionConfig) -> S3Config {
        let options = session.options().extensions.get::<LakeS3Options>();
        options.map(|o| o.0.clone()).unwrap_or_default()
    }
}

/// The object stores of a cluster process: the stores registered in it (local files; the
/// client's lake store in a standalone cluster), and S3 clients made the first time a task
/// reads a bucket, one per bucket and settings.
#[derive(Debug, Default)]
pub struct LakeStores {
    registered: DefaultObjectStoreRegistry,
    s3: RwLock<HashMap<(String, S3Config), Arc<dyn ObjectStore>>>,
}

impl LakeStores {
    /// The registry of one query's tasks: these stores, opening S3 with the query's settings.
    pub fn for_query(self: &Arc<Self>, session: &SessionConfig) -> QueryStores {
        QueryStores {
            stores: self.clone(),
            settings: LakeS3Options::of(session),
        }
    }

    fn get(&self, url: &Url, settings: &S3Config) -> Result<Arc<dyn ObjectStore>> {
        let found = self.registered.get_store(url);
        if found.is_ok() || url.scheme() != "s3" {
            return found;
        }
        let key = (
            url.host_str().unwrap_or_default().to_string(),
            settings.clone(),
        );
        if let Some(store) = self.s3.read().expect("not poisoned").get(&key) {
            return Ok(store.clone());
        }
        let store: Arc<dyn ObjectStore> = Arc::new(
            shared::lake::s3_store(&key.0, settings)
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
        );
        let mut s3 = self.s3.write().expect("not poisoned");
        Ok(s3.entry(key).or_insert(store).clone())
    }
}

impl ObjectStoreRegistry for LakeStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.registered.register_store(url, store)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.get(url, &S3Config::default())
    }
}

/// [`LakeStores`] as one query's tasks see them.
#[derive(Debug)]
pub struct QueryStores {
    stores: Arc<LakeStores>,
    settings: S3Config,
}

impl ObjectStoreRegistry for QueryStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.stores.register_store(url, store)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.stores.get(url, &self.settings)
    }
}

#[cfg(test)]
mod tests {
    use ballista_core::extension::SessionConfigHelperExt;
    use object_store::memory::InMemory;

    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn a_registered_store_comes_before_one_made_here() {
        let stores = LakeStores::default();
        let lake: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        stores.register_store(&url("s3://lake/"), lake.clone());
        let got = stores.get_store(&url("s3://lake/t/dt=2015-05-17/part-0.parquet"));
        assert!(Arc::ptr_eq(&got.unwrap(), &lake));

        // Another bucket: a client of its own, made once.
        let other = stores.get_store(&url("s3://other/a.parquet")).unwrap();
        assert!(!Arc::ptr_eq(&other, &lake));
        let again = stores.get_store(&url("s3://other/b.parquet")).unwrap();
        assert!(Arc::ptr_eq(&other, &again));

        // Local files need no registration.
        assert!(stores.get_store(&url("file:///tmp/lake/x")).is_ok());
    }

    #[test]
    fn the_yaml_s3_settings_reach_an_executor_through_the_task_options() {
        let yaml = S3Config {
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: Some("eu-west-3".into()),
            allow_http: Some(true),
        };
        let client = super::super::config().with_option_extension(LakeS3Options(yaml.clone()));
        // What Ballista does with them: key/value pairs, applied to the executor's own config.
        let pairs = client.to_key_value_pairs();
        let executor = super::super::config().update_from_key_value_pair(&pairs);
        assert_eq!(LakeS3Options::of(&executor), yaml);
        assert_eq!(
            LakeS3Options::of(&super::super::config()),
            S3Config::default()
        );

        // Two settings, two clients for one bucket.
        let stores = Arc::new(LakeStores::default());
        let a = stores.for_query(&executor).get_store(&url("s3://lake/x"));
        let b = stores
            .for_query(&super::super::config())
            .get_store(&url("s3://lake/x"));
        assert!(!Arc::ptr_eq(&a.unwrap(), &b.unwrap()));
    }
}
