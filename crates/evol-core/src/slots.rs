//! The caller's call slots: a semaphore whose waiters are served by
//! priority (see `CallSpec::priority`).

use tokio::sync::oneshot;

/// Call slots handed out by priority: a semaphore whose waiters are served
/// lowest priority first (then first come). Written by hand: tokio's
/// semaphore is first-come only, and no well-kept crate orders waiters.
pub(crate) struct Slots {
    state: std::sync::Mutex<SlotState>,
}

struct SlotState {
    free: usize,
    waiting: std::collections::BinaryHeap<Waiter>,
    arrivals: u64,
    /// Priorities are ignored from now on.
    first_come: bool,
}

struct Waiter {
    priority: u64,
    arrival: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Waiter) -> bool {
        (self.priority, self.arrival) == (other.priority, other.arrival)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Waiter) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    /// The max-heap's top is the lowest priority, then the earliest.
    fn cmp(&self, other: &Waiter) -> std::cmp::Ordering {
        (other.priority, other.arrival).cmp(&(self.priority, self.arrival))
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
        let state = SlotState { free: n, waiting: std::collections::BinaryHeap::new(), arrivals: 0, first_come: false };
        Slots { state: std::sync::Mutex::new(state) }
    }

    pub(crate) async fn acquire(&self, priority: u64) -> Slot<'_> {
        let woken = {
            let mut state = self.state.lock().unwrap();
            if state.free > 0 {
                state.free -= 1;
                return Slot(self);
            }
            let (wake, woken) = oneshot::channel();
            state.arrivals += 1;
            let arrival = state.arrivals;
            let priority = if state.first_come { 0 } else { priority };
            state.waiting.push(Waiter { priority, arrival, wake });
            woken
        };
        let mut waiting = Waiting { slots: self, woken: Some(woken) };
        let woken = waiting.woken.as_mut().expect("set above");
        // The sender is only dropped after sending (or with the Slots).
        let _ = woken.await;
        waiting.woken = None;
        Slot(self)
    }

    /// Serves the waiters, present and future, in arrival order alone.
    pub(crate) fn first_come(&self) {
        let mut state = self.state.lock().unwrap();
        if !state.first_come {
            state.first_come = true;
            let waiting = std::mem::take(&mut state.waiting);
            state.waiting = waiting.into_iter().map(|w| Waiter { priority: 0, ..w }).collect();
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
