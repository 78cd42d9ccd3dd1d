//! General matrix multiply, the hot loop of every transformer: C (m×n) (+)= A (m×k) · B (k×n)
//! with arbitrary row/column strides, so transposed operands need no copy.
//!
//! # Blocking (Goto / BLIS style)
//!
//! ```text
//! pack all of B, block by block of KC steps of the contraction index p (always the same
//! KC), into NR-wide panels of kc groups of NR values, in parallel                ← L2/L3
//! parallel over output tiles (≤ MC rows × NC columns), each tile owned by one task:
//!   for each block of KC steps, in order:
//!     pack A[tile rows, block] into MR-row panels (zero-padded past row m)        ← L2
//!     for each NR-wide panel of B in the tile:                                    ← L1
//!       for each MR-row panel of A:
//!         micro-kernel: an MR×NR register tile acc = Σ_p a[:, p] ⊗ b[p, :]
//!         C[sub-tile] = acc (first block, no accumulate) or C[sub-tile] + acc
//! ```
//!
//! (When all of B packed would be too large, as for a big vocabulary's logits, the
//! blocks go in groups: pack the group's blocks, then every tile runs the group's blocks.)
//!
//! (Products under 2³¹ multiply-adds whose part of a B block fits in 4 MiB per thread, which
//! is every linear layer of the bundled configurations, fork once instead: one task per
//! thread owns a rectangle of C and packs, block by block, only the part of B it needs.)
//!
//! The micro-kernels (in `kernel.rs`) keep MR × NR/LANES SIMD accumulators in registers
//! and, per step of p, load NR values of B and broadcast MR values of A: 14×32 with AVX-512
//! (28 zmm accumulators), 6×16 with AVX2 + FMA (12 ymm accumulators). An A panel is packed
//! row by row when A is row-major (x and dout in a linear layer's forward and dx) and step
//! by step otherwise (doutᵀ in dw), so that packing is a plain copy either way. Tiles split
//! the rows or the columns of C, whichever re-reads less. The kernel prefetches its C
//! tile, which each KC block reads and writes once. Products under about a million
//! multiply-adds run on the calling thread.
//!
//! # Determinism
//!
//! Every output element gets the same sequence of operations wherever it sits in a tile:
//! for each KC block, a chain of fused multiply-adds over p starting from zero, then one
//! addition into C. Tiles only decide *who* computes an element, never *how*, so the result
//! is bit-identical for any thread count, and also between the AVX-512, AVX2 and portable
//! kernels (they share KC and use FMA). Edge tiles run the same kernel on zero-padded
//! panels into a scratch tile, then copy or add the valid part.
//!
//! On CPUs without AVX2 + FMA, the `matrixmultiply` crate is the fallback.

mod kernel;

use crate::simd::{level, Level};
use kernel::{Avx2Kernel, Avx512Kernel, Call, Kernel, Layout, PortableKernel, A_ROW_STRIDE};
use rayon::prelude::*;
use std::cell::Cell;
use std::thread::LocalKey;

/// A read-only matrix operand: element (i, j) is at `data[i * rs + j * cs]`.
#[derive(Copy, Clone, Debug)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Mat<'a> {
        Mat { data, rs: cols, cs: 1 }
    }

    /// The transpose of a row-major matrix that has `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Mat<'a> {
        Mat { data, rs: 1, cs: cols }
    }

    /// Panics unless every element of an r×c view lies inside `data`.
    fn check(&self, name: &str, r: usize, c: usize) {
        if r == 0 || c == 0 {
            return;
        }
        let last = (r - 1) * self.rs + (c - 1) * self.cs;
        assert!(
            last < self.data.len(),
            "gemm: {name} is ({r}, {c}) with strides ({}, {}), needs {} values but has {}",
            self.rs,
            self.cs,
            last + 1,
            self.data.len()
        );
    }
}

/// An implementation of [`gemm`]; [`Backend::best`] picks the fastest this CPU supports.
///
/// The instruction set comes from [`crate::simd::level`], as for every kernel. The backend
/// stays an enum beside it because it is more than an instruction set: each variant is a
/// micro-kernel of its own shape (14×32 for AVX-512, 6×16 otherwise) or another library,
/// and the GEMM benchmark and the tests force one to compare it with the others.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Our packed GEMM with the 14×32 AVX-512 micro-kernel.
    Avx512,
    /// Our packed GEMM with the 6×16 AVX2 + FMA micro-kernel.
    Avx2,
    /// Our packed GEMM with a plain-Rust 6×16 micro-kernel (slow; for tests).
    Portable,
    /// The `matrixmultiply` crate, run on fixed output tiles in parallel.
    MatrixMultiply,
}

impl Backend {
    /// Every backend, fastest first.
    pub const ALL: [Backend; 4] =
        [Backend::Avx512, Backend::Avx2, Backend::MatrixMultiply, Backend::Portable];

    /// The backend [`gemm`] uses: the widest SIMD kernel this CPU runs, else `matrixmultiply`.
    pub fn best() -> Backend {
        if Backend::Avx512.is_available() {
            Backend::Avx512
        } else if Backend::Avx2.is_available() {
            Backend::Avx2
        } else {
            Backend::MatrixMultiply
        }
    }

    /// Whether this CPU can run the backend: the [`Level`] of [`crate::simd`] it needs.
    pub fn is_available(self) -> bool {
        match self {
            Backend::Avx512 => level() >= Level::Avx512,
            Backend::Avx2 => level() >= Level::Avx2Fma,
            Backend::Portable | Backend::MatrixMultiply => true,
        }
    }

    /// A short lowercase name, for tables.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Avx512 => "avx512",
            Backend::Avx2 => "avx2",
            Backend::Portable => "portable",
            Backend::MatrixMultiply => "matrixmultiply",
        }
    }
}

/// C (m×n, row-major, leading dimension n) = A · B, or += A · B when `accumulate`.
pub fn gemm(m: usize, k: usize, n: usize, a: Mat, b: Mat, c: &mut [f32], accumulate: bool) {
    gemm_with(Backend::best(), m, k, n, a, b, c, accumulate);
}

/// [`gemm`] with a chosen backend. Panics if this CPU cannot run it.
#[allow(clippy::too_many_arguments)]
pub fn gemm_with(
    backend: Backend,
    m: usize,
    k: usize,
    n: usize,
    a: Mat,
    b: Mat,
    c: &mut [f32],
    accumulate: bool,
) {
    assert!(backend.is_available(), "gemm: backend {} is not supported by this CPU", backend.name());
    assert!(c.len() >= m * n, "gemm: C is ({m}, {n}) but has only {} values", c.len());
    a.check("A", m, k);
    b.check("B", k, n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    match backend {
        Backend::Avx512 => gemm_packed::<Avx512Kernel>(m, k, n, a, b, c, accumulate),
        Backend::Avx2 => gemm_packed::<Avx2Kernel>(m, k, n, a, b, c, accumulate),
        Backend::Portable => gemm_packed::<PortableKernel>(m, k, n, a, b, c, accumulate),
        Backend::MatrixMultiply => gemm_matrixmultiply(m, k, n, a, b, c, accumulate),
    }
}

/// Rows of the contraction index per packed block. The same for every kernel, because it
/// fixes the order of additions (see the module comment).
const KC: usize = 256;
/// Output tiles wanted per thread, so that the threads stay evenly loaded. (The tiling
/// never changes the result, only who computes what.)
const TILES_PER_THREAD: usize = 4;
/// Products with fewer multiply-adds than this (about 20 µs of work) run on one thread.
const SERIAL_BELOW: usize = 1 << 20;
/// Most packed values of B held at once (16 MiB): longer contractions are packed and
/// multiplied a group of KC blocks at a time.
const MAX_PACKED_B: usize = 1 << 22;
/// Fewest row panels per output tile, so that each packed panel of B is reused enough.
const MIN_PANELS: usize = 4;

/// The largest MR×NR of any kernel, for the scratch tile of edge tiles.
const MAX_TILE: usize = 14 * 32;

thread_local! {
    /// Packed B of the current call, kept between calls so steady-state steps do not allocate.
    static PACKED_B: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// Packed A block of the current tile.
    static PACKED_A: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on a 64-byte aligned slice of `len` values from the thread's buffer `key`.
/// The buffer is taken out while in use, so a nested call on the same thread (rayon work
/// stealing) finds an empty one and allocates its own instead of aliasing.
fn with_buffer<R>(key: &'static LocalKey<Cell<Vec<f32>>>, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    const ALIGN_FLOATS: usize = 16;
    let mut buf = key.take();
    if buf.len() < len + ALIGN_FLOATS {
        buf = vec![0.0; len + ALIGN_FLOATS];
    }
    let misalign = (buf.as_ptr() as usize % 64) / 4;
    let start = (ALIGN_FLOATS - misalign) % ALIGN_FLOATS;
    let out = f(&mut buf[start..start + len]);
    key.set(buf);
    out
}

/// The packed GEMM described in the module comment, for one micro-kernel.
///
/// B is packed for a whole group of KC blocks at once (the whole contraction unless that
/// would exceed [`MAX_PACKED_B`]), so that a call forks and joins twice per group rather
/// than twice per block, and each task runs all of the group's blocks on its own tile
/// while that tile of C is in cache. The blocks still add into C one after another, so the
/// result is the same as with one block at a time.
fn gemm_packed<K: Kernel>(m: usize, k: usize, n: usize, a: Mat, b: Mat, c: &mut [f32], accumulate: bool) {
    let threads = rayon::current_num_threads();
    let work = m * k * n;
    if (SERIAL_BELOW..=OWN_B_UP_TO).contains(&work) && threads > 1 {
        if let Some(split) = own_b_split::<K>(m, k, n, threads) {
            return gemm_packed_own_b::<K>(m, k, n, a, b, c, accumulate, split);
        }
    }
    gemm_packed_grouped::<K>(m, k, n, a, b, c, accumulate, MAX_PACKED_B);
}

/// Products up to this many multiply-adds (about 20 ms of work on two cores: every
/// linear layer of a GPT-2-small step, not its vocabulary-wide head) take
/// [`gemm_packed_own_b`]: one task per thread, each packing its own part of B.
const OWN_B_UP_TO: usize = 1 << 31;
/// Most values of B one task of [`gemm_packed_own_b`] packs per block (4 MiB).
const MAX_OWN_B: usize = 1 << 20;

/// How [`gemm_packed_own_b`] splits C among `threads` tasks: (row tiles, column tiles)
/// with product `threads`, each tile at least one panel in both directions and packing at
/// most [`MAX_OWN_B`] values of B per block, choosing the split that packs the fewest
/// values (each column tile packs its rows of A, each row tile its columns of B). None
/// when no split fits.
fn own_b_split<K: Kernel>(m: usize, k: usize, n: usize, threads: usize) -> Option<(usize, usize)> {
    let (panels_m, panels_n) = (m.div_ceil(K::MR), n.div_ceil(K::NR));
    (1..=threads)
        .filter(|&tiles_n| threads.is_multiple_of(tiles_n))
        .map(|tiles_n| (threads / tiles_n, tiles_n))
        .filter(|&(tiles_m, tiles_n)| tiles_m <= panels_m && tiles_n <= panels_n)
        .filter(|&(_, tiles_n)| KC.min(k) * panels_n.div_ceil(tiles_n) * K::NR <= MAX_OWN_B)
        .min_by_key(|&(tiles_m, tiles_n)| tiles_n * m * k + tiles_m * k * n)
}

/// The packed GEMM for products up to [`OWN_B_UP_TO`]: one parallel region with one task
/// per thread, each owning a rectangle of C and packing the part of B that rectangle
/// needs, block by block, then running MC-row slices of its rows against it. Products of
/// this size lose much of their time to synchronisation and to moving packed B between
/// cores, and this variant has one fork-join and keeps each packed block in the core that
/// uses it. Every element still gets the same operations in the same order, so the bits
/// are those of [`gemm_packed_grouped`].
#[allow(clippy::too_many_arguments)]
fn gemm_packed_own_b<K: Kernel>(
    m: usize,
    k: usize,
    n: usize,
    a: Mat,
    b: Mat,
    c: &mut [f32],
    accumulate: bool,
    (tiles_m, tiles_n): (usize, usize),
) {
    let (panels_m, panels_n) = (m.div_ceil(K::MR), n.div_ceil(K::NR));
    let (mc, nc) = (panels_m.div_ceil(tiles_m) * K::MR, panels_n.div_ceil(tiles_n) * K::NR);
    let c_ptr = SendPtr(c.as_mut_ptr());
    (0..tiles_m * tiles_n).into_par_iter().for_each(|tile| {
        let (i0, j0) = ((tile / tiles_n) * mc, (tile % tiles_n) * nc);
        if i0 >= m || j0 >= n {
            return;
        }
        let (mi, nj) = (mc.min(m - i0), nc.min(n - j0));
        let nj_padded = nj.div_ceil(K::NR) * K::NR;
        with_buffer(&PACKED_B, KC.min(k) * nj_padded, |packed_b| {
            for p0 in (0..k).step_by(KC) {
                let kc = KC.min(k - p0);
                let packed_b = &mut packed_b[..kc * nj_padded];
                pack_block(packed_b, kc * K::NR, K::NR, kc, &Source::columns_of(b, p0, j0, nj));
                let block = Block { p0, kc, overwrite: p0 == 0 && !accumulate };
                for i in (i0..i0 + mi).step_by(K::MC) {
                    let rows = Tile { i0: i, mi: K::MC.min(i0 + mi - i), j0, nj };
                    gemm_tile::<K>(&rows, &block, n, a, packed_b, j0, &c_ptr);
                }
            }
        });
    });
}

/// [`gemm_packed`] holding at most `max_packed_b` packed values of B (but at least one block).
#[allow(clippy::too_many_arguments)]
fn gemm_packed_grouped<K: Kernel>(
    m: usize,
    k: usize,
    n: usize,
    a: Mat,
    b: Mat,
    c: &mut [f32],
    accumulate: bool,
    max_packed_b: usize,
) {
    let n_padded = n.div_ceil(K::NR) * K::NR;
    // Small products run on the calling thread: waking others would cost more than it saves.
    let min_len = if m * k * n < SERIAL_BELOW { usize::MAX } else { 1 };
    let (mc, nc) = tile_size::<K>(m, n);
    let (tiles_m, tiles_n) = (m.div_ceil(mc), n.div_ceil(nc));
    let c_ptr = SendPtr(c.as_mut_ptr());
    let group_len = KC * (max_packed_b / (KC * n_padded)).max(1);
    with_buffer(&PACKED_B, group_len.min(k) * n_padded, |packed_b| {
        for g0 in (0..k).step_by(group_len) {
            let g_len = group_len.min(k - g0);
            let packed_b = &mut packed_b[..g_len * n_padded];
            // Each block is kc × n padded (only the last one short); within a block, groups
            // of 4 panels of kc × NR, so that a transposed B is read a line at a time.
            let blocks = packed_b.par_chunks_mut(KC * n_padded).with_min_len(min_len);
            blocks.enumerate().for_each(|(blk, block)| {
                let p0 = g0 + blk * KC;
                let kc = KC.min(k - p0);
                let groups = block.par_chunks_mut(4 * kc * K::NR).with_min_len(min_len);
                groups.enumerate().for_each(|(group, out)| {
                    let j0 = group * 4 * K::NR;
                    pack_block(out, kc * K::NR, K::NR, kc, &Source::columns_of(b, p0, j0, n - j0));
                });
            });
            let packed_b = &*packed_b;
            (0..tiles_m * tiles_n).into_par_iter().with_min_len(min_len).for_each(|tile| {
                let (i0, j0) = ((tile / tiles_n) * mc, (tile % tiles_n) * nc);
                let tile = Tile { i0, mi: mc.min(m - i0), j0, nj: nc.min(n - j0) };
                for p0 in (g0..g0 + g_len).step_by(KC) {
                    let kc = KC.min(k - p0);
                    let block = Block { p0, kc, overwrite: p0 == 0 && !accumulate };
                    let block_b = &packed_b[(p0 - g0) * n_padded..][..kc * n_padded];
                    gemm_tile::<K>(&tile, &block, n, a, block_b, 0, &c_ptr);
                }
            });
        }
    });
}

/// Rows and columns of an output tile: at most MC rows, and enough tiles to keep the
/// threads busy. Each extra split of the rows makes the tiles read B once more, each
/// extra split of the columns A once more, so the cheaper one is taken.
fn tile_size<K: Kernel>(m: usize, n: usize) -> (usize, usize) {
    let threads = rayon::current_num_threads();
    let min_tiles = if threads == 1 { 1 } else { TILES_PER_THREAD * threads };
    let (panels_m, panels_n) = (m.div_ceil(K::MR), n.div_ceil(K::NR));
    let (mut tiles_m, mut tiles_n) = (panels_m.div_ceil(K::MC / K::MR), 1);
    while tiles_m * tiles_n < min_tiles {
        let can_split_m = panels_m / (tiles_m + 1) >= MIN_PANELS;
        let can_split_n = tiles_n < panels_n;
        if can_split_m && (n <= m || !can_split_n) {
            tiles_m += 1;
        } else if can_split_n {
            tiles_n += 1;
        } else {
            break;
        }
    }
    (panels_m.div_ceil(tiles_m) * K::MR, panels_n.div_ceil(tiles_n) * K::NR)
}

/// One task's rectangle of C: rows i0..i0+mi, columns j0..j0+nj (j0 a multiple of NR).
struct Tile {
    i0: usize,
    mi: usize,
    j0: usize,
    nj: usize,
}

/// One block of the contraction index: steps p0..p0+kc, and whether its sums replace C
/// (the first block, without accumulate) or add to it.
struct Block {
    p0: usize,
    kc: usize,
    overwrite: bool,
}

/// Computes one output tile's share of one KC block: packs the tile's rows of A, then runs
/// the micro-kernel on every MR×NR sub-tile against the packed B (`kc` rows of the
/// columns from `b_col0` on, padded).
fn gemm_tile<K: Kernel>(
    t: &Tile,
    blk: &Block,
    n: usize,
    a: Mat,
    packed_b: &[f32],
    b_col0: usize,
    c: &SendPtr,
) {
    const { assert!(K::MR * K::NR <= MAX_TILE, "gemm: MAX_TILE is smaller than a kernel's tile") };
    let (kc, overwrite) = (blk.kc, blk.overwrite);
    let start = t.i0 * a.rs + blk.p0 * a.cs;
    // A row-major A is packed row by row, any other step by step: both are plain copies
    // when A is row-major or transposed.
    let layout = if a.cs == 1 { Layout::Rows } else { Layout::KMajor };
    let panel_len = K::MR * A_ROW_STRIDE;
    with_buffer(&PACKED_A, t.mi.div_ceil(K::MR) * panel_len, |packed_a| {
        if layout == Layout::Rows {
            pack_rows(packed_a, a.data, start, t.mi, kc, a.rs);
        } else {
            let src = Source { data: a.data, start, lanes: t.mi, lane_stride: a.rs, k_stride: a.cs };
            pack_block(packed_a, panel_len, K::MR, kc, &src);
        }
        let mut scratch = [0.0f32; MAX_TILE];
        for j in (t.j0..t.j0 + t.nj).step_by(K::NR) {
            let b_panel = &packed_b[(j - b_col0) * kc..][..kc * K::NR];
            for (panel, a_panel) in packed_a.chunks_exact(panel_len).enumerate() {
                let i = t.i0 + panel * K::MR;
                let (rows, cols) = (K::MR.min(t.i0 + t.mi - i), K::NR.min(n - j));
                // SAFETY: the packed panels hold kc × MR and kc × NR values; a full sub-tile
                // lies inside C (checked by gemm_with) and inside this task's tile, which no
                // other task writes; an edge sub-tile goes to `scratch`, which holds MR × NR.
                unsafe {
                    let dst = c.0.add(i * n + j);
                    let a = a_panel.as_ptr();
                    let call = Call { kc, a, layout, b: b_panel.as_ptr(), c: dst, rsc: n, overwrite };
                    if rows == K::MR && cols == K::NR {
                        K::run(call);
                    } else {
                        K::run(Call { c: scratch.as_mut_ptr(), rsc: K::NR, overwrite: true, ..call });
                        for r in 0..rows {
                            let dst = std::slice::from_raw_parts_mut(dst.add(r * n), cols);
                            for (d, &s) in dst.iter_mut().zip(&scratch[r * K::NR..][..cols]) {
                                *d = if overwrite { s } else { *d + s };
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Packs `lanes` rows of a row-major A, from `start` on, `kc` values each, into the rows of
/// `Layout::Rows` panels (rows past `lanes` are zero): a plain copy per row.
fn pack_rows(dst: &mut [f32], src: &[f32], start: usize, lanes: usize, kc: usize, row_stride: usize) {
    for (l, row) in dst.chunks_exact_mut(A_ROW_STRIDE).enumerate() {
        if l < lanes {
            row[..kc].copy_from_slice(&src[start + l * row_stride..][..kc]);
        } else {
            row[..kc].fill(0.0);
        }
    }
}

/// Where packing reads lanes (rows of A or columns of B): lane l at step p of the
/// contraction index is `data[start + l·lane_stride + p·k_stride]`, for l < `lanes`.
struct Source<'a> {
    data: &'a [f32],
    start: usize,
    lanes: usize,
    lane_stride: usize,
    k_stride: usize,
}

impl<'a> Source<'a> {
    /// `lanes` columns of B from column j0 on, read from contraction step p0 on.
    fn columns_of(b: Mat<'a>, p0: usize, j0: usize, lanes: usize) -> Source<'a> {
        Source { data: b.data, start: p0 * b.rs + j0 * b.cs, lanes, lane_stride: b.cs, k_stride: b.rs }
    }
}

/// Packs consecutive lanes into panels of W lanes over `kc` steps: panel q starts at
/// dst[q·panel_stride] and holds lane qW + l at step p in its [p·W + l], zero past
/// `src.lanes`, so that the micro-kernel reads its operands contiguously. The loops follow
/// the source's contiguous direction. Inlined so that W is a constant.
#[inline(always)]
#[allow(non_snake_case)]
fn pack_block(dst: &mut [f32], panel_stride: usize, W: usize, kc: usize, src: &Source) {
    let panels = dst.len() / panel_stride;
    let lanes = src.lanes.min(panels * W);
    for q in lanes / W..panels {
        dst[q * panel_stride..][..kc * W].fill(0.0);
    }
    if src.k_stride == 1 {
        // Each lane is contiguous along k: read it once, scatter it into its panel.
        for l in 0..lanes {
            let from = &src.data[src.start + l * src.lane_stride..][..kc];
            let panel = &mut dst[(l / W) * panel_stride..][..kc * W];
            for (group, &x) in panel.chunks_exact_mut(W).zip(from) {
                group[l % W] = x;
            }
        }
    } else if src.lane_stride == 1 {
        // Each step's lanes are one contiguous run: copy it W lanes at a time into the panels
        // (a partial last group lands in a panel zeroed above).
        for p in 0..kc {
            let run = &src.data[src.start + p * src.k_stride..][..lanes];
            let mut groups = dst.chunks_exact_mut(panel_stride).map(|panel| &mut panel[p * W..][..W]);
            let full = run.chunks_exact(W);
            let rest = full.remainder();
            for (from, group) in full.zip(groups.by_ref()) {
                group.copy_from_slice(from);
            }
            if let Some(group) = groups.next().filter(|_| !rest.is_empty()) {
                group[..rest.len()].copy_from_slice(rest);
            }
        }
    } else {
        // Walk k outermost, so that each step reads one run of lanes.
        for p in 0..kc {
            let row = src.start + p * src.k_stride;
            for q in 0..lanes.div_ceil(W) {
                let (l0, l1) = (q * W, lanes.min(q * W + W));
                let group = &mut dst[q * panel_stride + p * W..][..W];
                if src.lane_stride == 1 && l1 - l0 == W {
                    group.copy_from_slice(&src.data[row + l0..][..W]);
                } else {
                    for (l, x) in (l0..l1).zip(group) {
                        *x = src.data[row + l * src.lane_stride];
                    }
                }
            }
        }
    }
}

/// Output rows per parallel task of the `matrixmultiply` path.
const MM_TILE_M: usize = 64;
/// Output columns per parallel task of the `matrixmultiply` path.
const MM_TILE_N: usize = 256;

/// The `matrixmultiply` path: fixed output tiles in parallel, each one `sgemm` call.
fn gemm_matrixmultiply(m: usize, k: usize, n: usize, a: Mat, b: Mat, c: &mut [f32], accumulate: bool) {
    let beta = if accumulate { 1.0 } else { 0.0 };
    let tiles_n = n.div_ceil(MM_TILE_N);
    let c_ptr = SendPtr(c.as_mut_ptr());
    (0..m.div_ceil(MM_TILE_M) * tiles_n).into_par_iter().for_each(|tile| {
        let (i0, j0) = ((tile / tiles_n) * MM_TILE_M, (tile % tiles_n) * MM_TILE_N);
        let (mi, nj) = (MM_TILE_M.min(m - i0), MM_TILE_N.min(n - j0));
        let c_ptr = &c_ptr;
        // SAFETY: tiles are disjoint rectangles of C, each written by one task only, and
        // every operand index stays inside the slices checked by gemm_with.
        unsafe {
            matrixmultiply::sgemm(
                mi,
                k,
                nj,
                1.0,
                a.data.as_ptr().add(i0 * a.rs),
                a.rs as isize,
                a.cs as isize,
                b.data.as_ptr().add(j0 * b.cs),
                b.rs as isize,
                b.cs as isize,
                beta,
                c_ptr.0.add(i0 * n + j0),
                n as isize,
                1,
            );
        }
    });
}

struct SendPtr(*mut f32);
// SAFETY: the pointer is only used to write disjoint tiles from different tasks.
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

/// The plain triple loop, kept as the reference the fast path is tested against.
pub fn gemm_reference(m: usize, k: usize, n: usize, a: Mat, b: Mat, c: &mut [f32], accumulate: bool) {
    for i in 0..m {
        for j in 0..n {
            let mut sum = 0.0f32;
            for p in 0..k {
                sum += a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
            }
            let dst = &mut c[i * n + j];
            *dst = if accumulate { *dst + sum } else { sum };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    /// Runs `backend` and the reference on every stride layout of A and B, with and
    /// without accumulate, and compares.
    fn check_against_reference(backend: Backend, m: usize, k: usize, n: usize, rng: &mut Rng) {
        let a = Tensor::randn(&[m, k], 1.0, rng);
        let at = Tensor::randn(&[k, m], 1.0, rng);
        let b = Tensor::randn(&[k, n], 1.0, rng);
        let bt = Tensor::randn(&[n, k], 1.0, rng);
        let a_layouts = [Mat::rows(&a.data, k), Mat::transposed(&at.data, m)];
        let b_layouts = [Mat::rows(&b.data, n), Mat::transposed(&bt.data, k)];
        for am in a_layouts {
            for bm in b_layouts {
                for accumulate in [false, true] {
                    let mut fast = vec![0.5; m * n];
                    let mut slow = vec![0.5; m * n];
                    gemm_with(backend, m, k, n, am, bm, &mut fast, accumulate);
                    gemm_reference(m, k, n, am, bm, &mut slow, accumulate);
                    let tol = 1e-5 * (k as f32).sqrt() * 4.0;
                    for (idx, (x, y)) in fast.iter().zip(&slow).enumerate() {
                        assert!(
                            (x - y).abs() <= tol * (1.0 + y.abs()),
                            "gemm {} ({m},{k},{n}) a.rs={} b.rs={} accumulate={accumulate}: \
                             element {idx}: {x} vs reference {y}",
                            backend.name(),
                            am.rs,
                            bm.rs,
                        );
                    }
                }
            }
        }
    }

    const AWKWARD: [(usize, usize, usize); 9] = [
        (1, 1, 1),
        (7, 13, 5),
        (6, 256, 16),
        (14, 257, 32),
        (65, 33, 257),
        (130, 17, 300),
        (97, 513, 47),
        (200, 300, 70),
        (3, 600, 129),
    ];

    #[test]
    fn gemm_matches_reference_on_awkward_shapes_and_layouts() {
        let mut rng = Rng::seeded(1);
        for backend in Backend::ALL.into_iter().filter(|b| b.is_available()) {
            for &(m, k, n) in &AWKWARD {
                check_against_reference(backend, m, k, n, &mut rng);
            }
        }
    }

    /// The AVX-512 blocking (14×32 tiles, 168-row tasks) with the portable kernel, so that
    /// its tiling and edge handling are tested on CPUs without AVX-512 too.
    #[test]
    fn avx512_blocking_gives_the_same_bits_as_avx2_blocking() {
        use kernel::{a_strides, micro_kernel, Portable};
        struct Wide;
        impl Kernel for Wide {
            const MR: usize = Avx512Kernel::MR;
            const NR: usize = Avx512Kernel::NR;
            const MC: usize = Avx512Kernel::MC;
            unsafe fn run(call: Call) {
                micro_kernel::<Portable<16>, 14, 2>(call, a_strides(call.layout, 14))
            }
        }
        let mut rng = Rng::seeded(4);
        for &(m, k, n) in AWKWARD.iter().chain(&[(200, 520, 100)]) {
            let a = Tensor::randn(&[m, k], 1.0, &mut rng);
            let bt = Tensor::randn(&[n, k], 1.0, &mut rng);
            let bm = Mat::transposed(&bt.data, k);
            // Row-major A (packed row by row) and transposed A (packed step by step).
            for am in [Mat::rows(&a.data, k), Mat::transposed(&a.data, m)] {
                let mut narrow = vec![0.5; m * n];
                gemm_with(Backend::Portable, m, k, n, am, bm, &mut narrow, true);
                let mut ours = vec![0.5; m * n];
                gemm_packed::<Wide>(m, k, n, am, bm, &mut ours, true);
                let same = ours.iter().zip(&narrow).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "gemm ({m},{k},{n}) a.rs={}: 14×32 tiling differs from 6×16", am.rs);
            }
        }
    }

    /// Packing B a few blocks at a time gives the same bits as packing it all at once.
    #[test]
    fn grouped_blocks_give_the_same_bits_as_one_group() {
        let mut rng = Rng::seeded(6);
        let (m, k, n) = (40, 1300, 35);
        let a = Tensor::randn(&[m, k], 1.0, &mut rng);
        let b = Tensor::randn(&[k, n], 1.0, &mut rng);
        let (am, bm) = (Mat::rows(&a.data, k), Mat::rows(&b.data, n));
        for accumulate in [false, true] {
            let mut whole = vec![0.5; m * n];
            gemm_packed_grouped::<PortableKernel>(m, k, n, am, bm, &mut whole, accumulate, usize::MAX);
            for max_packed_b in [1, 2 * KC * 48] {
                let mut grouped = vec![0.5; m * n];
                gemm_packed_grouped::<PortableKernel>(
                    m,
                    k,
                    n,
                    am,
                    bm,
                    &mut grouped,
                    accumulate,
                    max_packed_b,
                );
                let same = grouped.iter().zip(&whole).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "gemm ({m},{k},{n}): groups of {max_packed_b} values differ from one group");
            }
        }
    }

    #[test]
    fn packing_b_per_task_gives_the_same_bits_as_packing_it_once() {
        let mut rng = Rng::seeded(7);
        for (m, k, n) in [(301, 700, 90), (40, 300, 200), (13, 70, 130)] {
            let a = Tensor::randn(&[m, k], 1.0, &mut rng);
            let bt = Tensor::randn(&[n, k], 1.0, &mut rng);
            let (am, bm) = (Mat::rows(&a.data, k), Mat::transposed(&bt.data, k));
            for accumulate in [false, true] {
                let mut once = vec![0.5; m * n];
                gemm_packed_grouped::<PortableKernel>(m, k, n, am, bm, &mut once, accumulate, usize::MAX);
                for threads in [2, 3, 4, 6] {
                    let Some(split) = own_b_split::<PortableKernel>(m, k, n, threads) else { continue };
                    let mut own = vec![0.5; m * n];
                    run_in_pool(threads, || {
                        gemm_packed_own_b::<PortableKernel>(m, k, n, am, bm, &mut own, accumulate, split);
                        Vec::new()
                    });
                    let same = own.iter().zip(&once).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "gemm ({m},{k},{n}) split {split:?}: packing per task changes the bits");
                }
            }
        }
    }

    #[test]
    fn gemm_matches_reference_on_general_strides() {
        let mut rng = Rng::seeded(5);
        let (m, k, n) = (37, 300, 45);
        // A: every other column of a (m, 2k + 1) matrix; B: a (k, n) view with both strides > 1.
        let a = Tensor::randn(&[m * (2 * k + 1)], 1.0, &mut rng);
        let b = Tensor::randn(&[3 * k * n], 1.0, &mut rng);
        let am = Mat { data: &a.data, rs: 2 * k + 1, cs: 2 };
        let bm = Mat { data: &b.data, rs: 3, cs: 3 * k };
        for backend in Backend::ALL.into_iter().filter(|b| b.is_available()) {
            let mut fast = vec![0.5; m * n];
            let mut slow = vec![0.5; m * n];
            gemm_with(backend, m, k, n, am, bm, &mut fast, true);
            gemm_reference(m, k, n, am, bm, &mut slow, true);
            for (x, y) in fast.iter().zip(&slow) {
                assert!((x - y).abs() <= 1e-3 * (1.0 + y.abs()), "gemm {}: {x} vs {y}", backend.name());
            }
        }
    }

    #[test]
    fn gemm_handles_empty_dimensions() {
        let a = [1.0f32; 6];
        let mut c = vec![3.0f32; 6];
        gemm(2, 0, 3, Mat::rows(&a, 0), Mat::rows(&a, 3), &mut c, true);
        assert_eq!(c, vec![3.0; 6]);
        gemm(2, 0, 3, Mat::rows(&a, 0), Mat::rows(&a, 3), &mut c, false);
        assert_eq!(c, vec![0.0; 6]);
        gemm(0, 2, 3, Mat::rows(&a, 2), Mat::rows(&a, 3), &mut c, false);
    }

    #[test]
    #[should_panic(expected = "gemm: B is (4, 3)")]
    fn gemm_rejects_a_short_operand() {
        let a = [1.0f32; 8];
        let b = [1.0f32; 11];
        let mut c = vec![0.0f32; 6];
        gemm(2, 4, 3, Mat::rows(&a, 4), Mat::rows(&b, 3), &mut c, false);
    }

    fn run_in_pool(threads: usize, f: impl FnOnce() -> Vec<f32> + Send) -> Vec<f32> {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
        pool.install(f)
    }

    #[test]
    fn gemm_is_bit_identical_for_one_and_two_threads() {
        let mut rng = Rng::seeded(2);
        let (m, k, n) = (301, 700, 90);
        let a = Tensor::randn(&[m, k], 1.0, &mut rng);
        let bt = Tensor::randn(&[n, k], 1.0, &mut rng);
        let c0 = Tensor::randn(&[m, n], 1.0, &mut rng);
        let layouts = [Mat::rows(&a.data, k), Mat::transposed(&a.data, m)];
        for (backend, am) in
            Backend::ALL.into_iter().filter(|b| b.is_available()).flat_map(|b| layouts.map(|l| (b, l)))
        {
            let run = || {
                let mut c = c0.data.clone();
                gemm_with(backend, m, k, n, am, Mat::transposed(&bt.data, k), &mut c, true);
                c
            };
            let one = run_in_pool(1, run);
            let two = run_in_pool(2, run);
            let three = run_in_pool(3, run);
            let name = backend.name();
            assert!(
                one.iter().zip(&two).all(|(x, y)| x.to_bits() == y.to_bits()),
                "gemm {name}: 1 vs 2 threads differ"
            );
            assert!(
                one.iter().zip(&three).all(|(x, y)| x.to_bits() == y.to_bits()),
                "gemm {name}: 1 vs 3 threads differ"
            );
        }
    }

    #[test]
    fn simd_kernels_are_bit_identical_to_the_portable_kernel() {
        let mut rng = Rng::seeded(3);
        let (m, k, n) = (45, 530, 77);
        let a = Tensor::randn(&[k, m], 1.0, &mut rng);
        let b = Tensor::randn(&[k, n], 1.0, &mut rng);
        let run = |backend| {
            let mut c = vec![0.25f32; m * n];
            gemm_with(backend, m, k, n, Mat::transposed(&a.data, m), Mat::rows(&b.data, n), &mut c, true);
            c
        };
        let portable = run(Backend::Portable);
        for backend in [Backend::Avx512, Backend::Avx2].into_iter().filter(|b| b.is_available()) {
            let simd = run(backend);
            let same = simd.iter().zip(&portable).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "gemm {} differs from the portable kernel", backend.name());
        }
    }
}
