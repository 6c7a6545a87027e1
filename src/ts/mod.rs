//! Pure transport-stream code: bytes in, results out. Nothing here touches a
//! file, a socket or a clock.

pub mod analyze;
pub mod audio_frames;
pub mod av;
pub mod codec;
pub mod datagram;
pub mod demux;
pub mod dts_pace;
pub mod filter;
pub mod framing;
pub mod mix;
pub mod monitor;
pub mod mux;
pub mod pace;
pub mod packet;
pub mod prefetch;
pub mod psi;
pub mod rtp;
pub mod scan;
pub mod seam;
pub mod stats;
pub mod timestamp;
