//! jobcarbon-ledger: the accounting loop.
//!
//! - [`interval::book_interval`] is the pure heart: one interval of observations in, the next
//!   [`LedgerState`] and an [`interval::IntervalReport`] out. All allocation goes through
//!   `jobcarbon_core::allocation`, so every interval conserves carbon.
//! - [`Ledger`] does the I/O around it: reads energy sources, request counters, live
//!   intensities and the cluster snapshot, tracks counters, and publishes a [`LedgerView`]
//!   that the exporter serves.
//! - [`DurableLedger`] puts it on the interval grid with checkpoints and backfill, and
//!   [`Schedule`] is the one loop that books it (leader gate, restore and after-booking hooks).
//! - [`Config`] is the YAML file of DESIGN §11; [`sources::readers`] maps it to the
//!   energy sources.

#![warn(missing_docs)]

pub mod allocation_prom;
pub mod allocation_query;
pub mod checkpoint;
pub mod clock;
mod config;
pub mod durable;
mod epc;
pub mod history;
pub mod interval;
mod ksm_history;
mod kube_cluster;
mod kube_status;
mod latest_state;
mod prom_restore;
mod requests;
mod runner;
mod schedule;
mod settings;
pub mod sources;
pub mod state;
pub mod view;

pub use config::Config;
pub use durable::{DurabilityStatus, DurableLedger, ResumeState, ResumeStateRef};
pub use interval::{
    Account, Conditions, IntervalInput, IntervalReport, Stage, book_interval,
    book_interval_in_place, book_interval_traced,
};
pub use ksm_history::KsmHistory;
pub use kube_cluster::KubeCluster;
pub use kube_status::{ProductStatusWriter, StatusFloors};
pub use latest_state::LatestState;
pub use prom_restore::RestoreContext;
pub use requests::RequestBooks;
pub use runner::{ClusterError, ClusterSource, Ledger, Sources};
pub use schedule::{AfterBooking, Booked, RestoreError, RestoreHook, Schedule};
pub use settings::{IdlePolicy, IntensitySpec, PlatformSplit, RegionDef, Settings, SystemDef};
pub use state::LedgerState;
pub use view::{LedgerView, SharedView};
