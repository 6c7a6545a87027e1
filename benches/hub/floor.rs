//! The data floor: what handing out one owned `Bytes` costs, with no fan-out
//! around it.

use std::hint::black_box;
use std::thread;

use bytes::Bytes;

use super::sys::{pin_to, reader_cpu, thread_cpu};

/// CPU ns per delivery of one `Bytes` clone and its drop, the two refcount
/// changes any fan-out that hands each reader its own `Bytes` must make:
/// every pool item is cloned and dropped `readers` times in a row on the
/// readers' CPU, as `readers` readers of one runtime would. The line is hot
/// and uncontended here, so the figure is a lower bound.
pub fn clone_drop_ns(pool: &[Bytes], readers: usize, rounds: usize) -> f64 {
    let pool = pool.to_vec();
    thread::spawn(move || {
        pin_to(reader_cpu());
        let start = thread_cpu();
        for _ in 0..rounds {
            for item in &pool {
                for _ in 0..readers {
                    drop(black_box(item.clone()));
                }
            }
        }
        let spent = thread_cpu() - start;
        spent.as_nanos() as f64 / (rounds * pool.len() * readers) as f64
    })
    .join()
    .unwrap_or(f64::NAN)
}
