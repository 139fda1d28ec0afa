//! Stats: the operations view. Counts only, never contact data.

use proto::v1::StatsResponse;

use super::{Instance, timestamp};
use crate::store::Store;

pub(super) fn response(store: &Store, instance: &Instance) -> StatsResponse {
    let stats = store.stats();
    let limits = store.limits();
    StatsResponse {
        entries: stats.entries as u64,
        bytes: stats.bytes as u64,
        memory_locked: instance.protection.locked,
        instance_epoch: instance.epoch,
        started_at: Some(timestamp(instance.started_at)),
        max_entries: limits.max_entries as u64,
        max_bytes: limits.max_bytes as u64,
        retention_days: limits.retention_days,
        day_keys: stats.day_keys as u32,
        last_sweep_at: stats.last_sweep.as_ref().map(|s| timestamp(s.at)),
        last_sweep_removed: stats.last_sweep.map_or(0, |s| s.removed as u64),
    }
}
