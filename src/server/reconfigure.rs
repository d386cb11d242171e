//! Applying a reload by following the plan `reload::diff` makes:
//! everything that can fail (binding new listeners, building the snapshot,
//! checking new cluster settings) happens before anything changes; then
//! one swap publishes the whole new configuration; then its consequences
//! (closing removed channels and listeners, retuning changed channels,
//! replacing the cluster link).

use std::sync::Arc;

use super::{error::Error, listener::Listener, state::ServerState};
use crate::{
    cluster::Link,
    config::Config,
    protocol::close,
    reload::{ReloadReport, diff},
    snapshot::Snapshot,
    sync::lock,
};

impl ServerState {
    pub(super) async fn reload(self: &Arc<Self>, config: Config) -> Result<ReloadReport, Error> {
        let _one_at_a_time = self.reloading.lock().await;
        let result = self.apply(config).await;
        self.counters.record_reload(result.is_ok());
        match &result {
            Ok(report) => tracing::info!(
                generation = report.generation,
                added = ?report.added,
                removed = ?report.removed,
                changed = ?report.changed,
                opened = ?report.opened,
                closed = ?report.closed,
                certificate_changed = report.certificate_changed,
                cluster_restarted = report.cluster_restarted,
                "configuration reloaded"
            ),
            Err(error) => {
                tracing::error!("reload refused, the running configuration stays: {error:#}")
            }
        }
        result
    }

    async fn apply(self: &Arc<Self>, config: Config) -> Result<ReloadReport, Error> {
        let old = self.snapshot.load_full();
        let plan = diff(&old.config, &config);
        let mut opened = Vec::with_capacity(plan.opened.len());
        for spec in &plan.opened {
            // A listener whose address stays (a TLS or PROXY change) keeps
            // its socket; it is handed over after the swap.
            if plan.closed.iter().any(|closed| closed.addr == spec.addr) {
                continue;
            }
            opened.push(Listener::bind(*spec)?);
        }
        if plan.cluster
            && let Some(cluster) = &config.cluster
        {
            Link::check(&cluster.settings)?;
        }
        let snapshot = Arc::new(Snapshot::build(
            config,
            &self.counters,
            &self.users,
            &self.remote,
            Some((&old, &plan)),
        )?);
        if snapshot.acceptor.is_none()
            && lock(&self.listeners)
                .keys()
                .any(|spec| spec.tls && !plan.closed.contains(spec))
        {
            return Err(Error::NoTls);
        }
        let certificate_changed = match (&old.identity, &snapshot.identity) {
            (Some(before), Some(after)) => before.leaf() != after.leaf(),
            (before, after) => before.is_some() != after.is_some(),
        };
        self.snapshot.store(snapshot.clone());

        for name in &plan.changed {
            if let Some(entry) = snapshot.channel(name) {
                entry.live.reconfigured(&entry.config);
            }
        }
        for name in &plan.removed {
            if let Some(entry) = old.channel(name) {
                entry.live.close_all(close::GOING_AWAY, "channel removed");
            }
        }
        for closed in &plan.closed {
            let Some(running) = lock(&self.listeners).remove(closed) else {
                continue;
            };
            running.stop.cancel();
            // The stopped loop gives its socket back: handed to the same
            // address's new role, or closed before this reload reports done,
            // so that a later reload can bind the address again.
            let socket = running.task.await;
            let Some(spec) = plan.opened.iter().find(|spec| spec.addr == closed.addr) else {
                drop(socket);
                continue;
            };
            match socket {
                Ok(socket) => opened.push(Listener::configured(socket, *spec)),
                Err(error) => tracing::error!(
                    "the listener on {} could not take its new role: {error}",
                    spec.addr
                ),
            }
        }
        for listener in opened {
            listener.start(self);
        }
        if plan.cluster {
            let settings = snapshot.config.cluster.as_ref();
            self.replace_cluster(settings.map(|cluster| cluster.settings.clone()))
                .await;
        }
        Ok(ReloadReport {
            generation: self.counters.generation() + 1,
            added: plan.added,
            removed: plan.removed,
            changed: plan.changed,
            opened: plan.opened.iter().map(|spec| spec.addr).collect(),
            closed: plan.closed.iter().map(|spec| spec.addr).collect(),
            certificate_changed,
            cluster_restarted: plan.cluster && self.remote.is_active(),
        })
    }
}
