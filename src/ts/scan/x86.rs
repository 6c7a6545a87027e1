//! SSE2 and AVX2 kernels.
//!
//! Ownership argument: the kernels only read. Every load covers 4 header
//! bytes of a packet the caller proved to lie inside the borrowed buffer
//! (`Run::fits`, rechecked per group below), so no read leaves the slice.
//! The CPU features are proven by zero-sized tokens that only
//! `is_x86_feature_detected!` can produce.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::{Run, RunMatcher, ScanCtx, ScanOutcome, drive, scalar};

/// Proof that the CPU has AVX2.
#[derive(Clone, Copy)]
struct Avx2(());

/// Proof that the CPU has SSE2.
#[derive(Clone, Copy)]
struct Sse2(());

/// Checks that `lanes` headers `stride` apart from `off` lie in `buf`.
#[inline(always)]
fn group_fits(buf: &[u8], off: usize, stride: usize, lanes: usize) -> bool {
    stride
        .checked_mul(lanes - 1)
        .and_then(|span| span.checked_add(off + 4))
        .is_some_and(|end| end <= buf.len())
}

/// Masked headers compared with the run's prediction: for lane `k` the
/// counter must be `cc + 1 + k`.
#[target_feature(enable = "avx2")]
fn avx2_leading_matches(headers: __m256i, header: u32, cc: u8) -> usize {
    let masked = _mm256_and_si256(headers, _mm256_set1_epi32(super::RUN_HEADER_MASK as i32));
    let counters = _mm256_and_si256(
        _mm256_add_epi32(
            _mm256_set1_epi32(i32::from(cc)),
            _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8),
        ),
        _mm256_set1_epi32(0x0F),
    );
    let expected = _mm256_or_si256(
        _mm256_set1_epi32(header as i32),
        _mm256_slli_epi32::<24>(counters),
    );
    let equal =
        _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(masked, expected))) as u32;
    (!equal).trailing_zeros() as usize
}

/// Gathers the header words of 8 packets `stride` apart from `off`.
#[target_feature(enable = "avx2")]
fn avx2_gather(buf: &[u8], off: usize, stride: usize) -> __m256i {
    let s = stride as i32;
    let offsets = _mm256_mullo_epi32(
        _mm256_set1_epi32(s),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    );
    // SAFETY: callers checked `group_fits(buf, off, stride, 8)`, so the 8
    // four-byte loads at `off + k * stride` (k < 8) are inside `buf`; the
    // gather has no alignment requirement; stride <= 204 keeps offsets in i32.
    unsafe { _mm256_i32gather_epi32::<1>(buf.as_ptr().add(off).cast::<i32>(), offsets) }
}

impl RunMatcher for Avx2 {
    const LANES: usize = 8;
    #[inline(always)]
    fn leading_matches(&self, buf: &[u8], off: usize, stride: usize, header: u32, cc: u8) -> usize {
        if !group_fits(buf, off, stride, 8) {
            return 0;
        }
        // SAFETY: `self` proves AVX2 (see `Avx2`).
        unsafe { avx2_leading_matches(avx2_gather(buf, off, stride), header, cc) }
    }
}

#[target_feature(enable = "sse2")]
fn sse2_leading_matches(words: [i32; 4], header: u32, cc: u8) -> usize {
    let headers = _mm_setr_epi32(words[0], words[1], words[2], words[3]);
    let masked = _mm_and_si128(headers, _mm_set1_epi32(super::RUN_HEADER_MASK as i32));
    let counters = _mm_and_si128(
        _mm_add_epi32(_mm_set1_epi32(i32::from(cc)), _mm_setr_epi32(1, 2, 3, 4)),
        _mm_set1_epi32(0x0F),
    );
    let expected = _mm_or_si128(
        _mm_set1_epi32(header as i32),
        _mm_slli_epi32::<24>(counters),
    );
    let equal = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(masked, expected))) as u32;
    (!equal).trailing_zeros() as usize
}

impl RunMatcher for Sse2 {
    const LANES: usize = 4;
    #[inline(always)]
    fn leading_matches(&self, buf: &[u8], off: usize, stride: usize, header: u32, cc: u8) -> usize {
        if !group_fits(buf, off, stride, 4) {
            return 0;
        }
        let word = |k: usize| super::header_word(buf, off + k * stride) as i32;
        let words = [word(0), word(1), word(2), word(3)];
        // SAFETY: `self` proves SSE2 (see `Sse2`).
        unsafe { sse2_leading_matches(words, header, cc) }
    }
}

#[target_feature(enable = "avx2")]
fn drive_avx2(ctx: ScanCtx<'_>, buf: &[u8], run: Run) -> ScanOutcome {
    drive(&Avx2(()), ctx, buf, run)
}

#[target_feature(enable = "sse2")]
fn drive_sse2(ctx: ScanCtx<'_>, buf: &[u8], run: Run) -> ScanOutcome {
    drive(&Sse2(()), ctx, buf, run)
}

/// Scans with the AVX2 kernel, or the scalar one on a CPU without AVX2.
pub(super) fn scan_avx2(ctx: ScanCtx<'_>, buf: &[u8], run: Run) -> ScanOutcome {
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected on this CPU just above.
        unsafe { drive_avx2(ctx, buf, run) }
    } else {
        scalar::scan(ctx, buf, run)
    }
}

/// Scans with the SSE2 kernel, or the scalar one on a CPU without SSE2.
pub(super) fn scan_sse2(ctx: ScanCtx<'_>, buf: &[u8], run: Run) -> ScanOutcome {
    if is_x86_feature_detected!("sse2") {
        // SAFETY: SSE2 was detected on this CPU just above.
        unsafe { drive_sse2(ctx, buf, run) }
    } else {
        scalar::scan(ctx, buf, run)
    }
}

#[target_feature(enable = "avx2")]
fn extract_pids_avx2_inner(buf: &[u8], run: Run, out: &mut [u16]) -> usize {
    let mut i = 0;
    while i + 8 <= run.count {
        let off = run.start + i * run.stride;
        if !group_fits(buf, off, run.stride, 8) {
            break;
        }
        let headers = avx2_gather(buf, off, run.stride);
        let sync = _mm256_cmpeq_epi32(
            _mm256_and_si256(headers, _mm256_set1_epi32(0xFF)),
            _mm256_set1_epi32(0x47),
        );
        if _mm256_movemask_ps(_mm256_castsi256_ps(sync)) != 0xFF {
            break;
        }
        let pids = _mm256_or_si256(
            _mm256_and_si256(headers, _mm256_set1_epi32(0x1F00)),
            _mm256_and_si256(_mm256_srli_epi32::<16>(headers), _mm256_set1_epi32(0xFF)),
        );
        // Pack 8 x u32 to 8 x u16: packus works per 128-bit half, then the
        // permute brings the two halves' low quadwords together.
        let packed = _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi32(pids, pids));
        let mut lanes = [0u16; 8];
        // SAFETY: `lanes` is 16 writable bytes; storeu has no alignment need.
        unsafe { _mm_storeu_si128(lanes.as_mut_ptr().cast(), _mm256_castsi256_si128(packed)) };
        out[i..i + 8].copy_from_slice(&lanes);
        i += 8;
    }
    scalar::extract_pids(buf, run, out, i)
}

/// PIDs of `run` with AVX2 (caller clamped `run.count` to `out.len()`).
pub(super) fn extract_pids_avx2(buf: &[u8], run: Run, out: &mut [u16]) -> usize {
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected on this CPU just above.
        unsafe { extract_pids_avx2_inner(buf, run, out) }
    } else {
        scalar::extract_pids(buf, run, out, 0)
    }
}
