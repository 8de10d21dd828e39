//! jobcarbon-ledger: the accounting loop.
//!
//! - [`interval::book_interval`] is the pure heart: one interval of observations in, the next
//!   [`state::LedgerState`] and an [`interval::IntervalReport`] out. All allocation goes through
//!   `jobcarbon_core::allocation`, so every interval conserves carbon.
//! - [`runner::Ledger`] does the I/O around it: reads energy sources, request counters, live
//!   intensities and the cluster snapshot, tracks counters, and publishes a [`view::LedgerView`]
//!   that the exporter serves.
//! - [`durable::DurableLedger`] puts it on the interval grid with checkpoints and backfill, and
//!   [`schedule`] is the one loop that books it (leader gate, restore and after-booking hooks).
//! - [`config::Config`] is the YAML file of DESIGN §11; [`sources::readers`] maps it to the
//!   energy sources.

pub mod allocation_prom;
pub mod allocation_query;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod durable;
pub mod epc;
pub mod history;
pub mod interval;
pub mod ksm_history;
pub mod kube_cluster;
pub mod kube_status;
pub mod latest_state;
pub mod prom_restore;
pub mod requests;
pub mod runner;
pub mod schedule;
pub mod settings;
pub mod sources;
pub mod state;
pub mod view;

pub use config::{Config, ConfigError};
pub use durable::{DurabilityStatus, DurableLedger, ResumeState, ResumeStateRef};
pub use interval::{
    Account, Conditions, IntervalInput, IntervalReport, Stage, StageFlow, book_interval,
    book_interval_in_place, book_interval_traced,
};
pub use runner::{ClusterError, ClusterSource, EnergyOutage, Ledger, Sources};
pub use schedule::{AfterBooking, Booked, RestoreError, RestoreHook, Schedule};
pub use settings::{IdlePolicy, PlatformSplit, Settings};
pub use state::LedgerState;
pub use view::{LedgerView, SharedView};
