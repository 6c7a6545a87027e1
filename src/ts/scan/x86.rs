//! SSE2 and AVX2 kernels.
//!
//! Ownership argument: the kernels only read. Every load covers 4 header
//! bytes of a packet inside the borrowed buffer: `group_fits` is checked
//! before each group is loaded, so no read leaves the slice. The CPU
//! features are proven by zero-sized tokens that only exist after
//! `is_x86_feature_detected!` said yes.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::{GroupMatcher, HOT, HOT_HEADER_MASK, HotSet, PREFIX, Run, ScanCtx, ScanOutcome, drive, scalar};

/// Proof that the CPU has AVX2.
#[derive(Clone, Copy)]
struct Avx2(());

/// Proof that the CPU has SSE2.
#[derive(Clone, Copy)]
struct Sse2(());

/// Checks that `lanes` headers `stride` apart from `off` lie in `buf`.
/// Plain arithmetic suffices: callers only pass groups of a `Run` that
/// `Run::fits` accepted, so the sums stay far below `usize::MAX`; the
/// comparison is what guards the unchecked loads.
#[inline(always)]
fn group_fits(buf: &[u8], off: usize, stride: usize, lanes: usize) -> bool {
    off + (lanes - 1) * stride + 4 <= buf.len()
}

/// Packets ahead of the group being matched whose header lines are
/// prefetched: far enough to hide a DRAM miss at the scanner's pace.
const PREFETCH_PACKETS: usize = 48;

/// Hints the header lines of the group `PREFETCH_PACKETS` ahead into L1.
/// A prefetch never faults, so addresses past the buffer are harmless; they
/// are computed with wrapping arithmetic and never dereferenced.
#[inline(always)]
fn prefetch_ahead<const N: usize>(buf: &[u8], off: usize, stride: usize) {
    let ahead = buf.as_ptr().wrapping_add(off + PREFETCH_PACKETS * stride);
    for k in 0..N {
        // SAFETY: `_mm_prefetch` is a hint that never faults, whatever the
        // address; SSE is baseline on x86_64. The pointer is never read.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(k * stride).cast::<i8>()) };
    }
}

/// The header words of `N` packets `stride` apart from `off`.
///
/// # Safety
/// `group_fits(buf, off, stride, N)` must hold.
#[inline(always)]
unsafe fn load_words<const N: usize>(buf: &[u8], off: usize, stride: usize) -> [i32; N] {
    let base = buf.as_ptr();
    // SAFETY: the caller guarantees `off + k * stride + 4 <= buf.len()` for
    // every k < N; read_unaligned has no alignment requirement. Plain loads
    // beat a gather here: they issue independently when the lines miss.
    std::array::from_fn(|k| unsafe { base.add(off + k * stride).cast::<i32>().read_unaligned() })
}

#[target_feature(enable = "avx2")]
fn avx2_matches(words: [i32; 8], hot: &HotSet) -> (u32, [u32; HOT]) {
    let headers = _mm256_setr_epi32(words[0], words[1], words[2], words[3], words[4], words[5], words[6], words[7]);
    let fixed = _mm256_and_si256(headers, _mm256_set1_epi32(HOT_HEADER_MASK as i32));
    let nibble = _mm256_set1_epi32(0x0F);
    let counters = _mm256_and_si256(_mm256_srli_epi32::<24>(headers), nibble);
    let mut expected = _mm256_setzero_si256();
    let mut masks = [0u32; HOT];
    for (h, mask) in masks.iter_mut().enumerate() {
        let mine = _mm256_cmpeq_epi32(fixed, _mm256_set1_epi32(hot.headers[h] as i32));
        *mask = _mm256_movemask_ps(_mm256_castsi256_ps(mine)) as u32;
        // Lane k of PID h expects cc + (packets of h in lanes 0..=k).
        let prefix = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(PREFIX[*mask as usize] as i64));
        let next = _mm256_and_si256(_mm256_add_epi32(_mm256_set1_epi32(hot.cc[h] as i32), prefix), nibble);
        // The null PID accepts whatever counter it carries.
        let want = _mm256_blendv_epi8(next, counters, _mm256_set1_epi32(hot.any_cc[h] as i32));
        expected = _mm256_or_si256(expected, _mm256_and_si256(mine, want));
    }
    let any = masks.iter().fold(0, |a, m| a | m);
    let ok = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(counters, expected))) as u32 & any;
    (ok, masks)
}

impl GroupMatcher for Avx2 {
    const LANES: usize = 8;
    #[inline(always)]
    fn matches(&self, buf: &[u8], off: usize, stride: usize, hot: &HotSet) -> (u32, [u32; HOT]) {
        if !group_fits(buf, off, stride, 8) {
            return (0, [0; HOT]);
        }
        // SAFETY: `group_fits` held just above.
        let words = unsafe { load_words::<8>(buf, off, stride) };
        prefetch_ahead::<8>(buf, off, stride);
        // SAFETY: `self` proves AVX2 (see `Avx2`).
        unsafe { avx2_matches(words, hot) }
    }
}

#[target_feature(enable = "sse2")]
fn sse2_matches(words: [i32; 4], hot: &HotSet) -> (u32, [u32; HOT]) {
    let headers = _mm_setr_epi32(words[0], words[1], words[2], words[3]);
    let fixed = _mm_and_si128(headers, _mm_set1_epi32(HOT_HEADER_MASK as i32));
    let nibble = _mm_set1_epi32(0x0F);
    let counters = _mm_and_si128(_mm_srli_epi32::<24>(headers), nibble);
    let zero = _mm_setzero_si128();
    let mut expected = zero;
    let mut masks = [0u32; HOT];
    for (h, mask) in masks.iter_mut().enumerate() {
        let mine = _mm_cmpeq_epi32(fixed, _mm_set1_epi32(hot.headers[h] as i32));
        *mask = _mm_movemask_ps(_mm_castsi128_ps(mine)) as u32;
        let bytes = _mm_cvtsi32_si128(PREFIX[*mask as usize] as i32);
        let prefix = _mm_unpacklo_epi16(_mm_unpacklo_epi8(bytes, zero), zero);
        let next = _mm_and_si128(_mm_add_epi32(_mm_set1_epi32(hot.cc[h] as i32), prefix), nibble);
        // The null PID accepts whatever counter it carries (SSE2 has no
        // blendv: select with and/andnot).
        let free = _mm_set1_epi32(hot.any_cc[h] as i32);
        let want = _mm_or_si128(_mm_and_si128(free, counters), _mm_andnot_si128(free, next));
        expected = _mm_or_si128(expected, _mm_and_si128(mine, want));
    }
    let any = masks.iter().fold(0, |a, m| a | m);
    let ok = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(counters, expected))) as u32 & any;
    (ok, masks)
}

impl GroupMatcher for Sse2 {
    const LANES: usize = 4;
    #[inline(always)]
    fn matches(&self, buf: &[u8], off: usize, stride: usize, hot: &HotSet) -> (u32, [u32; HOT]) {
        if !group_fits(buf, off, stride, 4) {
            return (0, [0; HOT]);
        }
        // SAFETY: `group_fits` held just above.
        let words = unsafe { load_words::<4>(buf, off, stride) };
        // SAFETY: `self` proves SSE2 (see `Sse2`).
        unsafe { sse2_matches(words, hot) }
    }
}

#[target_feature(enable = "avx2,popcnt,bmi1")]
fn drive_avx2(ctx: ScanCtx<'_>, buf: &[u8], run: Run) -> ScanOutcome {
    drive(&Avx2(()), ctx, buf, run)
}

#[target_feature(enable = "sse2,popcnt")]
fn drive_sse2(ctx: ScanCtx<'_>, buf: &[u8], run: Run) -> ScanOutcome {
    drive(&Sse2(()), ctx, buf, run)
}

/// Scans with the AVX2 kernel, or the scalar one on a CPU without AVX2.
pub(super) fn scan_avx2(ctx: ScanCtx<'_>, buf: &[u8], run: Run) -> ScanOutcome {
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("popcnt") && is_x86_feature_detected!("bmi1") {
        // SAFETY: AVX2, POPCNT and BMI1 were detected on this CPU just above.
        unsafe { drive_avx2(ctx, buf, run) }
    } else {
        scalar::scan(ctx, buf, run)
    }
}

/// Scans with the SSE2 kernel, or the scalar one on a CPU without SSE2.
pub(super) fn scan_sse2(ctx: ScanCtx<'_>, buf: &[u8], run: Run) -> ScanOutcome {
    if is_x86_feature_detected!("sse2") && is_x86_feature_detected!("popcnt") {
        // SAFETY: SSE2 and POPCNT were detected on this CPU just above.
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
        // SAFETY: `group_fits` held just above.
        let w = unsafe { load_words::<8>(buf, off, run.stride) };
        let headers = _mm256_setr_epi32(w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]);
        let sync = _mm256_cmpeq_epi32(_mm256_and_si256(headers, _mm256_set1_epi32(0xFF)), _mm256_set1_epi32(0x47));
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
