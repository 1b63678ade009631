//! The caller's call slots: a semaphore whose waiters are served by
//! priority (see `CallSpec::priority`), or, at the end of a run, by the
//! work left on their chains (see `CallSpec::remaining`).

use tokio::sync::oneshot;

/// Call slots handed out by priority: a semaphore whose waiters are served
/// lowest priority first (then first come), or, once told, the call with
/// the most work left on its chain first (the critical path). Written by
/// hand: tokio's semaphore is first-come only, and no well-kept crate
/// orders waiters.
pub(crate) struct Slots {
    state: std::sync::Mutex<SlotState>,
}

struct SlotState {
    free: usize,
    waiting: std::collections::BinaryHeap<Waiter>,
    arrivals: u64,
    /// Waiters are ordered by the work left on their chains from now on.
    critical_path: bool,
}

/// Where a waiting call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    /// Lower goes first (a chain's start order).
    pub priority: u64,
    /// The calls its chain has left, this one included: more goes first
    /// on the critical path.
    pub remaining: u32,
}

struct Waiter {
    place: Place,
    arrival: u64,
    /// The order it is served in: lowest first.
    key: (u64, u64, u64),
    wake: oneshot::Sender<()>,
}

impl Waiter {
    fn key(place: Place, arrival: u64, critical_path: bool) -> (u64, u64, u64) {
        match critical_path {
            true => (u64::from(u32::MAX - place.remaining), place.priority, arrival),
            false => (place.priority, arrival, 0),
        }
    }
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Waiter) -> bool {
        self.key == other.key
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Waiter) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    /// The max-heap's top is the lowest key.
    fn cmp(&self, other: &Waiter) -> std::cmp::Ordering {
        other.key.cmp(&self.key)
    }
}

/// A slot, given back when dropped.
pub(crate) struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A wait for a slot; if dropped after the slot was handed to it, it gives
/// the slot back.
struct Waiting<'a> {
    slots: &'a Slots,
    woken: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut woken) = self.woken.take() {
            woken.close();
            if woken.try_recv().is_ok() {
                self.slots.release();
            }
        }
    }
}

impl Slots {
    pub(crate) fn new(n: usize) -> Slots {
        let state =
            SlotState { free: n, waiting: std::collections::BinaryHeap::new(), arrivals: 0, critical_path: false };
        Slots { state: std::sync::Mutex::new(state) }
    }

    pub(crate) async fn acquire(&self, place: Place) -> Slot<'_> {
        let woken = {
            let mut state = self.state.lock().unwrap();
            if state.free > 0 {
                state.free -= 1;
                return Slot(self);
            }
            let (wake, woken) = oneshot::channel();
            state.arrivals += 1;
            let arrival = state.arrivals;
            let key = Waiter::key(place, arrival, state.critical_path);
            state.waiting.push(Waiter { place, arrival, key, wake });
            woken
        };
        let mut waiting = Waiting { slots: self, woken: Some(woken) };
        let woken = waiting.woken.as_mut().expect("set above");
        // The sender is only dropped after sending (or with the Slots).
        let _ = woken.await;
        waiting.woken = None;
        Slot(self)
    }

    /// Serves the waiters, present and future, by the work left on their
    /// chains: the most first, then by priority and arrival.
    pub(crate) fn critical_path(&self) {
        let mut state = self.state.lock().unwrap();
        if !state.critical_path {
            state.critical_path = true;
            let waiting = std::mem::take(&mut state.waiting);
            state.waiting =
                waiting.into_iter().map(|w| Waiter { key: Waiter::key(w.place, w.arrival, true), ..w }).collect();
        }
    }

    /// Hands a slot to the first waiter still waiting, or frees it.
    fn release(&self) {
        let mut state = self.state.lock().unwrap();
        while let Some(waiter) = state.waiting.pop() {
            if waiter.wake.send(()).is_ok() {
                return;
            }
        }
        state.free += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The order in which waiters of these places get one slot, with the
    /// critical path turned on (or not) once they all wait.
    async fn served(places: &[Place], critical_path: bool) -> Vec<usize> {
        let slots = Arc::new(Slots::new(1));
        let held = slots.acquire(Place { priority: 0, remaining: 0 }).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, &place) in places.iter().enumerate() {
            let (mine, order) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = mine.acquire(place).await;
                order.lock().unwrap().push(i);
            }));
            // Each one waits before the next arrives.
            while slots.state.lock().unwrap().waiting.len() <= i {
                tokio::task::yield_now().await;
            }
        }
        if critical_path {
            slots.critical_path();
        }
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        order
    }

    #[tokio::test]
    async fn waiters_go_by_priority_then_by_the_work_their_chains_have_left() {
        let places = [
            Place { priority: 2, remaining: 9 },
            Place { priority: 0, remaining: 1 },
            Place { priority: 1, remaining: 9 },
            Place { priority: 0, remaining: 5 },
        ];
        // By priority, then arrival.
        assert_eq!(served(&places, false).await, [1, 3, 2, 0]);
        // The most work left first, then priority.
        assert_eq!(served(&places, true).await, [2, 0, 3, 1]);
    }
}
