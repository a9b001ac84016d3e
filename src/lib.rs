//! ssecast: a small, fast live video server. The library holds every piece of the server so the
//! binary, the integration tests, the benches and the fuzz targets share one implementation.
//!
//! `server` runs the event loop; `conn` is one HTTP connection (viewer, publisher or a fixed
//! response); `http` parses and answers requests; `stream` holds named streams and their
//! registry; `source` is where streams come from (files, publishers, standard input); `queue`
//! and `sse` are the per-viewer queue and the event framing; `mp4` is the box parsing;
//! `mux` demuxes MPEG-TS and Annex B and muxes them into fragmented MP4.

pub mod config;
pub mod conn;
pub mod fuzzing;
pub mod harness;
pub mod http;
pub mod metrics;
pub mod mp4;
pub mod mux;
pub mod queue;
pub mod server;
pub mod source;
pub mod sse;
pub mod stream;
