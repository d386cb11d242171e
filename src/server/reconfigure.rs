//! Applying a reload: everything that can fail (binding new listeners,
//! building the snapshot) happens before anything changes; then one swap,
//! then the consequences (closing removed channels and listeners).

use std::sync::Arc;

use super::{Error, Listener, Shared};
use crate::{
    config::Config,
    reload::{ReloadReport, diff},
    snapshot::Snapshot,
};
use crate::{protocol::close, sync::lock};

impl Shared {
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
        let changes = diff(&old.config, &config);
        let mut opened = Vec::with_capacity(changes.opened.len());
        for spec in &changes.opened {
            // A listener whose address stays (a TLS or PROXY change) keeps
            // its socket; it is handed over after the swap.
            if changes.closed.iter().any(|closed| closed.addr == spec.addr) {
                continue;
            }
            opened.push(Listener::bind(*spec).await?);
        }
        let snapshot = Snapshot::build(config, &self.counters, Some(&old))?;
        if snapshot.acceptor.is_none()
            && lock(&self.listeners)
                .keys()
                .any(|spec| spec.tls && !changes.closed.contains(spec))
        {
            return Err(Error::NoTls);
        }
        for channel in &snapshot.channels {
            let wanted = snapshot
                .config
                .channels
                .iter()
                .find(|c| c.name == channel.config().name);
            if let Some(wanted) = wanted.filter(|wanted| changes.changed.contains(&wanted.name)) {
                channel.reconfigure(wanted.clone());
            }
        }
        let certificate_changed = match (&old.identity, &snapshot.identity) {
            (Some(before), Some(after)) => before.leaf() != after.leaf(),
            (before, after) => before.is_some() != after.is_some(),
        };
        self.snapshot.store(Arc::new(snapshot));

        for channel in old
            .channels
            .iter()
            .filter(|c| changes.removed.contains(&c.config().name))
        {
            channel.close_all(close::GOING_AWAY, "channel removed");
        }
        for closed in &changes.closed {
            let Some(running) = lock(&self.listeners).remove(closed) else {
                continue;
            };
            running.stop.cancel();
            let Some(spec) = changes.opened.iter().find(|spec| spec.addr == closed.addr) else {
                continue;
            };
            // Same address, new role: the stopped loop gives its socket back.
            match running.task.await {
                Ok(socket) => opened.push(Listener::configured(socket, *spec)),
                Err(error) => tracing::error!(
                    "the listener on {} could not take its new role: {error}",
                    spec.addr
                ),
            }
        }
        for listener in opened {
            self.start_listener(listener);
        }
        Ok(ReloadReport {
            generation: self.counters.generation() + 1,
            added: changes.added,
            removed: changes.removed,
            changed: changes.changed,
            opened: changes.opened.iter().map(|spec| spec.addr).collect(),
            closed: changes.closed.iter().map(|spec| spec.addr).collect(),
            certificate_changed,
        })
    }
}
