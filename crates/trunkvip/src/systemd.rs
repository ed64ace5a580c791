//! systemd's notify protocol (deploy/trunkvip.service is `Type=notify`
//! with `WatchdogSec`), through the `sd-notify` crate, which writes only
//! when `NOTIFY_SOCKET` is set: everything here is a no-op outside systemd.
//!
//! - `READY=1` once the listeners are bound and the VIP owner started.
//! - `WATCHDOG=1` every half `WATCHDOG_USEC`, only while every worker
//!   answers a snapshot within that half and the VIP owner (with `[vip]`)
//!   still runs: a stuck worker loop or a dead VIP owner stops the pings
//!   and systemd restarts the service.
//! - `STOPPING=1` on SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, info, warn};

use crate::transport::Transports;
use crate::worker;

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!("systemd notify: {e}");
    }
}

/// `READY=1`.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STOPPING=1`.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// Starts the watchdog pings when systemd asked for them.
pub fn spawn_watchdog(transports: Arc<Transports>) {
    let Some(limit) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (limit / 2).max(Duration::from_millis(10));
    info!("systemd watchdog: {limit:?}, pinging every {every:?} while healthy");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match healthy(&transports, every).await {
                Ok(()) => {
                    debug!("watchdog ping");
                    notify(&[NotifyState::Watchdog]);
                }
                Err(why) => warn!("systemd watchdog not pinged: {why}"),
            }
        }
    });
}

/// Every worker answers a snapshot within `limit`, and the VIP owner runs.
async fn healthy(transports: &Transports, limit: Duration) -> Result<(), String> {
    let answered = tokio::time::timeout(limit, worker::snapshots(transports))
        .await
        .map_err(|_| format!("the workers did not answer within {limit:?}"))?
        .len();
    if answered != transports.workers.len() {
        return Err(format!(
            "{answered} of {} workers answered",
            transports.workers.len()
        ));
    }
    if !crate::vip::alive() {
        return Err("the VIP owner stopped".into());
    }
    Ok(())
}
