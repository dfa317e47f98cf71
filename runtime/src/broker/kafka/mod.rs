//! The Kafka broker, `--broker kafka` (feature `kafka`): records are produced and fetched with
//! `rskafka` (a pure-Rust client, so nothing to build in C and nothing to link), queue groups
//! are Kafka consumer groups spoken by [`group`].
//!
//! - **Topics**: a micro topic is a Kafka topic of the same name (`[A-Za-z0-9._-]`, at most 249
//!   bytes). Subscribers create it with [`PARTITIONS`] partitions, and `<topic>.dlq` with one;
//!   publishing to a topic that does not exist fails, saying nobody subscribed.
//! - **Publishing** returns once the partition's leader has the record (`acks=all`). A message
//!   with a `Micro-Key` header goes to the partition of its key (Kafka's murmur2, as Java
//!   clients pick it), so messages of one key keep their order; others are spread round-robin.
//! - **Queue groups** are consumer groups named after the queue: each partition is read by one
//!   member, from the group's committed offset; a new group starts at the end of the topic
//!   (Kafka's `latest`) and commits that position at once, so nothing published after its first
//!   subscription is skipped. Offsets are committed after the handler succeeds (every 50 ms while
//!   messages flow, and when a partition is taken away). A member that dies is dropped from the
//!   group after its session (`broker_ack_wait`, at least 6 s), and its partitions resume at
//!   their last commit at the others. A subscriber without a queue reads every partition from the
//!   end, committing nothing.
//! - **Failures**: Kafka has no per-message redelivery, so a failed or panicking handler is run
//!   again in place, after the retry delay, up to `broker_max_deliveries` times (the partition
//!   waits: order is kept); then the message is produced to `<topic>.dlq` and passed.
//! - **Duplicates**: a member that dies after handling messages it had not committed yet leaves
//!   them to be handled again by the next owner of the partition (at most ~50 ms of them); within
//!   one process a subscription remembers what it handled and skips it.
//! - **Reconnection**: rskafka retries each request for up to 10 s; past that, the subscription
//!   joins its group again, from the coordinator up, waiting 100 ms and doubling to 5 s.

mod group;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use tokio::sync::{watch, OnceCell};

use super::delivery::{self, Delivery, Handled};
use super::{Broker, Event, Handler, Message, SubscribeOptions, Subscription};
use crate::Error;
use group::{err, Member, Partitions};

const SYSTEM: &str = "kafka";
/// Partitions of a topic a subscriber creates.
pub const PARTITIONS: i32 = 4;
/// The longest Kafka topic name.
const MAX_TOPIC: usize = 249;
/// How often offsets are committed while messages flow, and heartbeats are sent.
const COMMIT_EVERY: Duration = Duration::from_millis(50);
/// Topic metadata older than this is read again.
const METADATA_TTL: Duration = Duration::from_secs(10);
/// Cached partition clients and topic sizes; past this many, forgotten.
const MAX_CACHED: usize = 1024;

/// The Kafka broker.
pub struct KafkaBroker {
    bootstrap: Vec<String>,
    delivery: Delivery,
    client: OnceCell<Arc<Client>>,
    partitions: Mutex<HashMap<(String, i32), Arc<PartitionClient>>>,
    sizes: Mutex<HashMap<String, (i32, Instant)>>,
    next: AtomicUsize,
    /// Group subscriptions that lost their coordinator (readiness).
    down: delivery::Outages,
}

impl KafkaBroker {
    /// A broker for the Kafka cluster reached through `addresses` (`127.0.0.1:9092` when empty).
    pub fn new(addresses: &[String], delivery: Delivery) -> Self {
        let mut bootstrap: Vec<String> =
            addresses.iter().map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect();
        if bootstrap.is_empty() {
            bootstrap.push("127.0.0.1:9092".into());
        }
        KafkaBroker {
            bootstrap,
            delivery,
            client: OnceCell::new(),
            partitions: Mutex::default(),
            sizes: Mutex::default(),
            next: AtomicUsize::new(0),
            down: Default::default(),
        }
    }

    async fn client(&self) -> Result<Arc<Client>, Error> {
        // Boxed, so that every publish's future does not carry the size of connecting.
        let client = self
            .client
            .get_or_try_init(|| {
                Box::pin(async {
                    let backoff =
                        rskafka::BackoffConfig { deadline: Some(Duration::from_secs(10)), ..Default::default() };
                    let client = ClientBuilder::new(self.bootstrap.clone()).backoff_config(backoff).client_id("micro");
                    client
                        .build()
                        .await
                        .map(Arc::new)
                        .map_err(|e| err(format!("cannot reach {}: {e}", self.bootstrap.join(","))))
                })
            })
            .await?;
        Ok(client.clone())
    }

    async fn partition(&self, topic: &str, p: i32) -> Result<Arc<PartitionClient>, Error> {
        let key = (topic.to_string(), p);
        if let Some(c) = self.partitions.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(c.clone());
        }
        let client = self.client().await?;
        let c = client.partition_client(topic, p, UnknownTopicHandling::Retry).await.map_err(err)?;
        let c = Arc::new(c);
        let mut cache = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, c.clone());
        Ok(c)
    }

    /// The partitions of the existing `topics` (a topic absent from the answer does not exist).
    async fn sizes(&self, topics: &[String]) -> Result<Partitions, Error> {
        let fresh = |(n, at): &(i32, Instant)| (at.elapsed() < METADATA_TTL).then_some(*n);
        {
            let sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
            let known: Option<Partitions> =
                topics.iter().map(|t| sizes.get(t).and_then(fresh).map(|n| (t.clone(), n))).collect();
            if let Some(known) = known {
                return Ok(known);
            }
        }
        let all = self.client().await?.list_topics().await.map_err(err)?;
        let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        if sizes.len() >= MAX_CACHED {
            sizes.clear();
        }
        let mut out = Partitions::new();
        for t in all.into_iter().filter(|t| topics.contains(&t.name)) {
            let n = t.partitions.len() as i32;
            sizes.insert(t.name.clone(), (n, Instant::now()));
            out.insert(t.name, n);
        }
        Ok(out)
    }

    /// Creates `topic` with `partitions` unless it exists.
    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        if self.sizes(&[topic.to_string()]).await?.contains_key(topic) {
            return Ok(());
        }
        let controller = self.client().await?.controller_client().map_err(err)?;
        // Replication as the cluster sets it by default; a broker too old to know "-1" gets 1.
        let made = match controller.create_topic(topic, partitions, -1, 5000).await {
            Err(_) => controller.create_topic(topic, partitions, 1, 5000).await,
            ok => ok,
        };
        self.sizes.lock().unwrap_or_else(|e| e.into_inner()).remove(topic);
        match made {
            Ok(()) => Ok(()),
            // Made meanwhile by another subscriber.
            Err(_) if self.sizes(&[topic.to_string()]).await?.contains_key(topic) => Ok(()),
            Err(e) => Err(err(format!("cannot create topic {topic}: {e}"))),
        }
    }

    /// Produces `message` to a partition of `topic` (its key's, or the next one).
    async fn produce(&self, topic: &str, message: &Message) -> Result<(), Error> {
        let n = match self.sizes(&[topic.to_string()]).await?.get(topic) {
            Some(n) if *n > 0 => *n,
            _ => {
                return Err(Error::not_found(
                    super::ID,
                    format!("kafka: no topic {topic} (its subscribers create it; none has subscribed yet)"),
                ))
            }
        };
        let key = message.get(delivery::KEY_HEADER).map(|k| k.as_bytes().to_vec());
        let p = match &key {
            Some(k) => (murmur2(k) & 0x7fff_ffff) as i32 % n,
            None => (self.next.fetch_add(1, Ordering::Relaxed) % n as usize) as i32,
        };
        let headers = message
            .header
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case(crate::metadata::AUTHORIZATION))
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .collect();
        let record = Record { key, value: Some(message.body.to_vec()), headers, timestamp: now() };
        let client = self.partition(topic, p).await?;
        client.produce(vec![record], Compression::NoCompression).await.map(|_| ()).map_err(err)
    }
}

/// The time now, as a record's timestamp.
fn now() -> rskafka::chrono::DateTime<rskafka::chrono::Utc> {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    rskafka::chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Kafka's default partitioner hash (murmur2, seed 0x9747b28c), as Java clients compute it.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1e995;
    let mut h: u32 = 0x9747b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

fn check(topic: &str) -> Result<(), Error> {
    super::check_topic(topic)?;
    let legal = topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !legal || topic.len() + delivery::DEAD_LETTER_SUFFIX.len() > MAX_TOPIC {
        return Err(Error::bad_request(
            super::ID,
            format!(
                "kafka: topic {topic:?} must be letters, digits, '.', '_' or '-', at most {} bytes",
                MAX_TOPIC - delivery::DEAD_LETTER_SUFFIX.len()
            ),
        ));
    }
    Ok(())
}

#[async_trait]
impl Broker for KafkaBroker {
    async fn connect(&self) -> Result<(), Error> {
        self.client().await.map(|_| ())
    }

    async fn disconnect(&self) -> Result<(), Error> {
        Ok(())
    }

    async fn publish(&self, topic: &str, message: Message) -> Result<(), Error> {
        check(topic)?;
        self.produce(topic, &message).await
    }

    async fn subscribe(&self, topic: &str, handler: Handler, opts: SubscribeOptions) -> Result<Subscription, Error> {
        check(topic)?;
        self.ensure_topic(topic, PARTITIONS).await?;
        self.ensure_topic(&delivery::dead_letter_topic(topic), 1).await?;
        let broker = Arc::new(KafkaBroker::new(&self.bootstrap, self.delivery));
        let sub = Arc::new(Consume {
            broker,
            topic: topic.to_string(),
            handler,
            handled: Mutex::new(Handled::new(delivery::HANDLED)),
        });
        let task = match opts.queue {
            Some(queue) => {
                let session = member_session(self);
                let mut member = Member::connect(&self.bootstrap, &queue, topic, session).await?;
                // Joined, with a committed place, before this returns: nothing published from
                // now on is skipped.
                let parts = sub.join(&mut member).await?;
                // Ended by a word, so that it commits and leaves the group (its partitions go
                // to the others at once, not after its session).
                let (quit, quitting) = watch::channel(false);
                tokio::spawn(sub.run_group(member, queue, parts, quitting, self.down.clone()));
                return Ok(Subscription::new(move || {
                    let _ = quit.send(true);
                }));
            }
            None => {
                let n = self.sizes(&[topic.to_string()]).await?.get(topic).copied().unwrap_or(PARTITIONS);
                let mut starts = BTreeMap::new();
                for p in 0..n {
                    starts.insert(p, self.partition(topic, p).await?.get_offset(OffsetAt::Latest).await.map_err(err)?);
                }
                tokio::spawn(sub.run_alone(starts))
            }
        };
        Ok(Subscription::new(move || task.abort()))
    }

    fn name(&self) -> &'static str {
        SYSTEM
    }

    fn check(&self) -> Result<(), String> {
        self.down.check("kafka")
    }
}

/// One subscription.
struct Consume {
    /// Its own clients (a subscription's fetches never wait behind another's).
    broker: Arc<KafkaBroker>,
    topic: String,
    handler: Handler,
    handled: Mutex<Handled>,
}

/// Where each partition a subscription reads is: the next offset handled, shared with the
/// committer.
type Positions = Arc<Mutex<BTreeMap<i32, i64>>>;

impl Consume {
    /// Joins the group and returns this member's partitions with where each starts; a partition
    /// the group never committed starts at its end, committed at once.
    async fn join(&self, member: &mut Member) -> Result<BTreeMap<i32, i64>, Error> {
        let broker = self.broker.clone();
        let parts = member.join(async move |topics: Vec<String>| broker.sizes(&topics).await).await?;
        let mut starts = member.committed(&parts).await?;
        let mut fresh = BTreeMap::new();
        for p in parts {
            if let std::collections::btree_map::Entry::Vacant(e) = starts.entry(p) {
                let end =
                    self.broker.partition(&self.topic, p).await?.get_offset(OffsetAt::Latest).await.map_err(err)?;
                e.insert(end);
                fresh.insert(p, end);
            }
        }
        if !fresh.is_empty() {
            member.commit(&fresh).await?;
        }
        Ok(starts)
    }

    /// A group member's life: read its partitions, commit, heartbeat; join again when the group
    /// changes or the coordinator is lost.
    async fn run_group(
        self: Arc<Self>,
        mut member: Member,
        queue: String,
        mut starts: BTreeMap<i32, i64>,
        mut quitting: watch::Receiver<bool>,
        down: delivery::Outages,
    ) {
        let mut pause = Duration::from_millis(100);
        loop {
            let positions: Positions = Arc::new(Mutex::new(starts.clone()));
            let (stop, stopped) = watch::channel(false);
            let readers: Vec<_> = starts
                .keys()
                .map(|p| tokio::spawn(self.clone().read(*p, positions.clone(), stopped.clone())))
                .collect();
            let mut committed = starts.clone();
            let mut tick = tokio::time::interval(COMMIT_EVERY);
            let mut beat = Instant::now();
            let lost = loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = quitting.changed() => break Error::new(super::ID, 499, "unsubscribed"),
                }
                let now = positions.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if now != committed {
                    if let Err(e) = member.commit(&now).await {
                        break e;
                    }
                    committed = now;
                }
                if beat.elapsed() >= Duration::from_millis(500) {
                    beat = Instant::now();
                    if let Err(e) = member.heartbeat().await {
                        break e;
                    }
                }
            };
            let _ = stop.send(true);
            for r in readers {
                let _ = r.await;
            }
            // What was handled before the partitions go: committed if the group still takes it.
            let last = positions.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if last != committed {
                let _ = member.commit(&last).await;
            }
            if lost.code == 499 || quitting.has_changed().is_err() {
                member.leave().await;
                return;
            }
            tracing::debug!(topic = %self.topic, %queue, reason = %lost.detail, "kafka: joining the group again");
            // Not ready while the coordinator is lost (a rebalance alone is no outage).
            let _outage = (lost.code != 409).then(|| down.begin());
            // After a rebalance the same member joins again; after a lost coordinator, or a
            // failed join, a new one finds the coordinator first.
            let mut fresh = lost.code != 409;
            starts = loop {
                if fresh {
                    let session = member_session(&self.broker);
                    match Member::connect(&self.broker.bootstrap, &queue, &self.topic, session).await {
                        Ok(m) => member = m,
                        Err(_) => {
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(5));
                            continue;
                        }
                    }
                }
                match self.join(&mut member).await {
                    Ok(s) => break s,
                    Err(_) => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                        fresh = true;
                    }
                }
            };
            pause = Duration::from_millis(100);
        }
    }

    /// A subscriber without a queue: every partition from where it started, nothing committed.
    async fn run_alone(self: Arc<Self>, starts: BTreeMap<i32, i64>) {
        let positions: Positions = Arc::new(Mutex::new(starts.clone()));
        let (_stop, stopped) = watch::channel(false);
        let readers: Vec<_> =
            starts.keys().map(|p| tokio::spawn(self.clone().read(*p, positions.clone(), stopped.clone()))).collect();
        for r in readers {
            let _ = r.await;
        }
    }

    /// Reads partition `p` from its position until told to stop, handling each record in order.
    async fn read(self: Arc<Self>, p: i32, positions: Positions, mut stopped: watch::Receiver<bool>) {
        // A connection of its own: a broker answers one connection's requests in turn, so a
        // partition's long-polling fetch would hold up the others'.
        let own = KafkaBroker::new(&self.broker.bootstrap, self.broker.delivery);
        let mut offset = positions.lock().unwrap_or_else(|e| e.into_inner()).get(&p).copied().unwrap_or(0);
        let mut pause = Duration::from_millis(100);
        while !*stopped.borrow() {
            let fetched = async {
                let client = own.partition(&self.topic, p).await?;
                client.fetch_records(offset, 1..1_048_576, 500).await.map_err(err)
            };
            let records = tokio::select! {
                r = fetched => r,
                _ = stopped.changed() => return,
            };
            let records = match records {
                Ok((records, _high)) => records,
                Err(e) => {
                    if e.detail.contains("OffsetOutOfRange") {
                        if let Ok(c) = own.partition(&self.topic, p).await {
                            offset = c.get_offset(OffsetAt::Earliest).await.unwrap_or(offset);
                        }
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            pause = Duration::from_millis(100);
            let from = offset;
            for r in records.into_iter().filter(|r| r.offset >= from) {
                if !self.deliver(r.record, &stopped).await {
                    return;
                }
                offset = r.offset + 1;
                positions.lock().unwrap_or_else(|e| e.into_inner()).insert(p, offset);
            }
        }
    }

    /// Handles one record: tried until it succeeds or its tries run out (then dead-lettered);
    /// false when told to stop first (the record is left to the partition's next owner).
    async fn deliver(&self, record: Record, stopped: &watch::Receiver<bool>) -> bool {
        let header: BTreeMap<String, String> =
            record.headers.iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned())).collect();
        let message = Message { header, body: record.value.unwrap_or_default().into() };
        let key = message.get(super::ID_HEADER).map(str::to_string);
        if key.as_ref().is_some_and(|k| self.handled.lock().unwrap_or_else(|e| e.into_inner()).contains(k)) {
            return true;
        }
        let d = self.broker.delivery;
        let mut tries = 0;
        loop {
            if *stopped.borrow() {
                return false;
            }
            tries += 1;
            let event = Event { system: SYSTEM, topic: self.topic.clone(), message: message.clone() };
            let res = delivery::handle(&self.handler, event).await;
            let reason = match res {
                Ok(()) => break,
                Err(e) => e.detail,
            };
            if d.exhausted(tries) {
                let dead = delivery::dead_letter(&self.topic, &message, tries, &reason);
                let to = delivery::dead_letter_topic(&self.topic);
                loop {
                    match self.broker.produce(&to, &dead).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(topic = %self.topic, error = %e.detail, "kafka: cannot dead-letter a message; trying again");
                            if *stopped.borrow() {
                                return false;
                            }
                            tokio::time::sleep(d.retry_delay(tries)).await;
                        }
                    }
                }
                break;
            }
            tokio::time::sleep(d.retry_delay(tries)).await;
        }
        if let Some(k) = key {
            self.handled.lock().unwrap_or_else(|e| e.into_inner()).insert(&k);
        }
        true
    }
}

fn member_session(broker: &KafkaBroker) -> Duration {
    broker.delivery.ack_wait.max(Duration::from_secs(6))
}

#[cfg(test)]
mod tests {
    #[test]
    fn murmur2_matches_kafkas() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(super::murmur2(b"21") as i32, -973932308);
        assert_eq!(super::murmur2(b"foobar") as i32, -790332482);
        assert_eq!(super::murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(super::murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(super::murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32, -58897971);
        assert_eq!(super::murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn topics_are_kafka_names() {
        assert!(super::check("orders.created").is_ok());
        assert!(super::check("a:b").is_err());
        assert!(super::check(&"t".repeat(246)).is_err());
    }
}
