//! What calls cost, and the caps that stop a run before it spends too much.
//!
//! Prices are per million tokens, per model name; a model without a price
//! costs nothing (the embedded engine, a self-hosted server). The
//! [`Budget`] counts every call of the run, including calls replayed from
//! the journal of an earlier attempt (they were paid once), so raising a cap
//! and rerunning continues exactly where the run stopped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use evol_llm::Usage;
use serde::{Deserialize, Serialize};

/// The price of a model, per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub prompt: f64,
    pub completion: f64,
    /// The price of prompt tokens served from the provider's cache (default:
    /// the prompt price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_prompt: Option<f64>,
}

impl Price {
    pub fn cost(&self, usage: Usage) -> f64 {
        let cached = usage.cached_tokens.min(usage.prompt_tokens);
        let fresh = usage.prompt_tokens - cached;
        (fresh as f64 * self.prompt
            + cached as f64 * self.cached_prompt.unwrap_or(self.prompt)
            + usage.completion_tokens as f64 * self.completion)
            / 1e6
    }
}

/// Prices by model name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Prices(pub BTreeMap<String, Price>);

impl Prices {
    /// The cost of `usage` on `model` (zero for a model without a price).
    pub fn cost(&self, model: &str, usage: Usage) -> f64 {
        self.0.get(model).map_or(0.0, |p| p.cost(usage))
    }

    pub fn get(&self, model: &str) -> Option<Price> {
        self.0.get(model).copied()
    }
}

/// Caps on a whole run (`None`: no cap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Caps {
    pub max_requests: Option<u64>,
    pub max_tokens: Option<u64>,
    pub max_cost: Option<f64>,
}

/// Which cap stopped a run, and where the count stood.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CapReached {
    #[error("the request cap ({cap} requests) is reached")]
    Requests { cap: u64 },
    #[error("the token cap ({cap} tokens) is reached: {used} used")]
    Tokens { cap: u64, used: u64 },
    #[error("the cost cap ({cap:.4}) is reached: {used:.4} spent")]
    Cost { cap: f64, used: f64 },
}

/// Cost is counted in millionths of a unit, in an integer, so that many
/// threads can add to it without a lock.
const MICROS: f64 = 1e6;

/// The run's spending so far, checked against its caps.
#[derive(Debug, Default)]
pub struct Budget {
    caps: Caps,
    requests: AtomicU64,
    tokens: AtomicU64,
    cost_micros: AtomicU64,
}

impl Budget {
    pub fn new(caps: Caps) -> Budget {
        Budget { caps, ..Budget::default() }
    }

    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// Reserves one request before it is sent; refuses when a cap is
    /// reached. (Tokens and cost are known only after the call, so those
    /// caps can be passed by the calls in flight when they are reached.)
    pub fn reserve(&self) -> Result<(), CapReached> {
        if let Some(cap) = self.caps.max_tokens {
            let used = self.tokens.load(Ordering::SeqCst);
            if used >= cap {
                return Err(CapReached::Tokens { cap, used });
            }
        }
        if let Some(cap) = self.caps.max_cost {
            let used = self.cost();
            if used >= cap {
                return Err(CapReached::Cost { cap, used });
            }
        }
        let sent = self.requests.fetch_add(1, Ordering::SeqCst);
        if let Some(cap) = self.caps.max_requests {
            if sent >= cap {
                self.requests.fetch_sub(1, Ordering::SeqCst);
                return Err(CapReached::Requests { cap });
            }
        }
        Ok(())
    }

    /// Gives back the reservation of a call that was not made.
    pub fn release(&self) {
        self.requests.fetch_sub(1, Ordering::SeqCst);
    }

    /// Counts what a finished call used (after [`Budget::reserve`]).
    pub fn spend(&self, usage: Usage, cost: f64) {
        self.tokens.fetch_add(usage.total(), Ordering::SeqCst);
        self.cost_micros.fetch_add((cost * MICROS).round() as u64, Ordering::SeqCst);
    }

    /// Counts a call replayed from the journal: it was paid in an earlier
    /// attempt of the same run.
    pub fn replayed(&self, usage: Usage, cost: f64) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.spend(usage, cost);
    }

    pub fn cost(&self) -> f64 {
        self.cost_micros.load(Ordering::SeqCst) as f64 / MICROS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(p: u64, c: u64) -> Usage {
        Usage { prompt_tokens: p, completion_tokens: c, cached_tokens: 0, ..Default::default() }
    }

    #[test]
    fn prices_are_per_million_tokens() {
        let prices = Prices([("m".to_string(), Price { prompt: 0.5, completion: 2.0, cached_prompt: None })].into());
        assert!((prices.cost("m", usage(1_000_000, 500_000)) - 1.5).abs() < 1e-12);
        let cached = Price { prompt: 1.0, completion: 0.0, cached_prompt: Some(0.1) };
        let u = Usage { prompt_tokens: 1_000_000, completion_tokens: 0, cached_tokens: 600_000, ..Default::default() };
        assert!((cached.cost(u) - 0.46).abs() < 1e-12);
        assert_eq!(prices.cost("other", usage(1_000_000, 1)), 0.0);
    }

    #[test]
    fn the_request_cap_is_exact() {
        let b = Budget::new(Caps { max_requests: Some(3), ..Caps::default() });
        b.replayed(usage(1, 1), 0.0);
        assert!(b.reserve().is_ok());
        assert!(b.reserve().is_ok());
        assert_eq!(b.reserve(), Err(CapReached::Requests { cap: 3 }));
        assert_eq!(b.reserve(), Err(CapReached::Requests { cap: 3 }));
    }

    #[test]
    fn token_and_cost_caps_stop_the_next_request() {
        let b = Budget::new(Caps { max_tokens: Some(10), ..Caps::default() });
        b.reserve().unwrap();
        b.spend(usage(6, 4), 0.0);
        assert_eq!(b.reserve(), Err(CapReached::Tokens { cap: 10, used: 10 }));

        let b = Budget::new(Caps { max_cost: Some(0.01), ..Caps::default() });
        b.reserve().unwrap();
        b.spend(usage(1, 1), 0.004);
        b.reserve().unwrap();
        b.spend(usage(1, 1), 0.006);
        let err = b.reserve().unwrap_err();
        assert!(matches!(err, CapReached::Cost { .. }));
        assert!(err.to_string().contains("0.0100 spent"), "{err}");
    }
}
