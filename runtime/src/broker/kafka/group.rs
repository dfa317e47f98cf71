//! A member of a Kafka consumer group: finds the group's coordinator, joins (the leader assigns
//! each subscribed topic's partitions round-robin among the members subscribed to it), keeps
//! its place with heartbeats, reads and commits offsets, and leaves.
//!
//! rskafka, which carries the records, speaks no group protocol, so these requests are encoded
//! with `kafka-protocol` (the message types Tansu and other Rust Kafka tools use) on a
//! connection of their own to the coordinator. Fixed request versions, all of Kafka 2.3 or
//! later: FindCoordinator v2, JoinGroup v5, SyncGroup v3, Heartbeat v3, OffsetFetch v5,
//! OffsetCommit v7, LeaveGroup v3.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::{self, ConsumerProtocolAssignment};
use kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
use kafka_protocol::messages::{
    join_group_request, offset_commit_request, offset_fetch_request, sync_group_request, ApiKey,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, RequestHeader, ResponseHeader, SyncGroupRequest, SyncGroupResponse,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Error;

/// The longest response read from a coordinator.
const MAX_RESPONSE: usize = 16 << 20;

pub(super) fn err(detail: impl std::fmt::Display) -> Error {
    Error::unavailable(super::super::ID, format!("kafka: {detail}"))
}

/// Kafka error codes the member acts on.
mod code {
    pub(super) const NONE: i16 = 0;
    pub(super) const ILLEGAL_GENERATION: i16 = 22;
    pub(super) const UNKNOWN_MEMBER_ID: i16 = 25;
    pub(super) const REBALANCE_IN_PROGRESS: i16 = 27;
    pub(super) const MEMBER_ID_REQUIRED: i16 = 79;
}

/// One connection to a broker, one request at a time.
struct Conn {
    stream: TcpStream,
    next: i32,
}

impl Conn {
    async fn connect(addr: &str) -> Result<Conn, Error> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .map_err(|_| err(format!("connecting to {addr} timed out")))?
            .map_err(|e| err(format!("cannot reach {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn { stream, next: 1 })
    }

    /// Sends `req` as `version` and reads its response, within `wait`.
    async fn call<Q, A>(&mut self, key: ApiKey, req: &Q, version: i16, wait: Duration) -> Result<A, Error>
    where
        Q: Encodable + HeaderVersion,
        A: Decodable + HeaderVersion,
    {
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("micro")));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        header.encode(&mut buf, Q::header_version(version)).map_err(err)?;
        req.encode(&mut buf, version).map_err(err)?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let io = async {
            self.stream.write_all(&buf).await?;
            let len = self.stream.read_i32().await? as usize;
            if len > MAX_RESPONSE {
                return Err(std::io::Error::other(format!("a response of {len} bytes")));
            }
            let mut body = vec![0; len];
            self.stream.read_exact(&mut body).await?;
            Ok(Bytes::from(body))
        };
        let mut body = tokio::time::timeout(wait, io)
            .await
            .map_err(|_| err("the coordinator did not answer in time"))?
            .map_err(|e| err(format!("coordinator connection: {e}")))?;
        let h = ResponseHeader::decode(&mut body, A::header_version(version)).map_err(err)?;
        if h.correlation_id != id {
            return Err(err("a response out of order"));
        }
        A::decode(&mut body, version).map_err(err)
    }
}

/// A member of group `group` subscribed to `topic`.
pub(super) struct Member {
    group: String,
    topic: String,
    conn: Conn,
    member_id: String,
    generation: i32,
    session: Duration,
}

/// The partitions each topic has, for the leader's assignment.
pub(super) type Partitions = HashMap<String, i32>;

impl Member {
    /// Finds the coordinator of `group` through the first of `bootstrap` that answers, and
    /// connects to it.
    pub(super) async fn connect(
        bootstrap: &[String],
        group: &str,
        topic: &str,
        session: Duration,
    ) -> Result<Member, Error> {
        let mut last = err("no bootstrap broker");
        for addr in bootstrap {
            match find_coordinator(addr, group).await {
                Ok(coordinator) => {
                    let conn = Conn::connect(&coordinator).await?;
                    let (group, topic) = (group.to_string(), topic.to_string());
                    return Ok(Member { group, topic, conn, member_id: String::new(), generation: -1, session });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn group_id(&self) -> GroupId {
        GroupId(StrBytes::from_string(self.group.clone()))
    }

    /// Joins (or joins again) and returns this member's partitions of its topic; `partitions`
    /// is asked for the topics' sizes when this member leads.
    pub(super) async fn join<F>(&mut self, partitions: F) -> Result<Vec<i32>, Error>
    where
        F: AsyncFn(Vec<String>) -> Result<Partitions, Error>,
    {
        let subscription = encode_versioned(
            &ConsumerProtocolSubscription::default().with_topics(vec![StrBytes::from_string(self.topic.clone())]),
        )?;
        let rebalance = self.session.max(Duration::from_secs(10));
        for _ in 0..10 {
            let req = JoinGroupRequest::default()
                .with_group_id(self.group_id())
                .with_session_timeout_ms(self.session.as_millis() as i32)
                .with_rebalance_timeout_ms(rebalance.as_millis() as i32)
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(subscription.clone())]);
            let resp: JoinGroupResponse =
                self.conn.call(ApiKey::JoinGroup, &req, 5, rebalance + Duration::from_secs(5)).await?;
            match resp.error_code {
                code::NONE => {}
                code::MEMBER_ID_REQUIRED => {
                    self.member_id = resp.member_id.to_string();
                    continue;
                }
                code::UNKNOWN_MEMBER_ID => {
                    self.member_id.clear();
                    continue;
                }
                code::REBALANCE_IN_PROGRESS => continue,
                other => return Err(err(format!("joining group {} failed with error {other}", self.group))),
            }
            self.member_id = resp.member_id.to_string();
            self.generation = resp.generation_id;
            let assignments = if resp.leader == resp.member_id {
                let members: Vec<(String, Vec<String>)> =
                    resp.members.iter().map(|m| (m.member_id.to_string(), decode_subscription(&m.metadata))).collect();
                let mut topics: Vec<String> = members.iter().flat_map(|(_, t)| t.clone()).collect();
                topics.sort();
                topics.dedup();
                assign(&members, &partitions(topics).await?)?
            } else {
                vec![]
            };
            // The leader takes its share from its own plan: a coordinator that keeps the
            // generation when a member drops out (Tansu does) answers with the previous plan.
            let own = assignments
                .iter()
                .find(|a| a.member_id.as_str() == self.member_id)
                .map(|a| decode_assignment(&a.assignment, &self.topic));
            let req = SyncGroupRequest::default()
                .with_group_id(self.group_id())
                .with_generation_id(self.generation)
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_assignments(assignments);
            let resp: SyncGroupResponse =
                self.conn.call(ApiKey::SyncGroup, &req, 3, rebalance + Duration::from_secs(5)).await?;
            match resp.error_code {
                code::NONE => return Ok(own.unwrap_or_else(|| decode_assignment(&resp.assignment, &self.topic))),
                code::REBALANCE_IN_PROGRESS | code::ILLEGAL_GENERATION => continue,
                code::UNKNOWN_MEMBER_ID => {
                    self.member_id.clear();
                    continue;
                }
                other => return Err(err(format!("syncing group {} failed with error {other}", self.group))),
            }
        }
        Err(err(format!("group {} kept rebalancing", self.group)))
    }

    /// Tells the coordinator this member lives; an error code means "join again".
    pub(super) async fn heartbeat(&mut self) -> Result<(), Error> {
        let req = HeartbeatRequest::default()
            .with_group_id(self.group_id())
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()));
        let resp: HeartbeatResponse = self.conn.call(ApiKey::Heartbeat, &req, 3, Duration::from_secs(5)).await?;
        match resp.error_code {
            code::NONE => Ok(()),
            other => Err(Error::new(super::super::ID, 409, format!("kafka: heartbeat error {other}"))),
        }
    }

    /// The committed offsets of `partitions` (absent: none committed).
    pub(super) async fn committed(&mut self, partitions: &[i32]) -> Result<BTreeMap<i32, i64>, Error> {
        let req = OffsetFetchRequest::default().with_group_id(self.group_id()).with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                .with_partition_indexes(partitions.to_vec()),
        ]));
        let resp: OffsetFetchResponse = self.conn.call(ApiKey::OffsetFetch, &req, 5, Duration::from_secs(10)).await?;
        if resp.error_code != code::NONE {
            return Err(err(format!("reading offsets of group {} failed with error {}", self.group, resp.error_code)));
        }
        let mut out = BTreeMap::new();
        for t in resp.topics.iter().filter(|t| t.name.0.as_str() == self.topic) {
            for p in t.partitions.iter().filter(|p| p.error_code == code::NONE && p.committed_offset >= 0) {
                out.insert(p.partition_index, p.committed_offset);
            }
        }
        Ok(out)
    }

    /// Commits `offsets` (partition → the next offset to read).
    pub(super) async fn commit(&mut self, offsets: &BTreeMap<i32, i64>) -> Result<(), Error> {
        let partitions = offsets
            .iter()
            .map(|(p, o)| {
                offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o)
            })
            .collect();
        let req = OffsetCommitRequest::default()
            .with_group_id(self.group_id())
            .with_generation_id_or_member_epoch(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                .with_partitions(partitions)]);
        let resp: OffsetCommitResponse = self.conn.call(ApiKey::OffsetCommit, &req, 7, Duration::from_secs(10)).await?;
        let failed = resp.topics.iter().flat_map(|t| t.partitions.iter()).find(|p| p.error_code != code::NONE);
        match failed {
            None => Ok(()),
            Some(p) => {
                Err(err(format!("committing offsets of group {} failed with error {}", self.group, p.error_code)))
            }
        }
    }

    /// Leaves the group, so that the others take its partitions at once.
    pub(super) async fn leave(&mut self) {
        let req = LeaveGroupRequest::default()
            .with_group_id(self.group_id())
            .with_members(vec![kafka_protocol::messages::leave_group_request::MemberIdentity::default()
                .with_member_id(StrBytes::from_string(self.member_id.clone()))]);
        let _: Result<LeaveGroupResponse, _> =
            self.conn.call(ApiKey::LeaveGroup, &req, 3, Duration::from_secs(5)).await;
    }
}

/// The coordinator of `group` (`host:port`), as the broker at `addr` says.
async fn find_coordinator(addr: &str, group: &str) -> Result<String, Error> {
    let mut conn = Conn::connect(addr).await?;
    let req = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string())).with_key_type(0);
    let resp: FindCoordinatorResponse = conn.call(ApiKey::FindCoordinator, &req, 2, Duration::from_secs(10)).await?;
    if resp.error_code != code::NONE {
        return Err(err(format!("no coordinator for group {group} (error {})", resp.error_code)));
    }
    Ok(format!("{}:{}", resp.host.as_str(), resp.port))
}

/// A consumer-protocol structure with its leading version (0).
fn encode_versioned<T: Encodable>(value: &T) -> Result<Bytes, Error> {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    value.encode(&mut buf, 0).map_err(err)?;
    Ok(buf.freeze())
}

fn decode_subscription(metadata: &Bytes) -> Vec<String> {
    let mut b = metadata.clone();
    if b.remaining() < 2 {
        return vec![];
    }
    let version = b.get_i16();
    ConsumerProtocolSubscription::decode(&mut b, version.clamp(0, 3))
        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

fn decode_assignment(assignment: &Bytes, topic: &str) -> Vec<i32> {
    let mut b = assignment.clone();
    if b.remaining() < 2 {
        return vec![];
    }
    let version = b.get_i16();
    let Ok(a) = ConsumerProtocolAssignment::decode(&mut b, version.clamp(0, 3)) else { return vec![] };
    a.assigned_partitions.iter().filter(|t| t.topic.0.as_str() == topic).flat_map(|t| t.partitions.clone()).collect()
}

/// The leader's plan: each topic's partitions dealt round-robin to the members subscribed to
/// it, in member-id order.
fn assign(
    members: &[(String, Vec<String>)],
    partitions: &Partitions,
) -> Result<Vec<sync_group_request::SyncGroupRequestAssignment>, Error> {
    let mut plan: BTreeMap<&str, BTreeMap<&str, Vec<i32>>> =
        members.iter().map(|(m, _)| (m.as_str(), BTreeMap::new())).collect();
    for (topic, n) in partitions {
        let mut takers: Vec<&str> =
            members.iter().filter(|(_, t)| t.contains(topic)).map(|(m, _)| m.as_str()).collect();
        takers.sort();
        if takers.is_empty() {
            continue;
        }
        for p in 0..*n {
            let m = takers[p as usize % takers.len()];
            plan.entry(m).or_default().entry(topic.as_str()).or_default().push(p);
        }
    }
    plan.into_iter()
        .map(|(member, topics)| {
            let assigned = topics
                .into_iter()
                .map(|(t, ps)| {
                    consumer_protocol_assignment::TopicPartition::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect();
            let bytes = encode_versioned(&ConsumerProtocolAssignment::default().with_assigned_partitions(assigned))?;
            Ok(sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(member.to_string()))
                .with_assignment(bytes))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_dealt_to_subscribed_members() {
        let members =
            vec![("b".to_string(), vec!["t".to_string()]), ("a".to_string(), vec!["t".to_string(), "u".to_string()])];
        let partitions: Partitions = [("t".to_string(), 3), ("u".to_string(), 1)].into();
        let plan = assign(&members, &partitions).unwrap();
        let mine = |m: &str, t: &str| {
            let a = plan.iter().find(|a| a.member_id.as_str() == m).unwrap();
            decode_assignment(&a.assignment, t)
        };
        assert_eq!((mine("a", "t"), mine("b", "t")), (vec![0, 2], vec![1]));
        assert_eq!((mine("a", "u"), mine("b", "u")), (vec![0], vec![]));
        let sub = encode_versioned(&ConsumerProtocolSubscription::default().with_topics(vec!["t".into()])).unwrap();
        assert_eq!(decode_subscription(&sub), ["t"]);
    }
}
