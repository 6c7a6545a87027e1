//! The running node: its shards and its streams by id, and the control
//! operations the API drives ([`NodeControl`]).
//!
//! The stream table is behind an async mutex: control calls are rare and
//! may wait for a stream task to answer, and holding the table across that
//! wait keeps a create and a delete of the same id from interleaving. The
//! data path never touches it.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Mutex;

use crate::config::{MAX_STREAMS, Mounts, StreamConfig, check_stream};
use crate::hub::Hub;
use crate::node::api::{
    HttpCounters, HttpTap, NodeControl, NodeError, Replaced, ShardStatus, StreamDef, StreamDetail, StreamState,
    StreamSummary,
};
use crate::node::directory::Directory;
use crate::node::stream::{StreamHandle, pick_shard, replace_plan};
use crate::shard::Shards;

/// The node.
pub struct Node {
    shards: Shards,
    mounts: Mounts,
    streams: Mutex<BTreeMap<String, StreamHandle>>,
    /// Each stream's hubs for HTTP-TS clients and for other streams' copy
    /// and mixer inputs, kept apart so that a reader never waits behind a
    /// control call holding `streams`.
    directory: Arc<Directory>,
}

impl Node {
    /// A node with no streams yet on `shards`; API-created file inputs
    /// resolve under `mounts`.
    pub fn new(shards: Shards, mounts: Mounts) -> Node {
        Node { shards, mounts, streams: Mutex::new(BTreeMap::new()), directory: Arc::default() }
    }

    /// Starts a checked stream (from the config file, or the demo).
    pub async fn add(&self, config: StreamConfig) -> Result<(), NodeError> {
        let mut streams = self.streams.lock().await;
        if streams.contains_key(&config.id) {
            return Err(NodeError::Exists(config.id));
        }
        if streams.len() >= MAX_STREAMS {
            return Err(NodeError::Limit(format!("the node runs {MAX_STREAMS} streams already")));
        }
        let shard = pick_shard(&self.counts(&streams));
        let id = config.id.clone();
        let handle = StreamHandle::start(&self.shards, shard, config, &self.directory).await?;
        self.set_tap(&id, Some(&handle));
        streams.insert(id, handle);
        Ok(())
    }

    /// Stops every stream, then the shards.
    pub async fn stop_all(&self) {
        let streams = std::mem::take(&mut *self.streams.lock().await);
        for (id, handle) in streams {
            self.set_tap(&id, None);
            handle.stop().await;
        }
    }

    /// Ends the shards (after [`Node::stop_all`]).
    pub fn shutdown(self) {
        self.shards.shutdown();
    }

    fn counts(&self, streams: &BTreeMap<String, StreamHandle>) -> Vec<usize> {
        let mut counts = vec![0; self.shards.len()];
        for handle in streams.values() {
            if let Some(n) = counts.get_mut(handle.shard) {
                *n += 1;
            }
        }
        counts
    }

    fn check(&self, id: &str, def: &StreamDef) -> Result<StreamConfig, NodeError> {
        check_stream(id, &def.inputs, &def.outputs, def.input_timeout, def.failback_after, &self.mounts)
            .map_err(NodeError::Invalid)
    }

    /// The stream's hub and its HTTP-TS counters.
    pub fn tap(&self, id: &str) -> Option<(Hub<Bytes>, HttpCounters)> {
        self.directory.tap(id)
    }

    /// The node's streams as their readers see them.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    fn set_tap(&self, id: &str, handle: Option<&StreamHandle>) {
        match handle {
            Some(handle) => {
                let (hub, http) = handle.tap();
                self.directory.insert(id, hub, http);
            }
            None => self.directory.remove(id),
        }
    }
}

impl NodeControl for Arc<Node> {
    async fn list(&self) -> Vec<StreamSummary> {
        let streams = self.streams.lock().await;
        let mut out = Vec::with_capacity(streams.len());
        for (id, handle) in streams.iter() {
            out.push(handle.summary().await.unwrap_or_else(|_| StreamSummary {
                id: id.clone(),
                state: StreamState::Finished,
                active_input: None,
                active_url: None,
                bitrate_bps: 0.0,
            }));
        }
        out
    }

    async fn detail(&self, id: &str) -> Result<StreamDetail, NodeError> {
        let streams = self.streams.lock().await;
        let handle = streams.get(id).ok_or_else(|| NodeError::NotFound(id.to_owned()))?;
        let mut detail = handle.detail().await?;
        detail.demux = self.directory.demux_counters(id);
        Ok(detail)
    }

    async fn snapshot(&self) -> (Vec<StreamDetail>, Vec<ShardStatus>) {
        let streams = self.streams.lock().await;
        let mut details = Vec::with_capacity(streams.len());
        let counts = self.counts(&streams);
        for handle in streams.values() {
            if let Ok(detail) = handle.detail().await {
                details.push(detail);
            }
        }
        let backend = self.shards.backend().name();
        let mut shards: Vec<ShardStatus> = (counts.iter().enumerate())
            .map(|(index, &n)| ShardStatus {
                index,
                backend,
                streams: n as u64,
                pool_in_use: 0,
                pool_fallbacks_total: 0,
                pool_drops_total: 0,
            })
            .collect();
        for detail in &details {
            if let Some(shard) = shards.get_mut(detail.shard) {
                shard.pool_in_use += detail.pool.in_use;
                shard.pool_fallbacks_total += detail.pool.fallbacks_total;
                shard.pool_drops_total += detail.pool.drops_total;
            }
        }
        (details, shards)
    }

    async fn create(&self, def: StreamDef) -> Result<StreamDetail, NodeError> {
        let id = def.id.clone().ok_or_else(|| NodeError::Invalid("the stream needs an \"id\"".into()))?;
        let config = self.check(&id, &def)?;
        self.add(config).await?;
        self.detail(&id).await
    }

    async fn replace(&self, id: &str, def: StreamDef) -> Result<Replaced, NodeError> {
        if let Some(body_id) = &def.id
            && body_id != id
        {
            return Err(NodeError::Invalid(format!("the body's id '{body_id}' is not the path's '{id}'")));
        }
        let config = self.check(id, &def)?;
        let mut streams = self.streams.lock().await;
        let Some(old) = streams.get_mut(id) else {
            drop(streams);
            self.add(config).await?;
            return Ok(Replaced::Created);
        };
        if old.config == config {
            return Ok(Replaced::Unchanged);
        }
        if let Some(plan) = replace_plan(&old.config, &config) {
            if !plan.inputs.is_empty() {
                old.edit_inputs(config.clone(), plan.inputs).await?;
            }
            if plan.outputs {
                old.replace_outputs(config).await?;
            }
            return Ok(if plan.outputs { Replaced::Outputs } else { Replaced::Inputs });
        }
        let shard = old.shard;
        // The directory keeps the id while the stream restarts, so its
        // copy and mixer readers see a restart (and reconnect), not an end.
        if let Some(old) = streams.remove(id) {
            old.stop().await;
        }
        let handle = match StreamHandle::start(&self.shards, shard, config, &self.directory).await {
            Ok(handle) => handle,
            Err(e) => {
                self.set_tap(id, None);
                return Err(e);
            }
        };
        self.set_tap(id, Some(&handle));
        streams.insert(id.to_owned(), handle);
        Ok(Replaced::Stream)
    }

    async fn delete(&self, id: &str) -> Result<(), NodeError> {
        let handle = self.streams.lock().await.remove(id).ok_or_else(|| NodeError::NotFound(id.to_owned()))?;
        self.set_tap(id, None);
        handle.stop().await;
        Ok(())
    }

    async fn switch(&self, id: &str, input: usize) -> Result<(), NodeError> {
        let streams = self.streams.lock().await;
        let handle = streams.get(id).ok_or_else(|| NodeError::NotFound(id.to_owned()))?;
        handle.switch(input).await
    }

    fn hub(&self, id: &str) -> Option<Hub<Bytes>> {
        Node::tap(self, id).map(|(hub, _)| hub)
    }

    fn tap(&self, id: &str) -> Option<HttpTap> {
        Node::tap(self, id).map(|(hub, counters)| HttpTap { hub, counters: Some(counters) })
    }
}
