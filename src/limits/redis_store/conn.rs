//! Connections to a single Redis or to a Redis Cluster, behind one type.
//!
//! A single node gets a few [`ConnectionManager`]s: each is one multiplexed,
//! pipelined connection shared by every request (Redis answers in order, so
//! concurrent decisions queue on the wire, not on a pool), and reconnects by
//! itself. A cluster gets redis-rs's async cluster connection, which keeps one
//! multiplexed connection per node and follows `MOVED`/`ASK`.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use super::spec::RedisNodes;

/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1))
        .set_number_of_retries(2)
}

/// A connection to a single node that connects on first use, driven by the
/// runtime this is called on.
pub fn lazy_single(url: &str) -> RedisResult<Conn> {
    let client = redis::Client::open(url)?;
    Ok(Conn::Single(ConnectionManager::new_lazy_with_config(
        client,
        manager_config(),
    )?))
}

/// Opens the connections; fails if the first cannot be had.
pub async fn connect(nodes: &RedisNodes, connections: usize) -> RedisResult<Vec<Conn>> {
    match nodes {
        RedisNodes::Single(url) => {
            let mut out = Vec::with_capacity(connections);
            for _ in 0..connections.max(1) {
                let client = redis::Client::open(url.as_str())?;
                out.push(Conn::Single(
                    ConnectionManager::new_with_config(client, manager_config()).await?,
                ));
            }
            Ok(out)
        }
        RedisNodes::Cluster(urls) => {
            let client = ClusterClientBuilder::new(urls.clone())
                .connection_timeout(CONNECT_TIMEOUT)
                .retries(1)
                .build()?;
            Ok(vec![Conn::Cluster(client.get_async_connection().await?)])
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
