//! The read-transfer state machine, without sockets or files: the socket server and the
//! simulation drive the same logic (which block to send, how ACKs move the window, when to give
//! up).

use std::ops::RangeInclusive;
use std::time::Duration;

use super::packet::{ErrorCode, Packet, Request};

/// Server-side limits applied when negotiating options.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest blksize granted (RFC 2348 allows up to 65464).
    pub max_blksize: u16,
    /// Largest windowsize granted (RFC 7440).
    pub max_windowsize: u16,
    /// Upper bound on bytes in flight per transfer (windowsize is lowered to respect it).
    pub max_window_bytes: usize,
    /// Retransmission timeout when the client does not ask for one.
    pub default_timeout: Duration,
    /// Retransmissions of the same window before the transfer is abandoned.
    pub max_retries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_blksize: 65464,
            max_windowsize: 64,
            max_window_bytes: 4 << 20,
            default_timeout: Duration::from_secs(1),
            max_retries: 5,
        }
    }
}

/// Options agreed with the client for one transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: u16,
    pub windowsize: u16,
    pub timeout: Duration,
    /// Options to acknowledge in an OACK; empty means no OACK (RFC 1350 behaviour).
    pub oack: Vec<(String, String)>,
}

/// Applies RFC 2347/2348/2349/7440 to a request for a file of `size` bytes. Options with
/// unusable values are ignored rather than refused, as RFC 2347 permits.
pub fn negotiate(req: &Request, size: u64, limits: &Limits) -> Negotiated {
    let mut n = Negotiated { blksize: 512, windowsize: 1, timeout: limits.default_timeout, oack: Vec::new() };
    let mut wanted_window = None;
    for (name, value) in &req.options {
        match name.as_str() {
            "blksize" => {
                if let Ok(v) = value.parse::<u32>()
                    && v >= 8
                {
                    n.blksize = v.min(u32::from(limits.max_blksize)).min(65464) as u16;
                    n.oack.push((name.clone(), n.blksize.to_string()));
                }
            }
            "tsize" => n.oack.push((name.clone(), size.to_string())),
            "timeout" => {
                if let Ok(v) = value.parse::<u64>()
                    && (1..=255).contains(&v)
                {
                    n.timeout = Duration::from_secs(v);
                    n.oack.push((name.clone(), v.to_string()));
                }
            }
            "windowsize" => {
                if let Ok(v) = value.parse::<u32>()
                    && (1..=65535).contains(&v)
                {
                    wanted_window = Some(v);
                }
            }
            _ => {}
        }
    }
    if let Some(v) = wanted_window {
        let by_bytes = (limits.max_window_bytes / usize::from(n.blksize)).max(1);
        let w = v.min(u32::from(limits.max_windowsize.max(1))).min(by_bytes as u32) as u16;
        n.windowsize = w;
        n.oack.push(("windowsize".into(), w.to_string()));
    }
    n
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send the OACK (again).
    SendOack,
    /// Send DATA for these absolute block numbers (1-based; the wire number is `abs as u16`).
    Send(RangeInclusive<u64>),
    /// Nothing to send; keep waiting for the client.
    Wait,
    /// The last block was acknowledged.
    Done,
    /// Send this error to the client and stop.
    Fail(ErrorCode, &'static str),
    /// Stop silently (the client sent an error, or retries ran out).
    Abort,
}

/// State of one read transfer.
#[derive(Debug, Clone)]
pub struct ReadTransfer {
    size: u64,
    blksize: u64,
    window: u64,
    max_retries: u32,
    oack: bool,
    /// Highest absolute block acknowledged (0 = none, or the OACK).
    acked: u64,
    /// Highest absolute block sent.
    sent: u64,
    oack_acked: bool,
    retries: u32,
}

impl ReadTransfer {
    pub fn new(size: u64, neg: &Negotiated, limits: &Limits) -> Self {
        Self {
            size,
            blksize: u64::from(neg.blksize),
            window: u64::from(neg.windowsize.max(1)),
            max_retries: limits.max_retries,
            oack: !neg.oack.is_empty(),
            acked: 0,
            sent: 0,
            oack_acked: false,
            retries: 0,
        }
    }

    /// Number of DATA blocks in the transfer (the last one is short, possibly empty).
    pub fn total_blocks(&self) -> u64 {
        self.size / self.blksize + 1
    }

    /// Byte range `(offset, len)` of an absolute block.
    pub fn block_extent(&self, abs: u64) -> (u64, usize) {
        let off = (abs - 1) * self.blksize;
        let len = self.size.saturating_sub(off).min(self.blksize);
        (off, len as usize)
    }

    /// Negotiated window in blocks.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Negotiated block size in bytes.
    pub fn blksize(&self) -> usize {
        self.blksize as usize
    }

    /// First step after the request was accepted.
    pub fn start(&mut self) -> Step {
        if self.oack {
            Step::SendOack
        } else {
            self.oack_acked = true;
            self.next_window()
        }
    }

    fn next_window(&mut self) -> Step {
        let total = self.total_blocks();
        if self.acked >= total {
            return Step::Done;
        }
        let from = self.acked + 1;
        let to = (self.acked + self.window).min(total);
        self.sent = self.sent.max(to);
        self.retries = 0;
        Step::Send(from..=to)
    }

    /// Handles a packet from the client's transfer ID.
    pub fn on_packet(&mut self, pkt: &Packet<'_>) -> Step {
        match pkt {
            Packet::Ack(wire) => {
                if !self.oack_acked {
                    if *wire == 0 {
                        self.oack_acked = true;
                        return self.next_window();
                    }
                    return Step::Wait;
                }
                // The only blocks an ACK can name are acked..=sent, a span far below 65536, so
                // the 16-bit number (which rolls over to 0 after 65535) maps back uniquely.
                let delta = wire.wrapping_sub(self.acked as u16) as u64;
                if delta == 0 || self.acked + delta > self.sent {
                    // Duplicate or stale ACK: do not resend (Sorcerer's Apprentice); the timer
                    // covers real loss.
                    return Step::Wait;
                }
                self.acked += delta;
                self.next_window()
            }
            Packet::Error { .. } => Step::Abort,
            Packet::Request(_) | Packet::Data { .. } | Packet::Oack(_) => {
                Step::Fail(ErrorCode::IllegalOperation, "unexpected packet")
            }
        }
    }

    /// The retransmission timer fired without progress.
    pub fn on_timeout(&mut self) -> Step {
        self.retries += 1;
        if self.retries > self.max_retries {
            return Step::Abort;
        }
        if !self.oack_acked {
            return Step::SendOack;
        }
        Step::Send(self.acked + 1..=self.sent)
    }
}

#[cfg(test)]
mod tests {
    use super::super::packet::Mode;
    use super::*;

    fn req(opts: &[(&str, &str)]) -> Request {
        Request {
            write: false,
            filename: "f".into(),
            mode: Mode::Octet,
            options: opts.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        }
    }

    #[test]
    fn negotiation() {
        let l = Limits::default();
        let n = negotiate(&req(&[("blksize", "70000"), ("tsize", "0"), ("bogus", "1")]), 99, &l);
        assert_eq!(n.blksize, 65464);
        assert_eq!(n.oack, vec![("blksize".into(), "65464".into()), ("tsize".into(), "99".into())]);
        let n = negotiate(&req(&[("blksize", "4"), ("windowsize", "1000")]), 1, &l);
        assert_eq!((n.blksize, n.windowsize), (512, 64));
        let n = negotiate(&req(&[]), 1, &l);
        assert!(n.oack.is_empty());
    }

    #[test]
    fn lockstep_with_rollover() {
        let l = Limits::default();
        let n = negotiate(&req(&[]), 512 * 70000, &l);
        let mut t = ReadTransfer::new(512 * 70000, &n, &l);
        assert_eq!(t.start(), Step::Send(1..=1));
        for abs in 1..=70001u64 {
            // Duplicate of the previous ACK is ignored.
            assert_eq!(t.on_packet(&Packet::Ack((abs - 1) as u16)), Step::Wait);
            let step = t.on_packet(&Packet::Ack(abs as u16));
            if abs == 70001 {
                assert_eq!(step, Step::Done);
            } else {
                assert_eq!(step, Step::Send(abs + 1..=abs + 1));
            }
        }
        assert_eq!(t.block_extent(70001), (512 * 70000, 0));
    }

    #[test]
    fn window_partial_ack_and_timeout() {
        let l = Limits::default();
        let n = negotiate(&req(&[("windowsize", "4")]), 512 * 10, &l);
        let mut t = ReadTransfer::new(512 * 10, &n, &l);
        assert_eq!(t.start(), Step::SendOack);
        assert_eq!(t.on_timeout(), Step::SendOack);
        assert_eq!(t.on_packet(&Packet::Ack(0)), Step::Send(1..=4));
        assert_eq!(t.on_packet(&Packet::Ack(2)), Step::Send(3..=6));
        assert_eq!(t.on_timeout(), Step::Send(3..=6));
        assert_eq!(t.on_packet(&Packet::Ack(9)), Step::Wait);
        assert_eq!(t.on_packet(&Packet::Ack(6)), Step::Send(7..=10));
        assert_eq!(t.on_packet(&Packet::Ack(10)), Step::Send(11..=11));
        assert_eq!(t.on_packet(&Packet::Ack(11)), Step::Done);
        for _ in 0..6 {
            t.on_timeout();
        }
        assert_eq!(t.on_timeout(), Step::Abort);
    }
}
