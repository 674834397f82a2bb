//! `GET /metrics`: every loop's [`LoopStats`] gathered when scraped, written in the
//! Prometheus text format by `prometheus-client` (the format is the crate's; the counting is
//! the loops' own, in `stats`). Counters are named here without `_total`: the encoder adds it.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::admission::{Admissions, LimitStats};
use crate::cluster::BrokerStats;
use crate::stats::{Counter, Counters, Histogram, Limit, LoopStats, UringCounts};
use crate::topics::TopicStats;

/// The content type of the answer.
pub(crate) use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The families only some servers have.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Optional {
    /// The server serves TLS: its handshakes.
    pub(crate) tls: bool,
    /// The loops run on io_uring: its counts.
    pub(crate) io_uring: bool,
}

/// Every loop's counts and the registry that writes them.
#[derive(Debug)]
pub(crate) struct Metrics {
    loops: Vec<Arc<LoopStats>>,
    registry: Registry,
}

impl Metrics {
    /// Counts for `loops` loops, with the server-wide open count from `admissions`, and the
    /// `optional` families this server has.
    pub(crate) fn new(loops: usize, admissions: Arc<Admissions>, optional: Optional) -> Self {
        let stats: Vec<Arc<LoopStats>> = (0..loops).map(|_| Arc::default()).collect();
        let mut registry = Registry::default();
        let gather = Gather { loops: stats.clone(), admissions, optional };
        registry.register_collector(Box::new(gather));
        Metrics { loops: stats, registry }
    }

    /// The per-client limits' hits, summed over the loops.
    pub(crate) fn limit_stats(&self) -> LimitStats {
        let sum = |limit| self.loops.iter().map(|s| s.limit_hits(limit)).sum();
        LimitStats {
            address_full: sum(Limit::AddressConnections),
            address_rate: sum(Limit::AddressHandshakeRate),
            rate_paused: sum(Limit::RatePaused),
            rate_closed: sum(Limit::RateClosed),
        }
    }

    /// `pick` of the io_uring counts, summed over the loops.
    #[cfg(target_os = "linux")]
    pub(crate) fn uring_sum(&self, pick: impl Fn(&UringCounts) -> &Counter) -> u64 {
        self.loops.iter().map(|s| pick(&s.uring).get()).sum()
    }

    /// Loop `index`'s counts, for the loop to write.
    pub(crate) fn loop_stats(&self, index: u16) -> Arc<LoopStats> {
        Arc::clone(&self.loops[usize::from(index)])
    }

    /// Appends the text exposition to `out`: the loops' counts, then pub/sub's (`topics`,
    /// one per loop) and the broker's (in a cluster), read by the caller now.
    pub(crate) fn encode(
        &self,
        topics: Vec<TopicStats>,
        broker: Option<BrokerStats>,
        out: &mut String,
    ) {
        let mut pubsub = Registry::default();
        pubsub.register_collector(Box::new(PubSub { topics, broker }));
        for registry in [&self.registry, &pubsub] {
            // Writing to a String does not fail, and the collectors' writes are the crate's.
            if let Err(fmt::Error) =
                prometheus_client::encoding::prometheus_text::encode(out, registry)
            {
                tracing::error!("metrics could not be encoded");
            }
        }
    }
}

/// Reads the loops' counts at scrape time.
#[derive(Debug)]
struct Gather {
    loops: Vec<Arc<LoopStats>>,
    admissions: Arc<Admissions>,
    optional: Optional,
}

impl Collector for Gather {
    fn encode(&self, mut out: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let open = ConstGauge::new(self.admissions.open() as i64);
        open.encode(out.encode_descriptor(
            "surge_connections_open",
            "WebSocket connections open, across loops",
            None,
            MetricType::Gauge,
        )?)?;
        let loops = &self.loops[..];
        gauge(&mut out, loops, "surge_loop_connections_open", "WebSocket connections open", |s| {
            s.opened.get().saturating_sub(s.closed.get()) as i64
        })?;
        counter(&mut out, loops, "surge_connections_accepted", "TCP connections accepted", |s| {
            &s.accepted
        })?;
        family(
            &mut out,
            loops,
            "surge_handshakes_refused",
            "Valid upgrade requests refused, by status",
            "status",
            |s| &s.refused,
            true,
        )?;
        family(
            &mut out,
            loops,
            "surge_handshakes_failed",
            "Invalid upgrade requests, by the status answered",
            "status",
            |s| &s.failed,
            true,
        )?;
        family(
            &mut out,
            loops,
            "surge_http_responses",
            "Plain HTTP requests answered, by status",
            "status",
            |s| &s.http,
            true,
        )?;
        family(
            &mut out,
            loops,
            "surge_messages_received",
            "Data messages received, by kind",
            "kind",
            |s| &s.messages_in,
            false,
        )?;
        family(
            &mut out,
            loops,
            "surge_message_bytes_received",
            "Payload bytes of the data messages received, by kind",
            "kind",
            |s| &s.bytes_in,
            false,
        )?;
        family(&mut out, loops, "surge_messages_sent", "Data messages queued to a connection (a broadcast counts once per connection), by kind", "kind", |s| &s.messages_out, false)?;
        family(
            &mut out,
            loops,
            "surge_message_bytes_sent",
            "Payload bytes of the data messages sent, by kind",
            "kind",
            |s| &s.bytes_out,
            false,
        )?;
        family(
            &mut out,
            loops,
            "surge_closes_sent",
            "Close handshakes the server started, by code",
            "code",
            |s| &s.closes_sent,
            true,
        )?;
        family(
            &mut out,
            loops,
            "surge_closes_received",
            "Close frames received from peers, by code (1005: none given)",
            "code",
            |s| &s.closes_received,
            true,
        )?;
        family(
            &mut out,
            loops,
            "surge_backpressure",
            "Sends that met the backpressure limit, by what was done",
            "action",
            |s| &s.backpressure,
            false,
        )?;
        family(
            &mut out,
            loops,
            "surge_panics",
            "Panics caught, by where: a handler's (1011) or the engine's (connection dropped)",
            "origin",
            |s| &s.panics,
            false,
        )?;
        family(
            &mut out,
            loops,
            "surge_limit_hits",
            "Limits reached, by limit",
            "limit",
            |s| &s.limits,
            false,
        )?;
        if self.optional.tls {
            family(
                &mut out,
                loops,
                "surge_tls_handshakes",
                "TLS handshakes completed, by kind (full or resumed)",
                "kind",
                |s| &s.tls_handshakes,
                false,
            )?;
            family(
                &mut out,
                loops,
                "surge_tls_handshakes_failed",
                "TLS handshakes that failed, by reason",
                "reason",
                |s| &s.tls_failures,
                false,
            )?;
        }
        if self.optional.io_uring {
            let uring: [(&str, &str, PickUring); 5] = [
                ("surge_io_uring_no_buffers", "io_uring receives that found no provided buffer free (ENOBUFS); the bytes waited in the socket", |u| &u.no_buffers),
                ("surge_io_uring_rearms", "io_uring multishot receives and accepts armed again after the kernel ended them", |u| &u.rearmed),
                ("surge_io_uring_cq_overflows", "io_uring waits that found completions the kernel held back (completion queue full)", |u| &u.cq_overflows),
                ("surge_io_uring_short_sends", "io_uring sends that took less than offered (the rest went with the next)", |u| &u.short_sends),
                ("surge_io_uring_early_submits", "io_uring submissions made before the turn's end (submission queue full)", |u| &u.early_submits),
            ];
            for (name, help, pick) in uring {
                counter(&mut out, loops, name, help, |s| pick(&s.uring))?;
            }
        }
        family(
            &mut out,
            loops,
            "surge_deflate_messages",
            "permessage-deflate: messages compressed (sent) and inflated (received)",
            "way",
            |s| &s.deflate_messages,
            false,
        )?;
        family(&mut out, loops, "surge_deflate_bytes", "permessage-deflate: payload bytes before and after compressing and inflating (the ratio: after over before)", "way", |s| &s.deflate_bytes, false)?;
        histogram(
            &mut out,
            loops,
            "surge_loop_turn_seconds",
            "Loop turn duration, from the wait's end to the end of the flush",
            1e-9,
            |s| &s.turn_nanos,
        )?;
        histogram(
            &mut out,
            loops,
            "surge_loop_events_per_turn",
            "Backend reports handled per loop turn",
            1.0,
            |s| &s.events,
        )?;
        Ok(())
    }
}

/// Pub/sub's and the broker's counters, as read for one scrape.
#[derive(Debug)]
struct PubSub {
    topics: Vec<TopicStats>,
    broker: Option<BrokerStats>,
}

impl Collector for PubSub {
    fn encode(&self, mut out: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let topics = &self.topics[..];
        let per_loop = |out: &mut DescriptorEncoder<'_>,
                        name: &str,
                        help: &str,
                        kind,
                        value: &dyn Fn(&TopicStats) -> u64| {
            let mut metric = descriptor(out, name, help, kind)?;
            for (index, stats) in topics.iter().enumerate() {
                let labels = loop_label(index);
                let family = metric.encode_family(&labels)?;
                match kind {
                    MetricType::Gauge => ConstGauge::new(value(stats) as i64).encode(family)?,
                    _ => ConstCounter::new(value(stats)).encode(family)?,
                }
            }
            Ok::<(), fmt::Error>(())
        };
        per_loop(
            &mut out,
            "surge_pubsub_publishes",
            "Publishes handled (each loop counts each publish that reached it)",
            MetricType::Counter,
            &|s| s.publishes,
        )?;
        per_loop(
            &mut out,
            "surge_pubsub_deliveries",
            "Publish frames queued to subscribers",
            MetricType::Counter,
            &|s| s.deliveries,
        )?;
        per_loop(
            &mut out,
            "surge_pubsub_skipped",
            "Deliveries skipped at a subscriber's backpressure limit (on_missed)",
            MetricType::Counter,
            &|s| s.skipped,
        )?;
        per_loop(
            &mut out,
            "surge_pubsub_closed",
            "Subscribers closed with 1008 at their backpressure limit",
            MetricType::Counter,
            &|s| s.closed,
        )?;
        per_loop(
            &mut out,
            "surge_pubsub_topics",
            "Topics with local subscribers",
            MetricType::Gauge,
            &|s| s.topics,
        )?;
        per_loop(
            &mut out,
            "surge_pubsub_subscriptions",
            "Subscriptions",
            MetricType::Gauge,
            &|s| s.subscriptions,
        )?;
        let Some(broker) = &self.broker else { return Ok(()) };
        let gauges = [
            (
                "surge_broker_up",
                "Both connections to Redis (to each shard primary) are up (1) or not (0)",
                u64::from(broker.up),
            ),
            (
                "surge_broker_sharded",
                "Sharded pub/sub in use (1) or classic (0)",
                u64::from(broker.sharded),
            ),
        ];
        for (name, help, value) in gauges {
            ConstGauge::new(value as i64).encode(descriptor(
                &mut out,
                name,
                help,
                MetricType::Gauge,
            )?)?;
        }
        let counters = [
            (
                "surge_broker_published",
                "Publishes Redis took for the other nodes",
                broker.published,
            ),
            (
                "surge_broker_undelivered",
                "Publishes not delivered to the other nodes (queue full, Redis down or late)",
                broker.undelivered,
            ),
            ("surge_broker_received", "Publishes from other nodes received", broker.received),
            ("surge_broker_own", "This node's own publishes back from Redis (dropped)", broker.own),
            (
                "surge_broker_rejected",
                "Messages on the broker's channels that were not Surge publishes",
                broker.rejected,
            ),
            (
                "surge_broker_overflowed",
                "Publishes from other nodes dropped for a loop whose queue was full",
                broker.overflowed,
            ),
            (
                "surge_broker_reconnects",
                "Reconnections to Redis after a failure",
                broker.reconnects,
            ),
        ];
        for (name, help, value) in counters {
            ConstCounter::new(value).encode(descriptor(
                &mut out,
                name,
                help,
                MetricType::Counter,
            )?)?;
        }
        Ok(())
    }
}

/// One of a loop's io_uring counts.
type PickUring = fn(&UringCounts) -> &Counter;

/// The label set of one loop's series, with one more label.
type Labels<'a> = ([(&'static str, u16); 1], [(&'static str, &'a str); 1]);

fn descriptor<'s>(
    out: &'s mut DescriptorEncoder<'_>,
    name: &'s str,
    help: &str,
    kind: MetricType,
) -> Result<MetricEncoder<'s>, fmt::Error> {
    out.encode_descriptor(name, help, None, kind)
}

fn loop_label(index: usize) -> [(&'static str, u16); 1] {
    // Loops are numbered by u16 (`Config::build` caps them).
    [("loop", index as u16)]
}

/// A per-loop gauge.
fn gauge(
    out: &mut DescriptorEncoder<'_>,
    loops: &[Arc<LoopStats>],
    name: &str,
    help: &str,
    value: impl Fn(&LoopStats) -> i64,
) -> Result<(), fmt::Error> {
    let mut metric = descriptor(out, name, help, MetricType::Gauge)?;
    for (index, stats) in loops.iter().enumerate() {
        ConstGauge::new(value(stats)).encode(metric.encode_family(&loop_label(index))?)?;
    }
    Ok(())
}

/// A per-loop counter.
fn counter(
    out: &mut DescriptorEncoder<'_>,
    loops: &[Arc<LoopStats>],
    name: &str,
    help: &str,
    pick: impl Fn(&LoopStats) -> &Counter,
) -> Result<(), fmt::Error> {
    let mut metric = descriptor(out, name, help, MetricType::Counter)?;
    for (index, stats) in loops.iter().enumerate() {
        ConstCounter::new(pick(stats).get()).encode(metric.encode_family(&loop_label(index))?)?;
    }
    Ok(())
}

/// A per-loop counter under one more label; `sparse`: values never seen are left out (the
/// status and code tables are long).
fn family<const N: usize>(
    out: &mut DescriptorEncoder<'_>,
    loops: &[Arc<LoopStats>],
    name: &str,
    help: &str,
    label: &'static str,
    pick: impl Fn(&LoopStats) -> &Counters<N>,
    sparse: bool,
) -> Result<(), fmt::Error> {
    let mut metric = descriptor(out, name, help, MetricType::Counter)?;
    for (index, stats) in loops.iter().enumerate() {
        for (value, count) in pick(stats).iter() {
            if sparse && count == 0 {
                continue;
            }
            let labels: Labels<'_> = (loop_label(index), [(label, value)]);
            ConstCounter::new(count).encode(metric.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// A per-loop histogram, its recorded values times `scale` (nanoseconds to seconds).
fn histogram<const N: usize>(
    out: &mut DescriptorEncoder<'_>,
    loops: &[Arc<LoopStats>],
    name: &str,
    help: &str,
    scale: f64,
    pick: impl Fn(&LoopStats) -> &Histogram<N>,
) -> Result<(), fmt::Error> {
    let mut metric = descriptor(out, name, help, MetricType::Histogram)?;
    for (index, stats) in loops.iter().enumerate() {
        let histogram = pick(stats);
        let mut buckets = [(0.0, 0); N];
        let mut count = 0;
        for (slot, (bucket, bound)) in buckets.iter_mut().zip(
            histogram
                .buckets
                .iter()
                .zip(histogram.bounds.iter().map(|&b| b as f64 * scale).chain([f64::INFINITY])),
        ) {
            count += bucket.get();
            *slot = (bound, bucket.get());
        }
        let sum = histogram.sum.get() as f64 * scale;
        metric
            .encode_family(&loop_label(index))?
            .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
    }
    Ok(())
}
