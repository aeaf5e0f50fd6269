//! Events the engine reports while it works: an upgrade operation's stage
//! and progress, the lines of its log, and the bytes of an upload.
//!
//! The engine never draws anything. It hands events to an [`EventSink`]
//! that the caller chose: the CLI prints them, the window forwards them to
//! the page, tests collect them.

use serde::Serialize;

/// One thing that happened to an upgrade operation.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Event {
    /// The operation moved to a new stage or progress milestone.
    Progress {
        operation: i64,
        stage: String,
        progress: u8,
    },
    /// A line was appended to the operation's log.
    Log { operation: i64, line: String },
    /// Bytes of the image reached the device.
    Upload {
        operation: i64,
        sent: u64,
        total: u64,
        bytes_per_second: u64,
    },
    /// The operation reached a status; `status` is the catalogue's word.
    Status { operation: i64, status: String },
    /// A batch moved: its state and how many of its operations have their
    /// verdict.
    Batch {
        batch: i64,
        state: String,
        finished: usize,
        total: usize,
    },
}

/// Receives the engine's events. Implementations must not block for long:
/// they are called from the tasks that talk to devices.
pub trait EventSink: Send + Sync {
    /// Takes one event.
    fn emit(&self, event: Event);
}

/// A sink that drops every event, for callers that only want the verdict.
pub struct Discard;

impl EventSink for Discard {
    fn emit(&self, _event: Event) {}
}

/// A sink that keeps every event in memory, for tests and for callers that
/// read the events after the fact.
#[derive(Default)]
pub struct Collect {
    events: std::sync::Mutex<Vec<Event>>,
}

impl Collect {
    /// Returns a copy of the events received so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("event list poisoned").clone()
    }
}

impl EventSink for Collect {
    fn emit(&self, event: Event) {
        self.events.lock().expect("event list poisoned").push(event);
    }
}
