//! `udp://` input: unicast, multicast and source-specific multicast, IPv4
//! and IPv6, plain or RTP-wrapped TS, received into pooled buffers.
//!
//! The shell around the sans-IO parts: [`socket`] binds and joins as the
//! URL says, a backend receiver ([`uring`] or [`epoll`]) fills pool buffers,
//! and each datagram (or each segment of a GRO batch) goes through the
//! [`DatagramClassifier`] to become a `Bytes` slice of whole 188-byte
//! packets. Consecutive slices of one buffer are joined, so a GRO batch of
//! plain TS leaves as one chunk. Nothing is copied except 192/204-byte
//! packets (normalised to 188) and heap fallbacks; everything dropped is
//! counted ([`UdpStats`]).
//!
//! Semantics kept from the reference: constructing does no I/O beyond the
//! socket (open binds and joins and fails fast); a socket error is an
//! error, for the supervisor to reconnect; there is no end of stream on UDP.

mod cmsg;
mod epoll;
pub mod listen;
pub mod socket;
pub(crate) mod sys;
mod uring;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use thiserror::Error;

use crate::shard::Backend;
use crate::ts::datagram::{Datagram, DatagramClassifier, DatagramCounters};
use crate::ts::framing::PacketSize;
use crate::ts::packet::PACKET_LEN;
use crate::url::UdpSpec;
use cmsg::{CONTROL_LEN, Control};

/// Buffers per input pool.
const POOL_BUFFERS: u16 = 512;
/// Bytes of heap copies one input may keep alive when its pool runs low.
const HEAP_CAP: usize = 32 << 20;
/// Buffers the io_uring receiver keeps in its provided-buffer ring. The
/// ring is consumed in order, so with all 512 buffers in it every datagram
/// landed in a cold buffer; keeping 128 in it and returning the most
/// recently freed first cut the CPU per datagram behind a GSO sender at
/// 3 Gbit/s from 226 to 179 ns (perf/udp.sh, runs before and after). Once
/// the pool was mapped lazily and completions were collected without the
/// kernel's wait path, 16 to 64 buffers came out 5 % cheaper than 128 (three
/// single runs each of `bench recv` behind `bench send`, 128-138 against
/// 134-142 ns); 64 keeps the most headroom of
/// those for a burst of plain datagrams within one batch window.
const RING_FILL: usize = 64;
/// How long the io_uring receiver lets completions gather.
const BATCH_WINDOW: Duration = Duration::from_millis(1);

/// A datagram as a receiver hands it over.
pub struct Received {
    /// The datagram's bytes (a GRO batch: several datagrams back to back).
    pub payload: Bytes,
    /// What its control messages said.
    pub control: Control,
}

/// Receive-side counters kept by the backends and the input.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RecvCounters {
    /// Datagrams longer than a receive buffer (cut, then classified).
    pub truncated: u64,
    /// Times the provided-buffer ring ran dry (datagrams waited in the
    /// socket buffer; loss, if any, shows in `kernel_drops`).
    pub ring_empty: u64,
    /// Datagrams copied to the heap because consumers held the pool.
    pub pool_fallbacks: u64,
    /// Datagrams dropped because the heap fallback was full.
    pub pool_drops: u64,
    /// Datagrams the kernel dropped for want of socket buffer space
    /// (`SO_RXQ_OVFL`).
    pub kernel_drops: u64,
    /// Datagrams addressed to another group on the same port.
    pub foreign_dropped: u64,
    /// GRO batches received (each holding several datagrams).
    pub gro_batches: u64,
}

impl RecvCounters {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &RecvCounters) {
        self.truncated += other.truncated;
        self.ring_empty += other.ring_empty;
        self.pool_fallbacks += other.pool_fallbacks;
        self.pool_drops += other.pool_drops;
        self.kernel_drops += other.kernel_drops;
        self.foreign_dropped += other.foreign_dropped;
        self.gro_batches += other.gro_batches;
    }
}

/// Everything an input counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UdpStats {
    /// Datagram classification: datagrams, bytes, TS packets, non-TS drops,
    /// odd sizes, RTP sequence gaps...
    #[serde(flatten)]
    pub datagrams: DatagramCounters,
    /// Receive path: kernel drops, pool fallbacks and drops...
    #[serde(flatten)]
    pub recv: RecvCounters,
}

impl UdpStats {
    /// Adds `other`'s counts to these (totals over every open of an input).
    pub fn add(&mut self, other: &UdpStats) {
        self.datagrams.add(&other.datagrams);
        self.recv.add(&other.recv);
    }
}

/// Why a UDP input failed.
#[derive(Debug, Error)]
pub enum UdpError {
    /// Setting up the socket failed.
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    /// The backend's receiver could not be set up.
    #[error("{url}: cannot set up the {backend} receiver: {source}")]
    Receiver {
        /// The input.
        url: String,
        /// The backend.
        backend: Backend,
        /// The OS error.
        source: io::Error,
    },
    /// Receiving failed: the supervisor reconnects.
    #[error("{url}: receive failed: {source}")]
    Receive {
        /// The input.
        url: String,
        /// The OS error.
        source: io::Error,
    },
}

enum Receiver {
    Uring(Box<uring::UringReceiver>),
    Epoll(Box<epoll::EpollReceiver>),
}

/// An open UDP input.
pub struct UdpInput {
    url: String,
    group: Option<IpAddr>,
    local: SocketAddr,
    rcvbuf: usize,
    receiver: Receiver,
    classifier: DatagramClassifier,
    recv: RecvCounters,
    last_overflow: Option<u32>,
    received: Vec<Received>,
}

impl UdpInput {
    /// Binds and joins as `spec` says and sets up the receiver for
    /// `backend`. Run it on the shard thread that will receive.
    pub fn open(spec: &UdpSpec, backend: Backend) -> Result<UdpInput, UdpError> {
        let url = spec.to_string();
        let opened = socket::open(spec)?;
        let buffer_size = spec.pkt_size + cmsg_room();
        let receiver_err = |source| UdpError::Receiver { url: url.clone(), backend, source };
        let receiver = match backend {
            Backend::Uring => {
                let config = uring::UringConfig {
                    buffers: POOL_BUFFERS,
                    buffer_size,
                    batch_window: BATCH_WINDOW,
                    heap_cap: HEAP_CAP,
                    ring_fill: RING_FILL,
                };
                Receiver::Uring(Box::new(uring::UringReceiver::new(opened.socket, config).map_err(receiver_err)?))
            }
            Backend::Epoll => Receiver::Epoll(Box::new(
                epoll::EpollReceiver::new(
                    opened.socket,
                    usize::from(POOL_BUFFERS),
                    spec.pkt_size,
                    HEAP_CAP,
                    BATCH_WINDOW,
                )
                .map_err(receiver_err)?,
            )),
        };
        Ok(UdpInput {
            url,
            group: spec.is_multicast().then_some(spec.group_or_host),
            local: opened.local,
            rcvbuf: opened.rcvbuf,
            receiver,
            classifier: DatagramClassifier::new(spec.rtp),
            recv: RecvCounters::default(),
            last_overflow: None,
            received: Vec::with_capacity(usize::from(POOL_BUFFERS)),
        })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The socket receive buffer the kernel granted, in bytes.
    pub fn rcvbuf(&self) -> usize {
        self.rcvbuf
    }

    /// Pool buffers held by consumers now.
    pub fn pool_lent(&self) -> u64 {
        let pool = match &self.receiver {
            Receiver::Uring(r) => r.pool(),
            Receiver::Epoll(r) => r.pool(),
        };
        pool.stats().lent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counters so far.
    pub fn stats(&self) -> UdpStats {
        UdpStats { datagrams: self.classifier.counters().clone(), recv: self.recv.clone() }
    }

    /// Waits for datagrams and appends their transport packets to `out` as
    /// chunks of whole 188-byte packets.
    pub async fn read_batch(&mut self, out: &mut Vec<Bytes>) -> Result<(), UdpError> {
        let before = out.len();
        while out.len() == before {
            self.received.clear();
            let result = match &mut self.receiver {
                Receiver::Uring(r) => r.recv(&mut self.received, &mut self.recv).await,
                Receiver::Epoll(r) => r.recv(&mut self.received, &mut self.recv).await,
            };
            result.map_err(|source| UdpError::Receive { url: self.url.clone(), source })?;
            let received = std::mem::take(&mut self.received);
            for datagram in &received {
                self.accept(datagram, out);
            }
            self.received = received;
        }
        Ok(())
    }

    /// Accounts one received buffer and cuts its packets into `out`.
    fn accept(&mut self, datagram: &Received, out: &mut Vec<Bytes>) {
        if let Some(total) = datagram.control.dropped_total {
            let before = self.last_overflow.unwrap_or(0);
            self.recv.kernel_drops += u64::from(total.wrapping_sub(before));
            self.last_overflow = Some(total);
        }
        if let (Some(group), Some(dest)) = (self.group, datagram.control.destination)
            && dest != group
        {
            self.recv.foreign_dropped += 1;
            return;
        }
        let payload = &datagram.payload;
        let segment = match datagram.control.gro_segment {
            Some(seg) if usize::from(seg) < payload.len() => {
                self.recv.gro_batches += 1;
                usize::from(seg)
            }
            _ => payload.len().max(1),
        };
        // A run of kept ranges of `payload` not yet pushed.
        let mut pending: Option<(usize, usize)> = None;
        let mut offset = 0;
        while offset < payload.len() {
            let end = (offset + segment).min(payload.len());
            let verdict = self.classifier.classify(&payload[offset..end]);
            if let Datagram::Ts { payload: range, packet_size, .. } = verdict {
                let (start, stop) = (offset + range.start, offset + range.end);
                if packet_size == PacketSize::Ts188 {
                    pending = match pending {
                        Some((s, e)) if e == start => Some((s, stop)),
                        Some((s, e)) => {
                            out.push(payload.slice(s..e));
                            Some((start, stop))
                        }
                        None => Some((start, stop)),
                    };
                } else {
                    if let Some((s, e)) = pending.take() {
                        out.push(payload.slice(s..e));
                    }
                    let run = &payload[start..stop];
                    let mut packets = BytesMut::zeroed(run.len() / packet_size.stride() * PACKET_LEN);
                    let copied = self.classifier.normalise_to_188(run, packet_size, &mut packets);
                    packets.truncate(copied * PACKET_LEN);
                    out.push(packets.freeze());
                }
            }
            offset = end;
        }
        if let Some((s, e)) = pending {
            out.push(payload.slice(s..e));
        }
    }
}

/// Room a receive buffer needs beyond the datagram: the io_uring recvmsg
/// header and the control messages.
fn cmsg_room() -> usize {
    16 + CONTROL_LEN
}
