//! Where `batch-analyze` runs its queries: the embedded DataFusion, or an Apache DataFusion
//! Ballista cluster (`engine: { cluster: df://HOST:PORT }` in the YAML, `--cluster` on the
//! command line).

/// Where a run's queries execute.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum QueryEngine {
    /// DataFusion in this process (the default).
    #[default]
    Embedded,
    /// A Ballista scheduler and executor started inside this process: the cluster's
    /// planning and serialization without a cluster (tests, trying a pipeline out).
    Standalone,
    /// A Ballista scheduler at `host:port`.
    Cluster { host: String, port: u16 },
}

/// Ballista's scheduler port when a URL names none.
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

impl QueryEngine {
    /// `df://HOST[:PORT]` or `standalone`.
    pub fn parse(text: &str) -> Result<QueryEngine, String> {
        if text == "standalone" {
            return Ok(QueryEngine::Standalone);
        }
        let Some(rest) = text.strip_prefix("df://") else {
            return Err(format!(
                "`{text}`: a cluster is `df://HOST:PORT` (a Ballista scheduler) or `standalone`"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("`{text}`: `{p}` is not a port"))?;
                (h, port)
            }
            None => (rest, DEFAULT_SCHEDULER_PORT),
        };
        if host.is_empty() || host.contains('/') {
            return Err(format!("`{text}`: no scheduler host"));
        }
        Ok(QueryEngine::Cluster {
            host: host.to_string(),
            port,
        })
    }

    pub fn is_embedded(&self) -> bool {
        *self == QueryEngine::Embedded
    }
}

impl std::fmt::Display for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryEngine::Embedded => f.write_str("embedded"),
            QueryEngine::Standalone => f.write_str("standalone"),
            QueryEngine::Cluster { host, port } => write!(f, "df://{host}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_urls() {
        assert_eq!(
            QueryEngine::parse("df://127.0.0.1:50050").unwrap(),
            QueryEngine::Cluster {
                host: "127.0.0.1".into(),
                port: 50050
            }
        );
        assert_eq!(
            QueryEngine::parse("df://sched.internal")
                .unwrap()
                .to_string(),
            "df://sched.internal:50050"
        );
        assert_eq!(
            QueryEngine::parse("standalone").unwrap(),
            QueryEngine::Standalone
        );
        for bad in ["http://x:1", "df://:80", "df://x:port", "df://x:70000", "x"] {
            assert!(QueryEngine::parse(bad).is_err(), "{bad}");
        }
    }
}
