//! ssecast: a small, fast live video server. The library holds every piece of the server so the
//! binary, the integration tests, the benches and the fuzz targets share one implementation.

pub mod config;
pub mod conn;
pub mod fuzzing;
pub mod harness;
pub mod http;
pub mod mp4;
pub mod playout;
pub mod queue;
pub mod server;
pub mod sse;
pub mod video;
