//! Group state and the operations on it: LAVA's semantics, without LAVA's
//! crashes, bounded by [`GroupLimits`].
//!
//! Everything here is synchronous and quick; the server serialises calls
//! through one lock. Each group owns a change counter (a `watch` channel)
//! that is bumped whenever something happened that could turn a `wait` into
//! an answer; held (push) requests subscribe to it.
//!
//! Deliberate differences from LAVA's coordinator, all compatible:
//! * malformed requests get `nack` instead of crashing the daemon (missing
//!   `group_name`, missing `hostname`/`role` on registration, unknown
//!   `waitrole`, non-string `sub_id`, …);
//! * sync state is kept apart from mailboxes, so a `lava_send` after a
//!   `lava_sync` with the same messageID works (LAVA crashes) and a
//!   `lava_wait` on a sync ID does not return the sync's string;
//! * `lava_sync` releases the last member to arrive on its own request
//!   (LAVA makes everyone poll once more);
//! * `clear_group` counts distinct members, not calls;
//! * a group refuses more members than its `group_size` (LAVA registers them
//!   and then answers `group_data` with `wait` forever);
//! * limits on groups, members, message IDs and payload bytes (`nack` when
//!   exceeded), and expiry of idle groups (LAVA keeps the groups of killed
//!   jobs forever).
//!
//! **Junk cannot lock new groups out.** A flood of `group_data` registrations
//! for groups that never fill (LAVA's own daemon keeps each forever) is held
//! off three ways: one client address may have at most
//! [`GroupLimits::max_groups_per_address`] groups alive; a group still
//! forming (fewer members than its `group_size`) that nobody has asked about
//! for [`Expiry::forming`] is forgotten (its members poll `group_data` every
//! few seconds while they wait, and give up after LAVA's 90 s system
//! timeout); and when [`GroupLimits::max_groups`] is reached, a new group
//! replaces the forming group idle longest, once it has been idle for
//! [`EVICTABLE_AFTER`], instead of being refused.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use lava_multinode::wire::{Delivered, Operation, Payload, Request, Response, SenderPayloads};
use serde_json::Value;
use tokio::sync::watch;

/// Bounds on what clients can make the coordinator hold in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// Groups alive at once.
    pub max_groups: usize,
    /// Members in one group (also capped by its `group_size`).
    pub max_clients_per_group: usize,
    /// Distinct messageIDs sent (plus sync IDs) in one group.
    pub max_message_ids_per_group: usize,
    /// Bytes of payloads (serialised) held for one group.
    pub max_payload_bytes_per_group: usize,
    /// Groups created from one client address alive at once (a worker
    /// starts at most one node job per device, so one address needs a few
    /// hundred at most).
    pub max_groups_per_address: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            max_groups: 10_000,
            max_clients_per_group: 4096,
            max_message_ids_per_group: 10_000,
            max_payload_bytes_per_group: 16 * 1024 * 1024,
            max_groups_per_address: 1_000,
        }
    }
}

/// When idle groups are forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// A group still forming, with no request for this long (default 10
    /// minutes: members waiting for the group poll every few seconds).
    pub forming: Option<Duration>,
    /// Any group with no request for this long (default 24 hours, longer
    /// than the quiet stretch of any real MultiNode job).
    pub any: Option<Duration>,
}

impl Default for Expiry {
    fn default() -> Self {
        Expiry {
            forming: Some(Duration::from_secs(600)),
            any: Some(Duration::from_secs(24 * 3600)),
        }
    }
}

/// How long a forming group must have been idle before a new group may
/// replace it when [`GroupLimits::max_groups`] is reached: longer than any
/// poll interval or held request of a member still waiting.
pub const EVICTABLE_AFTER: Duration = Duration::from_secs(120);

/// What to do with the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Send this reply.
    Reply(Response),
    /// Close without a reply (LAVA does this for `complete`).
    Close,
}

impl Outcome {
    fn nack() -> Outcome {
        Outcome::Reply(Response::Nack)
    }
    fn wait() -> Outcome {
        Outcome::Reply(Response::WAIT)
    }
    fn ack() -> Outcome {
        Outcome::Reply(Response::ACK)
    }
    /// Whether this is a `wait` reply.
    pub fn is_wait(&self) -> bool {
        matches!(self, Outcome::Reply(response) if response.is_wait())
    }
}

/// Everything one message ID has received: sender → (payload, when).
#[derive(Debug, Default)]
struct Board {
    /// In first-send order; a re-send replaces the payload in place.
    sent: IndexMap<String, Sent>,
}

#[derive(Debug)]
struct Sent {
    payload: Payload,
    /// Group event number of the latest send (for LAVA's mailbox rule).
    at: u64,
    bytes: usize,
}

#[derive(Debug)]
struct Member {
    role: String,
    /// Group event number at registration: only sends after it reach the
    /// member's mailbox, as in LAVA.
    registered_at: u64,
}

/// One `lava_sync` barrier: member → released.
#[derive(Debug, Default)]
struct Barrier {
    arrived: IndexMap<String, bool>,
}

#[derive(Debug)]
struct Group {
    size: usize,
    members: IndexMap<String, Member>,
    /// Role → members in registration order (roles in creation order).
    roles: IndexMap<String, Vec<String>>,
    boards: HashMap<String, Board>,
    barriers: HashMap<String, Barrier>,
    cleared: HashSet<String>,
    bundles: IndexMap<String, Value>,
    rpc_delay: u32,
    events: u64,
    payload_bytes: usize,
    last_activity: Instant,
    changes: watch::Sender<u64>,
    /// The address of the client that created it (`None` when unknown).
    origin: Option<IpAddr>,
}

const RPC_DELAY: u32 = 2;

impl Group {
    fn new(size: usize, now: Instant, origin: Option<IpAddr>) -> Group {
        Group {
            size,
            members: IndexMap::new(),
            roles: IndexMap::new(),
            boards: HashMap::new(),
            barriers: HashMap::new(),
            cleared: HashSet::new(),
            bundles: IndexMap::new(),
            rpc_delay: RPC_DELAY,
            events: 0,
            payload_bytes: 0,
            last_activity: now,
            changes: watch::channel(0).0,
            origin,
        }
    }

    fn forming(&self) -> bool {
        self.members.len() < self.size
    }

    /// Wake held requests of this group: something may now be answerable.
    fn changed(&mut self) {
        self.changes.send_modify(|generation| *generation += 1);
    }

    fn next_event(&mut self) -> u64 {
        self.events += 1;
        self.events
    }

    fn ids_in_use(&self) -> usize {
        self.boards.len() + self.barriers.len()
    }

    /// LAVA's per-recipient mailbox for `message_id`: every sender whose
    /// latest send came after `client` registered.
    fn mailbox(&self, client: &str, message_id: &str) -> SenderPayloads {
        let (Some(board), Some(member)) = (self.boards.get(message_id), self.members.get(client))
        else {
            return SenderPayloads::new();
        };
        board
            .sent
            .iter()
            .filter(|(_, sent)| sent.at > member.registered_at)
            .map(|(sender, sent)| (sender.clone(), sent.payload.clone()))
            .collect()
    }

    fn all_sent(&self, message_id: &str) -> SenderPayloads {
        self.boards
            .get(message_id)
            .map(|board| {
                board
                    .sent
                    .iter()
                    .map(|(sender, sent)| (sender.clone(), sent.payload.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn has_sent(&self, client: &str, message_id: &str) -> bool {
        self.boards
            .get(message_id)
            .is_some_and(|board| board.sent.contains_key(client))
    }
}

/// All groups known to the coordinator.
#[derive(Debug, Default)]
pub struct Groups {
    groups: HashMap<String, Group>,
    limits: GroupLimits,
    /// Groups alive per creating address.
    per_address: HashMap<IpAddr, usize>,
}

/// A short summary, for statistics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupsSummary {
    /// Groups currently known.
    pub groups: usize,
    /// Members registered across all groups.
    pub members: usize,
    /// Bytes of message payload held across all groups.
    pub payload_bytes: usize,
}

impl Groups {
    /// No groups, the given limits.
    pub fn new(limits: GroupLimits) -> Groups {
        Groups {
            groups: HashMap::new(),
            limits,
            per_address: HashMap::new(),
        }
    }

    fn remove(&mut self, name: &str) -> Option<Group> {
        let group = self.groups.remove(name)?;
        if let Some(origin) = group.origin
            && let Some(count) = self.per_address.get_mut(&origin)
        {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&origin);
            }
        }
        Some(group)
    }

    /// Counts of what is held.
    pub fn summary(&self) -> GroupsSummary {
        GroupsSummary {
            groups: self.groups.len(),
            members: self.groups.values().map(|g| g.members.len()).sum(),
            payload_bytes: self.groups.values().map(|g| g.payload_bytes).sum(),
        }
    }

    /// A receiver that changes whenever `group_name` may have become
    /// answerable (and closes when the group is deleted).
    pub fn subscribe(&self, group_name: &str) -> Option<watch::Receiver<u64>> {
        self.groups.get(group_name).map(|g| g.changes.subscribe())
    }

    /// Forget the groups idle for longer than `expiry` allows; returns how many.
    pub fn expire_idle(&mut self, expiry: Expiry, now: Instant) -> usize {
        let expired: Vec<(String, Duration)> = self
            .groups
            .iter()
            .filter_map(|(name, group)| {
                let idle = now.saturating_duration_since(group.last_activity);
                let limit = if group.forming() {
                    expiry.forming.into_iter().chain(expiry.any).min()
                } else {
                    expiry.any
                }?;
                (idle >= limit).then(|| (name.clone(), limit))
            })
            .collect();
        for (name, limit) in &expired {
            tracing::warn!(group = %name, "expiring group idle for more than {limit:?}");
            self.remove(name);
        }
        expired.len()
    }

    /// Apply one request (from an unknown address) and decide the reply.
    pub fn handle(&mut self, request: &Request, now: Instant) -> Outcome {
        self.handle_from(request, None, now)
    }

    /// Apply one request from `origin` (the client's address, counted
    /// against [`GroupLimits::max_groups_per_address`] when it creates a
    /// group) and decide the reply.
    pub fn handle_from(
        &mut self,
        request: &Request,
        origin: Option<IpAddr>,
        now: Instant,
    ) -> Outcome {
        let Some(name) = request.request.as_deref() else {
            tracing::debug!("request without 'request': nack");
            return Outcome::nack();
        };
        let Some(client) = request.client_name.as_deref() else {
            tracing::error!("Missing client_name in request for {name}");
            return Outcome::nack();
        };
        let Some(group_name) = request.group_name.as_deref() else {
            tracing::error!("{client} sent {name} without group_name");
            return Outcome::nack();
        };
        if let Err(refusal) = self.admit(request, group_name, client, origin, now) {
            tracing::error!(group = %group_name, %client, "{name} refused: {refusal}");
            return Outcome::nack();
        }
        let Some(operation) = request.operation() else {
            tracing::error!(group = %group_name, %client, "Unrecognised request {name:?}");
            return Outcome::nack();
        };
        let limits = self.limits;
        let group = self
            .groups
            .get_mut(group_name)
            .expect("admit() created or found the group");
        group.last_activity = now;
        match operation {
            Operation::GroupData => group_data(group),
            Operation::LavaSend => lava_send(group, request, client, &limits),
            Operation::LavaWait => lava_wait(group, request, client),
            Operation::LavaWaitAll => lava_wait_all(group, request, client),
            Operation::LavaSync => lava_sync(group, request, client, &limits),
            Operation::ClearGroup => {
                group.cleared.insert(client.to_string());
                tracing::debug!(
                    group = %group_name,
                    "clear_group: {} of {}",
                    group.cleared.len(),
                    group.members.len()
                );
                if group.cleared.len() >= group.members.len() {
                    tracing::debug!("Clearing group data for {group_name}");
                    self.remove(group_name);
                }
                Outcome::ack()
            }
            Operation::Aggregate => aggregate(group, request, client, &limits),
            Operation::Complete => {
                tracing::info!(group = %group_name, %client, "coordinator communication is complete");
                Outcome::Close
            }
        }
    }

    /// Forget the forming group idle longest, if it has been idle for
    /// [`EVICTABLE_AFTER`]; whether one was forgotten.
    fn evict_stale_forming(&mut self, now: Instant) -> bool {
        let stalest = self
            .groups
            .iter()
            .filter(|(_, group)| group.forming())
            .map(|(name, group)| (now.saturating_duration_since(group.last_activity), name))
            .filter(|(idle, _)| *idle >= EVICTABLE_AFTER)
            .max()
            .map(|(idle, name)| (idle, name.clone()));
        let Some((idle, name)) = stalest else {
            return false;
        };
        tracing::warn!(group = %name, "forgetting forming group idle for {idle:?} to make room");
        self.remove(&name);
        true
    }

    /// LAVA's steps 4 and 5: create the group if it is new and register the
    /// client if it is new, refusing instead of crashing.
    fn admit(
        &mut self,
        request: &Request,
        group_name: &str,
        client: &str,
        origin: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), String> {
        let known_group = self.groups.contains_key(group_name);
        let known_client = known_group && self.groups[group_name].members.contains_key(client);
        let registration = if known_client {
            None
        } else {
            let (Some(hostname), Some(role)) = (&request.hostname, &request.role) else {
                return Err("first request of a client without hostname or role".into());
            };
            Some((hostname, role))
        };
        if !known_group {
            let size = match request.group_size {
                None | Some(0) => {
                    return Err("new group without group_size".into());
                }
                Some(size) => size,
            };
            if size > self.limits.max_clients_per_group as u64 {
                return Err(format!("group_size {size} over the limit"));
            }
            if let Some(origin) = origin {
                let alive = self.per_address.get(&origin).copied().unwrap_or(0);
                if alive >= self.limits.max_groups_per_address {
                    return Err(format!("{origin} already created {alive} groups"));
                }
            }
            if self.groups.len() >= self.limits.max_groups && !self.evict_stale_forming(now) {
                return Err(format!(
                    "already {} groups, none of them forming and idle for {EVICTABLE_AFTER:?}",
                    self.groups.len()
                ));
            }
            tracing::info!("The {group_name} group will contain {size} nodes.");
            self.groups.insert(
                group_name.to_string(),
                Group::new(size as usize, now, origin),
            );
            if let Some(origin) = origin {
                *self.per_address.entry(origin).or_default() += 1;
            }
        }
        let Some((_hostname, role)) = registration else {
            return Ok(());
        };
        let group = self.groups.get_mut(group_name).expect("present");
        if group.members.len() >= group.size {
            return Err(format!("group already has its {} members", group.size));
        }
        let registered_at = group.events;
        group.members.insert(
            client.to_string(),
            Member {
                role: role.clone(),
                registered_at,
            },
        );
        group
            .roles
            .entry(role.clone())
            .or_default()
            .push(client.to_string());
        if group.members.len() == group.size {
            group.changed();
        }
        Ok(())
    }
}

fn group_data(group: &Group) -> Outcome {
    if group.members.len() != group.size {
        return Outcome::wait();
    }
    let roles = group
        .roles
        .iter()
        .flat_map(|(role, clients)| clients.iter().map(move |c| (c.clone(), role.clone())))
        .collect();
    Outcome::Reply(Response::GroupData { roles })
}

fn lava_send(group: &mut Group, request: &Request, client: &str, limits: &GroupLimits) -> Outcome {
    let Some(message_id) = request.message_id.as_deref() else {
        return Outcome::nack();
    };
    let payload = request.payload_or_empty();
    let bytes = serde_json::to_vec(&payload).map(|v| v.len()).unwrap_or(0) + message_id.len();
    let replaced = group
        .boards
        .get(message_id)
        .and_then(|board| board.sent.get(client))
        .map_or(0, |sent| sent.bytes);
    if group.payload_bytes - replaced + bytes > limits.max_payload_bytes_per_group {
        tracing::error!("lava_send from {client}: group payload limit reached");
        return Outcome::nack();
    }
    if !group.boards.contains_key(message_id)
        && group.ids_in_use() >= limits.max_message_ids_per_group
    {
        tracing::error!("lava_send from {client}: group messageID limit reached");
        return Outcome::nack();
    }
    let at = group.next_event();
    group.payload_bytes = group.payload_bytes - replaced + bytes;
    group
        .boards
        .entry(message_id.to_string())
        .or_default()
        .sent
        .insert(client.to_string(), Sent { payload, at, bytes });
    group.changed();
    Outcome::ack()
}

fn lava_wait(group: &Group, request: &Request, client: &str) -> Outcome {
    let Some(message_id) = request.message_id.as_deref() else {
        return Outcome::nack();
    };
    let mailbox = group.mailbox(client, message_id);
    if mailbox.is_empty() {
        return Outcome::wait();
    }
    delivered(mailbox)
}

fn delivered(senders: SenderPayloads) -> Outcome {
    Outcome::Reply(Response::Ack {
        message: Some(Delivered::Senders(senders)),
    })
}

fn lava_wait_all(group: &Group, request: &Request, client: &str) -> Outcome {
    let Some(message_id) = request.message_id.as_deref() else {
        return Outcome::nack();
    };
    let Some(waitrole) = request.waitrole.as_deref() else {
        // Everybody: nack if nobody sent it yet (LAVA), wait for missing members.
        if !group.boards.contains_key(message_id) {
            return Outcome::nack();
        }
        if group.members.keys().any(|m| !group.has_sent(m, message_id)) {
            return Outcome::wait();
        }
        return delivered(group.all_sent(message_id));
    };
    let Some(first) = group
        .roles
        .get(waitrole)
        .and_then(|members| members.first())
    else {
        tracing::error!(
            "lava_wait_all from {client}: no member has role {waitrole:?} (LAVA's coordinator would crash here)"
        );
        return Outcome::nack();
    };
    let own_role = request
        .role
        .as_deref()
        .filter(|role| group.roles.contains_key(*role))
        .unwrap_or(&group.members[client].role);
    // LAVA's walk over the caller's own role, reproduced step by step.
    for member in &group.roles[own_role] {
        if !group.boards.contains_key(message_id) {
            return Outcome::wait();
        }
        if group.has_sent(first, message_id) {
            let mailbox = group.mailbox(client, message_id);
            if mailbox.is_empty() {
                return Outcome::nack();
            }
            return delivered(mailbox);
        }
        if !group.has_sent(member, message_id) {
            return Outcome::wait();
        }
    }
    if !group.has_sent(client, message_id) {
        return Outcome::nack();
    }
    delivered(group.all_sent(message_id))
}

fn lava_sync(group: &mut Group, request: &Request, client: &str, limits: &GroupLimits) -> Outcome {
    let Some(message_id) = request.message_id.as_deref() else {
        return Outcome::nack();
    };
    let value = match request.message.as_ref() {
        Some(message) if !message.is_empty() => match message {
            Payload::Text(text) => Delivered::Text(text.clone()),
            other => Delivered::Other(serde_json::to_value(other).unwrap_or(Value::Null)),
        },
        _ => Delivered::Text(message_id.to_string()),
    };
    if !group.barriers.contains_key(message_id)
        && group.ids_in_use() >= limits.max_message_ids_per_group
    {
        return Outcome::nack();
    }
    let size = group.size;
    let barrier = group.barriers.entry(message_id.to_string()).or_default();
    let complete_before = barrier.arrived.len() >= size;
    if !complete_before {
        barrier.arrived.entry(client.to_string()).or_insert(false);
        if barrier.arrived.len() < size {
            return Outcome::wait();
        }
    }
    // Complete: release this caller (LAVA also releases a fast re-entrant
    // caller here; kept for compatibility).
    barrier.arrived.insert(client.to_string(), true);
    if barrier.arrived.values().all(|released| *released) {
        group.barriers.remove(message_id);
    }
    if !complete_before {
        group.changed();
    }
    Outcome::Reply(Response::Ack {
        message: Some(value),
    })
}

fn aggregate(group: &mut Group, request: &Request, client: &str, limits: &GroupLimits) -> Outcome {
    let (Some(bundle), Some(sub_id)) = (&request.bundle, &request.sub_id) else {
        return Outcome::nack();
    };
    let Some(sub_id) = sub_id.as_str() else {
        return Outcome::nack();
    };
    let bytes = serde_json::to_vec(bundle).map(|v| v.len()).unwrap_or(0);
    if group.payload_bytes + bytes > limits.max_payload_bytes_per_group {
        return Outcome::nack();
    }
    group.payload_bytes += bytes;
    group.bundles.insert(client.to_string(), bundle.clone());
    if !sub_id.ends_with(".0") {
        return Outcome::ack();
    }
    if group.bundles.len() < group.size {
        group.rpc_delay = RPC_DELAY;
        return Outcome::wait();
    }
    if group.rpc_delay > 0 {
        group.rpc_delay -= 1;
        return Outcome::wait();
    }
    group.rpc_delay = RPC_DELAY;
    let bundles: serde_json::Map<String, Value> = group
        .bundles
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Outcome::Reply(Response::Ack {
        message: Some(Delivered::Other(serde_json::json!({ "bundle": bundles }))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lava_multinode::wire::Envelope;

    const GROUP: &str = "6c1e0c8e-0d7e-4b7c-9a51-2f5b1d0c9e11";

    fn member(client: &str, role: &str) -> Envelope {
        Envelope {
            group_name: GROUP.into(),
            client_name: client.into(),
            role: role.into(),
            hostname: format!("worker-{client}"),
            coordinator_host: "localhost".into(),
            port: 3079,
            blocksize: 4096,
            poll_delay: 3,
        }
    }

    fn reply(groups: &mut Groups, request: &Request) -> Response {
        match groups.handle(request, Instant::now()) {
            Outcome::Reply(response) => response,
            Outcome::Close => panic!("no reply"),
        }
    }

    fn payload(pairs: &[(&str, &str)]) -> Payload {
        let map: IndexMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.into()
    }

    fn registered(members: &[(&str, &str)]) -> (Groups, Vec<Envelope>) {
        let mut groups = Groups::new(GroupLimits::default());
        let envelopes: Vec<_> = members.iter().map(|(c, r)| member(c, r)).collect();
        for envelope in &envelopes {
            reply(&mut groups, &envelope.group_data(members.len() as u64));
        }
        (groups, envelopes)
    }

    #[test]
    fn registration_barrier_and_roles_grouped_by_role() {
        let mut groups = Groups::new(GroupLimits::default());
        let order = [
            ("201", "host"),
            ("202", "guest"),
            ("203", "guest"),
            ("204", "host"),
        ];
        for (index, (client, role)) in order.iter().enumerate() {
            let response = reply(&mut groups, &member(client, role).group_data(4));
            if index < 3 {
                assert_eq!(response, Response::WAIT);
            } else {
                let Response::GroupData { roles } = response else {
                    panic!("{response:?}")
                };
                assert_eq!(
                    roles
                        .iter()
                        .map(|(c, r)| format!("{c}={r}"))
                        .collect::<Vec<_>>(),
                    ["201=host", "204=host", "202=guest", "203=guest"]
                );
            }
        }
        // A fifth member is refused instead of making group_data wait forever.
        assert_eq!(
            reply(&mut groups, &member("205", "host").group_data(4)),
            Response::Nack
        );
    }

    #[test]
    fn send_then_wait_delivers_every_sender_keyed_by_client_name() {
        let (mut groups, m) = registered(&[("7001", "server"), ("7002", "client")]);
        assert_eq!(reply(&mut groups, &m[1].lava_wait("ready")), Response::WAIT);
        let sent = payload(&[("ip", "10.20.0.7"), ("port", "5201")]);
        assert_eq!(
            reply(&mut groups, &m[0].lava_send("ready", sent.clone())),
            Response::ACK
        );
        let expected = Response::Ack {
            message: Some(Delivered::Senders([("7001".to_string(), sent)].into())),
        };
        assert_eq!(reply(&mut groups, &m[1].lava_wait("ready")), expected);
        assert_eq!(
            reply(&mut groups, &m[0].lava_wait("ready")),
            expected,
            "senders see their own"
        );
    }

    #[test]
    fn wait_all_without_role_nacks_first_then_waits_for_everybody() {
        let (mut groups, m) = registered(&[("1", "a"), ("2", "b"), ("3", "b")]);
        assert_eq!(
            reply(&mut groups, &m[0].lava_wait_all("x", None)),
            Response::Nack
        );
        reply(&mut groups, &m[0].lava_send("x", Payload::empty()));
        assert_eq!(
            reply(&mut groups, &m[0].lava_wait_all("x", None)),
            Response::WAIT
        );
        reply(&mut groups, &m[1].lava_send("x", Payload::empty()));
        reply(&mut groups, &m[2].lava_send("x", payload(&[("k", "v")])));
        let Response::Ack {
            message: Some(Delivered::Senders(senders)),
        } = reply(&mut groups, &m[1].lava_wait_all("x", None))
        else {
            panic!()
        };
        assert_eq!(senders.keys().collect::<Vec<_>>(), ["1", "2", "3"]);
    }

    #[test]
    fn wait_all_with_role_releases_on_the_first_member_of_that_role() {
        let (mut groups, m) = registered(&[
            ("201", "host"),
            ("202", "guest"),
            ("203", "guest"),
            ("204", "host"),
        ]);
        let guest = &m[1];
        assert_eq!(
            reply(
                &mut groups,
                &guest.lava_wait_all("lava_start", Some("host"))
            ),
            Response::WAIT
        );
        reply(&mut groups, &m[3].lava_send("lava_start", Payload::empty()));
        assert_eq!(
            reply(
                &mut groups,
                &guest.lava_wait_all("lava_start", Some("host"))
            ),
            Response::WAIT,
            "the second host does not release the guest"
        );
        reply(&mut groups, &m[0].lava_send("lava_start", Payload::empty()));
        let Response::Ack {
            message: Some(Delivered::Senders(senders)),
        } = reply(
            &mut groups,
            &guest.lava_wait_all("lava_start", Some("host")),
        )
        else {
            panic!()
        };
        assert_eq!(senders.keys().collect::<Vec<_>>(), ["204", "201"]);
    }

    #[test]
    fn wait_all_with_unknown_role_is_a_nack_not_a_crash() {
        let (mut groups, m) = registered(&[("1", "a"), ("2", "b")]);
        assert_eq!(
            reply(&mut groups, &m[0].lava_wait_all("x", Some("typo"))),
            Response::Nack
        );
        assert_eq!(groups.summary().groups, 1, "the group survives");
    }

    #[test]
    fn sync_releases_the_last_arrival_at_once_and_then_the_others() {
        let (mut groups, m) = registered(&[("1", "a"), ("2", "b"), ("3", "b")]);
        assert_eq!(reply(&mut groups, &m[0].lava_sync("s")), Response::WAIT);
        assert_eq!(reply(&mut groups, &m[1].lava_sync("s")), Response::WAIT);
        assert_eq!(
            reply(&mut groups, &m[0].lava_sync("s")),
            Response::WAIT,
            "re-poll"
        );
        let done = Response::Ack {
            message: Some(Delivered::Text("s".into())),
        };
        assert_eq!(reply(&mut groups, &m[2].lava_sync("s")), done);
        assert_eq!(reply(&mut groups, &m[0].lava_sync("s")), done);
        assert_eq!(reply(&mut groups, &m[1].lava_sync("s")), done);
        // All released: the ID is reusable as a fresh barrier.
        assert_eq!(reply(&mut groups, &m[0].lava_sync("s")), Response::WAIT);
    }

    #[test]
    fn send_after_sync_with_the_same_id_does_not_crash() {
        let (mut groups, m) = registered(&[("1", "a"), ("2", "b")]);
        reply(&mut groups, &m[0].lava_sync("same"));
        reply(&mut groups, &m[1].lava_sync("same"));
        reply(&mut groups, &m[0].lava_sync("same"));
        assert_eq!(
            reply(&mut groups, &m[0].lava_send("same", payload(&[("a", "b")]))),
            Response::ACK
        );
        let Response::Ack {
            message: Some(Delivered::Senders(_)),
        } = reply(&mut groups, &m[1].lava_wait("same"))
        else {
            panic!("lava_wait must return a sender map")
        };
    }

    #[test]
    fn malformed_requests_are_nacked() {
        let mut groups = Groups::default();
        let mut request = member("1", "a").group_data(2);
        request.group_name = None;
        assert_eq!(reply(&mut groups, &request), Response::Nack);
        let mut request = member("1", "a").group_data(2);
        request.hostname = None;
        assert_eq!(reply(&mut groups, &request), Response::Nack);
        assert_eq!(groups.summary().groups, 0, "no half-made group left behind");
        let mut request = member("1", "a").group_data(2);
        request.request = Some("lava-send".into());
        assert_eq!(reply(&mut groups, &request), Response::Nack);
        let mut request = member("1", "a").lava_wait("x");
        request.group_name = Some("never-created".into());
        assert_eq!(
            reply(&mut groups, &request),
            Response::Nack,
            "unknown group, no size"
        );
    }

    #[test]
    fn clear_group_counts_distinct_members() {
        let (mut groups, m) = registered(&[("1", "a"), ("2", "b")]);
        assert_eq!(reply(&mut groups, &m[0].clear_group(2)), Response::ACK);
        assert_eq!(reply(&mut groups, &m[0].clear_group(2)), Response::ACK);
        assert_eq!(
            groups.summary().groups,
            1,
            "a double clear does not tear the group down"
        );
        assert_eq!(reply(&mut groups, &m[1].clear_group(2)), Response::ACK);
        assert_eq!(groups.summary().groups, 0);
        // Late clear re-creates and deletes a one-member group, as LAVA.
        assert_eq!(reply(&mut groups, &m[1].clear_group(2)), Response::ACK);
        assert_eq!(groups.summary().groups, 0);
    }

    #[test]
    fn complete_closes_without_reply() {
        let (mut groups, m) = registered(&[("1", "a")]);
        let request = m[0].request(Operation::Complete);
        assert_eq!(groups.handle(&request, Instant::now()), Outcome::Close);
    }

    #[test]
    fn limits_turn_into_nacks() {
        let mut groups = Groups::new(GroupLimits {
            max_groups: 1,
            max_clients_per_group: 8,
            max_message_ids_per_group: 2,
            max_payload_bytes_per_group: 100,
            max_groups_per_address: 10,
        });
        let a = member("1", "a");
        reply(&mut groups, &a.group_data(1));
        let mut other = member("9", "a");
        other.group_name = "other".into();
        assert_eq!(reply(&mut groups, &other.group_data(1)), Response::Nack);
        assert_eq!(
            reply(&mut groups, &a.lava_send("one", Payload::empty())),
            Response::ACK
        );
        assert_eq!(
            reply(&mut groups, &a.lava_send("two", Payload::empty())),
            Response::ACK
        );
        assert_eq!(
            reply(&mut groups, &a.lava_send("three", Payload::empty())),
            Response::Nack
        );
        let big = payload(&[("k", &"x".repeat(200))]);
        assert_eq!(reply(&mut groups, &a.lava_send("one", big)), Response::Nack);
        assert!(!reply(&mut groups, &a.group_data(1)).is_wait());
    }

    #[test]
    fn idle_groups_expire() {
        let (mut groups, _m) = registered(&[("1", "a")]);
        let later = Instant::now() + Duration::from_secs(7200);
        let hour = Expiry {
            forming: None,
            any: Some(Duration::from_secs(3600)),
        };
        assert_eq!(groups.expire_idle(hour, later), 1);
        assert_eq!(groups.summary().groups, 0);
    }

    fn junk(n: usize, size: u64) -> Request {
        let mut junk = member(&n.to_string(), "a");
        junk.group_name = format!("junk-{n}");
        junk.group_data(size)
    }

    #[test]
    fn expiry_is_on_by_default_and_forming_groups_go_first() {
        let (mut groups, _m) = registered(&[("1", "a")]);
        let start = Instant::now();
        groups.handle(&junk(1, 2), start);
        assert_eq!(groups.summary().groups, 2);
        let defaults = Expiry::default();
        assert_eq!(
            groups.expire_idle(defaults, start + Duration::from_secs(300)),
            0
        );
        // The forming junk goes after ten minutes, the complete group stays.
        assert_eq!(
            groups.expire_idle(defaults, start + Duration::from_secs(601)),
            1
        );
        assert_eq!(groups.summary().groups, 1);
        assert_eq!(
            groups.expire_idle(defaults, start + Duration::from_secs(24 * 3600 + 1)),
            1
        );
    }

    #[test]
    fn a_junk_flood_cannot_lock_out_new_groups() {
        let limits = GroupLimits {
            max_groups: 100,
            max_groups_per_address: 50,
            ..GroupLimits::default()
        };
        let mut groups = Groups::new(limits);
        let flooder: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Instant::now();
        let mut refused = 0;
        for n in 0..10_000 {
            if groups.handle_from(&junk(n, 2), Some(flooder), start) == Outcome::nack() {
                refused += 1;
            }
        }
        assert_eq!(refused, 10_000 - 50);
        assert_eq!(groups.summary().groups, 50);
        // Junk from many addresses fills the table ...
        for n in 0..50 {
            let address = IpAddr::from([198, 51, 100, n as u8]);
            groups.handle_from(&junk(20_000 + n, 2), Some(address), start);
        }
        assert_eq!(groups.summary().groups, 100);
        // ... and a real group still gets in once the junk has been quiet a while.
        let real: IpAddr = "203.0.113.7".parse().unwrap();
        let mut worker = member("7", "server");
        worker.group_name = "real".into();
        let soon = start + Duration::from_secs(10);
        assert_eq!(
            groups.handle_from(&worker.group_data(1), Some(real), soon),
            Outcome::nack()
        );
        let later = start + EVICTABLE_AFTER;
        assert!(
            !groups
                .handle_from(&worker.group_data(1), Some(real), later)
                .is_wait()
        );
        assert_eq!(groups.summary().groups, 100);
        // Expired and evicted groups give their address its allowance back.
        assert_eq!(
            groups.expire_idle(Expiry::default(), start + Duration::from_secs(601)),
            99
        );
        assert!(groups.per_address.is_empty() || groups.per_address.get(&real) == Some(&1));
        assert!(
            groups
                .handle_from(&junk(1, 2), Some(flooder), later)
                .is_wait()
        );
    }

    #[test]
    fn aggregate_waits_for_all_bundles_then_twice_more() {
        let (mut groups, m) = registered(&[("1", "a"), ("2", "b")]);
        let bundle = |e: &Envelope, sub: &str| Request {
            bundle: Some(serde_json::json!({"b": e.client_name})),
            sub_id: Some(Value::from(sub)),
            ..e.request(Operation::Aggregate)
        };
        assert_eq!(reply(&mut groups, &bundle(&m[0], "7.0")), Response::WAIT);
        assert_eq!(reply(&mut groups, &bundle(&m[1], "7.1")), Response::ACK);
        assert_eq!(reply(&mut groups, &bundle(&m[0], "7.0")), Response::WAIT);
        assert_eq!(reply(&mut groups, &bundle(&m[0], "7.0")), Response::WAIT);
        assert!(matches!(
            reply(&mut groups, &bundle(&m[0], "7.0")),
            Response::Ack { message: Some(_) }
        ));
    }
}
